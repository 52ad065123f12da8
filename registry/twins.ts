// The twin service: reads and patches twins on a TwinStore. A patch is merged here and written with
// a compare-and-set on the side's version (one Lua script in Redis), so concurrent writers never
// lose an update and versions have no gaps. Writes to one twin side are queued on this node, so
// they do not race each other; a writer on another node that comes first only costs a retry.
// The side this node last wrote is kept (bounded), so a device reporting again costs one store
// call, not two: the compare-and-set itself tells when the copy is out of date.
import { errors } from './errors.js'
import type { TwinStore } from './ports.js'
import { createKeyedSerial } from './serial.js'
import {
  applyPatch,
  assertDesiredSections,
  assertPatch,
  emptyTwin,
  type JsonObject,
  type TwinLimits,
  type TwinRecord,
  type TwinSide,
  type TwinSideName,
} from './twin.js'

/** Twin sides this node remembers from its own writes. */
const MAX_CACHED_SIDES = 10_000

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

export interface TwinServiceDeps {
  store: TwinStore
  limits: TwinLimits
  now?: () => Date
}

export type TwinService = ReturnType<typeof createTwinService>

export function createTwinService(deps: TwinServiceDeps) {
  const { store, limits } = deps
  const now = deps.now ?? (() => new Date())
  /** Writes to one side of one twin on this node, one after another. */
  const writes = createKeyedSerial()
  const written = new Map<string, TwinSide>()

  function remember(key: string, side: TwinSide) {
    written.delete(key)
    if (written.size >= MAX_CACHED_SIDES) written.delete(written.keys().next().value as string)
    written.set(key, side)
  }

  async function read(deviceId: string): Promise<TwinRecord> {
    return (await store.get(deviceId)) ?? emptyTwin()
  }

  async function write(
    deviceId: string,
    side: TwinSideName,
    patch: JsonObject,
    ifVersion?: number,
  ): Promise<PatchResult> {
    const key = `${deviceId}\u0000${side}`
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const current = written.get(key) ?? (await read(deviceId))[side]
      if (ifVersion !== undefined && ifVersion !== current.version) {
        if (written.delete(key)) continue // the copy may be old: decide on the stored version
        throw new errors.PRECONDITION_FAILED(`${side} is at version ${current.version}, not ${ifVersion}`)
      }
      const next = applyPatch(current, patch, limits, now().toISOString())
      const r = await store.casSide(deviceId, side, next, current.version)
      if (r === true) {
        remember(key, next)
        return { version: next.version, side: next, patch }
      }
      // a stale copy costs one more try; a lost race with another node, a pause first
      if (!written.delete(key)) await backoff(attempt)
    }
    throw new errors.CONFLICT(`the ${side} state of ${deviceId} is being changed by others; try again`)
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
      return writes.run(`${deviceId}\u0000${side}`, () => write(deviceId, side, checked, ifVersion))
    },

    /** The device has seen (or applied) desired `version`. */
    markSeen(deviceId: string, version: number): Promise<void> {
      return store.markSeen(deviceId, version)
    },

    delete(deviceId: string): Promise<void> {
      written.delete(`${deviceId}\u0000desired`)
      written.delete(`${deviceId}\u0000reported`)
      return store.delete(deviceId)
    },
  }
}
