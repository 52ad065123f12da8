// The twin model: merge patches (RFC 7396), limits, metadata, the view, pending differences and the
// built-in remote configuration sections.
import t from 'tap'
import { createMemoryStore } from '../registry/memory/store.js'
import type { TwinStore } from '../registry/ports.js'
import {
  applyPatch,
  assertDesiredSections,
  assertPatch,
  DEFAULT_TWIN_LIMITS,
  emptySide,
  type JsonObject,
  mergePatch,
  sideView,
  type TwinSide,
} from '../registry/twin.js'
import { createTwinService } from '../registry/twins.js'
import { pendingOf } from '../registry/where/index.js'

t.test('merge patch follows RFC 7396 (its appendix A examples)', async (t) => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [{ a: 'foo' }, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ]
  for (const [target, patch, result] of cases) {
    const before = JSON.stringify(target)
    t.same(mergePatch(target as JsonObject, patch as JsonObject), result, `${before} + ${JSON.stringify(patch)}`)
    t.equal(JSON.stringify(target), before, 'the target is not changed')
  }
})

t.test('patches are checked before they apply', async (t) => {
  const limits = { ...DEFAULT_TWIN_LIMITS, maxDepth: 3 }
  const bad: [unknown, RegExp][] = [
    [[1, 2], /a patch is a JSON object/],
    ['x', /a patch is a JSON object/],
    [null, /a patch is a JSON object/],
    [{ $version: 3 }, /\$version is reserved/],
    [{ a: { $metadata: {} } }, /\$metadata is reserved/],
    [{ ['k'.repeat(129)]: 1 }, /1-128 characters/],
    [{ '': 1 }, /1-128 characters/],
    [{ a: { b: { c: { d: 1 } } } }, /deeper than 3/],
    [{ a: [[[[1]]]] }, /deeper than 3/],
    [{ a: Number.NaN }, /finite/],
  ]
  for (const [patch, why] of bad)
    t.throws(() => assertPatch(patch, limits), { code: 'FLEETHUB_ERR_INVALID_PATCH', message: why })
  t.ok(assertPatch({ a: { b: { c: 1 } } }, limits), 'depth 3 is fine')
})

t.test('a side keeps versions and the time of each top-level change', async (t) => {
  let side = emptySide()
  side = applyPatch(side, { a: 1, b: { c: 2 } }, DEFAULT_TWIN_LIMITS, 'T1')
  side = applyPatch(side, { b: { d: 3 }, a: null }, DEFAULT_TWIN_LIMITS, 'T2')
  t.equal(side.version, 3)
  t.same(side.doc, { b: { c: 2, d: 3 } })
  t.same(sideView(side), {
    b: { c: 2, d: 3 },
    $version: 3,
    $metadata: { $lastUpdated: 'T2', b: { $lastUpdated: 'T2' } },
  })
  const small = { ...DEFAULT_TWIN_LIMITS, maxBytes: 40 }
  t.throws(() => applyPatch(side, { big: 'x'.repeat(40) }, small, 'T3'), {
    code: 'FLEETHUB_ERR_TWIN_TOO_LARGE',
    statusCode: 413,
  })
})

t.test('pending differences', async (t) => {
  t.equal(pendingOf({}, {}), undefined)
  t.equal(pendingOf({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 2] }, extra: true }), undefined, 'converged')
  t.same(pendingOf({ a: 1, b: { c: 2, d: 3 } }, { a: 2, b: { c: 2 } }), { a: 1, b: { d: 3 } })
  t.same(pendingOf({ a: [1, 2] }, { a: [2, 1] }), { a: [1, 2] }, 'arrays compare as whole values')
  t.same(pendingOf({ a: { b: 1 } }, { a: 'text' }), { a: { b: 1 } })
  t.equal(pendingOf({ $version: 4, a: 1 } as JsonObject, { a: 1 }), undefined, '$ keys are ignored')
})

