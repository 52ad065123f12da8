// The `where` query language (registry/where/): what parses and what not (with the exact messages
// and columns), how queries evaluate, convergence, the index planner, and a property test that the
// planner never changes results.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { hasCode } from '../registry/errors.js'
import { matchesQuery } from '../registry/query.js'
import type { DeviceRecord, DeviceStatus } from '../registry/types.js'
import {
  type CompareOp,
  evaluate,
  formatWhere,
  isConverged,
  MAX_WHERE_DEPTH,
  MAX_WHERE_LENGTH,
  needs,
  parseWhere,
  pendingOf,
  plan,
  type QueryError,
  type WhereExpr,
  type WhereLiteral,
  type WherePath,
  type WhereRow,
} from '../registry/where/index.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/** The error parseWhere throws for a text, or undefined when it parses. */
function errorOf(text: string): QueryError | undefined {
  try {
    parseWhere(text)
    return undefined
  } catch (err) {
    return err as QueryError
  }
}

const tagPath = (key: string): WherePath => ({ root: 'tags', keys: [key] })
const eq = (p: WherePath, value: WhereLiteral): WhereExpr => ({ kind: 'compare', path: p, op: '=', value })

t.test('valid queries parse and print back canonically', async (t) => {
  const cases: [string, string][] = [
    [
      "tags.building = '109' AND reported.firmware.version < '2.0'",
      "tags.building = '109' AND reported.firmware.version < '2.0'",
    ],
    [
      "tags.building='109'and reported.firmware.version<'2.0'",
      "tags.building = '109' AND reported.firmware.version < '2.0'",
    ],
    ["\ttags.a = 'x'\n\r  OR  tags.b = 'y' ", "tags.a = 'x' OR tags.b = 'y'"],
    ["not (tags.a = 'x' or tags.b = 'y')", "NOT (tags.a = 'x' OR tags.b = 'y')"],
    ['presence.connected = false', 'presence.connected = false'],
    ['converged = FALSE', 'converged = false'],
    ['presence.connected != True', 'presence.connected != true'],
    ['modelId IS NOT NULL', 'NOT modelId IS NULL'],
    ['parentId is null', 'parentId IS NULL'],
    ["tags.floor NOT IN (1, '1', true)", "NOT tags.floor IN (1, '1', true)"],
    ["status in ('enabled')", "status IN ('enabled')"],
    ['reported.battery EXISTS', 'reported.battery EXISTS'],
    ['reported.battery not exists', 'NOT reported.battery EXISTS'],
    [`reported.'my key'."x""y" = 'it''s'`, `reported.'my key'.'x"y' = 'it''s'`],
    [`reported.x = "say ""hi"""`, `reported.x = 'say "hi"'`],
    ["reported.'$version' >= 3", "reported.'$version' >= 3"],
    ["reported.'' = 1", "reported.'' = 1"],
    ['tags.site.code = 1', 'tags.site.code = 1'],
    ["tags.'site.code' = 1", 'tags.site.code = 1'],
    ["tags.'site'.'code' = 1", 'tags.site.code = 1'],
    ["tags.'a..b' = 1", "tags.'a..b' = 1"],
    ['reported.a-b.0._c = -1.5e3', 'reported.a-b.0._c = -1500'],
    ['reported.x>-1', 'reported.x > -1'],
    ['reported.x <= 0.25', 'reported.x <= 0.25'],
    ['reported.x = 1E+2', 'reported.x = 100'],
    ["id = 'a' AND (id = 'b' AND id = 'c')", "id = 'a' AND (id = 'b' AND id = 'c')"],
    ["(((id = 'a')))", "id = 'a'"],
    ["NOT NOT id = 'a'", "NOT NOT id = 'a'"],
    ["tags.and = 'or'", "tags.and = 'or'"],
  ]
  for (const [input, printed] of cases) {
    const ast = parseWhere(input)
    t.equal(formatWhere(ast), printed, input)
    t.same(parseWhere(printed), ast, `${printed} parses to the same tree`)
  }
})

t.test('precedence: NOT binds tighter than AND, AND tighter than OR', async (t) => {
  const a = eq(tagPath('a'), 1)
  const b = eq(tagPath('b'), 2)
  const c = eq(tagPath('c'), 3)
  t.same(parseWhere('tags.a = 1 OR tags.b = 2 AND tags.c = 3'), {
    kind: 'or',
    items: [a, { kind: 'and', items: [b, c] }],
  })
  t.same(parseWhere('tags.a = 1 AND tags.b = 2 OR tags.c = 3'), {
    kind: 'or',
    items: [{ kind: 'and', items: [a, b] }, c],
  })
  t.same(parseWhere('NOT tags.a = 1 AND tags.b = 2'), { kind: 'and', items: [{ kind: 'not', item: a }, b] })
  t.same(parseWhere('NOT (tags.a = 1 AND tags.b = 2)'), { kind: 'not', item: { kind: 'and', items: [a, b] } })
  t.same(parseWhere('tags.a = 1 AND tags.b = 2 AND tags.c = 3'), { kind: 'and', items: [a, b, c] }, 'chains are flat')
  t.same(parseWhere("tags.a NOT IN (1, 'x')"), {
    kind: 'not',
    item: { kind: 'in', path: tagPath('a'), values: [1, 'x'] },
  })
  t.same(parseWhere('reported.a.b IS NULL'), { kind: 'null', path: { root: 'reported', keys: ['a', 'b'] } })
  t.same(parseWhere('presence.connected = true'), eq({ root: 'presence', keys: ['connected'] }, true))
  t.same(parseWhere('converged = false'), eq({ root: 'converged', keys: [] }, false))
})

