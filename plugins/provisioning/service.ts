// The bootstrap service: enrollments, the provisioning CONNECT, and registration. A registration
// checks the enrollment, picks a hub by the enrollment's allocation policy, registers the device on
// that hub (this hub's store, or another hub's HTTP API) with the enrollment's initial tags and
// desired twin, and remembers where it went. A failure at any step answers with a clear status and
// leaves nothing half-registered: a device created by this registration is removed again.
import type { Logger } from '../../broker/log.js'
import type { ProvisionPrincipal } from '../../broker/session.js'
import { checkPassword, generateKey, verifierOf } from '../../registry/credentials.js'
import { errors, statusOf } from '../../registry/errors.js'
import { assertModelRef, assertTags, isDeviceId, type Tags } from '../../registry/ids.js'
import { Lru } from '../../registry/lru.js'
import type { ProvisioningStore } from '../../registry/ports.js'
import {
  type Allocation,
  addressOf,
  assertAllocation,
  assertEnrollmentInput,
  candidatesOf,
  DEFAULT_WEBHOOK_TIMEOUT_MS,
  type Enrollment,
  type EnrollmentInput,
  type EnrollmentPatch,
  type EnrollmentRecord,
  type HubAddress,
  type HubEndpoint,
  hashedHub,
  MAX_HISTORY,
  type OwnEndpoints,
  type Registration,
  registerTopic,
  registrationVerifier,
  responseTopic,
  taggedHub,
} from '../../registry/provisioning.js'
import type { RegistryService } from '../../registry/service.js'

/** How long a node keeps an enrollment it read (changes through another node take this long). */
export const ENROLLMENT_TTL_MS = 1000

/** Provisioning tokens may not be valid for longer than this, so their replay marks stay bounded. */
export const MAX_TOKEN_TTL_SEC = 3600

/** What a device is registered with on its hub. */
export interface HubRegistration {
  verifier: string
  tags: Tags
  desired: Record<string, unknown>
  modelId?: string
}

/** How this hub registers a device in its own store (with its initial desired twin). */
export type LocalProvisioner = (id: string, r: HubRegistration) => Promise<{ created: boolean }>

/** What a device is told. */
export interface Assignment {
  deviceId: string
  hub: HubAddress
  assignedAt: string
}

export interface ProvisioningDeps {
  store: ProvisioningStore
  registry: RegistryService
  hubs: readonly HubEndpoint[]
  /** This node's endpoints (filled in once it listens). */
  own: OwnEndpoints
  provisionLocal: LocalProvisioner
  /** Reads a device's tags and desired state on this hub (for a move between hubs). */
  readLocal(id: string): Promise<{ tags: Tags; desired: Record<string, unknown> } | undefined>
  node: string
  log: Logger
  now?: () => Date
  /** fetch, replaceable in tests of the hub client (defaults to the global one). */
  fetch?: typeof fetch
}

export type ProvisioningService = ReturnType<typeof createProvisioningService>

const CAS_ATTEMPTS = 8

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** What an enrollment shows: never its secret. */
export function publicEnrollment(r: EnrollmentRecord): Enrollment {
  const { secret: _secret, rev: _rev, ...e } = r
  return e
}

