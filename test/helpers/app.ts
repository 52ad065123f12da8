// Starts FleetHub in-process on free loopback ports, with helpers for devices and MQTT clients.
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { type App, startApp } from '../../broker/app.js'
import { loadConfig } from '../../broker/config.js'
import type { Plugin } from '../../broker/plugin-host.js'
import type { DeviceKeys } from '../../registry/credentials.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789'

export interface Teardown {
  teardown(fn: () => unknown): void
}

/** Starts a node; it is closed at the test's teardown. `env` takes FLEETHUB_* settings. */
export async function startTestApp(
  t: Teardown,
  env: Record<string, string> = {},
  opts: { argv?: string[]; plugins?: Plugin[] } = {},
): Promise<App> {
  const config = loadConfig(opts.argv ?? [], {
    FLEETHUB_HOST: '127.0.0.1',
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_WS_PORT: '0',
    FLEETHUB_HTTP_PORT: '0',
    FLEETHUB_MQTTS_PORT: '0',
    FLEETHUB_WSS_PORT: '0',
    FLEETHUB_ADMIN_TOKEN: ADMIN_TOKEN,
    ...env,
  })
  const level = process.env.FLEETHUB_TEST_LOG ?? 'silent'
  const app = await startApp(config, {
    log: pino({ level, base: { node: config.nodeId } }),
    ...(opts.plugins ? { plugins: opts.plugins } : {}),
  })
  t.teardown(() => app.close())
  return app
}

export const mqttUrl = (app: App) => `mqtt://127.0.0.1:${app.ports.mqtt}`
export const wsUrl = (app: App) => `ws://127.0.0.1:${app.ports.ws}/mqtt`

export async function createDevice(
  app: App,
  id: string,
  extra: { tags?: Record<string, string>; parentId?: string } = {},
): Promise<DeviceKeys> {
  return (await app.registry.createDevice({ id, ...extra })).keys
}

export interface Connected {
  client: MqttClient
  /** Resolves when the broker closes the connection. */
  closed: Promise<void>
}

/** Connects with mqtt.js (MQTT 3.1.1, no reconnects); rejects with the CONNACK error. */
export function connect(url: string, opts: IClientOptions, created?: (c: MqttClient) => void): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    created?.(c)
    const timer = setTimeout(() => {
      c.end(true)
      reject(new Error('connect timed out'))
    }, 6000)
    c.once('connect', () => {
      clearTimeout(timer)
      resolve(c)
    })
    c.once('error', (err) => {
      clearTimeout(timer)
      c.end(true)
      reject(err)
    })
  })
}

/** The CONNACK return code a CONNECT gets (0 when accepted; the client is then closed). */
export async function connackOf(url: string, opts: IClientOptions): Promise<number> {
  try {
    const c = await connect(url, opts)
    await c.endAsync(true)
    return 0
  } catch (err) {
    const code = (err as { code?: number }).code
    if (typeof code !== 'number') throw err
    return code
  }
}

export function deviceOpts(id: string, password: string): IClientOptions {
  return { clientId: id, username: id, password }
}

export function serviceOpts(clientId: string, name = 'test', token = ADMIN_TOKEN): IClientOptions {
  return { clientId, username: `service:${name}`, password: token }
}

/** Resolves when the client is closed by the other side (or rejects after `ms`). */
export function closedWithin(c: MqttClient, ms: number): Promise<number> {
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    if (!c.connected) return resolve(0)
    const timer = setTimeout(() => reject(new Error(`still connected after ${ms} ms`)), ms)
    c.once('close', () => {
      clearTimeout(timer)
      resolve(Date.now() - t0)
    })
  })
}

/**
 * Connects with an inbox listening from the start: what a broker sends right after the CONNACK
 * (a resumed session's queue) may be handled before `connect` resolves.
 */
export async function connectWithInbox(url: string, opts: IClientOptions) {
  let box: ReturnType<typeof inbox> | undefined
  const client = await connect(url, opts, (c) => {
    box = inbox(c)
  })
  return { client, box: box as ReturnType<typeof inbox> }
}

/** Collects messages on a client; `next` waits for one matching a predicate. */
export function inbox(c: MqttClient) {
  const box: { topic: string; payload: Buffer }[] = []
  const waiters: (() => void)[] = []
  c.on('message', (topic, payload) => {
    box.push({ topic, payload })
    for (const w of waiters.splice(0)) w()
  })
  return {
    box,
    async next(pred: (m: { topic: string; payload: Buffer }) => boolean = () => true, ms = 3000) {
      const deadline = Date.now() + ms
      for (;;) {
        const i = box.findIndex(pred)
        if (i >= 0) return box.splice(i, 1)[0] as { topic: string; payload: Buffer }
        const left = deadline - Date.now()
        if (left <= 0) return undefined
        await new Promise<void>((r) => {
          const timer = setTimeout(r, left)
          waiters.push(() => {
            clearTimeout(timer)
            r()
          })
        })
      }
    },
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What a test can hand cleanups to (a tap Test). */
export interface Closer {
  teardown(fn: () => unknown): void
}

/** Polls `probe` until it answers something truthy, or fails after `ms`. */
export async function waitFor<T>(what: string, probe: () => T | Promise<T>, ms = 5000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v) return v as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await sleep(20)
  }
}
