// Provisioning: enrollments (who may register), their keys, the hubs devices are assigned to, and
// the registrations the bootstrap service keeps. Anchors: Azure DPS (individual enrollments and
// enrollment groups with derived keys, allocation policies) and AWS fleet provisioning.
//
// A group's device key is `HMAC-SHA256(groupKey, registrationId)` (32 bytes, base64url), so a factory
// flashes devices without calling the API per device. The device proves it has that key with the
// same token format as a device CONNECT, signed over its registration id; the hub's key is then that
// same derived key, so nothing secret travels.
import { createHmac, hash } from 'node:crypto'
import { KEY_BYTES, verifierOf } from './credentials.js'
import { errors } from './errors.js'
import { assertModelRef, assertTags, isDeviceId, type Tags } from './ids.js'

export const PROVISION_PREFIX = '$provision/'

export type EnrollmentKind = 'individual' | 'group'
export type EnrollmentStatus = 'enabled' | 'disabled'
export type AllocationPolicy = 'static' | 'hashed' | 'tag' | 'webhook'
export const ALLOCATION_POLICIES: readonly AllocationPolicy[] = ['static', 'hashed', 'tag', 'webhook']
/** What a second registration of a known device does: pick its hub again, or keep the one it has. */
export type ReprovisionPolicy = 'reassign' | 'keep'

export interface Allocation {
  policy: AllocationPolicy
  /** static: the hub. */
  hub?: string
  /** hashed and tag: the hubs to choose from (default: every configured hub). */
  hubs?: string[]
  /** tag: the device tag whose value must equal the hub's tag of the same name. */
  tag?: string
  /** webhook: the URL asked (POST) for each registration. */
  url?: string
  /** webhook: how long the answer may take. */
  timeoutMs?: number
}

export interface Enrollment {
  id: string
  kind: EnrollmentKind
  /** individual: the one registration id this enrollment admits. */
  registrationId?: string
  status: EnrollmentStatus
  /** Given to each device it registers (service-side tags). */
  tags: Tags
  /** The initial desired twin of each device it registers. */
  desired: Record<string, unknown>
  /** The model a device may bind: a registered model id (or id@version). */
  modelId?: string
  allocation: Allocation
  reprovision: ReprovisionPolicy
  createdAt: string
  updatedAt: string
}

export interface EnrollmentRecord extends Enrollment {
  rev: number
  /** group: the group key (base64url); individual: the verifier of its key. Never shown. */
  secret: string
}

export interface RegistrationStep {
  at: string
  hub: string
  enrollmentId: string
  /** The node that registered it. */
  node: string
}

/** What the bootstrap service remembers of each registration id it admitted. */
export interface Registration {
  registrationId: string
  deviceId: string
  enrollmentId: string
  hub: string
  assignedAt: string
  firstAt: string
  /** How many times it registered. */
  count: number
  /** The last MAX_HISTORY registrations, oldest first. */
  history: RegistrationStep[]
  rev: number
}

export const MAX_HISTORY = 20

/** A hub devices can be assigned to (FLEETHUB_PROVISIONING_HUBS). */
export interface HubEndpoint {
  name: string
  mqtt: string
  ws?: string
  mqtts?: string
  /** hashed: relative share of devices (default 1). */
  weight: number
  /** tag: values devices are matched on, e.g. {region: "eu"}. */
  tags: Record<string, string>
  /** A separate hub (its own store) registered through its HTTP API; absent: this hub's store. */
  api?: { url: string; token: string }
  /** This node's own endpoints (known once it listens) stand in for mqtt, ws and mqtts. */
  self?: boolean
}

/** What a device learns: where to connect. */
export interface HubAddress {
  mqtt: string
  ws?: string
  mqtts?: string
}

export function addressOf(h: HubEndpoint, own: OwnEndpoints): HubAddress {
  if (h.self) return { mqtt: own.mqtt, ws: own.ws, ...(own.mqtts !== undefined ? { mqtts: own.mqtts } : {}) }
  const a: HubAddress = { mqtt: h.mqtt }
  if (h.ws !== undefined) a.ws = h.ws
  if (h.mqtts !== undefined) a.mqtts = h.mqtts
  return a
}

/** The device key of a group member: HMAC-SHA256(groupKey bytes, registrationId), base64url. */
export function deriveDeviceKey(groupKey: string, registrationId: string): string {
  const raw = Buffer.from(groupKey, 'base64url')
  if (raw.length !== KEY_BYTES) throw new TypeError('a group key is 32 bytes in base64url')
  return createHmac('sha256', raw).update(registrationId).digest('base64url')
}