t.test('the built-in config and system sections', async (t) => {
  t.doesNotThrow(() =>
    assertDesiredSections({ config: { anything: [1] }, system: { reportingIntervalSec: 30, logLevel: 'debug' } }),
  )
  t.doesNotThrow(() => assertDesiredSections({ system: { timeServer: 'pool.ntp.org:123', logLevel: null } }))
  const bad: [JsonObject, RegExp][] = [
    [{ config: 3 }, /config is an object/],
    [{ system: 'fast' }, /system is an object/],
    [{ system: { reportingIntervalSec: 0 } }, /reportingIntervalSec/],
    [{ system: { reportingIntervalSec: 1.5 } }, /reportingIntervalSec/],
    [{ system: { logLevel: 'loud' } }, /one of error/],
    [{ system: { timeServer: 'not a host!' } }, /host name/],
    [{ system: { colour: 'red' } }, /not a system property/],
  ]
  for (const [patch, why] of bad)
    t.throws(() => assertDesiredSections(patch), { code: 'FLEETHUB_ERR_INVALID_PATCH', message: why })
})

t.test(
  'patches that arrive during a write go together in one compare-and-set, each with its own outcome',
  async (t) => {
    const inner = createMemoryStore().twins
    const writes: number[] = []
    let release: () => void = () => {}
    // the first write waits until released, so the patches sent meanwhile queue up behind it
    let gate: Promise<void> | undefined = new Promise<void>((resolve) => {
      release = resolve
    })
    const store: TwinStore = {
      ...inner,
      async casSide(deviceId, side, next, expected) {
        writes.push(next.version - expected)
        if (gate) {
          const g = gate
          gate = undefined
          await g
        }
        return inner.casSide(deviceId, side, next, expected)
      },
    }
    const twins = createTwinService({ store, limits: { ...DEFAULT_TWIN_LIMITS, maxBytes: 200 } })
    const first = twins.patch('d1', 'reported', { n: 0 })
    const rest = [
      twins.patch('d1', 'reported', { n: 1 }),
      twins.patch('d1', 'reported', { big: 'x'.repeat(300) }), // over the size limit: refused alone
      twins.patch('d1', 'reported', { n: 2 }, 3), // its ifVersion holds once n: 1 is in (version 3)
      twins.patch('d1', 'reported', { n: 3 }, 2), // the side is past 2 by then: 412
      twins.patch('d1', 'reported', { m: 'last' }),
    ].map((p) =>
      p.then(
        (r) => r.version,
        (err: { statusCode?: number }) => err.statusCode,
      ),
    )
    await new Promise((resolve) => setImmediate(resolve))
    release()
    t.equal((await first).version, 2)
    t.same(await Promise.all(rest), [3, 413, 4, 412, 5], 'versions in order, refusals on their own')
    t.same(writes, [1, 3], 'two compare-and-sets: the first patch alone, then the three accepted ones')
    const stored = await twins.get('d1')
    t.equal(stored.reported.version, 5)
    t.same(stored.reported.doc, { n: 2, m: 'last' })

    // a group never writes past a lost compare-and-set: the other writer's version is kept
    await inner.casSide('d1', 'reported', { ...stored.reported, version: 6, doc: { other: true } }, 5)
    t.equal((await twins.patch('d1', 'reported', { n: 9 })).version, 7, 'a stale copy costs a retry, not an update')
    t.same((await twins.get('d1')).reported.doc, { other: true, n: 9 })
  },
)