t.test('invalid queries fail with the position and what was expected', async (t) => {
  const OPS = '=, !=, <, <=, >, >=, IS NULL, IS NOT NULL, IN (…), NOT IN (…), EXISTS or NOT EXISTS'
  const PATHS =
    'a path is id, status, parentId, modelId, converged, presence.connected, tags.<key>, reported.<key>… or desired.<key>…'
  const NUMBERS = 'numbers are written as in JSON, e.g. -1, 0.5, 2e3'
  const cases: [string, string, number][] = [
    ['', 'expected a condition at column 1', 1],
    ['   ', 'expected a condition at column 4', 4],
    ["AND tags.a = 'x'", 'expected a condition at column 1', 1],
    ['tags.building =', "expected a value after '=' at column 16", 16],
    ["tags.building = '109' AND reported.firmware.version <", "expected a value after '<' at column 54", 54],
    ['tags.building = AND', "expected a value after '=' at column 17", 17],
    ['tags.building = lab', "expected a value after '=' at column 17 (strings are quoted: 'lab')", 17],
    ['tags.building = tags.room', "expected a value after '=' at column 17", 17],
    ["tags.building = '109' AND", 'expected a condition after AND at column 26', 26],
    ["tags.a = 'x' OR OR", 'expected a condition after OR at column 17', 17],
    ['NOT', 'expected a condition after NOT at column 4', 4],
    ['()', "expected a condition after '(' at column 2", 2],
    ["tags.building '109'", `expected an operator after 'tags.building' at column 15 (${OPS})`, 15],
    ["tags.building LIKE '1%'", `expected an operator after 'tags.building' at column 15 (${OPS})`, 15],
    ['(tags.a = 1', "expected AND, OR or ')' at column 12", 12],
    ['tags.a = 1)', "unexpected ')' at column 11 (it closes no '(')", 11],
    ['tags.a = 1 tags.b = 2', 'expected AND, OR or the end of the query at column 12', 12],
    ["tags.a = 'x", 'unterminated string starting at column 10', 10],
    ["tags.a = 'it''s", 'unterminated string starting at column 10', 10],
    ['tags.a = "x\'', 'unterminated string starting at column 10', 10],
    ["reported.'x = 1", 'unterminated string starting at column 10', 10],
    ['foo = 1', `unknown path 'foo' at column 1 (${PATHS})`, 1],
    ['true = 1', 'expected a condition at column 1', 1],
    ["parentid = 'gw'", "unknown path 'parentid' at column 1 (paths are case-sensitive: parentId)", 1],
    ["Tags.a = 'x'", "unknown path 'Tags.a' at column 1 (paths are case-sensitive: tags)", 1],
    ["status.x = 'enabled'", "unknown path 'status.x' at column 1 (status has no keys)", 1],
    ['presence.online = true', "unknown path 'presence.online' at column 1 (presence has presence.connected)", 1],
    ['presence = true', "unknown path 'presence' at column 1 (presence has presence.connected)", 1],
    ['reported = 1', "expected a key after 'reported.' at column 9", 9],
    ['tags IS NULL', "expected a key after 'tags.' at column 5", 5],
    ["tags.'a b' = 1", "'a b' is not a tag key at column 1 (tag keys are 1-64 letters, digits and _-.)", 1],
    [
      'reported. = 1',
      "expected a key after '.' at column 10 (quote keys with other characters: reported.'my key')",
      10,
    ],
    [
      'reported.a..b = 1',
      "expected a key after '.' at column 12 (quote keys with other characters: reported.'my key')",
      12,
    ],
    ['reported.x > true', "'>' compares strings and numbers at column 14 (true and false take = and !=)", 14],
    ['reported.x = null', "unexpected NULL after '=' at column 14 (test for null with IS NULL or IS NOT NULL)", 14],
    [
      'reported.x IN (1, null)',
      "unexpected NULL after ',' at column 19 (test for null with IS NULL or IS NOT NULL)",
      19,
    ],
    ['reported.x IS 1', 'expected NULL after IS at column 15', 15],
    ['reported.x IS NOT', 'expected NULL after NOT at column 18', 18],
    ['reported.x NOT 1', 'expected IN or EXISTS after NOT at column 16', 16],
    ['reported.x IN 1', "expected '(' after IN at column 15", 15],
    ['reported.x IN ()', "expected a value after '(' at column 16", 16],
    ['reported.x IN (1,)', "expected a value after ',' at column 18", 18],
    ['reported.x IN (1 2)', "expected ',' or ')' after a value in the IN list at column 18", 18],
    ['reported.x IN (1', "expected ',' or ')' after a value in the IN list at column 17", 17],
    ['reported.x = 01', `invalid number at column 14 (${NUMBERS})`, 14],
    ['reported.x = 1.', `invalid number at column 14 (${NUMBERS})`, 14],
    ['reported.x = .5', "unexpected character '.' at column 14", 14],
    ['reported.x = -', `invalid number at column 14 (${NUMBERS})`, 14],
    ['reported.x = 1e', `invalid number at column 14 (${NUMBERS})`, 14],
    ['reported.x = 2abc', `invalid number at column 14 (${NUMBERS})`, 14],
    ['reported.x = 1e999', 'number out of range at column 14', 14],
    ['reported.x == 1', "unexpected '==' at column 12 (compare with '=')", 12],
    ['reported.x <> 1', "unexpected '<>' at column 12 (write '!=')", 12],
    ['reported.x ! 1', "unexpected character '!' at column 12", 12],
    ['reported.x = 1 # note', "unexpected character '#' at column 16", 16],
    ['reported.café = 1', "unexpected character 'é' at column 13", 13],
    ["reported.x = 1 && reported.y = 'x'", "unexpected character '&' at column 16", 16],
  ]
  for (const [input, message, column] of cases) {
    const err = errorOf(input)
    t.ok(hasCode(err, 'INVALID_QUERY'), `${JSON.stringify(input)} is an INVALID_QUERY`)
    t.equal(err?.message, `invalid query: ${message}`, JSON.stringify(input))
    t.equal(err?.column, column, `${JSON.stringify(input)} column`)
    t.equal(err?.statusCode, 400)
  }
})

