// Convergence of a twin: which desired values the device has not (yet) reported back. Only the
// keys desired names matter (a device may report more), desired objects are compared key by key,
// everything else (arrays included) as a whole value. Keys starting with `$` (`$version`,
// `$metadata`, `$lastDesiredVersion`) are bookkeeping, not configuration, and are skipped.
import { isPlainObject, jsonEqual, ownValue } from './values.js'

/** The desired leaves whose reported value differs (or is missing), as a nested object of the
 * desired values; undefined when nothing is pending. `desired` that is not an object asks for
 * nothing, so it is never pending. Recursion follows the depth of `desired` (bounded by the twin
 * limits). */
export function pendingOf(desired: unknown, reported: unknown): Record<string, unknown> | undefined {
  if (!isPlainObject(desired)) return undefined
  const pending: [string, unknown][] = []
  for (const key of Object.keys(desired)) {
    if (key.startsWith('$')) continue
    const differs = pendingValue(desired[key], ownValue(reported, key))
    if (differs !== undefined) pending.push([key, differs])
  }
  // fromEntries defines own properties, so even a key named __proto__ stays a plain key
  return pending.length > 0 ? Object.fromEntries(pending) : undefined
}

/** What of one desired value is pending: the value itself, the pending part of an object, or
 * undefined when the reported value matches. */
function pendingValue(want: unknown, have: unknown): unknown {
  // an object desired value is a set of settings, each converging on its own
  if (isPlainObject(want)) return pendingOf(want, have)
  // a missing reported value (undefined) equals nothing JSON holds
  return jsonEqual(want, have) ? undefined : want
}

/** True when nothing desired is pending. */
export function isConverged(desired: unknown, reported: unknown): boolean {
  return pendingOf(desired, reported) === undefined
}
