// The desired state a device has applied, kept in step with FleetHub (docs/twins.md, "Desired
// changes" and "Acknowledging"). Messages are applied one at a time, in order, so a slow handler
// delays later versions instead of skipping them:
// - a live `{version, patch}` one above ours is merged in (RFC 7396);
// - a full `{version, desired}` replaces our copy when it is newer, or when it repeats our version
//   without our acknowledgement having got through (FleetHub resends it after a reconnect until
//   the device acknowledges);
// - older messages are ignored, and a gap (a live message lost) re-reads the twin with `twin/get`.
// Once every applier has succeeded for a version, one reported patch carries what they report and
// `$lastDesiredVersion`; when one fails, nothing is reported for that version, and it is applied
// again after the next reconnect: from the whole document FleetHub resends, or, when the version came
// by `twin/get` (which FleetHub counts as seen, so it resends nothing), from a new read.
import { DesiredHandlerError } from './errors.js'
import { combinePatches, isJsonObject, type JsonObject, mergePatch } from './json.js'

/** The reported key that acknowledges the desired version a device has applied. */
export const LAST_DESIRED_VERSION = '$lastDesiredVersion'

export interface DesiredInfo {
  version: number
  /** The merge patch this version made, when it came as a live change. */
  patch?: JsonObject
  /** The whole document came (at start, after a reconnect or a gap) rather than a patch. */
  full: boolean
}

/** Gets a copy of the whole desired document (without `$version`/`$metadata`) after each version. */
export type DesiredHandler = (desired: JsonObject, info: DesiredInfo) => void | Promise<void>

export interface DesiredUpdate extends DesiredInfo {
  desired: JsonObject
  /** The reported document as far as this SDK knows it (undefined before it has read the twin). */
  reported: JsonObject | undefined
}

/** Applies one version; may return properties to report with its acknowledgement. */
export type DesiredApplier = (update: DesiredUpdate) => Promise<JsonObject | undefined>

export interface DesiredSnapshot {
  version: number
  desired: JsonObject
}

export interface DesiredTrackerDeps {
  /** Subscribes the answer topic and starts routing desired messages to `receive`. */
  prepare(): Promise<void>
  /** Subscribes `twin/desired` (after the first read, so FleetHub need not send what was just read). */
  subscribe(): Promise<void>
  /** Reads the twin (`twin/get`). */
  fetch(): Promise<DesiredSnapshot>
  /** Sends a reported patch (`twin/reported`). */
  report(patch: JsonObject): Promise<unknown>
  reported(): JsonObject | undefined
  autoAck: boolean
  onError(err: Error): void
}

export interface DesiredTracker {
  /** Registers an applier; resolves once it has been given the current document. */
  add(applier: DesiredApplier): Promise<() => void>
  /** A message from `twin/desired`, decoded. */
  receive(message: unknown): void
  /** The device reported `$lastDesiredVersion` itself. */
  acknowledged(version: number): void
  /** The connection is back (mqtt.js has resubscribed `twin/desired`). */
  reconnected(): void
  /** A copy of the document the SDK holds, once it has one. */
  state(): DesiredSnapshot | undefined
}

interface Entry {
  applier: DesiredApplier
  /** The last version given to it. */
  seen: number
}

const isVersion = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1

export function createDesiredTracker(deps: DesiredTrackerDeps): DesiredTracker {
  const entries = new Set<Entry>()
  let version = 0
  let doc: JsonObject = {}
  let acked = 0
  let tail: Promise<void> = Promise.resolve()
  let started: Promise<void> | undefined

  /** Runs `step` after every step before it (the promise chain never stays rejected). */
  function enqueue(step: () => Promise<void>): Promise<void> {
    const run = tail.then(step)
    tail = run.catch(() => {})
    return run
  }

  async function apply(info: DesiredInfo, targets: readonly Entry[]): Promise<void> {
    if (targets.length === 0) return
    let patch: JsonObject = {}
    let failed = false
    for (const e of targets) {
      e.seen = info.version
      // each applier gets its own copy: one that changes what it got cannot change the next's
      const update: DesiredUpdate = {
        ...structuredClone(info),
        desired: structuredClone(doc),
        reported: deps.reported(),
      }
      try {
        const fragment = await e.applier(update)
        if (isJsonObject(fragment)) patch = combinePatches(patch, fragment)
      } catch (err) {
        failed = true
        deps.onError(new DesiredHandlerError(info.version, err))
      }
    }
    if (failed) return
    if (deps.autoAck) patch[LAST_DESIRED_VERSION] = info.version
    if (Object.keys(patch).length === 0) return
    try {
      await deps.report(patch)
      if (deps.autoAck) acked = Math.max(acked, info.version)
    } catch (err) {
      deps.onError(err instanceof Error ? err : new Error(String(err)))
    }
  }

  async function applyFull(v: number, desired: JsonObject): Promise<void> {
    if (v < version || (v === version && acked >= v)) return
    version = v
    doc = desired
    await apply({ version: v, full: true }, [...entries])
  }

  async function applyPatch(v: number, patch: JsonObject): Promise<void> {
    if (v <= version) return
    if (v !== version + 1) return resync()
    version = v
    doc = mergePatch(doc, patch)
    await apply({ version: v, patch, full: false }, [...entries])
  }

  async function resync(): Promise<void> {
    const snap = await deps.fetch()
    await applyFull(snap.version, snap.desired)
  }

  async function start(): Promise<void> {
    await deps.prepare()
    await enqueue(resync)
    await deps.subscribe()
  }

  return {
    async add(applier) {
      const entry: Entry = { applier, seen: 0 }
      entries.add(entry)
      try {
        started ??= start().catch((err: unknown) => {
          started = undefined
          throw err
        })
        await started
      } catch (err) {
        entries.delete(entry)
        throw err
      }
      // a late applier gets the document the others already have
      await enqueue(async function catchUp() {
        if (version > 0 && entry.seen < version && entries.has(entry)) await apply({ version, full: true }, [entry])
      })
      return function removeApplier() {
        entries.delete(entry)
      }
    },

    receive(message) {
      const m = isJsonObject(message) ? message : {}
      const { version: v, patch, desired } = m
      let step: () => Promise<void>
      if (isVersion(v) && isJsonObject(patch)) step = () => applyPatch(v, patch)
      else if (isVersion(v) && isJsonObject(desired)) step = () => applyFull(v, desired)
      else {
        deps.onError(new Error(`a desired message that is neither {version, patch} nor {version, desired}`))
        return
      }
      enqueue(step).catch(function stepFailed(err: unknown) {
        deps.onError(err instanceof Error ? err : new Error(String(err)))
      })
    },

    acknowledged(v) {
      acked = Math.max(acked, v)
    },

    reconnected() {
      // an unacknowledged version may never come again by itself: read it (a whole document
      // FleetHub sends as well finds it applied and acknowledged by then, and is ignored)
      if (!started || entries.size === 0 || acked >= version) return
      enqueue(async function retryUnacknowledged() {
        if (acked < version) await resync()
      }).catch(function retryFailed(err: unknown) {
        deps.onError(err instanceof Error ? err : new Error(String(err)))
      })
    },

    state() {
      return version > 0 ? { version, desired: structuredClone(doc) } : undefined
    },
  }
}
