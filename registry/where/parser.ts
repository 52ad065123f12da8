// Recursive descent over the tokens, one function per grammar rule (see docs/queries.md):
//   or := and ('OR' and)*    and := not ('AND' not)*    not := 'NOT' not | primary
//   primary := '(' or ')' | comparison
// Precedence NOT > AND > OR falls out of the nesting. Recursion only happens through '(' and NOT,
// and both count against MAX_WHERE_DEPTH, so the stack stays shallow whatever the input.
import {
  type CompareOp,
  MAX_WHERE_DEPTH,
  MAX_WHERE_LENGTH,
  type WhereExpr,
  type WhereLiteral,
  type WherePath,
} from './ast.js'
import { queryError, quoteForMessage } from './error.js'
import { type Token, tokenize } from './lexer.js'
import { resolvePath } from './paths.js'

const KEYWORDS = new Set(['AND', 'OR', 'NOT', 'IS', 'NULL', 'IN', 'EXISTS', 'TRUE', 'FALSE'])
const OPERATOR_HINT = '=, !=, <, <=, >, >=, IS NULL, IS NOT NULL, IN (…), NOT IN (…), EXISTS or NOT EXISTS'

interface Parser {
  tokens: Token[]
  i: number
  depth: number
}

/** Parses a `where` query; throws INVALID_QUERY (with the column) when it is not one. */
export function parseWhere(text: string): WhereExpr {
  // a repeated URL parameter arrives as an array: refuse it here rather than lex its elements
  if (typeof text !== 'string') throw queryError('the query must be one string', 1)
  if (text.length > MAX_WHERE_LENGTH) {
    throw queryError(`the query is longer than ${MAX_WHERE_LENGTH} characters`, MAX_WHERE_LENGTH + 1)
  }
  const p: Parser = { tokens: tokenize(text), i: 0, depth: 0 }
  const expr = parseOr(p)
  const t = peek(p)
  if (t.kind === ')') throw queryError("unexpected ')'", t.column, "it closes no '('")
  if (t.kind !== 'end') throw queryError('expected AND, OR or the end of the query', t.column)
  return expr
}

function peek(p: Parser): Token {
  return p.tokens[p.i] as Token
}

function next(p: Parser): Token {
  const t = p.tokens[p.i] as Token
  if (t.kind !== 'end') p.i++
  return t
}

/** Keywords are case-insensitive single words; a quoted or dotted name is never one. */
function isKeyword(t: Token, word?: string): boolean {
  if (t.kind !== 'name' || !t.bare) return false
  const upper = t.text.toUpperCase()
  return word === undefined ? KEYWORDS.has(upper) : upper === word
}

/** How a token is named in "after …" messages. */
function describe(t: Token): string {
  if (t.kind === 'name') return isKeyword(t) ? t.text.toUpperCase() : quoteForMessage(t.text)
  return `'${t.text}'`
}

function afterPrevious(p: Parser): string {
  return p.i === 0 ? '' : ` after ${describe(p.tokens[p.i - 1] as Token)}`
}

function enter(p: Parser, column: number): void {
  p.depth++
  if (p.depth > MAX_WHERE_DEPTH) throw queryError(`the query nests deeper than ${MAX_WHERE_DEPTH} levels`, column)
}

function parseOr(p: Parser): WhereExpr {
  const items = [parseAnd(p)]
  while (isKeyword(peek(p), 'OR')) {
    next(p)
    items.push(parseAnd(p))
  }
  return items.length === 1 ? (items[0] as WhereExpr) : { kind: 'or', items }
}

function parseAnd(p: Parser): WhereExpr {
  const items = [parseNot(p)]
  while (isKeyword(peek(p), 'AND')) {
    next(p)
    items.push(parseNot(p))
  }
  return items.length === 1 ? (items[0] as WhereExpr) : { kind: 'and', items }
}