export function createProvisioningService(deps: ProvisioningDeps) {
  const { store, registry, hubs, own, log } = deps
  const now = deps.now ?? (() => new Date())
  const doFetch = deps.fetch ?? fetch
  const hubByName = new Map(hubs.map((h) => [h.name, h]))
  const defaultAllocation: Allocation = { policy: 'hashed' }
  /**
   * The verifier each provisioning connection proved at CONNECT. Its registration gives the device
   * that one: the key the device holds, even if the enrollment's key was rotated in between, and
   * the two key derivations are not done again.
   */
  const proven = new WeakMap<ProvisionPrincipal, string>()

  /**
   * Enrollments as a storm of registrations reads them: each at most once per ENROLLMENT_TTL_MS
   * per node (a CONNECT and its registration read it once). A change made through this node is
   * seen at once, one made through another node within that time.
   */
  const recent = new Lru<string, { e: EnrollmentRecord | undefined; until: number }>(1000)
  async function cachedEnrollment(id: string): Promise<EnrollmentRecord | undefined> {
    const t = Date.now()
    const hit = recent.get(id)
    if (hit && hit.until > t) return hit.e
    const e = await store.getEnrollment(id)
    recent.set(id, { e, until: t + ENROLLMENT_TTL_MS })
    return e
  }

  async function enrollmentOr404(id: string): Promise<EnrollmentRecord> {
    const e = await store.getEnrollment(id)
    if (!e) throw new errors.ENROLLMENT_NOT_FOUND(id)
    return e
  }

  // ---- hubs ----

  async function hubCall(hub: HubEndpoint, method: string, path: string, body?: unknown): Promise<Response> {
    const api = hub.api as { url: string; token: string }
    try {
      return await doFetch(`${api.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${api.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      })
    } catch (err) {
      throw new errors.HUB_UNAVAILABLE(hub.name, (err as Error).message)
    }
  }

  /** Registers the device on its hub; true when this call created it there. */
  async function registerOn(hub: HubEndpoint, id: string, r: HubRegistration): Promise<boolean> {
    if (!hub.api) return (await deps.provisionLocal(id, r)).created
    const res = await hubCall(hub, 'PUT', `/provisioning/devices/${encodeURIComponent(id)}`, r)
    const text = await res.text()
    if (res.status !== 200 && res.status !== 201) {
      throw new errors.HUB_UNAVAILABLE(hub.name, `HTTP ${res.status} ${text.slice(0, 200)}`)
    }
    return res.status === 201
  }

  async function removeFrom(hub: HubEndpoint, id: string): Promise<void> {
    if (!hub.api) {
      await registry.deleteDevice(id).catch((err: unknown) => {
        if (statusOf(err) !== 404) throw err
      })
      return
    }
    const res = await hubCall(hub, 'DELETE', `/devices/${encodeURIComponent(id)}`)
    await res.body?.cancel()
    if (res.status !== 204 && res.status !== 404) throw new errors.HUB_UNAVAILABLE(hub.name, `HTTP ${res.status}`)
  }

  /** A device's tags and desired state on a hub, to carry over when it moves. */
  async function readFrom(
    hub: HubEndpoint,
    id: string,
  ): Promise<{ tags: Tags; desired: Record<string, unknown> } | undefined> {
    if (!hub.api) return deps.readLocal(id)
    const res = await hubCall(hub, 'GET', `/devices/${encodeURIComponent(id)}/twin`)
    if (res.status === 404) return undefined
    if (res.status !== 200) throw new errors.HUB_UNAVAILABLE(hub.name, `HTTP ${res.status}`)
    const twin = (await res.json()) as { tags?: Tags; desired?: Record<string, unknown> }
    const desired: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(twin.desired ?? {})) if (!k.startsWith('$')) desired[k] = v
    return { tags: twin.tags ?? {}, desired }
  }

  // ---- allocation ----

  interface Decision {
    hub: HubEndpoint
    tags?: Tags
    desired?: Record<string, unknown>
  }

  async function askWebhook(
    a: Allocation,
    e: EnrollmentRecord,
    registrationId: string,
    payload: unknown,
    candidates: HubEndpoint[],
    previousHub: string | undefined,
  ): Promise<Decision> {
    const timeoutMs = a.timeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS
    let res: Response
    try {
      res = await doFetch(a.url as string, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          registrationId,
          enrollmentId: e.id,
          payload: payload ?? null,
          tags: e.tags,
          hubs: candidates.map((h) => ({ name: h.name, tags: h.tags })),
          ...(previousHub !== undefined ? { previousHub } : {}),
        }),
        signal: AbortSignal.timeout(timeoutMs),
      })
    } catch (err) {
      const name = (err as Error).name
      if (name === 'TimeoutError' || name === 'AbortError') throw new errors.WEBHOOK_TIMEOUT(String(timeoutMs))
      throw new errors.WEBHOOK_FAILED((err as Error).message)
    }
    let body: unknown
    try {
      body = await res.json()
    } catch {
      throw new errors.WEBHOOK_FAILED(`HTTP ${res.status} with a body that is not JSON`)
    }
    if (res.status < 200 || res.status > 299) throw new errors.WEBHOOK_FAILED(`HTTP ${res.status}`)
    if (!isObject(body) || typeof body.hub !== 'string') {
      throw new errors.WEBHOOK_FAILED('the answer must be a JSON object with a hub name: {"hub": "…"}')
    }
    const hub = candidates.find((h) => h.name === body.hub)
    if (!hub) throw new errors.WEBHOOK_FAILED(`it chose ${JSON.stringify(body.hub).slice(0, 80)}, not one of the hubs`)
    const d: Decision = { hub }
    if (body.tags !== undefined) {
      try {
        d.tags = assertTags(body.tags)
      } catch (err) {
        throw new errors.WEBHOOK_FAILED((err as Error).message)
      }
    }
    if (body.desired !== undefined) {
      if (!isObject(body.desired)) throw new errors.WEBHOOK_FAILED('desired must be a JSON object')
      d.desired = body.desired
    }
    return d
  }

  async function allocate(
    e: EnrollmentRecord,
    registrationId: string,
    payload: unknown,
    previous: Registration | undefined,
  ): Promise<Decision> {
    if (previous && e.reprovision === 'keep') {
      const kept = hubByName.get(previous.hub)
      if (kept) return { hub: kept }
    }
    const a = e.allocation
    const candidates = candidatesOf(a, hubs)
    switch (a.policy) {
      case 'static':
        return { hub: hubByName.get(a.hub as string) as HubEndpoint }
      case 'hashed': {
        const hub = hashedHub(registrationId, candidates)
        if (!hub) throw new errors.NO_HUB('no hub has a weight above 0')
        return { hub }
      }
      case 'tag': {
        const tag = a.tag as string
        // the device's own tag when it is known here, else the enrollment's, else what it asks for
        const known = await registry.getRecord(registrationId)
        const asked = isObject(payload) && isObject(payload.tags) ? payload.tags[tag] : undefined
        const raw = known?.tags[tag] ?? e.tags[tag] ?? asked
        const value = raw === undefined ? undefined : String(raw)
        const hub = taggedHub(registrationId, a, hubs, value)
        if (!hub) {
          throw new errors.NO_HUB(
            value === undefined
              ? `the device has no tag ${tag}, which the tag policy assigns by`
              : `no hub has ${tag}=${JSON.stringify(value).slice(0, 80)}`,
          )
        }
        return { hub }
      }
      case 'webhook':
        return askWebhook(a, e, registrationId, payload, candidates, previous?.hub)
    }
  }

  // ---- registration ----

  async function register(p: ProvisionPrincipal, payload: unknown): Promise<Assignment> {
    const e = await cachedEnrollment(p.enrollmentId)
    if (!e) throw new errors.ENROLLMENT_NOT_FOUND(p.enrollmentId)
    if (e.status !== 'enabled') throw new errors.ENROLLMENT_DISABLED(e.id)
    const id = p.registrationId
    const asked = isObject(payload) ? payload.modelId : undefined
    if (asked !== undefined) {
      if (typeof asked !== 'string') throw new errors.BAD_REQUEST('payload.modelId must be a string')
      assertModelRef(asked)
      if (e.modelId !== undefined && asked !== e.modelId) {
        throw new errors.MODEL_NOT_ALLOWED(`enrollment ${e.id} admits model ${e.modelId} only, not ${asked}`)
      }
    }
    const modelId = e.modelId ?? asked
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const previous = await store.getRegistration(id)
      if (previous && previous.enrollmentId !== e.id && (await store.getEnrollment(previous.enrollmentId))) {
        throw new errors.REGISTRATION_CONFLICT(
          `${id} is registered through enrollment ${previous.enrollmentId}; delete that enrollment or disable it first`,
        )
      }
      const decision = await allocate(e, id, payload, previous)
      const hub = decision.hub
      const from = previous ? hubByName.get(previous.hub) : undefined
      // a move between stores carries the device's tags and desired state with it
      const moving = from !== undefined && from.name !== hub.name && (from.api !== undefined || hub.api !== undefined)
      const carried = moving ? await readFrom(from, id) : undefined
      const r: HubRegistration = {
        verifier: proven.get(p) ?? registrationVerifier(e, id),
        tags: { ...e.tags, ...decision.tags, ...carried?.tags },
        desired: { ...e.desired, ...decision.desired, ...carried?.desired },
        ...(modelId !== undefined ? { modelId } : {}),
      }
      const created = await registerOn(hub, id, r)
      const at = now().toISOString()
      const step = { at, hub: hub.name, enrollmentId: e.id, node: deps.node }
      const next: Registration = {
        registrationId: id,
        deviceId: id,
        enrollmentId: e.id,
        hub: hub.name,
        assignedAt: at,
        firstAt: previous?.firstAt ?? at,
        count: (previous?.count ?? 0) + 1,
        history: [...(previous?.history ?? []), step].slice(-MAX_HISTORY),
        rev: (previous?.rev ?? 0) + 1,
      }
      let written: boolean
      try {
        written = await store.putRegistration(next, previous?.rev ?? 0, previous?.enrollmentId)
      } catch (err) {
        // nothing half-registered: a device this registration created goes again
        if (created) await removeFrom(hub, id).catch(() => {})
        throw err
      }
      // another registration of the same id came first: the device exists either way, go again
      if (!written) continue
      if (moving && from) {
        await removeFrom(from, id).catch((err: unknown) =>
          log.warn({ err, deviceId: id, hub: from.name }, 'could not remove a moved device from its old hub'),
        )
      }
      return { deviceId: id, hub: addressOf(hub, own), assignedAt: at }
    }
    throw new errors.CONFLICT(`${id} is being registered by others; try again`)
  }

  /** Checks a provisioning CONNECT: a principal, an Error to refuse with, or undefined (not ours). */
  async function authenticate(
    registrationId: string,
    enrollmentId: string,
    password: string,
  ): Promise<ProvisionPrincipal | Error> {
    const bad = (reason: string) => Object.assign(new errors.BAD_CREDENTIALS(), { reason })
    if (!isDeviceId(registrationId))
      return Object.assign(new errors.IDENTIFIER_REJECTED('a registration id follows the device id rules'), {
        reason: 'identifier_rejected',
      })
    const e = await cachedEnrollment(enrollmentId)
    if (!e) return bad('unknown_device')
    if (e.kind === 'individual' && e.registrationId !== registrationId) return bad('unknown_device')
    // tokens only: a key in clear would travel on a link we cannot assume is protected
    if (!password.startsWith('v1.')) return bad('bad_credentials')
    const verifier = registrationVerifier(e, registrationId)
    const v = Buffer.alloc(64)
    v.write(verifier, 0, 32, 'base64url')
    v.write(verifier, 32, 32, 'base64url')
    const nowSec = Math.floor(now().getTime() / 1000)
    const check = checkPassword(registrationId, password, v, nowSec)
    if (check === 'expired') return bad('expired_token')
    if (check !== 'ok') return bad('bad_credentials')
    const expiry = Number(password.split('.')[1])
    if (expiry > nowSec + MAX_TOKEN_TTL_SEC) return bad('bad_credentials')
    if (e.status !== 'enabled') return Object.assign(new errors.NOT_AUTHORIZED(), { reason: 'disabled' })
    // single use: a token seen once (on any node) is refused after
    const sig = password.slice(password.lastIndexOf('.') + 1)
    if (!(await store.claimOnce(`${enrollmentId}:${registrationId}:${sig}`, (expiry - nowSec + 1) * 1000))) {
      return bad('replayed_token')
    }
    const principal: ProvisionPrincipal = {
      kind: 'provision',
      registrationId,
      enrollmentId,
      registerTopic: registerTopic(registrationId),
      responseTopic: responseTopic(registrationId),
    }
    proven.set(principal, verifier)
    return principal
  }

  // ---- enrollments ----

  function defaults(input: EnrollmentInput, at: string, secret: string): EnrollmentRecord {
    const e: EnrollmentRecord = {
      id: input.id,
      kind: input.kind,
      status: input.status ?? 'enabled',
      tags: input.tags ?? {},
      desired: input.desired ?? {},
      allocation: input.allocation ?? defaultAllocation,
      reprovision: input.reprovision ?? 'reassign',
      createdAt: at,
      updatedAt: at,
      rev: 1,
      secret,
    }
    if (input.kind === 'individual') e.registrationId = input.registrationId ?? input.id
    if (input.modelId !== undefined) e.modelId = input.modelId
    return e
  }

  return {
    register,
    authenticate,

    /** The configured hubs as operators see them (no API tokens). */
    hubList() {
      return hubs.map((h) => ({
        name: h.name,
        ...addressOf(h, own),
        weight: h.weight,
        tags: h.tags,
        remote: h.api !== undefined,
      }))
    },

    /** Registers a device on this hub for another hub's bootstrap service. */
    registerHere(id: string, r: HubRegistration): Promise<{ created: boolean }> {
      if (!isDeviceId(id)) throw new errors.INVALID_DEVICE_ID()
      assertTags(r.tags)
      assertModelRef(r.modelId)
      return deps.provisionLocal(id, r)
    },

    async createEnrollment(input: EnrollmentInput): Promise<{ enrollment: Enrollment; key: string }> {
      assertEnrollmentInput(input, hubs)
      const key = generateKey()
      const secret = input.kind === 'group' ? key : (verifierOf(key) as string)
      const record = defaults(input, now().toISOString(), secret)
      if (!(await store.createEnrollment(record))) throw new errors.ENROLLMENT_EXISTS(input.id)
      recent.delete(input.id)
      return { enrollment: publicEnrollment(record), key }
    },

    async getEnrollment(id: string): Promise<Enrollment> {
      return publicEnrollment(await enrollmentOr404(id))
    },

    async listEnrollments(q: { after?: string; limit: number }) {
      const page = await store.listEnrollments(q)
      return { ...page, items: page.items.map(publicEnrollment) }
    },

    async updateEnrollment(id: string, patch: EnrollmentPatch): Promise<Enrollment> {
      for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        const before = await enrollmentOr404(id)
        const next: EnrollmentRecord = { ...before, rev: before.rev + 1, updatedAt: now().toISOString() }
        if (patch.status !== undefined) next.status = patch.status
        if (patch.tags !== undefined) next.tags = assertTags(patch.tags)
        if (patch.desired !== undefined) next.desired = patch.desired
        if (patch.allocation !== undefined) next.allocation = assertAllocation(patch.allocation, hubs)
        if (patch.reprovision !== undefined) next.reprovision = patch.reprovision
        if (patch.modelId === null) delete next.modelId
        else if (patch.modelId !== undefined) {
          assertModelRef(patch.modelId)
          next.modelId = patch.modelId
        }
        if (await store.replaceEnrollment(next, before)) {
          recent.delete(id)
          return publicEnrollment(next)
        }
      }
      throw new errors.CONFLICT(`enrollment ${id} is being changed by others; try again`)
    },

    /** New key for the enrollment; devices registered with the old one keep their hub keys. */
    async rotateEnrollmentKey(id: string): Promise<string> {
      for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
        const before = await enrollmentOr404(id)
        const key = generateKey()
        const next: EnrollmentRecord = {
          ...before,
          secret: before.kind === 'group' ? key : (verifierOf(key) as string),
          rev: before.rev + 1,
          updatedAt: now().toISOString(),
        }
        if (await store.replaceEnrollment(next, before)) {
          recent.delete(id)
          return key
        }
      }
      throw new errors.CONFLICT(`enrollment ${id} is being changed by others; try again`)
    },

    async deleteEnrollment(id: string): Promise<void> {
      recent.delete(id)
      if (!(await store.deleteEnrollment(id))) throw new errors.ENROLLMENT_NOT_FOUND(id)
    },

    async listRegistrations(enrollmentId: string, q: { after?: string; limit: number }) {
      await enrollmentOr404(enrollmentId)
      return store.listRegistrations(enrollmentId, q)
    },

    async getRegistration(id: string): Promise<Registration> {
      const r = await store.getRegistration(id)
      if (!r) throw new errors.REGISTRATION_NOT_FOUND(id)
      return r
    },
  }
}
