// Turns query text into tokens. A path is one token (`reported.firmware.version`, no spaces inside),
// which keeps the grammar unambiguous: a token starting with a letter or `_` is a path or keyword,
// one starting with a digit or `-` is a number, so `reported.x > -1` and `reported.sensors.0` both
// read as meant.
import type { CompareOp } from './ast.js'
import { queryError, quoteForMessage } from './error.js'

export type Token =
  /** A path or keyword; `bare` when it is one unquoted word (only those can be keywords). */
  | { kind: 'name'; segments: string[]; bare: boolean; text: string; column: number }
  | { kind: 'string'; value: string; text: string; column: number }
  | { kind: 'number'; value: number; text: string; column: number }
  | { kind: 'op'; op: CompareOp; text: string; column: number }
  | { kind: '(' | ')' | ','; text: string; column: number }
  | { kind: 'end'; text: ''; column: number }

const FIRST_SEGMENT = /[A-Za-z_][A-Za-z0-9_-]*/y
const NEXT_SEGMENT = /[A-Za-z0-9_-]+/y
// JSON number syntax; anything glued to it (`01`, `1.`, `2abc`) is refused rather than split
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y
const GLUED_TO_NUMBER = /[A-Za-z0-9_.-]/
const SPACE = /[ \t\r\n]/
const OPS: readonly CompareOp[] = ['!=', '<=', '>=', '=', '<', '>']

export function tokenize(source: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < source.length) {
    const c = source[i] as string
    if (SPACE.test(c)) {
      i++
      continue
    }
    const token = readToken(source, i, c)
    tokens.push(token)
    i += token.text.length
  }
  tokens.push({ kind: 'end', text: '', column: source.length + 1 })
  return tokens
}

function readToken(source: string, i: number, c: string): Token {
  const column = i + 1
  if (c === '(' || c === ')' || c === ',') return { kind: c, text: c, column }
  if (c === "'" || c === '"') {
    const s = readQuoted(source, i)
    return { kind: 'string', value: s.value, text: source.slice(i, s.end), column }
  }
  if (c === '-' || (c >= '0' && c <= '9')) return readNumber(source, i)
  if (c === '_' || /[A-Za-z]/.test(c)) return readName(source, i)
  return readOperator(source, i)
}

/** A quoted string from source[start] (its quote character) to the matching quote; a doubled
 * quote character inside stands for one. Returns the value and the index after the closing quote. */
function readQuoted(source: string, start: number): { value: string; end: number } {
  const quote = source[start] as string
  let value = ''
  let i = start + 1
  for (;;) {
    const next = source.indexOf(quote, i)
    if (next < 0) throw queryError('unterminated string starting', start + 1)
    value += source.slice(i, next)
    if (source[next + 1] !== quote) return { value, end: next + 1 }
    value += quote
    i = next + 2
  }
}

function readNumber(source: string, i: number): Token {
  NUMBER.lastIndex = i
  const m = NUMBER.exec(source)
  const end = m ? i + m[0].length : i
  if (!m || GLUED_TO_NUMBER.test(source[end] ?? '')) {
    throw queryError('invalid number', i + 1, 'numbers are written as in JSON, e.g. -1, 0.5, 2e3')
  }
  const value = Number(m[0])
  if (!Number.isFinite(value)) throw queryError('number out of range', i + 1)
  return { kind: 'number', value, text: m[0], column: i + 1 }
}

/** A path: a first word, then `.` and either a word or a quoted key, any number of times. */
function readName(source: string, start: number): Token {
  FIRST_SEGMENT.lastIndex = start
  const first = (FIRST_SEGMENT.exec(source) as RegExpExecArray)[0]
  const segments = [first]
  let i = start + first.length
  let bare = true
  while (source[i] === '.') {
    i++
    const c = source[i]
    if (c === "'" || c === '"') {
      const s = readQuoted(source, i)
      segments.push(s.value)
      i = s.end
    } else {
      NEXT_SEGMENT.lastIndex = i
      const m = NEXT_SEGMENT.exec(source)
      if (!m) throw queryError("expected a key after '.'", i + 1, "quote keys with other characters: reported.'my key'")
      segments.push(m[0])
      i += m[0].length
    }
    bare = false
  }
  return { kind: 'name', segments, bare, text: source.slice(start, i), column: start + 1 }
}

function readOperator(source: string, i: number): Token {
  const two = source.slice(i, i + 2)
  if (two === '==') throw queryError("unexpected '=='", i + 1, "compare with '='")
  if (two === '<>') throw queryError("unexpected '<>'", i + 1, "write '!='")
  for (const op of OPS) {
    if (source.startsWith(op, i)) return { kind: 'op', op, text: op, column: i + 1 }
  }
  throw queryError(`unexpected character ${quoteForMessage(String.fromCodePoint(source.codePointAt(i) ?? 0))}`, i + 1)
}
