// How JSON values compare. The rules are deliberately strict: two values compare only when they
// have the same JSON type, so `'10' < 9` or `tags.floor = '2'` against the number 2 is false rather
// than a guess at a conversion (see docs/queries.md).
import type { CompareOp, WhereLiteral } from './ast.js'

export type JsonType = 'string' | 'number' | 'boolean' | 'null' | 'array' | 'object'

/** The JSON type of a value, or undefined for anything JSON has no type for (a missing value). */
export function jsonTypeOf(v: unknown): JsonType | undefined {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  switch (typeof v) {
    case 'string':
      return 'string'
    case 'number':
      return Number.isFinite(v) ? 'number' : undefined
    case 'boolean':
      return 'boolean'
    case 'object':
      return 'object'
    default:
      return undefined
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return jsonTypeOf(v) === 'object'
}

/** `value op literal`: false when the value is missing or of another type; strings compare by UTF-16
 * code unit, numbers numerically, booleans only for (in)equality. */
export function compareValues(op: CompareOp, value: unknown, literal: WhereLiteral): boolean {
  const type = jsonTypeOf(value)
  if (type === undefined || type !== jsonTypeOf(literal)) return false
  const v = value as WhereLiteral
  switch (op) {
    case '=':
      return v === literal
    case '!=':
      return v !== literal
    case '<':
      return type !== 'boolean' && v < literal
    case '<=':
      return type !== 'boolean' && v <= literal
    case '>':
      return type !== 'boolean' && v > literal
    case '>=':
      return type !== 'boolean' && v >= literal
  }
}

/** Deep equality of JSON values: objects by their keys (in any order), arrays element by element. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  const type = jsonTypeOf(a)
  if (type !== jsonTypeOf(b)) return false
  if (type === 'array') {
    const x = a as unknown[]
    const y = b as unknown[]
    return x.length === y.length && x.every((item, i) => jsonEqual(item, y[i]))
  }
  if (type === 'object') {
    const x = a as Record<string, unknown>
    const y = b as Record<string, unknown>
    const keys = Object.keys(x)
    if (keys.length !== Object.keys(y).length) return false
    return keys.every((k) => Object.hasOwn(y, k) && jsonEqual(x[k], y[k]))
  }
  return false
}

/** An own property of a plain object; never one inherited from a prototype (`constructor`). */
export function ownValue(obj: unknown, key: string): unknown {
  return isPlainObject(obj) && Object.hasOwn(obj, key) ? obj[key] : undefined
}
