// Prints a syntax tree back as query text that parses to the same tree: for logs, error reports and
// the tests' round trip. Every nested AND/OR is parenthesized, so the printed text never depends on
// precedence.
import type { WhereExpr, WhereLiteral, WherePath } from './ast.js'

const WORD = /^[A-Za-z0-9_-]+$/
const DOTTED_WORDS = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/

export function formatWhere(expr: WhereExpr): string {
  switch (expr.kind) {
    case 'and':
    case 'or':
      return expr.items.map(formatOperand).join(expr.kind === 'and' ? ' AND ' : ' OR ')
    case 'not':
      return `NOT ${formatOperand(expr.item)}`
    case 'compare':
      return `${formatPath(expr.path)} ${expr.op} ${formatLiteral(expr.value)}`
    case 'in':
      return `${formatPath(expr.path)} IN (${expr.values.map(formatLiteral).join(', ')})`
    case 'null':
      return `${formatPath(expr.path)} IS NULL`
    case 'exists':
      return `${formatPath(expr.path)} EXISTS`
  }
}

function formatOperand(expr: WhereExpr): string {
  return expr.kind === 'and' || expr.kind === 'or' ? `(${formatWhere(expr)})` : formatWhere(expr)
}

export function formatPath(path: WherePath): string {
  if (path.root === 'tags') {
    const key = path.keys[0] as string
    return `tags.${DOTTED_WORDS.test(key) ? key : quote(key)}`
  }
  return [path.root, ...path.keys.map((k) => (WORD.test(k) ? k : quote(k)))].join('.')
}

export function formatLiteral(value: WhereLiteral): string {
  return typeof value === 'string' ? quote(value) : String(value)
}

function quote(text: string): string {
  return `'${text.replaceAll("'", "''")}'`
}
