// The `where` query language behind GET /devices?where=…: parse once, plan against the indexes,
// evaluate the residual per device. Pure functions, no I/O. Grammar and rules: docs/queries.md.
export {
  type CompareOp,
  MAX_WHERE_DEPTH,
  MAX_WHERE_LENGTH,
  type WhereExpr,
  type WhereLiteral,
  type WherePath,
  type WhereRoot,
} from './ast.js'
export { isConverged, pendingOf } from './converge.js'
export type { QueryError } from './error.js'
export { evaluate, needs, valueAt, type WhereNeeds, type WhereRow } from './evaluate.js'
export { formatWhere } from './format.js'
export { parseWhere } from './parser.js'
export { plan, type WhereIndex, type WherePlan } from './planner.js'
