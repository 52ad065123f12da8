// Evaluates a parsed query against one device. Evaluation never throws: a missing path or a value
// of another type makes a comparison false, and NOT of a false comparison is true.
import type { Device } from '../types.js'
import type { WhereExpr, WherePath } from './ast.js'
import { isConverged } from './converge.js'
import { compareValues, ownValue } from './values.js'

/** What a query is evaluated against. The caller fills `reported`/`desired` only when
 * `needs(ast).twin`, and `presence` only when `needs(ast).presence`: fetching twins for 100,000
 * devices is the expensive part, so queries that do not ask for them never pay for it. */
export interface WhereRow {
  device: Pick<Device, 'id' | 'status' | 'tags' | 'parentId' | 'modelId'>
  /** The reported document (with or without `$version`/`$metadata`, which are ignored for `converged`). */
  reported?: Readonly<Record<string, unknown>>
  desired?: Readonly<Record<string, unknown>>
  /** Absent means not connected: a device that never connected has no presence record. */
  presence?: { connected: boolean }
  /** Precomputed convergence; when absent it is computed from `desired` and `reported`. */
  converged?: boolean
}

export interface WhereNeeds {
  /** The query reads `reported.…`, `desired.…` or `converged`. */
  twin: boolean
  /** The query reads `presence.connected`. */
  presence: boolean
}

export function evaluate(expr: WhereExpr, row: WhereRow): boolean {
  switch (expr.kind) {
    case 'and':
      return expr.items.every((item) => evaluate(item, row))
    case 'or':
      return expr.items.some((item) => evaluate(item, row))
    case 'not':
      return !evaluate(expr.item, row)
    case 'compare':
      return compareValues(expr.op, valueAt(row, expr.path), expr.value)
    case 'in': {
      const value = valueAt(row, expr.path)
      return expr.values.some((literal) => compareValues('=', value, literal))
    }
    case 'null': {
      const value = valueAt(row, expr.path)
      return value === undefined || value === null
    }
    case 'exists':
      return valueAt(row, expr.path) !== undefined
  }
}

/** The value a path names in a row, or undefined when it is missing. */
export function valueAt(row: WhereRow, path: WherePath): unknown {
  const d = row.device
  switch (path.root) {
    case 'id':
      return d.id
    case 'status':
      return d.status
    case 'parentId':
      return d.parentId
    case 'modelId':
      return d.modelId
    case 'tags':
      return ownValue(d.tags, path.keys[0] as string)
    case 'reported':
      return walk(row.reported, path.keys)
    case 'desired':
      return walk(row.desired, path.keys)
    case 'presence':
      return row.presence?.connected ?? false
    case 'converged':
      return row.converged ?? isConverged(row.desired, row.reported)
  }
}

/** Follows keys through nested objects; arrays are values, not indexed by a path. */
function walk(doc: unknown, keys: readonly string[]): unknown {
  let value = doc
  for (const key of keys) {
    value = ownValue(value, key)
    if (value === undefined) return undefined
  }
  return value
}

/** Which optional parts of a row the query reads. */
export function needs(expr: WhereExpr): WhereNeeds {
  const out: WhereNeeds = { twin: false, presence: false }
  collectNeeds(expr, out)
  return out
}

function collectNeeds(expr: WhereExpr, out: WhereNeeds): void {
  switch (expr.kind) {
    case 'and':
    case 'or':
      for (const item of expr.items) collectNeeds(item, out)
      return
    case 'not':
      collectNeeds(expr.item, out)
      return
    default: {
      const root = expr.path.root
      if (root === 'reported' || root === 'desired' || root === 'converged') out.twin = true
      if (root === 'presence') out.presence = true
    }
  }
}