t.test('hostile inputs fail cleanly', async (t) => {
  const long = `id = '${'x'.repeat(MAX_WHERE_LENGTH - 7)}'`
  t.equal(long.length, MAX_WHERE_LENGTH)
  t.ok(parseWhere(long), 'a query of exactly the limit parses')
  t.equal(
    errorOf(`${long} `)?.message,
    `invalid query: the query is longer than ${MAX_WHERE_LENGTH} characters at column ${MAX_WHERE_LENGTH + 1}`,
  )
  t.ok(hasCode(errorOf('x'.repeat(1_000_000)), 'INVALID_QUERY'), 'a megabyte is refused before lexing')

  const nested = (n: number) => `${'('.repeat(n)}id = 'a'${')'.repeat(n)}`
  t.ok(parseWhere(nested(MAX_WHERE_DEPTH)), `${MAX_WHERE_DEPTH} levels parse`)
  t.equal(
    errorOf(nested(MAX_WHERE_DEPTH + 1))?.message,
    `invalid query: the query nests deeper than ${MAX_WHERE_DEPTH} levels at column ${MAX_WHERE_DEPTH + 1}`,
  )
  t.ok(hasCode(errorOf('('.repeat(1900)), 'INVALID_QUERY'), 'deep parentheses are refused, not a stack overflow')
  t.ok(hasCode(errorOf(`${'NOT '.repeat(450)}id = 'a'`), 'INVALID_QUERY'), 'deep NOTs are refused')
  t.ok(parseWhere(`${'NOT '.repeat(MAX_WHERE_DEPTH)}id = 'a'`), `${MAX_WHERE_DEPTH} NOTs parse`)
  t.ok(hasCode(errorOf(`${'NOT ('.repeat(20)}id = 'a'${')'.repeat(20)}`), 'INVALID_QUERY'), 'NOT and ( count together')
  // depth is nesting, not the number of NOTs and parentheses side by side
  t.ok(parseWhere(Array.from({ length: 60 }, (_, i) => `NOT id = '${i}'`).join(' AND ')), '60 NOTs side by side')
  t.ok(parseWhere(Array.from({ length: 60 }, (_, i) => `(id = '${i}')`).join(' OR ')), '60 groups side by side')

  const chain = Array.from({ length: 120 }, (_, i) => `id = 'd${i}'`).join(' OR ')
  const wide = parseWhere(chain)
  t.equal(wide.kind === 'or' && wide.items.length, 120, 'a long OR chain is one flat node')
  t.ok(evaluate(wide, row({ id: 'd119' })))
  t.ok(hasCode(errorOf(`id = '${"''".repeat(900)}`), 'INVALID_QUERY'), 'unterminated after many escaped quotes')
  t.ok(hasCode(errorOf('\u0000'), 'INVALID_QUERY'))
  t.equal(
    errorOf(["id = 'a'", "id = 'b'"] as unknown as string)?.message,
    'invalid query: the query must be one string at column 1',
    'a repeated parameter (an array) is refused',
  )
  t.ok(hasCode(errorOf('\uD800 = 1'), 'INVALID_QUERY'), 'a lone surrogate')
})

