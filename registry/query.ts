// Query semantics shared by every adapter: which records a DeviceQuery matches, and page limits.
import type { DeviceQuery, DeviceRecord } from './types.js'

export const MAX_PAGE = 1000
/** Records one list call may examine before it returns a partial page with a cursor. */
export const MAX_SCAN = 10_000

export function matchesQuery(r: DeviceRecord, q: DeviceQuery): boolean {
  if (q.status !== undefined && r.status !== q.status) return false
  if (q.parentId !== undefined && r.parentId !== q.parentId) return false
  if (q.tags) {
    for (const k in q.tags) {
      // own keys only: a tag named like an Object member (constructor, toString) must not match it
      const v = Object.hasOwn(r.tags, k) ? r.tags[k] : undefined
      if (v === undefined || String(v) !== q.tags[k]) return false
    }
  }
  return true
}