/** The verifier a registration id's token is checked with, for an enrollment. */
export function registrationVerifier(e: EnrollmentRecord, registrationId: string): string {
  return e.kind === 'group' ? (verifierOf(deriveDeviceKey(e.secret, registrationId)) as string) : e.secret
}

/** `$provision/{enrollmentId}` → the enrollment id, or undefined. */
export function enrollmentIdOf(username: string): string | undefined {
  if (!username.startsWith(PROVISION_PREFIX)) return undefined
  const id = username.slice(PROVISION_PREFIX.length)
  return isDeviceId(id) ? id : undefined
}

export const registerTopic = (registrationId: string) => `${PROVISION_PREFIX}${registrationId}/register`
export const responseTopic = (registrationId: string) => `${PROVISION_PREFIX}${registrationId}/res`

// ---- validation of what operators send ----

export interface EnrollmentInput {
  id: string
  kind: EnrollmentKind
  registrationId?: string
  status?: EnrollmentStatus
  tags?: Tags
  desired?: Record<string, unknown>
  modelId?: string
  allocation?: Allocation
  reprovision?: ReprovisionPolicy
}

export type EnrollmentPatch = Partial<
  Pick<Enrollment, 'status' | 'tags' | 'desired' | 'modelId' | 'allocation' | 'reprovision'>
> & { modelId?: string | null }

const MAX_WEBHOOK_TIMEOUT_MS = 30_000
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 5_000

/** Checks an allocation against the configured hubs; throws BAD_REQUEST naming the problem. */
export function assertAllocation(a: Allocation, hubs: readonly HubEndpoint[]): Allocation {
  if (!ALLOCATION_POLICIES.includes(a.policy)) {
    throw new errors.BAD_REQUEST(`allocation.policy must be one of ${ALLOCATION_POLICIES.join(', ')}`)
  }
  const known = new Set(hubs.map((h) => h.name))
  const unknown = (name: string) => new errors.BAD_REQUEST(`no hub named ${JSON.stringify(name)} is configured`)
  if (a.policy === 'static') {
    if (!a.hub) throw new errors.BAD_REQUEST('allocation.hub is required by the static policy')
    if (!known.has(a.hub)) throw unknown(a.hub)
  } else if (a.hub !== undefined) {
    throw new errors.BAD_REQUEST('allocation.hub belongs to the static policy')
  }
  for (const h of a.hubs ?? []) if (!known.has(h)) throw unknown(h)
  if (a.hubs !== undefined && a.hubs.length === 0) throw new errors.BAD_REQUEST('allocation.hubs must not be empty')
  if (a.policy === 'tag' && !a.tag) throw new errors.BAD_REQUEST('allocation.tag is required by the tag policy')
  if (a.policy === 'webhook') {
    let u: URL
    try {
      u = new URL(a.url ?? '')
    } catch {
      throw new errors.BAD_REQUEST('allocation.url must be an http:// or https:// URL for the webhook policy')
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new errors.BAD_REQUEST('allocation.url must be an http:// or https:// URL for the webhook policy')
    }
    if (a.timeoutMs !== undefined && (a.timeoutMs < 100 || a.timeoutMs > MAX_WEBHOOK_TIMEOUT_MS)) {
      throw new errors.BAD_REQUEST(`allocation.timeoutMs must be 100 to ${MAX_WEBHOOK_TIMEOUT_MS}`)
    }
  }
  return a
}

export function assertEnrollmentInput(input: EnrollmentInput, hubs: readonly HubEndpoint[]): void {
  if (!isDeviceId(input.id)) {
    throw new errors.BAD_REQUEST('enrollment id must be 1-128 characters from letters, digits and -._:@')
  }
  if (input.kind === 'individual') {
    if (input.registrationId !== undefined && !isDeviceId(input.registrationId)) {
      throw new errors.INVALID_DEVICE_ID()
    }
  } else if (input.registrationId !== undefined) {
    throw new errors.BAD_REQUEST('registrationId belongs to individual enrollments')
  }
  assertTags(input.tags ?? {})
  assertModelRef(input.modelId)
  if (input.allocation) assertAllocation(input.allocation, hubs)
}

// ---- allocation ----

/** A score in (0, 1) for a hub and a registration id: the same inputs always give the same score. */
function unitHash(hub: string, registrationId: string): number {
  const h = hash('sha256', `${hub}\n${registrationId}`, 'buffer')
  // 48 bits are plenty; +1 and /2^48+2 keep it strictly inside (0, 1)
  return (h.readUIntBE(0, 6) + 1) / (2 ** 48 + 2)
}

/**
 * Weighted rendezvous hashing: each hub scores `-weight / ln(u)` and the best wins. The same id always
 * lands on the same hub, shares follow the weights, and adding a hub moves only the ids it wins.
 */