/** A row for evaluation tests; the device fields can be overridden. */
function row(device: Partial<WhereRow['device']> = {}, rest: Omit<WhereRow, 'device'> = {}): WhereRow {
  return { device: { id: 'thermo-1', status: 'enabled', tags: {}, ...device }, ...rest }
}

const thermo: WhereRow = row(
  {
    tags: { building: '109', floor: 2, lab: true, 'site.code': 'x-1', empty: '' },
    parentId: 'gw-7',
  },
  {
    reported: {
      firmware: { version: '1.9.2' },
      temp: 21.5,
      list: [1, 2],
      nothing: null,
      system: { logLevel: 'info' },
      'my key': 'v',
      $version: 4,
    },
    desired: { system: { logLevel: 'debug' }, firmware: { version: '1.9.2' }, $version: 2 },
    presence: { connected: true },
  },
)

t.test('evaluation truth table', async (t) => {
  const cases: [string, boolean][] = [
    ["tags.building = '109'", true],
    ['tags.building = 109', false], // a number never equals a string
    ['tags.building != 109', false], // a type mismatch is false for != too
    ['NOT tags.building = 109', true],
    ["tags.building != '110'", true],
    ["tags.building > '1'", true],
    ["tags.building < '11'", true], // strings compare by code unit: '10…' < '11'
    ['tags.floor = 2', true],
    ["tags.floor = '2'", false],
    ['tags.floor >= 2', true],
    ['tags.floor < 2', false],
    ['tags.floor > 1.5', true],
    ['tags.lab = true', true],
    ['tags.lab != false', true],
    ["tags.lab = 'true'", false],
    ["tags.missing = 'x'", false],
    ["tags.missing != 'x'", false], // a missing path is false for != too…
    ["NOT tags.missing = 'x'", true], // …and NOT of it is true
    ['tags.missing IS NULL', true],
    ['tags.missing EXISTS', false],
    ['tags.building IS NULL', false],
    ['tags.building IS NOT NULL', true],
    ["tags.site.code = 'x-1'", true],
    ["tags.'site.code' = 'x-1'", true],
    ["tags.empty = ''", true],
    ['tags.empty IS NULL', false],
    ['tags.constructor IS NULL', true], // never a member of Object.prototype
    ["tags.missing IN ('a')", false],
    ["tags.missing NOT IN ('a')", true],
    ["tags.floor IN ('2', 3)", false],
    ["tags.floor IN ('2', 2)", true],
    ["reported.firmware.version < '2.0'", true],
    ["reported.firmware.version > '1.10'", true], // lexicographic: '1.9.2' > '1.10', unlike versions
    ["reported.firmware = '1.9.2'", false], // an object is no string
    ['reported.firmware EXISTS', true],
    ['reported.firmware.nope EXISTS', false],
    ['reported.firmware.version.deeper EXISTS', false],
    ['reported.nothing IS NULL', true],
    ['reported.nothing EXISTS', true], // present, although null
    ['reported.nothing IS NOT NULL', false],
    ["reported.nothing != 'x'", false],
    ['reported.list EXISTS', true],
    ['reported.list = 1', false],
    ['reported.list.0 EXISTS', false], // arrays are values, not indexed
    ['reported.list.length EXISTS', false],
    ['reported.constructor EXISTS', false],
    ['reported.__proto__ EXISTS', false],
    ["reported.'my key' = 'v'", true],
    ["reported.'$version' = 4", true],
    ['reported.temp > 21', true],
    ['reported.temp > 21.5', false],
    ['reported.temp >= 21.5', true],
    ['reported.temp = 2.15e1', true],
    ['reported.temp != 21.5', false],
    ["reported.temp < '3'", false],
    ['reported.temp IN (1, 21.5)', true],
    ["reported.temp IN ('21.5')", false],
    ["reported.temp NOT IN ('21.5')", true],
    ["desired.system.logLevel = 'debug'", true],
    ["desired.system.logLevel = 'debug' AND NOT reported.system.logLevel = 'debug'", true],
    ["id = 'thermo-1'", true],
    ["id > 'thermo-0'", true],
    ["id IN ('a', 'thermo-1')", true],
    ["status = 'enabled'", true],
    ["status != 'disabled'", true],
    ["parentId = 'gw-7'", true],
    ['parentId EXISTS', true],
    ['modelId IS NULL', true],
    ["modelId = 'x'", false],
    ["modelId != 'x'", false],
    ['presence.connected = true', true],
    ['presence.connected = false', false],
    ['converged = false', true], // system.logLevel is pending
    ['converged = true', false],
    ['converged != true', true],
    // precedence: each of these reads differently with another precedence
    ["tags.building = '1' AND tags.floor = 2 OR tags.lab = true", true],
    ["tags.lab = true OR tags.floor = 2 AND tags.building = '1'", true],
    ['NOT tags.lab = false AND tags.floor = 3', false],
    ['NOT tags.lab = true OR tags.floor = 2', true],
    ["tags.building = '1' AND (tags.floor = 2 OR tags.lab = true)", false],
    ["(tags.building = '1' AND tags.floor = 2) OR tags.lab = true", true],
    ['NOT NOT tags.lab = true', true],
    ['NOT (tags.lab = true AND tags.floor = 3)', true],
    ['tags.lab = TRUE and not tags.floor = 3', true],
  ]
  for (const [query, expected] of cases) t.equal(evaluate(parseWhere(query), thermo), expected, query)
})

