// The twin service: reads and patches twins on a TwinStore. A patch is merged here and written with
// a compare-and-set on the side's version (one Lua script in Redis), so concurrent writers never
// lose an update and versions have no gaps. Writes to one twin side are queued on this node, so
// they do not race each other; a writer on another node that comes first only costs a retry. The
// patches that arrive while a side's write is in flight go together in the next one (a device
// reporting faster than one store round trip): one compare-and-set for all, each patch with its own
// version and outcome, as if written one by one.
// The side this node last wrote is kept (bounded), so a device reporting again costs one store
// call, not two: the compare-and-set itself tells when the copy is out of date. The copies are kept
// per side by device id and replaced in place (the oldest device goes first when the bound is
// reached): a Map that is reordered or keyed by a new string at every write makes garbage that
// lives as long as a device's report interval, which is long enough to reach V8's old generation.
import { errors } from './errors.js'
import type { TwinStore } from './ports.js'
import {
  applyPatch,
  assertDesiredSections,
  assertPatch,
  emptyTwin,
  type Json,
  type JsonObject,
  type TwinLimits,
  type TwinRecord,
  type TwinSide,
  type TwinSideName,
} from './twin.js'

/** Twin sides this node remembers from its own writes, per side (desired, reported). */
const CACHED_SIDES = 10_000

/** Most patches of one side written together. */
const MAX_GROUP = 64

/** Retries when another node wrote the same side in between (only under heavy contention). */
const CAS_ATTEMPTS = 50

/** A random pause after a lost race, growing with the attempts, so two busy nodes take turns. */
function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * 2 ** Math.min(attempt, 6)))
}

export interface PatchResult {
  version: number
  side: TwinSide
  /** The patch as applied. */
  patch: JsonObject
}

/** One device side's patches waiting for its write in flight; `writing` while one runs. */
interface Queue {
  items: Waiting[]
  writing: boolean
}

interface Waiting {
  patch: JsonObject
  ifVersion?: number
  resolve(r: PatchResult): void
  reject(err: unknown): void
}

export interface TwinServiceDeps {
  store: TwinStore
  limits: TwinLimits
  now?: () => Date
  /** Sides remembered from this node's writes, per side. @default 10000 */
  cachedSides?: number
}

export type TwinService = ReturnType<typeof createTwinService>