export function hashedHub(registrationId: string, candidates: readonly HubEndpoint[]): HubEndpoint | undefined {
  let best: HubEndpoint | undefined
  let bestScore = Number.NEGATIVE_INFINITY
  for (const h of candidates) {
    if (h.weight <= 0) continue
    const score = -h.weight / Math.log(unitHash(h.name, registrationId))
    if (score > bestScore) {
      best = h
      bestScore = score
    }
  }
  return best
}

export function candidatesOf(a: Allocation, hubs: readonly HubEndpoint[]): HubEndpoint[] {
  if (!a.hubs) return [...hubs]
  const names = new Set(a.hubs)
  return hubs.filter((h) => names.has(h.name))
}

/** The tag policy: hubs whose tag equals the device's, spread among them by hash. */
export function taggedHub(
  registrationId: string,
  a: Allocation,
  hubs: readonly HubEndpoint[],
  value: string | undefined,
): HubEndpoint | undefined {
  if (value === undefined || !a.tag) return undefined
  const tag = a.tag
  return hashedHub(
    registrationId,
    candidatesOf(a, hubs).filter((h) => h.tags[tag] === value),
  )
}

// ---- hubs configuration ----

function text(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new Error(`${what} must be a non-empty string`)
  return v
}

function mqttUrl(v: unknown, what: string, protocols: readonly string[]): string {
  const s = text(v, what)
  let u: URL
  try {
    u = new URL(s)
  } catch {
    throw new Error(`${what} is not a URL`)
  }
  if (!protocols.includes(u.protocol)) throw new Error(`${what} must start with ${protocols.join(' or ')}//`)
  return s
}

/** This hub's own endpoints, for a hub entry that names none (the default single hub, or a cluster's). */
export interface OwnEndpoints {
  mqtt: string
  ws: string
  mqtts?: string
}

/**
 * Parses FLEETHUB_PROVISIONING_HUBS: a JSON array of hubs. An entry without `api` is served by this
 * hub's own store (this node, or its cluster); when it also names no `mqtt`, it gets this node's
 * endpoints. Unset: one hub, `local`, this node.
 */
export function parseHubs(raw: string | undefined): HubEndpoint[] {
  const self = (name: string): HubEndpoint => ({ name, mqtt: '', weight: 1, tags: {}, self: true })
  if (raw === undefined || raw.trim() === '') return [self('local')]
  let list: unknown
  try {
    list = JSON.parse(raw)
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`)
  }
  if (!Array.isArray(list) || list.length === 0) throw new Error('expected a non-empty JSON array of hubs')
  const seen = new Set<string>()
  return list.map((item, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) throw new Error(`hub ${i} is not an object`)
    const o = item as Record<string, unknown>
    const name = text(o.name, `hub ${i} name`)
    if (!/^[A-Za-z0-9\-._]{1,64}$/.test(name)) throw new Error(`hub name ${JSON.stringify(name)}: 1-64 of A-Za-z0-9-._`)
    if (seen.has(name)) throw new Error(`hub ${name} is listed twice`)
    seen.add(name)
    const base = o.mqtt === undefined && o.api === undefined ? self(name) : undefined
    const h: HubEndpoint = base ?? { name, mqtt: mqttUrl(o.mqtt, `hub ${name} mqtt`, ['mqtt:']), weight: 1, tags: {} }
    if (o.ws !== undefined) h.ws = mqttUrl(o.ws, `hub ${name} ws`, ['ws:', 'wss:'])
    if (o.mqtts !== undefined) h.mqtts = mqttUrl(o.mqtts, `hub ${name} mqtts`, ['mqtts:'])
    if (o.weight !== undefined) {
      if (typeof o.weight !== 'number' || !(o.weight >= 0) || o.weight > 1e6) {
        throw new Error(`hub ${name} weight must be a number from 0 to 1000000`)
      }
      h.weight = o.weight
    }
    if (o.tags !== undefined) {
      if (o.tags === null || typeof o.tags !== 'object' || Array.isArray(o.tags)) {
        throw new Error(`hub ${name} tags must be an object of strings`)
      }
      for (const [k, v] of Object.entries(o.tags)) {
        if (typeof v !== 'string') throw new Error(`hub ${name} tag ${k} must be a string`)
        h.tags[k] = v
      }
    }
    if (o.api !== undefined) {
      const api = o.api as Record<string, unknown> | null
      if (api === null || typeof api !== 'object') throw new Error(`hub ${name} api must be {url, token}`)
      const url = text(api.url, `hub ${name} api.url`)
      if (!/^https?:\/\//.test(url)) throw new Error(`hub ${name} api.url must be http:// or https://`)
      h.api = { url: url.replace(/\/+$/, ''), token: text(api.token, `hub ${name} api.token`) }
    }
    return h
  })
}