t.test('rows without optional parts', async (t) => {
  const bare = row({ tags: { a: 'x' } })
  t.ok(evaluate(parseWhere('presence.connected = false'), bare), 'no presence record means not connected')
  t.ok(evaluate(parseWhere('converged = true'), bare), 'no twin: nothing is pending')
  t.ok(evaluate(parseWhere('reported.x IS NULL'), bare))
  t.notOk(evaluate(parseWhere('reported.x EXISTS'), bare))
  t.ok(
    evaluate(parseWhere('converged = true'), row({}, { converged: true, desired: { a: 1 } })),
    'given converged wins',
  )
  t.ok(evaluate(parseWhere('converged = false'), row({}, { desired: { a: 1 }, reported: { a: 2 } })))
  t.ok(evaluate(parseWhere('converged = true'), row({}, { desired: { a: 1, $version: 2 }, reported: { a: 1 } })))
  // values JSON cannot hold (a caller's NaN) are missing, never equal or unequal
  const odd = row({}, { reported: { x: Number.NaN, u: undefined } })
  t.notOk(evaluate(parseWhere('reported.x = 1 OR reported.x != 1 OR reported.u != 1'), odd))
})

t.test('needs: what a query reads', async (t) => {
  const cases: [string, { twin: boolean; presence: boolean }][] = [
    ["tags.a = 'x' AND status = 'enabled'", { twin: false, presence: false }],
    ["reported.a = 'x'", { twin: true, presence: false }],
    ['NOT desired.a EXISTS', { twin: true, presence: false }],
    ['converged = false', { twin: true, presence: false }],
    ['presence.connected = true', { twin: false, presence: true }],
    ["id = 'a' OR (presence.connected = true AND NOT reported.a IS NULL)", { twin: true, presence: true }],
  ]
  for (const [query, expected] of cases) t.same(needs(parseWhere(query)), expected, query)
})

t.test('pendingOf and convergence', async (t) => {
  const cases: [string, unknown, unknown, unknown][] = [
    ['no desired document', undefined, { a: 1 }, undefined],
    ['desired is not an object', [1], {}, undefined],
    ['both empty', {}, {}, undefined],
    ['equal leaf', { a: 1 }, { a: 1 }, undefined],
    ['missing leaf', { a: 1 }, {}, { a: 1 }],
    ['no reported document', { a: 1, b: { c: 2 } }, undefined, { a: 1, b: { c: 2 } }],
    ['type differs', { a: 1 }, { a: '1' }, { a: 1 }],
    ['nested: only the differing leaf', { a: { b: 1, c: 2 } }, { a: { b: 1, c: 3, d: 4 } }, { a: { c: 2 } }],
    ['object desired, scalar reported', { a: { b: 1 } }, { a: 5 }, { a: { b: 1 } }],
    ['scalar desired, object reported', { a: 5 }, { a: { b: 1 } }, { a: 5 }],
    ['equal arrays', { a: [1, 2] }, { a: [1, 2] }, undefined],
    ['arrays compare whole', { a: [1, 2] }, { a: [2, 1] }, { a: [1, 2] }],
    ['array of objects, key order ignored', { a: [{ x: 1, y: 2 }] }, { a: [{ y: 2, x: 1 }] }, undefined],
    ['array longer', { a: [1] }, { a: [1, 2] }, { a: [1] }],
    ['object leaf inside array differs', { a: [{ x: 1 }] }, { a: [{ x: 1, y: 2 }] }, { a: [{ x: 1 }] }],
    ['$ keys ignored on both sides', { $version: 3, a: 1 }, { $version: 9, a: 1 }, undefined],
    ['$ keys ignored when nested', { a: { $meta: 1, b: 1 } }, { a: { b: 1 } }, undefined],
    ['reported extras do not matter', { a: 1 }, { a: 1, $version: 2, extra: 5 }, undefined],
    ['empty desired object asks nothing', { a: {} }, {}, undefined],
    ['desired null needs a reported null', { a: null }, {}, { a: null }],
    ['null equals null', { a: null }, { a: null }, undefined],
    ['deep leaf', { a: { b: { c: true } } }, { a: { b: { c: false } } }, { a: { b: { c: true } } }],
    ['inherited members are not reported values', { constructor: 1 }, {}, { constructor: 1 }],
    [
      'log level pending',
      thermo.desired,
      thermo.reported,
      { system: { logLevel: 'debug' } }, // firmware.version converged; $version skipped
    ],
  ]
  for (const [name, desired, reported, expected] of cases) {
    t.same(pendingOf(desired, reported), expected, name)
    t.equal(isConverged(desired, reported), expected === undefined, `${name}: converged`)
  }
  const proto = pendingOf(JSON.parse('{"__proto__":{"x":1}}'), {}) as Record<string, unknown>
  t.ok(Object.hasOwn(proto, '__proto__'), 'a key named __proto__ stays an own key')
  t.same(Object.getPrototypeOf(proto), Object.prototype)
})

