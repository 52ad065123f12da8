// The registry service: device lifecycle on top of a RegistryStore. Every accepted change is
// published as a RegistryEvent, which every node receives (to kick sessions and evict caches).

import {
  type DeviceKeys,
  generateKeys,
  type KeyVerifiers,
  unknownVerifier,
  verifierOf,
  verifiersOf,
} from './credentials.js'
import { errors } from './errors.js'
import { assertDeviceId, assertModelRef, assertTags, patchTags, type Tags, type TagValue } from './ids.js'
import type { RegistryStore } from './ports.js'
import { MAX_PAGE } from './query.js'
import {
  type Device,
  type DeviceEventType,
  type DeviceQuery,
  type DeviceRecord,
  type DeviceStatus,
  type Presence,
  type PresenceView,
  toDevice,
} from './types.js'
import { evaluate, needs, parseWhere, plan, type WhereExpr, type WhereIndex, type WhereRow } from './where/index.js'

/** Devices read per store call when a `where` query is evaluated. */
const WHERE_BATCH = 250
/** Devices one `where` request examines before it answers with a cursor. */
const MAX_WHERE_EXAMINED = 5000

/** The filters of the query string and of a `where` query, ANDed; undefined when they cannot both hold. */
function mergeFilters(a: Omit<DeviceQuery, 'limit'>, b: WhereIndex): Omit<DeviceQuery, 'limit'> | undefined {
  const out = { ...a }
  if (b.status !== undefined) {
    if (out.status !== undefined && out.status !== b.status) return undefined
    out.status = b.status
  }
  if (b.parentId !== undefined) {
    if (out.parentId !== undefined && out.parentId !== b.parentId) return undefined
    out.parentId = b.parentId
  }
  if (b.tags) {
    const tags = { ...out.tags }
    for (const [k, v] of Object.entries(b.tags)) {
      if (Object.hasOwn(tags, k) && tags[k] !== v) return undefined
      tags[k] = v
    }
    out.tags = tags
  }
  return out
}

/** Compare-and-set retries before a write gives up with 409 (only under heavy contention). */
const CAS_ATTEMPTS = 8

export interface CreateDeviceInput {
  id: string
  tags?: Tags
  parentId?: string
  modelId?: string
}

export interface DevicePatch {
  status?: DeviceStatus
  /** JSON merge patch of the tag set: `null` deletes a tag. */
  tags?: Record<string, TagValue | null>
}

export type DeviceWithPresence = Device & { presence: PresenceView }

export interface ListResult {
  items: DeviceWithPresence[]
  next?: string
}

export interface RegistryServiceDeps {
  store: RegistryStore
  /** This node's id, written into events as their origin. */
  node: string
  now?: () => Date
}

export type RegistryService = ReturnType<typeof createRegistryService>