function parseNot(p: Parser): WhereExpr {
  const t = peek(p)
  if (!isKeyword(t, 'NOT')) return parsePrimary(p)
  next(p)
  enter(p, t.column)
  const item = parseNot(p)
  p.depth--
  return { kind: 'not', item }
}

function parsePrimary(p: Parser): WhereExpr {
  const t = peek(p)
  if (t.kind === '(') {
    next(p)
    enter(p, t.column)
    const inner = parseOr(p)
    const close = peek(p)
    if (close.kind !== ')') throw queryError("expected AND, OR or ')'", close.column)
    next(p)
    p.depth--
    return inner
  }
  if (t.kind === 'name' && !isKeyword(t)) return parseComparison(p)
  throw queryError(`expected a condition${afterPrevious(p)}`, t.column)
}

function parseComparison(p: Parser): WhereExpr {
  const t = next(p) as Extract<Token, { kind: 'name' }>
  const path = resolvePath(t.segments, t.text, t.column)
  const after = peek(p)
  if (after.kind === 'op') {
    next(p)
    return parseCompareValue(p, path, after.op)
  }
  if (isKeyword(after, 'IS')) {
    next(p)
    const negated = isKeyword(peek(p), 'NOT')
    if (negated) next(p)
    if (!isKeyword(peek(p), 'NULL')) throw queryError(`expected NULL${afterPrevious(p)}`, peek(p).column)
    next(p)
    return negated ? { kind: 'not', item: { kind: 'null', path } } : { kind: 'null', path }
  }
  // `path NOT IN (…)` and `path NOT EXISTS` are NOT of the plain form
  const negated = isKeyword(after, 'NOT')
  if (negated) next(p)
  const positive = parsePresenceOrIn(p, path)
  if (positive === undefined) {
    const message = negated ? `expected IN or EXISTS${afterPrevious(p)}` : `expected an operator${afterPrevious(p)}`
    throw queryError(message, peek(p).column, negated ? undefined : OPERATOR_HINT)
  }
  return negated ? { kind: 'not', item: positive } : positive
}

/** `IN (…)` or `EXISTS` after a path, or undefined when neither follows. */
function parsePresenceOrIn(p: Parser, path: WherePath): WhereExpr | undefined {
  const t = peek(p)
  if (isKeyword(t, 'EXISTS')) {
    next(p)
    return { kind: 'exists', path }
  }
  if (!isKeyword(t, 'IN')) return undefined
  next(p)
  if (peek(p).kind !== '(') throw queryError("expected '(' after IN", peek(p).column)
  next(p)
  const values: WhereLiteral[] = []
  for (;;) {
    values.push(parseLiteral(p))
    const sep = next(p)
    if (sep.kind === ')') return { kind: 'in', path, values }
    if (sep.kind !== ',') throw queryError("expected ',' or ')' after a value in the IN list", sep.column)
  }
}

function parseCompareValue(p: Parser, path: WherePath, op: CompareOp): WhereExpr {
  const column = peek(p).column
  const value = parseLiteral(p)
  if (typeof value === 'boolean' && op !== '=' && op !== '!=') {
    throw queryError(`'${op}' compares strings and numbers`, column, 'true and false take = and !=')
  }
  return { kind: 'compare', path, op, value }
}

/** A quoted string, a number, true or false. */
function parseLiteral(p: Parser): WhereLiteral {
  const after = afterPrevious(p)
  const t = peek(p)
  if (t.kind === 'string' || t.kind === 'number') {
    next(p)
    return t.value
  }
  if (isKeyword(t, 'TRUE') || isKeyword(t, 'FALSE')) {
    next(p)
    return isKeyword(t, 'TRUE')
  }
  if (isKeyword(t, 'NULL')) {
    throw queryError(`unexpected NULL${after}`, t.column, 'test for null with IS NULL or IS NOT NULL')
  }
  const hint =
    t.kind === 'name' && t.bare && !isKeyword(t) ? `strings are quoted: ${quoteForMessage(t.text)}` : undefined
  throw queryError(`expected a value${after}`, t.column, hint)
}