t.test('planner: what the indexes answer', async (t) => {
  const cases: [string, Record<string, unknown>, string | undefined][] = [
    ["tags.room = 'lab'", { tags: { room: 'lab' } }, undefined],
    // '109' is also the text of the number 109, which the same index entry holds
    ["tags.building = '109'", { tags: { building: '109' } }, "tags.building = '109'"],
    [
      "tags.building = 'b9' AND reported.firmware.version < '2.0'",
      { tags: { building: 'b9' } },
      "reported.firmware.version < '2.0'",
    ],
    // the index compares text: 2 and '2' share one entry, so the typed test stays in the residual
    ['tags.floor = 2', { tags: { floor: '2' } }, 'tags.floor = 2'],
    ["tags.floor = '2'", { tags: { floor: '2' } }, "tags.floor = '2'"],
    ["tags.floor = '-1.5'", { tags: { floor: '-1.5' } }, "tags.floor = '-1.5'"],
    ['tags.lab = true', { tags: { lab: 'true' } }, 'tags.lab = true'],
    ["tags.lab = 'false'", { tags: { lab: 'false' } }, "tags.lab = 'false'"],
    ["tags.n = '1e3'", { tags: { n: '1e3' } }, undefined], // no number prints as 1e3
    ["tags.n = '-0'", { tags: { n: '-0' } }, undefined],
    ["tags.n = '02'", { tags: { n: '02' } }, undefined],
    ["tags.n = ''", { tags: { n: '' } }, undefined],
    ["status = 'enabled' AND parentId = 'gw-7'", { status: 'enabled', parentId: 'gw-7' }, undefined],
    ["status = 'paused'", {}, "status = 'paused'"],
    ["parentId = 'a/b'", {}, "parentId = 'a/b'"],
    ["tags.a = 'x' AND tags.a = 'y'", { tags: { a: 'x' } }, "tags.a = 'y'"],
    [
      "status = 'enabled' AND status = 'disabled' AND parentId = 'g1' AND parentId = 'g2'",
      { status: 'enabled', parentId: 'g1' },
      "status = 'disabled' AND parentId = 'g2'",
    ],
    [
      "tags.a = 'x' AND presence.connected = false AND tags.b = 'y' AND converged = false",
      { tags: { a: 'x', b: 'y' } },
      'presence.connected = false AND converged = false',
    ],
    [
      "(tags.a = 'x' AND tags.b = 'y') AND status = 'disabled'",
      { tags: { a: 'x', b: 'y' }, status: 'disabled' },
      undefined,
    ],
    [
      "(tags.a = 'x' AND tags.b = 'y') OR status = 'disabled'",
      {},
      "(tags.a = 'x' AND tags.b = 'y') OR status = 'disabled'",
    ],
    ["tags.a = 'x' OR tags.b = 'y'", {}, "tags.a = 'x' OR tags.b = 'y'"],
    ["NOT tags.a = 'x'", {}, "NOT tags.a = 'x'"],
    ["NOT status = 'enabled' AND tags.a = 'x'", { tags: { a: 'x' } }, "NOT status = 'enabled'"],
    ["tags.a != 'x'", {}, "tags.a != 'x'"],
    ["tags.a IN ('x')", {}, "tags.a IN ('x')"],
    ["tags.a >= 'x'", {}, "tags.a >= 'x'"],
    ["tags.constructor = 'x'", {}, "tags.constructor = 'x'"],
    ["id = 'a'", {}, "id = 'a'"],
    ['tags.a IS NULL', {}, 'tags.a IS NULL'],
  ]
  for (const [query, index, residual] of cases) {
    const p = plan(parseWhere(query))
    t.same(p.index, index, `${query}: index`)
    t.equal(p.residual && formatWhere(p.residual), residual, `${query}: residual`)
  }
})

// ---- property test: the planner never changes results ----

