// The in-memory adapter: the reference semantics of every store port, and the embedded mode's store.
// Values are copied in and out, so callers can never change stored state by accident.
import { createEventListeners } from '../events.js'
import type {
  DeviceStore,
  PresenceStore,
  RegistryEvents,
  RegistryStore,
  SessionEnd,
  SessionStart,
  TwinStore,
} from '../ports.js'
import { MAX_SCAN, matchesQuery } from '../query.js'
import { emptyTwin, type TwinRecord } from '../twin.js'
import type { DevicePage, DeviceQuery, DeviceRecord, Presence } from '../types.js'
import { createMemoryCommandStore } from './commands.js'
import { createModelStore, type DeviceModelState } from './models.js'
import { createOtaStore } from './ota.js'
import { createProvisioningStore } from './provisioning.js'
import { SortedIds } from './sorted-ids.js'

const copy = structuredClone

/** `forget` drops what other stores keep with the device (its model binding). */
function createDeviceStore(records: Map<string, DeviceRecord>, forget: (id: string) => void): DeviceStore {
  const order = new SortedIds()
  return {
    async create(record) {
      if (records.has(record.id)) return false
      records.set(record.id, copy(record))
      order.add(record.id)
      return true
    },
    async get(id) {
      const r = records.get(id)
      return r && copy(r)
    },
    async getMany(ids) {
      return ids.map((id) => {
        const r = records.get(id)
        return r && copy(r)
      })
    },
    async compareAndSet(next, before) {
      const cur = records.get(next.id)
      if (!cur || cur.rev !== before.rev) return false
      records.set(next.id, copy(next))
      return true
    },
    async delete(id) {
      const r = records.get(id)
      if (!r) return undefined
      records.delete(id)
      order.remove(id)
      forget(id)
      return r
    },
    async list(q: DeviceQuery): Promise<DevicePage> {
      const items: DeviceRecord[] = []
      let scanned = 0
      let last: string | undefined
      for (const id of order.from(q.after)) {
        if (items.length >= q.limit || scanned >= MAX_SCAN) return { items, next: last }
        scanned++
        last = id
        const r = records.get(id) as DeviceRecord
        if (matchesQuery(r, q)) items.push(copy(r))
      }
      return { items }
    },
    async count() {
      return records.size
    },
  }
}

/**
 * A session that started before the one recorded from another node (equal times: the smaller node
 * id) is a late write, not recorded (as in the Redis store; broker/mqtt/takeover.ts).
 */
function startedBefore(s: SessionStart, recorded: Presence): boolean {
  const { since, node } = recorded
  if (since === undefined || node === undefined || node === s.node) return false
  return since > s.at || (since === s.at && node > s.node)
}

function createPresenceStore(): PresenceStore {
  const state = new Map<string, Presence>()
  const nodes = new Map<string, number>()
  return {
    async connected(deviceId, s: SessionStart) {
      const prev = state.get(deviceId)
      const seq = (prev?.seq ?? 0) + 1
      if (prev && startedBefore(s, prev)) {
        prev.seq = seq
        return seq
      }
      const p: Presence = { online: true, seq, node: s.node, session: s.session, since: s.at }
      if (s.transport !== undefined) p.transport = s.transport
      if (prev?.lastDisconnectAt) p.lastDisconnectAt = prev.lastDisconnectAt
      state.set(deviceId, p)
      return seq
    },
    async disconnected(deviceId, s: SessionEnd) {
      const cur = state.get(deviceId) ?? { online: false, seq: 0 }
      cur.seq++
      if (cur.session === s.session) {
        cur.online = false
        cur.lastDisconnectAt = s.at
      }
      state.set(deviceId, cur)
      return { seq: cur.seq, online: cur.online }
    },
    async get(deviceId) {
      const p = state.get(deviceId)
      return p && copy(p)
    },
    async getMany(deviceIds) {
      return deviceIds.map((id) => {
        const p = state.get(id)
        return p && copy(p)
      })
    },
    async remove(deviceId) {
      state.delete(deviceId)
    },
    async heartbeat(node, ttlMs) {
      nodes.set(node, Date.now() + ttlMs)
    },
    async liveNodes() {
      const now = Date.now()
      const live = new Set<string>()
      for (const [node, until] of nodes) if (until > now) live.add(node)
      return live
    },
    async leave(node) {
      nodes.delete(node)
    },
  }
}

function createTwinStore(): TwinStore {
  const twins = new Map<string, TwinRecord>()
  return {
    async get(deviceId) {
      const t = twins.get(deviceId)
      return t && copy(t)
    },
    async getMany(deviceIds) {
      return deviceIds.map((id) => {
        const t = twins.get(id)
        return t && copy(t)
      })
    },
    async casSide(deviceId, side, next, expected) {
      const t = twins.get(deviceId) ?? emptyTwin()
      if (t[side].version !== expected) return t[side].version
      t[side] = copy(next)
      twins.set(deviceId, t)
      return true
    },
    async markSeen(deviceId, version) {
      const t = twins.get(deviceId) ?? emptyTwin()
      if (version > t.desiredSeen) t.desiredSeen = version
      twins.set(deviceId, t)
    },
    async delete(deviceId) {
      twins.delete(deviceId)
    },
  }
}

function createEvents(onError: (err: Error) => void): RegistryEvents {
  const listeners = createEventListeners(onError)
  return {
    async publish(event) {
      listeners.deliver(event)
    },
    subscribe: listeners.add,
    onGap: listeners.addGap,
  }
}

export interface MemoryStoreOptions {
  /** Receives errors thrown by event listeners (they never reach the caller). */
  onError?: (err: Error) => void
}

export function createMemoryStore(opts: MemoryStoreOptions = {}): RegistryStore {
  const records = new Map<string, DeviceRecord>()
  const deviceModels = new Map<string, DeviceModelState>()
  return {
    kind: 'memory',
    devices: createDeviceStore(records, (id) => deviceModels.delete(id)),
    presence: createPresenceStore(),
    twins: createTwinStore(),
    commands: createMemoryCommandStore(),
    models: createModelStore(deviceModels, (id) => records.has(id)),
    provisioning: createProvisioningStore(),
    ota: createOtaStore(),
    events: createEvents(opts.onError ?? (() => {})),
    async ping() {},
    async close() {},
  }
}
