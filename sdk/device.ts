// Connecting a device: client id = user name = device id, password = its key (TLS links) or a token
// it signs itself from the key (PROTOCOL.md, "Device identity and CONNECT"). A token is signed
// afresh before every reconnect, so a device that was offline longer than the token's lifetime
// still gets back in. Key rollover (`$changeKey`) changes the key used from the next connect on.
import type { MqttClient } from 'mqtt'
import { signToken, verifierOf } from '../registry/credentials.js'
import { CHANGE_KEY, changeKeyHandler, type KeyChangeHandler } from './change-key.js'
import { assertTopicLevel } from './channel.js'
import type { CommandHandler } from './commands.js'
import { type ConnectionOptions, isSecureUrl, openClient } from './connect.js'
import { watchConnection } from './connection.js'
import { ENCODINGS, type Encoding } from './envelope.js'
import { createDeviceHandle, type DeviceHandle } from './handle.js'
import { createKeyring, type Keyring } from './keyring.js'
import { assertTimeout } from './requests.js'
import { routeMessages } from './router.js'
import { createUnclaimed } from './unclaimed.js'

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
  /** Envelope encoding of the device's twin requests and command answers (twin answers come in the same). Default `json`. */
  encoding?: Encoding
  /** How long a request waits for its answer, unless the call says otherwise. Default 10000. */
  requestTimeoutMs?: number
  /**
   * Acknowledge each desired version (report `$lastDesiredVersion`) once its handlers have
   * succeeded. Default true; when false, report it yourself with `twin.report`.
   */
  autoAck?: boolean
  /**
   * Stores a new key that FleetHub sends with key rollover (the built-in command `$changeKey`).
   * When set, the SDK answers `$changeKey`: it calls this, then connects with the new key from the
   * next (re)connect on, then answers 200. When it throws, the answer is 500 and the old key stays.
   * Without it, `$changeKey` is answered 404 and rollover fails, changing nothing.
   */
  onKeyChange?: KeyChangeHandler
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

/**
 * Follows the connection for key rollover: each reconnect uses the keyring's key, a refusal of a new
 * key falls back to the old one (mqtt.js does not reconnect after a refused CONNACK unless asked
 * to, so it is asked to while the other key is worth a try), and a fallback is reported.
 */
function followKeys(client: MqttClient, keyring: Keyring, password: () => string, onError: (err: Error) => void) {
  const retryOnRefusal = client.options.reconnectOnConnackError
  client.on('reconnect', function useCurrentKey() {
    // mqtt.js builds each reconnect's CONNECT from client.options and emits 'reconnect' right
    // before it, on its own timer and on client.reconnect() alike (a token is signed afresh too)
    client.options.password = password()
  })
  client.on('error', function refused(err) {
    if ((err as { code?: unknown }).code !== 4) return // 4: bad user name or password
    // read by mqtt.js right after this 'error' is emitted
    client.options.reconnectOnConnackError = keyring.refused() || retryOnRefusal
  })
  client.on('connect', function accepted() {
    client.options.reconnectOnConnackError = retryOnRefusal
    if (keyring.accepted()) {
      onError(new Error('FleetHub refused the key from $changeKey; connected with the previous key (kept as well)'))
    }
  })
}

/**
 * Signs a token for `deviceId` valid for at least `ttlSec` from now. The expiry is a whole second
 * and the broker accepts a token until that second starts, so it is rounded up: rounded down, a
 * one-second token signed late in a second would expire before it reached the broker.
 */
export function deviceToken(deviceId: string, key: string, ttlSec: number): string {
  return signToken(deviceId, key, Math.ceil(Date.now() / 1000) + ttlSec)
}

export async function connectDevice(opts: DeviceOptions): Promise<DeviceClient> {
  const deviceId = assertTopicLevel(opts.deviceId, 'device id')
  if (verifierOf(opts.key) === undefined) throw new TypeError('a device key is 32 bytes in base64url')
  const auth: DeviceAuth = opts.auth ?? (isSecureUrl(opts.url) ? 'key' : 'token')
  const ttl = opts.tokenTtlSec ?? 3600
  if (!Number.isInteger(ttl) || ttl < 1) throw new TypeError('tokenTtlSec must be a whole number of seconds >= 1')
  if (opts.onKeyChange !== undefined && typeof opts.onKeyChange !== 'function') {
    throw new TypeError('onKeyChange must be a function')
  }
  const keyring = createKeyring(opts.key)
  const password = () => (auth === 'key' ? keyring.current() : deviceToken(deviceId, keyring.current(), ttl))
  const encoding = opts.encoding ?? 'json'
  if (!ENCODINGS.includes(encoding)) throw new TypeError(`encoding must be one of ${ENCODINGS.join(', ')}`)
  const requestTimeoutMs = assertTimeout(opts.requestTimeoutMs ?? 10_000, 'requestTimeoutMs')

  const reportError = function reportError(err: Error) {
    opts.onError?.(err)
  }
  const { client, ready } = openClient(opts, { clientId: deviceId, username: deviceId, password: password() })
  followKeys(client, keyring, password, reportError)
  // command requests that come before their handlers listen (a persistent session's come at once)
  const unclaimed = createUnclaimed(function dropped(m) {
    reportError(new Error(`a command request on ${m.topic} was dropped: too many waiting for commands.listen()`))
  })
  const router = routeMessages(client, opts.onError, unclaimed.keep)
  await ready
  const connection = watchConnection(client)
  const settings = {
    connection,
    encoding,
    timeoutMs: requestTimeoutMs,
    autoAck: opts.autoAck ?? true,
    onError: reportError,
    unclaimed,
  }
  const builtIns = new Map<string, CommandHandler>()
  if (opts.onKeyChange) builtIns.set(CHANGE_KEY, changeKeyHandler(keyring, opts.onKeyChange))
  const own = createDeviceHandle(client, router, deviceId, settings, builtIns)
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
