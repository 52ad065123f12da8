// Which paths exist: a token's segments become a WherePath, or a syntax error that says what would
// have been valid. Unknown roots are refused (not silently "missing") so a typo fails loudly.
import { isTagKey } from '../ids.js'
import type { WherePath, WhereRoot } from './ast.js'
import { queryError, quoteForMessage } from './error.js'

/** Roots that name one value of the device and take no keys. */
const SCALAR_ROOTS: readonly WhereRoot[] = ['id', 'status', 'parentId', 'modelId', 'converged']
const ALL_ROOTS: readonly WhereRoot[] = [...SCALAR_ROOTS, 'tags', 'reported', 'desired', 'presence']
const PATHS_HINT =
  'a path is id, status, parentId, modelId, converged, presence.connected, tags.<key>, reported.<key>… or desired.<key>…'

export function resolvePath(segments: readonly string[], text: string, column: number): WherePath {
  const [first, ...keys] = segments as [string, ...string[]]
  const root = ALL_ROOTS.find((r) => r === first)
  if (root === undefined) {
    const caseless = ALL_ROOTS.find((r) => r.toLowerCase() === first.toLowerCase())
    const hint = caseless ? `paths are case-sensitive: ${caseless}` : PATHS_HINT
    throw queryError(`unknown path ${quoteForMessage(text)}`, column, hint)
  }
  if (SCALAR_ROOTS.includes(root)) {
    if (keys.length > 0) throw queryError(`unknown path ${quoteForMessage(text)}`, column, `${root} has no keys`)
    return { root, keys: [] }
  }
  if (root === 'presence') {
    if (keys.length !== 1 || keys[0] !== 'connected') {
      throw queryError(`unknown path ${quoteForMessage(text)}`, column, 'presence has presence.connected')
    }
    return { root, keys }
  }
  if (keys.length === 0) throw queryError(`expected a key after '${root}.'`, column + text.length)
  if (root === 'tags') return { root, keys: [tagKeyOf(keys, column)] }
  return { root, keys }
}

/** Tags are flat, so everything after `tags.` is one key, dots included: `tags.site.code` is the
 * tag `site.code`. A key no tag can have is an error rather than a query that never matches. */
function tagKeyOf(keys: readonly string[], column: number): string {
  const key = keys.join('.')
  if (!isTagKey(key)) {
    throw queryError(`${quoteForMessage(key)} is not a tag key`, column, 'tag keys are 1-64 letters, digits and _-.')
  }
  return key
}