export function createTwinService(deps: TwinServiceDeps) {
  const { store, limits } = deps
  const now = deps.now ?? (() => new Date())
  const cachedSides = deps.cachedSides ?? CACHED_SIDES
  /**
   * Per side and device, the patches waiting for the write in flight. A device's queue stays after
   * its write (an entry added and deleted at every report is garbage that reaches the old
   * generation); idle queues are dropped when a side has as many as it remembers sides.
   */
  const waiting = { desired: new Map<string, Queue>(), reported: new Map<string, Queue>() }
  /** The time of the last write in ISO form, shared by the writes of one millisecond. */
  let stampedAt = Number.NaN
  let stamp = ''

  function isoNow(): string {
    const d = now()
    const ms = d.getTime()
    if (ms !== stampedAt) {
      stampedAt = ms
      stamp = d.toISOString()
    }
    return stamp
  }
  /** Per side and device, the side as this node last wrote it. */
  const written = { desired: new Map<string, TwinSide>(), reported: new Map<string, TwinSide>() }

  /** A side the cache may change in place (the one given is also an answer's). */
  function ownCopy(side: TwinSide): TwinSide {
    return { version: side.version, doc: { ...side.doc }, meta: { ...side.meta } }
  }

  function remember(cache: Map<string, TwinSide>, deviceId: string, side: TwinSide) {
    if (!cache.has(deviceId) && cache.size >= cachedSides) {
      const oldest = cache.keys().next()
      if (!oldest.done) cache.delete(oldest.value)
    }
    cache.set(deviceId, side)
  }

  async function read(deviceId: string): Promise<TwinRecord> {
    return (await store.get(deviceId)) ?? emptyTwin()
  }

  /**
   * Brings a remembered side to `next` in place: only the top-level properties the group's accepted
   * patches named change, so a device reporting often makes no new copy of its whole side each time.
   * Nothing outside this service sees the remembered object (answers carry the new side instead), and
   * nested values are shared, never changed.
   */
  function update(copy: TwinSide, next: TwinSide, group: readonly Waiting[], outcomes: readonly unknown[]) {
    copy.version = next.version
    copy.meta.$ = next.meta.$ as string
    for (let i = 0; i < group.length; i++) {
      if (outcomes[i] instanceof Error) continue
      for (const k of Object.keys((group[i] as Waiting).patch)) {
        if (Object.hasOwn(next.doc, k)) {
          copy.doc[k] = next.doc[k] as Json
          copy.meta[k] = next.meta[k] as string
        } else {
          delete copy.doc[k]
          delete copy.meta[k]
        }
      }
    }
  }

  /** Writes the waiting patches of one side, a group at a time, until none are left. */
  async function drain(deviceId: string, side: TwinSideName, queue: Queue): Promise<void> {
    while (queue.items.length > 0) {
      const group = queue.items.splice(0, MAX_GROUP)
      try {
        settle(group, await writeGroup(deviceId, side, group))
      } catch (err) {
        for (const w of group) w.reject(err)
      }
    }
    queue.writing = false
  }

  function queueOf(deviceId: string, side: TwinSideName): Queue {
    const queues = waiting[side]
    let queue = queues.get(deviceId)
    if (!queue) {
      if (queues.size >= cachedSides) for (const [id, q] of queues) if (!q.writing) queues.delete(id)
      queue = { items: [], writing: false }
      queues.set(deviceId, queue)
    }
    return queue
  }

  function settle(group: readonly Waiting[], outcomes: readonly (PatchResult | Error)[]) {
    // in order: the answers and events of one side follow its versions
    for (let i = 0; i < group.length; i++) {
      const w = group[i] as Waiting
      const o = outcomes[i] as PatchResult | Error
      if (o instanceof Error) w.reject(o)
      else w.resolve(o)
    }
  }

  /**
   * Applies a group of patches in order on the side as stored and writes the result with one
   * compare-and-set: each accepted patch takes the next version, as if written alone. A patch that
   * breaks a limit or its `ifVersion` is refused on its own. The outcome of each, in order.
   */
  async function writeGroup(
    deviceId: string,
    side: TwinSideName,
    group: readonly Waiting[],
  ): Promise<(PatchResult | Error)[]> {
    const cache = written[side]
    attempts: for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const cached = cache.get(deviceId)
      const current = cached ?? (await read(deviceId))[side]
      const at = isoNow()
      const outcomes: (PatchResult | Error)[] = []
      let next = current
      for (const w of group) {
        if (w.ifVersion !== undefined && w.ifVersion !== next.version) {
          // the copy may be old: decide on the stored version
          if (cached) {
            cache.delete(deviceId)
            continue attempts
          }
          outcomes.push(new errors.PRECONDITION_FAILED(`${side} is at version ${next.version}, not ${w.ifVersion}`))
          continue
        }
        try {
          next = applyPatch(next, w.patch, limits, at)
          outcomes.push({ version: next.version, side: next, patch: w.patch })
        } catch (err) {
          outcomes.push(err as Error)
        }
      }
      if (next === current) return outcomes // nothing to write
      const r = await store.casSide(deviceId, side, next, current.version)
      if (r === true) {
        if (cached && cache.get(deviceId) === cached) update(cached, next, group, outcomes)
        else remember(cache, deviceId, ownCopy(next))
        return outcomes
      }
      // a stale copy costs one more try; a lost race with another node, a pause first
      if (!cache.delete(deviceId)) await backoff(attempt)
    }
    const conflict = new errors.CONFLICT(`the ${side} state of ${deviceId} is being changed by others; try again`)
    return group.map(() => conflict)
  }

  return {
    limits,
    get: read,
    getMany(deviceIds: readonly string[]): Promise<TwinRecord[]> {
      return store.getMany(deviceIds).then((all) => all.map((t) => t ?? emptyTwin()))
    },

    /**
     * Applies a merge patch to one side. `ifVersion` makes it conditional (412 when the side has
     * moved on). Throws INVALID_PATCH (400) or TWIN_TOO_LARGE (413) and changes nothing when the
     * patch or its result breaks the limits.
     */
    patch(deviceId: string, side: TwinSideName, patch: unknown, ifVersion?: number): Promise<PatchResult> {
      const checked = assertPatch(patch, limits)
      if (side === 'desired') assertDesiredSections(checked)
      return new Promise<PatchResult>((resolve, reject) => {
        const w: Waiting = { patch: checked, resolve, reject }
        if (ifVersion !== undefined) w.ifVersion = ifVersion
        const queue = queueOf(deviceId, side)
        queue.items.push(w)
        if (queue.writing) return
        queue.writing = true
        void drain(deviceId, side, queue)
      })
    },

    /** The device has seen (or applied) desired `version`. */
    markSeen(deviceId: string, version: number): Promise<void> {
      return store.markSeen(deviceId, version)
    },

    delete(deviceId: string): Promise<void> {
      for (const side of ['desired', 'reported'] as const) {
        written[side].delete(deviceId)
        if (waiting[side].get(deviceId)?.writing === false) waiting[side].delete(deviceId)
      }
      return store.delete(deviceId)
    },
  }
}
