// Device provisioning (docs/provisioning.md): a device that knows only the bootstrap endpoint, its
// enrollment and a key (its own, or a group key it derives its own from) registers itself and learns
// the hub it belongs to. The key it connects to that hub with is the same derived key, so nothing
// secret travels: `provision()` hands it back with the hub's address.
import { randomUUID } from 'node:crypto'
import { signToken, verifierOf } from '../registry/credentials.js'
import { deriveDeviceKey, type HubAddress, registerTopic, responseTopic } from '../registry/provisioning.js'
import { assertTopicLevel } from './channel.js'
import { type ConnectionOptions, openClient } from './connect.js'
import { RequestError, RequestTimeoutError } from './errors.js'

export { deriveDeviceKey }

export interface ProvisionOptions extends Pick<ConnectionOptions, 'url' | 'connectTimeoutMs' | 'mqtt'> {
  /** The enrollment the device belongs to. */
  enrollmentId: string
  /** The device's registration id: it becomes its device id. */
  registrationId: string
  /** An enrollment group's key: the device's key is derived from it. */
  groupKey?: string
  /** An individual enrollment's key (instead of groupKey). */
  key?: string
  /** Sent to the bootstrap service, e.g. `{modelId}` or `{tags: {region}}` for the tag policy. */
  payload?: unknown
  /** How long the whole exchange may take. Default 30000. */
  timeoutMs?: number
}

export interface Provisioned {
  deviceId: string
  /** The device's key on its hub (the derived key): pass it to connectDevice. */
  key: string
  hub: HubAddress
  assignedAt: string
}

/** How long a provisioning token is valid (the service refuses more than an hour). */
const TOKEN_TTL_SEC = 300
const lastExpiry = new Map<string, number>()

/**
 * The bootstrap service accepts each token once, so every attempt needs another one: its expiry
 * (the only part that changes) moves on by a second when attempts come within the same second.
 */
function freshExpiry(registrationId: string): number {
  const expiry = Math.max(Math.floor(Date.now() / 1000) + TOKEN_TTL_SEC, (lastExpiry.get(registrationId) ?? 0) + 1)
  if (lastExpiry.size > 10_000) lastExpiry.clear()
  lastExpiry.set(registrationId, expiry)
  return expiry
}

/** Registers the device with the bootstrap service and returns its hub and key. */
export async function provision(opts: ProvisionOptions): Promise<Provisioned> {
  const registrationId = assertTopicLevel(opts.registrationId, 'registration id')
  assertTopicLevel(opts.enrollmentId, 'enrollment id')
  if ((opts.groupKey === undefined) === (opts.key === undefined)) {
    throw new TypeError('give exactly one of groupKey (enrollment group) and key (individual enrollment)')
  }
  const key = opts.groupKey !== undefined ? deriveDeviceKey(opts.groupKey, registrationId) : (opts.key as string)
  if (verifierOf(key) === undefined) throw new TypeError('a key is 32 bytes in base64url')
  const timeoutMs = opts.timeoutMs ?? 30_000
  const password = signToken(registrationId, key, freshExpiry(registrationId))
  const { client, ready } = openClient(
    {
      url: opts.url,
      reconnectPeriodMs: 0,
      connectTimeoutMs: opts.connectTimeoutMs ?? timeoutMs,
      ...(opts.mqtt ? { mqtt: opts.mqtt } : {}),
    },
    { clientId: registrationId, username: `$provision/${opts.enrollmentId}`, password },
  )
  const rid = randomUUID()
  const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RequestTimeoutError('the registration', rid, timeoutMs)), timeoutMs)
    client.on('message', function registrationAnswer(topic, payload) {
      if (topic !== responseTopic(registrationId)) return
      clearTimeout(timer)
      try {
        resolve(JSON.parse(payload.toString('utf8')) as Record<string, unknown>)
      } catch {
        reject(new Error('the bootstrap service answered with a payload that is not JSON'))
      }
    })
    client.on('close', function closedBeforeAnswer() {
      // the answer, when there is one, arrives before the close
      setImmediate(() => {
        clearTimeout(timer)
        reject(new Error('the bootstrap service closed the connection without an answer'))
      })
    })
  })
  answer.catch(() => {}) // observed below; keep an early rejection from going unhandled meanwhile
  try {
    await ready
    // not awaited: the service answers, then closes, so the PUBACK may never come
    client.publish(registerTopic(registrationId), JSON.stringify({ rid, payload: opts.payload ?? null }), { qos: 1 })
    const a = await answer
    if (a.status !== 200) {
      const e = (a.error ?? {}) as { code?: string; message?: string }
      throw new RequestError(
        Number(a.status),
        e.code ?? 'FLEETHUB_ERR_UNKNOWN',
        e.message ?? `provisioning failed with ${a.status}`,
        rid,
      )
    }
    return { deviceId: String(a.deviceId), key, hub: a.hub as HubAddress, assignedAt: String(a.assignedAt) }
  } finally {
    client.end(true)
  }
}
