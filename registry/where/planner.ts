// Splits a query into what the stores' indexes answer and what must be evaluated per device. Only
// conjuncts of the top-level AND chain can use an index (under OR or NOT a condition does not narrow
// the candidates), and the split never changes results: a device matches the query exactly when
// it matches the index part (registry/query.ts matchesQuery) and the residual.
import { isDeviceId } from '../ids.js'
import type { DeviceQuery } from '../types.js'
import type { WhereExpr } from './ast.js'

/** The index-usable part, in the shape of DeviceQuery's filters. */
export type WhereIndex = Pick<DeviceQuery, 'status' | 'tags' | 'parentId'>

export interface WherePlan {
  index: WhereIndex
  /** What must still hold per device; undefined when the index part is the whole query. */
  residual?: WhereExpr
}

export function plan(expr: WhereExpr): WherePlan {
  const index: WhereIndex = {}
  const residual: WhereExpr[] = []
  for (const conjunct of conjunctsOf(expr)) {
    const use = indexUse(conjunct, index)
    if (use === 'none' || use === 'narrows') residual.push(conjunct)
  }
  if (residual.length === 0) return { index }
  return { index, residual: residual.length === 1 ? (residual[0] as WhereExpr) : { kind: 'and', items: residual } }
}

/** The top-level AND chain, flattened through parenthesized ANDs (`(a AND b) AND c`). */
function conjunctsOf(expr: WhereExpr): WhereExpr[] {
  return expr.kind === 'and' ? expr.items.flatMap(conjunctsOf) : [expr]
}

/**
 * Puts a conjunct into the index part when it fits, and says how exactly the index answers it:
 * 'exact' (drop it from the residual), 'narrows' (the index is a superset: keep it in the residual
 * too) or 'none' (not indexable, or its slot is taken by an earlier conjunct).
 */
function indexUse(c: WhereExpr, index: WhereIndex): 'exact' | 'narrows' | 'none' {
  if (c.kind !== 'compare' || c.op !== '=') return 'none'
  const { root, keys } = c.path
  const value = c.value
  if (root === 'status' && (value === 'enabled' || value === 'disabled') && index.status === undefined) {
    index.status = value
    return 'exact'
  }
  // only a valid id can be a parent (and keeps odd text out of the index key)
  if (root === 'parentId' && typeof value === 'string' && isDeviceId(value) && index.parentId === undefined) {
    index.parentId = value
    return 'exact'
  }
  if (root === 'tags') {
    const key = keys[0] as string
    // matchesQuery reads r.tags[key], which for `constructor` or `__proto__` would find
    // Object.prototype's member instead of a missing tag: keep such keys out of the index part
    if (key in Object.prototype) return 'none'
    if (index.tags !== undefined && Object.hasOwn(index.tags, key)) return 'none'
    index.tags = { ...index.tags, [key]: String(value) }
    return textIsExact(value) ? 'exact' : 'narrows'
  }
  return 'none'
}

/**
 * The tag indexes (like `tag.{k}={v}`) compare values as text, the query language by JSON type. The
 * index answers `tags.k = v` exactly only when no tag value of another type has the same text:
 * true for a string that is not the text of a number or boolean ('lab'), never for a number (the
 * string '2' has the text of 2) or a boolean (the string 'true').
 */
export function textIsExact(value: string | number | boolean): boolean {
  if (typeof value !== 'string') return false
  if (value === 'true' || value === 'false') return false
  return String(Number(value)) !== value
}
