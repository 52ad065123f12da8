// Opening an mqtt.js client the way every SDK client does: MQTT 3.1.1 on one of the contract's
// transports, resolved on the first accepted CONNACK. A first attempt that fails rejects (and ends
// the client) instead of retrying forever, so a wrong key or URL surfaces at once; after the first
// success, mqtt.js reconnects on its own.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'

export type ErrorListener = (err: Error) => void

/** What both device and service clients accept about the connection itself. */
export interface ConnectionOptions {
  /** `mqtt://`, `mqtts://`, `ws://host:port/mqtt` or `wss://host:port/mqtt`. */
  url: string
  /** CleanSession; default true. */
  clean?: boolean
  /** Default 60. */
  keepaliveSec?: number
  /** Pause between reconnect attempts after the first success; 0 disables reconnecting. Default 1000. */
  reconnectPeriodMs?: number
  /** How long the first connect may take. Default 10000. */
  connectTimeoutMs?: number
  /** Further mqtt.js options, e.g. `ca` or `rejectUnauthorized` for TLS; the SDK's own fields win. */
  mqtt?: IClientOptions
  /**
   * Errors after the first connect (network errors while reconnecting, refused reconnects). mqtt.js
   * throws an 'error' nobody listens to, so the SDK always listens and hands them here.
   */
  onError?: ErrorListener
}

const PROTOCOLS = new Set(['mqtt:', 'mqtts:', 'ws:', 'wss:'])

/** Is the URL a TLS link (where a device may send its key as the password)? */
export function isSecureUrl(url: string): boolean {
  return /^(mqtts|wss):/i.test(url)
}

function checkUrl(url: string): void {
  let protocol: string
  try {
    protocol = new URL(url).protocol
  } catch {
    throw new TypeError(`not a URL: ${url}`)
  }
  if (!PROTOCOLS.has(protocol)) throw new TypeError(`unsupported protocol ${protocol} (use mqtt, mqtts, ws or wss)`)
}

export interface OpenedClient {
  client: MqttClient
  /** Resolves on the first accepted CONNACK; rejects (and ends the client) if the first attempt fails. */
  ready: Promise<void>
}

/**
 * Starts connecting; `identity` holds client id, user name and password, which no other option
 * overrides. The client is returned at once so callers attach their listeners before any packet
 * arrives (a resumed session may deliver messages right after CONNACK).
 */
export function openClient(opts: ConnectionOptions, identity: IClientOptions): OpenedClient {
  checkUrl(opts.url)
  const timeoutMs = opts.connectTimeoutMs ?? 10_000
  const client = mqtt.connect(opts.url, {
    ...opts.mqtt,
    protocolVersion: 4,
    clean: opts.clean ?? true,
    keepalive: opts.keepaliveSec ?? 60,
    reconnectPeriod: opts.reconnectPeriodMs ?? 1000,
    connectTimeout: timeoutMs,
    ...identity,
  })
  const ready = new Promise<void>(function firstConnect(resolve, reject) {
    let settled = false
    const fail = (err: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      client.end(true)
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error(`no CONNACK from ${opts.url} within ${timeoutMs} ms`)), timeoutMs)
    client.on('error', function reportError(err) {
      if (settled) opts.onError?.(err)
      else fail(err) // e.g. ECONNREFUSED, or a refused CONNACK with its return code in err.code
    })
    client.on('close', function closedBeforeConnack() {
      // a refused CONNACK reports its 'error' before the stream closes: let it win
      if (!settled) setImmediate(() => fail(new Error(`connection to ${opts.url} closed before CONNACK`)))
    })
    client.once('connect', function connected() {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve()
    })
  })
  return { client, ready }
}
