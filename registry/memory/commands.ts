// The in-memory command store. A record is kept as its JSON text: that is the copy in and out the
// memory adapter promises (as the Redis adapter's documents, and with the same JSON semantics), it
// costs less than structuredClone, and a day of retained records is one flat string each that the
// garbage collector never has to walk.
import type { CommandRecord, CommandState } from '../commands.js'
import type { CommandStore } from '../ports.js'

interface Entry {
  doc: string
  state: CommandState
  until: number
}

export interface MemoryCommandStore extends CommandStore {
  /** Records and idempotency keys held, expired or not yet swept (for tests). */
  held(): number
}

/** `clock` is for tests; the store reads the time from it alone. */
export function createMemoryCommandStore(clock: () => number = Date.now): MemoryCommandStore {
  const records = new Map<string, Entry>()
  const queues = new Map<string, string[]>()
  const idem = new Map<string, { id: string; until: number }>()
  const key = (deviceId: string, id: string) => `${deviceId}\u0000${id}`
  const live = <T extends { until: number }>(e: T | undefined) => (e && e.until > clock() ? e : undefined)
  // records past their retention are dropped by a full sweep each time the maps have doubled since
  // the last one: amortised O(1) per command, and memory bounded by what the retention keeps
  let sweepAt = 1024
  function sweep() {
    if (records.size + idem.size < sweepAt) return
    const now = clock()
    for (const [k, e] of records) if (e.until <= now) records.delete(k)
    for (const [k, e] of idem) if (e.until <= now) idem.delete(k)
    sweepAt = Math.max(1024, 2 * (records.size + idem.size))
  }
  function unqueue(deviceId: string, id: string) {
    const q = queues.get(deviceId)
    if (!q) return
    const at = q.indexOf(id)
    if (at >= 0) q.splice(at, 1)
    if (q.length === 0) queues.delete(deviceId)
  }
  return {
    async create(r, opts) {
      sweep()
      const until = clock() + opts.retentionMs
      const ik = opts.idempotencyKey === undefined ? undefined : key(r.deviceId, opts.idempotencyKey)
      const existing = ik === undefined ? undefined : live(idem.get(ik))
      if (existing) return { created: false, reason: 'duplicate', id: existing.id }
      const idle = opts.deliveredIfIdle !== undefined && !queues.get(r.deviceId)?.length
      const stored = idle ? (opts.deliveredIfIdle as CommandRecord) : r
      if (!idle && opts.queueBound !== undefined) {
        const q = queues.get(r.deviceId) ?? []
        if (q.length >= opts.queueBound) return { created: false, reason: 'queue_full' }
        q.push(r.id)
        queues.set(r.deviceId, q)
      }
      records.set(key(r.deviceId, r.id), { doc: JSON.stringify(stored), state: stored.state, until })
      if (ik !== undefined) idem.set(ik, { id: r.id, until })
      return idle ? { created: true, delivered: true } : { created: true }
    },
    async get(deviceId, id) {
      const e = live(records.get(key(deviceId, id)))
      return e && (JSON.parse(e.doc) as CommandRecord)
    },
    async transition(deviceId, id, from, next, retentionMs, opts) {
      if (opts?.unqueue) unqueue(deviceId, id)
      const k = key(deviceId, id)
      const e = live(records.get(k))
      if (!e) return undefined
      if (e.state !== from) return JSON.parse(e.doc) as CommandRecord
      records.set(k, { doc: JSON.stringify(next), state: next.state, until: clock() + retentionMs })
      return true
    },
    async queued(deviceId) {
      return [...(queues.get(deviceId) ?? [])]
    },
    async unqueue(deviceId, id) {
      unqueue(deviceId, id)
    },
    held() {
      return records.size + idem.size
    },
  }
}
