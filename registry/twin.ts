// Device twins: `desired` (what operators want) and `reported` (what the device says it is), each a
// JSON object with its own version (1 for the empty document, +1 per accepted change) and the time
// each top-level property last changed. Changes are JSON merge patches (RFC 7396: null deletes),
// bounded in size, depth and key length; a refused patch changes nothing.
import { errors } from './errors.js'

export type Json = null | boolean | number | string | Json[] | JsonObject
export interface JsonObject {
  [key: string]: Json
}

export type TwinSideName = 'desired' | 'reported'

export interface TwinSide {
  version: number
  doc: JsonObject
  /** Last change of each top-level property (ISO time), and of the whole side under `$`. */
  meta: Record<string, string>
}

export interface TwinRecord {
  desired: TwinSide
  reported: TwinSide
  /** The highest desired version the device has seen (by `twin/get`) or acknowledged. */
  desiredSeen: number
}

export interface TwinLimits {
  /** Largest serialized document, per side, in bytes. @default 32768 */
  maxBytes: number
  /** Deepest nesting of objects and arrays. @default 10 */
  maxDepth: number
  /** Longest property name. @default 128 */
  maxKeyLength: number
}

export const DEFAULT_TWIN_LIMITS: TwinLimits = Object.freeze({ maxBytes: 32 * 1024, maxDepth: 10, maxKeyLength: 128 })

/** The key a device reports to acknowledge the desired version it has applied. */
export const LAST_DESIRED_VERSION = '$lastDesiredVersion'

export function emptySide(): TwinSide {
  return { version: 1, doc: {}, meta: {} }
}

export function emptyTwin(): TwinRecord {
  return { desired: emptySide(), reported: emptySide(), desiredSeen: 1 }
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v)
}

/** Checks a patch before it is applied: an object, no `$` keys, bounded keys and depth. */
export function assertPatch(patch: unknown, limits: TwinLimits): JsonObject {
  if (!isJsonObject(patch)) throw new errors.INVALID_PATCH('a patch is a JSON object')
  checkValue(patch, 1, limits, '')
  return patch
}

function checkValue(v: unknown, depth: number, limits: TwinLimits, path: string): void {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new errors.INVALID_PATCH(`${path || 'a value'} is not a finite number`)
    return
  }
  if (depth > limits.maxDepth) throw new errors.INVALID_PATCH(`nesting deeper than ${limits.maxDepth} at ${path}`)
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkValue(v[i], depth + 1, limits, `${path}[${i}]`)
    return
  }
  if (!isJsonObject(v)) throw new errors.INVALID_PATCH(`${path || 'a value'} is not JSON`)
  for (const k of Object.keys(v)) {
    if (k.length === 0 || k.length > limits.maxKeyLength) {
      throw new errors.INVALID_PATCH(`property names are 1-${limits.maxKeyLength} characters (at ${path || 'the top'})`)
    }
    if (k.startsWith('$')) throw new errors.INVALID_PATCH(`${k} is reserved (names starting with $ belong to FleetHub)`)
    if (k === '__proto__') throw new errors.INVALID_PATCH('__proto__ is not a property name a twin can hold')
    checkValue(v[k], depth + 1, limits, path ? `${path}.${k}` : k)
  }
}

/** RFC 7396 merge patch: returns a new object; `target` is not changed. */
export function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...target }
  for (const k of Object.keys(patch)) {
    const p = patch[k] as Json
    if (p === null) delete out[k]
    else if (isJsonObject(p)) out[k] = mergePatch(isJsonObject(out[k]) ? (out[k] as JsonObject) : {}, p)
    else out[k] = p
  }
  return out
}

/** Applies a checked patch to a side, enforcing the size limit on the result. */
export function applyPatch(side: TwinSide, patch: JsonObject, limits: TwinLimits, at: string): TwinSide {
  const doc = mergePatch(side.doc, patch)
  const bytes = Buffer.byteLength(JSON.stringify(doc))
  if (bytes > limits.maxBytes) {
    throw new errors.TWIN_TOO_LARGE(`the document would be ${bytes} bytes; the limit is ${limits.maxBytes}`)
  }
  const meta: Record<string, string> = { ...side.meta, $: at }
  for (const k of Object.keys(patch)) {
    if (patch[k] === null) delete meta[k]
    else meta[k] = at
  }
  return { version: side.version + 1, doc, meta }
}

/** A side as clients see it: the document with `$version` and `$metadata`. */
export function sideView(side: TwinSide): JsonObject {
  const metadata: JsonObject = {}
  if (side.meta.$) metadata.$lastUpdated = side.meta.$
  for (const k of Object.keys(side.meta)) if (k !== '$') metadata[k] = { $lastUpdated: side.meta[k] as string }
  return { ...side.doc, $version: side.version, $metadata: metadata }
}

// The built-in `system` section of desired state (remote configuration): checked, so that a typo
// fails at the API rather than on every device.
const SYSTEM_PROPERTIES: Record<string, (v: Json) => string | undefined> = {
  reportingIntervalSec: (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 86_400
      ? undefined
      : 'a whole number of seconds, 1-86400',
  timeServer: (v) =>
    typeof v === 'string' && /^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$/.test(v)
      ? undefined
      : 'a host name, optionally with :port',
  logLevel: (v) =>
    typeof v === 'string' && ['error', 'warn', 'info', 'debug', 'trace'].includes(v)
      ? undefined
      : 'one of error, warn, info, debug, trace',
}

export const SYSTEM_PROPERTY_NAMES = Object.keys(SYSTEM_PROPERTIES)

/** Checks the built-in sections of a desired patch: `config` is an object, `system` is known. */
export function assertDesiredSections(patch: JsonObject): void {
  const config = patch.config
  if (config !== undefined && config !== null && !isJsonObject(config)) {
    throw new errors.INVALID_PATCH('config is an object (the application configuration)')
  }
  const system = patch.system
  if (system === undefined || system === null) return
  if (!isJsonObject(system)) throw new errors.INVALID_PATCH('system is an object')
  for (const k of Object.keys(system)) {
    const check = SYSTEM_PROPERTIES[k]
    if (!check)
      throw new errors.INVALID_PATCH(`system.${k} is not a system property (${SYSTEM_PROPERTY_NAMES.join(', ')})`)
    const v = system[k] as Json
    if (v === null) continue
    const why = check(v)
    if (why) throw new errors.INVALID_PATCH(`system.${k} must be ${why}`)
  }
}