t.test('a device writing again reads nothing first; the oldest copy goes when the bound is reached', async (t) => {
  const inner = createMemoryStore().twins
  const reads: string[] = []
  const store: TwinStore = {
    ...inner,
    get(deviceId) {
      reads.push(deviceId)
      return inner.get(deviceId)
    },
  }
  const twins = createTwinService({ store, limits: DEFAULT_TWIN_LIMITS, cachedSides: 2 })
  await twins.patch('a', 'reported', { n: 1 })
  await twins.patch('b', 'reported', { n: 1 })
  await twins.patch('a', 'desired', { n: 1 }) // the other side has a bound of its own
  t.same(reads, ['a', 'b', 'a'], 'each side read once')
  await twins.patch('a', 'reported', { n: 2 })
  await twins.patch('b', 'reported', { n: 2 })
  await twins.patch('a', 'desired', { n: 2 })
  t.same(reads, ['a', 'b', 'a'], 'written again from the copies')
  await twins.patch('c', 'reported', { n: 1 }) // the bound: a's reported copy, the oldest, goes
  await twins.patch('b', 'reported', { n: 3 })
  await twins.patch('a', 'reported', { n: 3 })
  await twins.patch('a', 'desired', { n: 3 })
  t.same(reads, ['a', 'b', 'a', 'c', 'a'], 'only the dropped copy is read again')
  t.same(
    (await Promise.all(['a', 'b', 'c'].map((id) => twins.get(id)))).map((r) => [r.reported.version, r.reported.doc]),
    [
      [4, { n: 3 }],
      [4, { n: 3 }],
      [2, { n: 1 }],
    ],
  )
  t.same((await twins.get('a')).desired.doc, { n: 3 })
})

t.test('a remembered side changed in place matches the side as stored, and answers never change', async (t) => {
  const store = createMemoryStore().twins
  const twins = createTwinService({ store, limits: { ...DEFAULT_TWIN_LIMITS, maxBytes: 120 } })
  const patches: JsonObject[] = [
    { a: 1, b: { c: 1, d: 2 } },
    { a: 2 },
    { b: { c: null, e: [1, 2] } },
    { a: null, f: 'x' },
    { big: 'y'.repeat(200) }, // refused: over the size limit
    { a: 3, b: null },
    { b: { g: true } },
  ]
  const answers: { version: number; doc: unknown; side: TwinSide }[] = []
  for (const p of patches) {
    try {
      const r = await twins.patch('d', 'desired', p)
      answers.push({ version: r.version, doc: structuredClone(r.side.doc), side: r.side })
    } catch (err) {
      t.equal((err as { statusCode?: number }).statusCode, 413)
    }
    // the store holds what a fold of the accepted patches gives
    const stored = (await twins.get('d')).desired
    t.same(stored.doc, answers.at(-1)?.doc, `after ${JSON.stringify(p).slice(0, 40)}`)
  }
  t.same((await twins.get('d')).desired.doc, { f: 'x', a: 3, b: { g: true } })
  t.same(
    Object.keys((await twins.get('d')).desired.meta).sort(),
    ['$', 'a', 'b', 'f'],
    'times kept for the properties there are',
  )
  for (const a of answers) t.same(a.side.doc, a.doc, `the answer of version ${a.version} is as it was`)
  // several patches in one write (a group), one of them refused, then one more from the copy
  const group = await Promise.allSettled([
    twins.patch('d', 'desired', { h: 1 }),
    twins.patch('d', 'desired', { big: 'z'.repeat(200) }),
    twins.patch('d', 'desired', { a: null, h: 2 }),
  ])
  t.same(
    group.map((g) => g.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  )
  await twins.patch('d', 'desired', { i: 1 })
  t.same((await twins.get('d')).desired.doc, { f: 'x', b: { g: true }, h: 2, i: 1 })
})

t.test('more devices writing at once than the bound: every patch is written, in order per device', async (t) => {
  const twins = createTwinService({ store: createMemoryStore().twins, limits: DEFAULT_TWIN_LIMITS, cachedSides: 2 })
  const ids = ['a', 'b', 'c', 'd', 'e']
  for (let round = 0; round < 3; round++) {
    const versions = await Promise.all(
      ids.flatMap((id) => [1, 2, 3].map((n) => twins.patch(id, 'reported', { n, round }).then((r) => r.version))),
    )
    const first = 2 + round * 3
    t.same(
      versions,
      ids.flatMap(() => [first, first + 1, first + 2]),
      `round ${round}: versions in order`,
    )
  }
  for (const id of ids) t.same((await twins.get(id)).reported.doc, { n: 3, round: 2 })
})
