// JSON documents as twins hold them, and the merge patches (RFC 7396) that change them. The SDK has
// its own copy of the merge rules instead of importing registry/twin.ts, which pulls in the
// server's error classes.

export type Json = null | boolean | number | string | Json[] | JsonObject
export interface JsonObject {
  [key: string]: Json
}

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v)
}

/** RFC 7396: properties in the patch are set, objects merged, `null` deletes. Returns a new object. */
export function mergePatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...target }
  for (const k of Object.keys(patch)) {
    const p = patch[k] as Json
    if (p === null) delete out[k]
    else if (isJsonObject(p)) out[k] = mergePatch(isJsonObject(out[k]) ? out[k] : {}, p)
    else out[k] = p
  }
  return out
}

/**
 * One merge patch doing what `first` then `second` do, for patches of different properties (the
 * sections of one acknowledgement). Unlike `mergePatch`, a `null` stays: it is a deletion to send.
 */
export function combinePatches(first: JsonObject, second: JsonObject): JsonObject {
  const out: JsonObject = { ...first }
  for (const k of Object.keys(second)) {
    const a = out[k]
    const b = second[k] as Json
    out[k] = isJsonObject(a) && isJsonObject(b) ? combinePatches(a, b) : b
  }
  return out
}

/** Deep equality of JSON values (property order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]))
  }
  if (!isJsonObject(a) || !isJsonObject(b)) return false
  const keys = Object.keys(a)
  if (keys.length !== Object.keys(b).length) return false
  return keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]))
}

/**
 * The merge patch that turns `from` into `to`: changed values, `null` for removed properties,
 * nothing for what is equal. With `from` unknown (undefined) it is `to` itself.
 */
export function diffPatch(from: Json | undefined, to: JsonObject): JsonObject {
  if (!isJsonObject(from)) return to
  const out: JsonObject = {}
  for (const k of Object.keys(from)) if (!Object.hasOwn(to, k)) out[k] = null
  for (const k of Object.keys(to)) {
    const was = from[k]
    const now = to[k] as Json
    if (isJsonObject(was) && isJsonObject(now)) {
      const inner = diffPatch(was, now)
      if (Object.keys(inner).length > 0) out[k] = inner
    } else if (!jsonEqual(was, now)) out[k] = now
  }
  return out
}

/** A twin side without FleetHub's `$version` and `$metadata`: the document itself. */
export function withoutMeta(side: JsonObject): JsonObject {
  const { $version: _version, $metadata: _metadata, ...doc } = side
  return doc
}