/** A small seeded generator (mulberry32), so a failure names a reproducible case. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), a | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)] as T
}

// values chosen so that text and type disagree: 1 and '1', true and 'true', 2.5 and '2.5'
const TAG_VALUES = ['1', 1, 'true', true, false, 'false', 'x', 'X', '', '0', 0, '2.5', 2.5, '-0']
const TAG_KEYS = ['a', 'b', 'site.code', 'constructor']
const PARENTS = ['gw-1', 'gw-2', 'bad/id']
const STATUSES = ['enabled', 'disabled', 'paused']
const OPS: CompareOp[] = ['=', '!=', '<', '<=', '>', '>=']
const PATHS: WherePath[] = [
  { root: 'id', keys: [] },
  { root: 'status', keys: [] },
  { root: 'parentId', keys: [] },
  { root: 'modelId', keys: [] },
  ...TAG_KEYS.map(tagPath),
  { root: 'reported', keys: ['fw', 'v'] },
  { root: 'reported', keys: ['n'] },
  { root: 'reported', keys: ['sys', 'log'] },
  { root: 'desired', keys: ['sys', 'log'] },
  { root: 'desired', keys: ['n'] },
  { root: 'presence', keys: ['connected'] },
  { root: 'converged', keys: [] },
]
const LITERALS: WhereLiteral[] = [
  ...(TAG_VALUES as WhereLiteral[]),
  ...PARENTS,
  ...STATUSES,
  'd-3',
  'm-1',
  '1.0',
  '2.0',
  '10.0',
  'debug',
  'info',
  2,
]

function randomRecord(rnd: () => number, i: number): { record: DeviceRecord; row: WhereRow } {
  const tags: Record<string, string | number | boolean> = {}
  for (const k of TAG_KEYS) if (rnd() < 0.6) tags[k] = pick(rnd, TAG_VALUES)
  const record: DeviceRecord = {
    id: `d-${i}`,
    status: pick(rnd, ['enabled', 'disabled'] as DeviceStatus[]),
    tags,
    createdAt: '',
    updatedAt: '',
    keysRotatedAt: '',
    rev: 1,
    verifiers: {} as DeviceRecord['verifiers'],
  }
  if (rnd() < 0.6) record.parentId = pick(rnd, PARENTS.slice(0, 2))
  if (rnd() < 0.3) record.modelId = 'm-1'
  const doc = () => {
    const d: Record<string, unknown> = {}
    if (rnd() < 0.7) d.fw = { v: pick(rnd, ['1.0', '2.0', '10.0']) }
    if (rnd() < 0.7) d.n = pick(rnd, [1, 2, '1', null, [1]])
    if (rnd() < 0.7) d.sys = { log: pick(rnd, ['debug', 'info']) }
    return d
  }
  const r: WhereRow = { device: record }
  if (rnd() < 0.8) r.reported = doc()
  if (rnd() < 0.8) r.desired = doc()
  if (rnd() < 0.7) r.presence = { connected: rnd() < 0.5 }
  return { record, row: r }
}

function randomComparison(rnd: () => number): WhereExpr {
  const p = pick(rnd, PATHS)
  const shape = rnd()
  if (shape < 0.08) return { kind: 'null', path: p }
  if (shape < 0.14) return { kind: 'exists', path: p }
  if (shape < 0.24) {
    return { kind: 'in', path: p, values: Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => pick(rnd, LITERALS)) }
  }
  const value = pick(rnd, LITERALS)
  const op = typeof value === 'boolean' ? pick(rnd, ['=', '!='] as CompareOp[]) : pick(rnd, OPS)
  return { kind: 'compare', path: p, op, value }
}

/** A conjunct the planner may take: tag equality, status or parentId equality. */
function randomIndexable(rnd: () => number): WhereExpr {
  const which = rnd()
  if (which < 0.6) return eq(tagPath(pick(rnd, TAG_KEYS)), pick(rnd, TAG_VALUES))
  if (which < 0.8) return eq({ root: 'status', keys: [] }, pick(rnd, STATUSES))
  return eq({ root: 'parentId', keys: [] }, pick(rnd, PARENTS))
}

function randomExpr(rnd: () => number, depth: number): WhereExpr {
  const r = rnd()
  if (depth <= 0 || r < 0.45) return rnd() < 0.3 ? randomIndexable(rnd) : randomComparison(rnd)
  if (r < 0.6) return { kind: 'not', item: randomExpr(rnd, depth - 1) }
  const items = Array.from({ length: 2 + Math.floor(rnd() * 2) }, () => randomExpr(rnd, depth - 1))
  return { kind: r < 0.8 ? 'and' : 'or', items }
}

/** Mostly top-level AND chains rich in indexable conjuncts, since those are what plan() splits. */
function randomQuery(rnd: () => number): WhereExpr {
  if (rnd() < 0.2) return randomExpr(rnd, 3)
  const items = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () =>
    rnd() < 0.6 ? randomIndexable(rnd) : randomExpr(rnd, 2),
  )
  return items.length === 1 ? (items[0] as WhereExpr) : { kind: 'and', items }
}

