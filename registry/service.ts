// The registry service: device lifecycle on top of a RegistryStore. Every accepted change is
// published as a RegistryEvent, which every node receives (to kick sessions and evict caches).
import { type DeviceKeys, generateKeys, verifiersOf } from './credentials.js'
import { errors } from './errors.js'
import { assertDeviceId, assertTags, patchTags, type Tags, type TagValue } from './ids.js'
import type { RegistryStore } from './ports.js'
import { MAX_PAGE } from './query.js'
import {
  type Device,
  type DeviceQuery,
  type DeviceRecord,
  type DeviceStatus,
  type Presence,
  type PresenceView,
  type RegistryEventType,
  toDevice,
} from './types.js'

export const MODEL_ID_PATTERN = '^[A-Za-z0-9\\-._:@]{1,128}$'
const modelIdRe = new RegExp(MODEL_ID_PATTERN)
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

  async function emit(type: RegistryEventType, r: DeviceRecord): Promise<void> {
    const e = { type, deviceId: r.id, origin: node, at: now().toISOString() }
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

  return {
    store,

    async createDevice(input: CreateDeviceInput): Promise<{ device: Device; keys: DeviceKeys }> {
      const id = assertDeviceId(input.id)
      const tags = assertTags(input.tags ?? {})
      if (input.modelId !== undefined && !modelIdRe.test(input.modelId)) {
        throw new errors.BAD_REQUEST('modelId must be 1-128 characters from letters, digits and -._:@')
      }
      if (input.parentId !== undefined) {
        assertDeviceId(input.parentId)
        if (input.parentId === id) throw new errors.BAD_REQUEST('a device cannot be its own parent')
        if (!(await store.devices.get(input.parentId))) throw new errors.PARENT_NOT_FOUND(input.parentId)
      }
      const keys = generateKeys()
      const at = now().toISOString()
      const record: DeviceRecord = {
        id,
        status: 'enabled',
        tags,
        createdAt: at,
        updatedAt: at,
        keysRotatedAt: at,
        rev: 1,
        verifiers: verifiersOf(keys),
      }
      if (input.parentId !== undefined) record.parentId = input.parentId
      if (input.modelId !== undefined) record.modelId = input.modelId
      if (!(await store.devices.create(record))) throw new errors.DEVICE_EXISTS(id)
      await emit('device.created', record)
      return { device: toDevice(record), keys }
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

    async listDevices(q: Omit<DeviceQuery, 'limit'> & { limit?: number }): Promise<ListResult> {
      const limit = Math.min(Math.max(q.limit ?? 100, 1), MAX_PAGE)
      const page = await store.devices.list({ ...q, limit })
      const ids = page.items.map((r) => r.id)
      const [presence, live] = await Promise.all([store.presence.getMany(ids), store.presence.liveNodes()])
      const items = page.items.map((r, i) => ({ ...toDevice(r), presence: presenceView(presence[i], live) }))
      return page.next === undefined ? { items } : { items, next: page.next }
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
      await emit('device.deleted', r)
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
