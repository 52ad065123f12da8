// The syntax tree of a `where` query, shared by the parser, the evaluator, the planner and the
// printer. It is plain data (no classes), so a tree can be built by hand in tests and printed back.

/** Where a path starts. Names are case-sensitive, like the JSON keys they stand for. */
export type WhereRoot =
  | 'id'
  | 'status'
  | 'parentId'
  | 'modelId'
  | 'tags'
  | 'reported'
  | 'desired'
  | 'presence'
  | 'converged'

/** A resolved path: `keys` is empty for the scalar roots, one tag key for `tags` (dots included),
 * the property names under `reported` or `desired`, and `['connected']` for `presence`. */
export interface WherePath {
  root: WhereRoot
  keys: string[]
}

/** A value written in a query. `null` is not one: IS NULL / IS NOT NULL test for it. */
export type WhereLiteral = string | number | boolean

export type CompareOp = '=' | '!=' | '<' | '<=' | '>' | '>='

/** AND and OR are n-ary, so a long chain is one flat node, not a deep tree (no deep recursion). */
export type WhereExpr =
  | { kind: 'and'; items: WhereExpr[] }
  | { kind: 'or'; items: WhereExpr[] }
  | { kind: 'not'; item: WhereExpr }
  | { kind: 'compare'; path: WherePath; op: CompareOp; value: WhereLiteral }
  | { kind: 'in'; path: WherePath; values: WhereLiteral[] }
  /** `path IS NULL`: missing or null. (`IS NOT NULL` parses as NOT of this.) */
  | { kind: 'null'; path: WherePath }
  /** `path EXISTS`: present, whatever the value (null included). */
  | { kind: 'exists'; path: WherePath }

/** Longest query text accepted, in characters (UTF-16 code units). */
export const MAX_WHERE_LENGTH = 2000
/** Deepest nesting of parentheses and NOTs, so a hostile query cannot exhaust the stack. */
export const MAX_WHERE_DEPTH = 32