t.test('property: index part AND residual matches exactly what the whole query matches', async (t) => {
  const seed = 20_261_127
  const rnd = prng(seed)
  const devices = Array.from({ length: 40 }, (_, i) => randomRecord(rnd, i))
  const failures: string[] = []
  const seen = { indexed: 0, wholeIndexed: 0, narrowed: 0, matched: 0, decided: 0 }
  for (let q = 0; q < 2000; q++) {
    const ast = randomQuery(rnd)
    const text = formatWhere(ast)
    if (JSON.stringify(parseWhere(text)) !== JSON.stringify(ast)) failures.push(`round trip: ${text}`)
    const { index, residual } = plan(ast)
    const planned = Object.keys(index).length > 0
    if (planned) seen.indexed++
    if (planned && residual === undefined) seen.wholeIndexed++
    const need = needs(ast)
    for (const { record, row } of devices) {
      const whole = evaluate(ast, row)
      const byIndex = matchesQuery(record, { ...index, limit: 1 })
      const split = byIndex && (residual === undefined || evaluate(residual, row))
      if (whole) seen.matched++
      if (planned && !byIndex) seen.narrowed++
      if (whole !== split) failures.push(`${text} on ${JSON.stringify(row)}: whole ${whole}, planned ${split}`)
      // a row without the parts the query does not need evaluates the same
      const lean: WhereRow = { device: row.device }
      if (need.twin) Object.assign(lean, { reported: row.reported, desired: row.desired })
      if (need.presence && row.presence) lean.presence = row.presence
      if (evaluate(ast, lean) !== whole) failures.push(`needs() missed a part of ${text}`)
      seen.decided++
    }
  }
  t.same(failures.slice(0, 5), [], `seed ${seed}: no counterexample`)
  // the generator must exercise the interesting cases, or the property says little
  t.ok(seen.indexed > 1000, `queries with an index part: ${seen.indexed}`)
  t.ok(seen.wholeIndexed > 100, `queries answered by the index alone: ${seen.wholeIndexed}`)
  t.ok(seen.narrowed > seen.decided / 10, `records the index excluded: ${seen.narrowed}`)
  t.ok(seen.matched > seen.decided / 20, `records matched: ${seen.matched} of ${seen.decided}`)
})

t.test('fuzz: any text either parses (and round-trips) or is an INVALID_QUERY', async (t) => {
  const rnd = prng(7)
  const pieces = [
    'tags.a',
    'reported.x.y',
    'desired.z',
    'status',
    'id',
    'presence.connected',
    'converged',
    ' AND ',
    ' OR ',
    ' NOT ',
    '(',
    ')',
    ',',
    ' IN ',
    ' IS ',
    ' NULL',
    ' EXISTS',
    '=',
    '!=',
    '<',
    '>=',
    "'x'",
    "'",
    '"',
    '1',
    '-2.5',
    'true',
    ' ',
    '.',
    '-',
    'é',
  ]
  // half the texts are pieces glued at random, half are valid queries with a few random edits
  const mutate = (text: string) => {
    let out = text
    for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
      const at = Math.floor(rnd() * (out.length + 1))
      const cut = rnd() < 0.5 ? 1 + Math.floor(rnd() * 4) : 0
      out = out.slice(0, at) + (rnd() < 0.7 ? pick(rnd, pieces) : '') + out.slice(at + cut)
    }
    return out
  }
  let parsed = 0
  const failures: string[] = []
  for (let i = 0; i < 4000; i++) {
    const text =
      i % 2 === 0
        ? Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => pick(rnd, pieces)).join('')
        : mutate(formatWhere(randomQuery(rnd)))
    try {
      const ast = parseWhere(text)
      parsed++
      if (JSON.stringify(parseWhere(formatWhere(ast))) !== JSON.stringify(ast)) failures.push(`round trip: ${text}`)
    } catch (err) {
      if (!hasCode(err, 'INVALID_QUERY')) failures.push(`${text}: ${String(err)}`)
    }
  }
  t.same(failures, [])
  t.ok(parsed > 200, `some fuzzed texts parse (${parsed})`)
})

t.test('every query in docs/queries.md parses', async (t) => {
  const doc = readFileSync(path.join(root, 'docs/queries.md'), 'utf8')
  const blocks = [...doc.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1] as string)
  const queries = blocks.flatMap((b) => b.split('\n')).filter((line) => line.trim() !== '')
  t.ok(queries.length >= 10, `${queries.length} example queries`)
  for (const q of queries) t.doesNotThrow(() => parseWhere(q), q)
  for (const required of [
    "tags.building = '109' AND reported.firmware.version < '2.0'",
    'presence.connected = false',
    'converged = false',
    "desired.system.logLevel = 'debug' AND NOT reported.system.logLevel = 'debug'",
  ]) {
    t.ok(queries.includes(required), `the docs show ${required}`)
  }
})
