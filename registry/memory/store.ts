// The in-memory adapter: the reference semantics of every store port, and the embedded mode's store.
// Values are copied in and out, so callers can never change stored state by accident.
import type { CommandRecord } from '../commands.js'
import type {
  CommandStore,
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
import type { DevicePage, DeviceQuery, DeviceRecord, Presence, RegistryEvent } from '../types.js'
import { createModelStore, type DeviceModelState } from './models.js'
import { createOtaStore } from './ota.js'
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

function createPresenceStore(): PresenceStore {
  const state = new Map<string, Presence>()
  const nodes = new Map<string, number>()
  return {
    async connected(deviceId, s: SessionStart) {
      const seq = (state.get(deviceId)?.seq ?? 0) + 1
      const prev = state.get(deviceId)
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

function createCommandStore(): CommandStore {
  const records = new Map<string, { r: CommandRecord; until: number }>()
  const queues = new Map<string, string[]>()
  const idem = new Map<string, { id: string; until: number }>()
  const key = (deviceId: string, id: string) => `${deviceId}\u0000${id}`
  const live = <T extends { until: number }>(e: T | undefined) => (e && e.until > Date.now() ? e : undefined)
  // records past their retention are dropped by a full sweep each time the maps have doubled since
  // the last one: amortised O(1) per command, and memory bounded by what the retention keeps
  let sweepAt = 1024
  function sweep() {
    if (records.size + idem.size < sweepAt) return
    const now = Date.now()
    for (const [k, e] of records) if (e.until <= now) records.delete(k)
    for (const [k, e] of idem) if (e.until <= now) idem.delete(k)
    sweepAt = Math.max(1024, 2 * (records.size + idem.size))
  }
  return {
    async create(r, opts) {
      sweep()
      const until = Date.now() + opts.retentionMs
      const ik = opts.idempotencyKey === undefined ? undefined : key(r.deviceId, opts.idempotencyKey)
      const existing = ik === undefined ? undefined : live(idem.get(ik))
      if (existing) return { created: false, reason: 'duplicate', id: existing.id }
      if (opts.queueBound !== undefined) {
        const q = queues.get(r.deviceId) ?? []
        if (q.length >= opts.queueBound) return { created: false, reason: 'queue_full' }
        q.push(r.id)
        queues.set(r.deviceId, q)
      }
      records.set(key(r.deviceId, r.id), { r: copy(r), until })
      if (ik !== undefined) idem.set(ik, { id: r.id, until })
      return { created: true }
    },
    async get(deviceId, id) {
      const e = live(records.get(key(deviceId, id)))
      return e && copy(e.r)
    },
    async transition(deviceId, id, from, next, retentionMs) {
      const e = live(records.get(key(deviceId, id)))
      if (!e || e.r.state !== from) return false
      records.set(key(deviceId, id), { r: copy(next), until: Date.now() + retentionMs })
      return true
    },
    async queued(deviceId) {
      return [...(queues.get(deviceId) ?? [])]
    },
    async unqueue(deviceId, id) {
      const q = queues.get(deviceId)
      if (!q) return
      const rest = q.filter((x) => x !== id)
      if (rest.length) queues.set(deviceId, rest)
      else queues.delete(deviceId)
    },
  }
}

function createEvents(onError: (err: Error) => void): RegistryEvents {
  const listeners = new Set<(e: RegistryEvent) => void>()
  return {
    async publish(event) {
      // delivered asynchronously, like a message through Redis
      queueMicrotask(function deliverRegistryEvent() {
        for (const l of listeners) {
          try {
            l(copy(event))
          } catch (err) {
            onError(err as Error)
          }
        }
      })
    },
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
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
    commands: createCommandStore(),
    models: createModelStore(deviceModels, (id) => records.has(id)),
    ota: createOtaStore(),
    events: createEvents(opts.onError ?? (() => {})),
    async ping() {},
    async close() {},
  }
}
