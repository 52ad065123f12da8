// Connecting a device: client id = user name = device id, password = its key (TLS links) or a token
// it signs itself from the key (PROTOCOL.md, "Device identity and CONNECT"). A token is signed
// afresh before every reconnect, so a device that was offline longer than the token's lifetime
// still gets back in.
import type { MqttClient } from 'mqtt'
import { signToken, verifierOf } from '../registry/credentials.js'
import { assertTopicLevel } from './channel.js'
import { type ConnectionOptions, isSecureUrl, openClient } from './connect.js'
import { watchConnection } from './connection.js'
import { ENCODINGS, type Encoding } from './envelope.js'
import { createDeviceHandle, type DeviceHandle } from './handle.js'
import { assertTimeout } from './requests.js'
import { routeMessages } from './router.js'

export type DeviceAuth = 'key' | 'token'

export interface DeviceOptions extends ConnectionOptions {
  deviceId: string
  /** The device's primary or secondary key, as the HTTP API returned it (base64url). */
  key: string
  /**
   * `key` sends the key itself, which only a TLS link protects; `token` sends a signed token.
   * Default: `key` on mqtts:// and wss://, `token` otherwise.
   */
  auth?: DeviceAuth
  /** Lifetime of each signed token, counted from the (re)connect it is made for. Default 3600. */
  tokenTtlSec?: number
  /** Envelope encoding of the device's requests (twin now, commands next); answers come in the same. Default `json`. */
  encoding?: Encoding
  /** How long a request waits for its answer, unless the call says otherwise. Default 10000. */
  requestTimeoutMs?: number
  /**
   * Acknowledge each desired version (report `$lastDesiredVersion`) once its handlers have
   * succeeded. Default true; when false, report it yourself with `twin.report`.
   */
  autoAck?: boolean
}

export interface DeviceClient extends DeviceHandle {
  readonly mqtt: MqttClient
  readonly auth: DeviceAuth
  /**
   * The same helpers on a child's topics, for a gateway (the child must be registered with it as
   * parent). One handle per child: calling it again returns the same one.
   */
  forChild(childId: string): DeviceHandle
  end(force?: boolean): Promise<void>
}

/** Signs a token for `deviceId` valid for `ttlSec` from now. */
export function deviceToken(deviceId: string, key: string, ttlSec: number): string {
  return signToken(deviceId, key, Math.floor(Date.now() / 1000) + ttlSec)
}

export async function connectDevice(opts: DeviceOptions): Promise<DeviceClient> {
  const deviceId = assertTopicLevel(opts.deviceId, 'device id')
  if (verifierOf(opts.key) === undefined) throw new TypeError('a device key is 32 bytes in base64url')
  const auth: DeviceAuth = opts.auth ?? (isSecureUrl(opts.url) ? 'key' : 'token')
  const ttl = opts.tokenTtlSec ?? 3600
  if (!Number.isInteger(ttl) || ttl < 1) throw new TypeError('tokenTtlSec must be a whole number of seconds >= 1')
  const password = () => (auth === 'key' ? opts.key : deviceToken(deviceId, opts.key, ttl))
  const encoding = opts.encoding ?? 'json'
  if (!ENCODINGS.includes(encoding)) throw new TypeError(`encoding must be one of ${ENCODINGS.join(', ')}`)
  const requestTimeoutMs = assertTimeout(opts.requestTimeoutMs ?? 10_000, 'requestTimeoutMs')

  const { client, ready } = openClient(opts, { clientId: deviceId, username: deviceId, password: password() })
  if (auth === 'token') {
    // mqtt.js builds each reconnect's CONNECT from client.options and emits 'reconnect' right
    // before it, on its own timer and on client.reconnect() alike
    client.on('reconnect', function refreshToken() {
      client.options.password = password()
    })
  }
  const router = routeMessages(client, opts.onError)
  await ready
  const connection = watchConnection(client)
  const settings = {
    connection,
    encoding,
    timeoutMs: requestTimeoutMs,
    autoAck: opts.autoAck ?? true,
    onError: function reportError(err: Error) {
      opts.onError?.(err)
    },
  }
  const own = createDeviceHandle(client, router, deviceId, settings)
  // one handle per child, so its requests and desired state have one owner on the connection
  const children = new Map<string, DeviceHandle>()
  return {
    ...own,
    mqtt: client,
    auth,
    forChild(childId) {
      assertTopicLevel(childId, 'child id')
      let child = children.get(childId)
      if (!child) {
        child = createDeviceHandle(client, router, childId, settings)
        children.set(childId, child)
      }
      return child
    },
    async end(force = false) {
      connection.end()
      await client.endAsync(force)
    },
  }
}