export function createRegistryService(deps: RegistryServiceDeps) {
  const { store, node } = deps
  const now = deps.now ?? (() => new Date())

  async function emit(type: DeviceEventType, r: DeviceRecord, rev = r.rev): Promise<void> {
    const e = { type, deviceId: r.id, origin: node, at: now().toISOString(), rev }
    await store.events.publish(r.parentId === undefined ? e : { ...e, parentId: r.parentId })
  }

  function presenceView(p: Presence | undefined, live: Set<string>): PresenceView {
    if (!p) return { connected: false, seq: 0 }
    // a node that stopped heart-beating took its sessions with it
    const connected = p.online && p.node !== undefined && live.has(p.node)
    const v: PresenceView = { connected, seq: p.seq }
    if (connected) {
      if (p.since) v.since = p.since
      if (p.node) v.node = p.node
    }
    if (p.lastDisconnectAt) v.lastDisconnectAt = p.lastDisconnectAt
    return v
  }

  /** A new device's record, enabled, at its first revision. */
  function newRecord(id: string, tags: Tags, verifiers: KeyVerifiers, modelId: string | undefined): DeviceRecord {
    const at = now().toISOString()
    const record: DeviceRecord = {
      id,
      status: 'enabled',
      tags,
      createdAt: at,
      updatedAt: at,
      keysRotatedAt: at,
      rev: 1,
      verifiers,
    }
    if (modelId !== undefined) record.modelId = modelId
    return record
  }

  /** Read-modify-write with compare-and-set; `change` returns undefined for "nothing to do". */
  async function update(
    id: string,
    change: (r: DeviceRecord) => DeviceRecord | undefined,
  ): Promise<{ before: DeviceRecord; after: DeviceRecord }> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const before = await store.devices.get(id)
      if (!before) throw new errors.DEVICE_NOT_FOUND(id)
      const changed = change(before)
      if (!changed) return { before, after: before }
      const after = { ...changed, rev: before.rev + 1, updatedAt: now().toISOString() }
      if (await store.devices.compareAndSet(after, before)) return { before, after }
    }
    throw new errors.CONFLICT(`device ${id} is being changed by others; try again`)
  }

  async function listWhere(expr: WhereExpr, filters: Omit<DeviceQuery, 'limit'>, limit: number): Promise<ListResult> {
    const { index, residual } = plan(expr)
    const query = mergeFilters(filters, index)
    if (!query) return { items: [] } // the filters contradict each other
    const need = residual ? needs(residual) : { twin: false, presence: false }
    const live = await store.presence.liveNodes()
    const items: DeviceWithPresence[] = []
    let after = query.after
    let examined = 0
    for (;;) {
      const page = await store.devices.list({ ...query, ...(after !== undefined ? { after } : {}), limit: WHERE_BATCH })
      const ids = page.items.map((r) => r.id)
      const [presence, twins] = await Promise.all([
        store.presence.getMany(ids),
        need.twin ? store.twins.getMany(ids) : Promise.resolve([]),
      ])
      for (let i = 0; i < page.items.length; i++) {
        const r = page.items[i] as DeviceRecord
        after = r.id
        examined++
        const view = presenceView(presence[i], live)
        if (residual) {
          const twin = twins[i]
          const row: WhereRow = { device: r, presence: { connected: view.connected } }
          if (need.twin) {
            row.desired = twin?.desired.doc ?? {}
            row.reported = twin?.reported.doc ?? {}
          }
          if (!evaluate(residual, row)) continue
        }
        items.push({ ...toDevice(r), presence: view })
        if (items.length >= limit) return { items, next: r.id }
      }
      if (page.next === undefined) return { items }
      after = page.next
      if (examined >= MAX_WHERE_EXAMINED) return { items, next: after }
    }
  }

  return {
    store,

    async createDevice(input: CreateDeviceInput): Promise<{ device: Device; keys: DeviceKeys }> {
      const id = assertDeviceId(input.id)
      const tags = assertTags(input.tags ?? {})
      assertModelRef(input.modelId)
      if (input.parentId !== undefined) {
        assertDeviceId(input.parentId)
        if (input.parentId === id) throw new errors.BAD_REQUEST('a device cannot be its own parent')
        if (!(await store.devices.get(input.parentId))) throw new errors.PARENT_NOT_FOUND(input.parentId)
      }
      const keys = generateKeys()
      const record = newRecord(id, tags, verifiersOf(keys), input.modelId)
      if (input.parentId !== undefined) record.parentId = input.parentId
      if (!(await store.devices.create(record))) throw new errors.DEVICE_EXISTS(id)
      await emit('device.created', record)
      return { device: toDevice(record), keys }
    },

    /**
     * Registers a device from provisioning, or re-registers a known one: its primary key becomes
     * the one behind `verifier` (a group member's derived key), everything else it has stays. A new
     * device gets `tags` and `modelId`, and an unknown secondary key (rotate keys to get both).
     */
    async provisionDevice(input: {
      id: string
      verifier: string
      tags: Tags
      modelId?: string
    }): Promise<{ created: boolean; device: Device }> {
      const id = assertDeviceId(input.id)
      const tags = assertTags(input.tags)
      const verifiers = { primary: input.verifier, secondary: unknownVerifier() }
      const record = newRecord(id, tags, verifiers, input.modelId)
      if (await store.devices.create(record)) {
        await emit('device.created', record)
        return { created: true, device: toDevice(record) }
      }
      const { before, after } = await update(id, (r) =>
        r.verifiers.primary === input.verifier
          ? undefined
          : { ...r, verifiers: { ...r.verifiers, primary: input.verifier }, keysRotatedAt: now().toISOString() },
      )
      if (after !== before) await emit('credential.revoked', after)
      return { created: false, device: toDevice(after) }
    },

    /** The stored record (with verifiers), for authentication. */
    getRecord(id: string): Promise<DeviceRecord | undefined> {
      return store.devices.get(id)
    },

    async getDevice(id: string): Promise<DeviceWithPresence | undefined> {
      const [r, p, live] = await Promise.all([
        store.devices.get(id),
        store.presence.get(id),
        store.presence.liveNodes(),
      ])
      return r && { ...toDevice(r), presence: presenceView(p, live) }
    },

    /**
     * Lists devices in id order. Filters on status, tags and parent come from the store's indexes; a
     * `where` query (registry/where) adds what they cannot answer, evaluated per device on batches
     * of records, twins and presence read together. A page may hold fewer than `limit` devices
     * while `next` is set (a request examines a bounded number of devices).
     */
    async listDevices(q: Omit<DeviceQuery, 'limit'> & { limit?: number; where?: string }): Promise<ListResult> {
      const limit = Math.min(Math.max(q.limit ?? 100, 1), MAX_PAGE)
      const { where, ...filters } = q
      if (where === undefined) {
        const page = await store.devices.list({ ...filters, limit })
        const [presence, live] = await Promise.all([
          store.presence.getMany(page.items.map((r) => r.id)),
          store.presence.liveNodes(),
        ])
        const items = page.items.map((r, i) => ({ ...toDevice(r), presence: presenceView(presence[i], live) }))
        return page.next === undefined ? { items } : { items, next: page.next }
      }
      return listWhere(parseWhere(where), filters, limit)
    },

    /** Whether any device has `gatewayId` as its parent. */
    async hasChildren(gatewayId: string): Promise<boolean> {
      let after: string | undefined
      do {
        const page = await store.devices.list({ parentId: gatewayId, limit: 1, ...(after ? { after } : {}) })
        if (page.items.length > 0) return true
        after = page.next
      } while (after !== undefined)
      return false
    },

    /** Every device whose parent is `gatewayId`. */
    async childrenOf(gatewayId: string): Promise<string[]> {
      const out: string[] = []
      let after: string | undefined
      do {
        const page = await store.devices.list({ parentId: gatewayId, limit: MAX_PAGE, ...(after ? { after } : {}) })
        for (const r of page.items) out.push(r.id)
        after = page.next
      } while (after !== undefined)
      return out
    },

    async updateDevice(id: string, patch: DevicePatch): Promise<Device> {
      const { before, after } = await update(id, (r) => {
        const next = { ...r }
        let changed = false
        if (patch.status !== undefined && patch.status !== r.status) {
          next.status = patch.status
          changed = true
        }
        if (patch.tags !== undefined) {
          next.tags = patchTags(r.tags, patch.tags)
          changed = true
        }
        return changed ? next : undefined
      })
      if (after !== before) {
        const disabled = before.status === 'enabled' && after.status === 'disabled'
        await emit(disabled ? 'device.disabled' : 'device.updated', after)
      }
      return toDevice(after)
    },

    async deleteDevice(id: string): Promise<void> {
      const r = await store.devices.delete(id)
      if (!r) throw new errors.DEVICE_NOT_FOUND(id)
      await store.twins.delete(id)
      await emit('device.deleted', r, r.rev + 1)
    },

    /**
     * Makes `key` the device's primary key, after the device confirmed it has it (key rollover). The
     * secondary key and the live session stay: the device is the one that asked for the change.
     */
    async replacePrimaryKey(id: string, key: string): Promise<Device> {
      const verifier = verifierOf(key)
      if (!verifier) throw new errors.BAD_REQUEST('a device key is 32 bytes in base64url')
      const { after } = await update(id, (r) => ({
        ...r,
        verifiers: { ...r.verifiers, primary: verifier },
        keysRotatedAt: now().toISOString(),
      }))
      await emit('device.updated', after)
      return toDevice(after)
    },

    /** New primary and secondary keys; the old ones stop working at once. */
    async rotateKeys(id: string): Promise<DeviceKeys> {
      const keys = generateKeys()
      const { after } = await update(id, (r) => ({
        ...r,
        verifiers: verifiersOf(keys),
        keysRotatedAt: now().toISOString(),
      }))
      await emit('credential.revoked', after)
      return keys
    },
  }
}
