// The command store port on both adapters (memory and a real Redis): create, the one compare-and-set
// every state change goes through (and what it answers when it loses), the queue; and the memory
// adapter's sweep of records past their retention.
import t, { type Test } from 'tap'
import { type CommandRecord, moved } from '../registry/commands.js'
import { createMemoryCommandStore } from '../registry/memory/commands.js'
import type { CommandStore } from '../registry/ports.js'
import { createRedisStore } from '../registry/redis/store.js'
import { startRedis } from './helpers/redis.js'

const AT = '2026-01-01T00:00:00.000Z'
const LATER = '2026-01-01T00:00:01.000Z'
const DAY = 86_400_000

function command(deviceId: string, id: string, over: Partial<CommandRecord> = {}): CommandRecord {
  return {
    id,
    deviceId,
    name: 'reboot',
    body: { n: 1.5, list: [], nested: {} },
    state: 'queued',
    createdAt: AT,
    updatedAt: AT,
    timeoutMs: 5000,
    history: [{ state: 'queued', at: AT }],
    ...over,
  }
}

function contract(t: Test, make: () => Promise<CommandStore>) {
  t.test('a created record reads back as it was written', async (t) => {
    const s = await make()
    const r = command('d1', 'c1', { deadline: 1_700_000_000_123, expiresAt: 1_700_000_000_123 })
    t.same(await s.create(r, { retentionMs: DAY }), { created: true })
    t.same(await s.get('d1', 'c1'), r)
    t.equal(await s.get('d1', 'nope'), undefined)
    t.equal(await s.get('d2', 'c1'), undefined, 'ids are per device')
  })

  t.test('a transition from the stored state replaces the record', async (t) => {
    const s = await make()
    const r = command('d1', 'c1')
    await s.create(r, { retentionMs: DAY })
    const next = moved(r, 'delivered', LATER, { deadline: 123 })
    t.equal(await s.transition('d1', 'c1', 'queued', next, DAY), true)
    t.same(await s.get('d1', 'c1'), next)
  })

  t.test('a transition that lost the race answers with the record as it is, and writes nothing', async (t) => {
    const s = await make()
    const r = command('d1', 'c1')
    await s.create(r, { retentionMs: DAY })
    const cancelled = moved(r, 'cancelled', LATER)
    t.equal(await s.transition('d1', 'c1', 'queued', cancelled, DAY), true)
    const late = moved(r, 'delivered', LATER)
    t.same(await s.transition('d1', 'c1', 'queued', late, DAY), cancelled, 'the current record, no second read')
    t.same(await s.get('d1', 'c1'), cancelled)
    t.equal(await s.transition('d1', 'missing', 'queued', late, DAY), undefined, 'no record: undefined')
  })

  t.test('the queue keeps order and bound; a transition with unqueue takes the id out either way', async (t) => {
    const s = await make()
    const q = { retentionMs: DAY, queueBound: 2 }
    const a = command('d1', 'a')
    const b = command('d1', 'b')
    t.same(await s.create(a, q), { created: true })
    t.same(await s.create(b, q), { created: true })
    t.same(await s.create(command('d1', 'c'), q), { created: false, reason: 'queue_full' })
    t.same(await s.queued('d1'), ['a', 'b'])
    t.equal(await s.transition('d1', 'a', 'queued', moved(a, 'delivered', LATER), DAY, { unqueue: true }), true)
    t.same(await s.queued('d1'), ['b'])
    t.ok(await s.transition('d1', 'b', 'delivered', moved(b, 'acknowledged', LATER), DAY, { unqueue: true }))
    t.same(await s.queued('d1'), [], 'refused moves unqueue too')
    t.equal((await s.get('d1', 'b'))?.state, 'queued')
  })

  t.test('created as delivered when the device has nothing queued, queued behind an older one otherwise', async (t) => {
    const s = await make()
    const q = { retentionMs: DAY, queueBound: 5 }
    const a = command('d1', 'a', { deadline: 9 })
    const aOut = moved(a, 'delivered', LATER)
    t.same(await s.create(a, { ...q, deliveredIfIdle: aOut }), { created: true, delivered: true })
    t.same(await s.get('d1', 'a'), aOut, 'the delivered record is stored')
    t.same(await s.queued('d1'), [], 'and not queued')
    t.same(await s.transition('d1', 'a', 'queued', moved(a, 'expired', LATER), DAY), aOut, 'its state is delivered')
    const b = command('d1', 'b')
    t.same(await s.create(b, q), { created: true })
    const c = command('d1', 'c')
    t.same(await s.create(c, { ...q, deliveredIfIdle: moved(c, 'delivered', LATER) }), { created: true })
    t.same(await s.get('d1', 'c'), c, 'behind b: stored as queued')
    t.same(await s.queued('d1'), ['b', 'c'])
    t.same(
      await s.create(command('d2', 'x'), {
        retentionMs: DAY,
        idempotencyKey: 'k',
        deliveredIfIdle: moved(command('d2', 'x'), 'delivered', LATER),
      }),
      { created: true, delivered: true },
    )
    t.same(await s.create(command('d2', 'y'), { retentionMs: DAY, idempotencyKey: 'k' }), {
      created: false,
      reason: 'duplicate',
      id: 'x',
    })
  })

  t.test('an idempotency key gives back the first id', async (t) => {
    const s = await make()
    const opts = { retentionMs: DAY, idempotencyKey: 'k' }
    t.same(await s.create(command('d1', 'first'), opts), { created: true })
    t.same(await s.create(command('d1', 'second'), opts), { created: false, reason: 'duplicate', id: 'first' })
    t.same(await s.create(command('d2', 'other'), opts), { created: true }, 'keys are per device')
  })
}

t.test('memory command store', async (t) => {
  contract(t, async () => createMemoryCommandStore())
})

t.test('Redis command store', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  let n = 0
  contract(t, async () => {
    const s = await createRedisStore({ url: redis.url, prefix: `cs${++n}` })
    t.teardown(() => s.close())
    return s.commands
  })
})

t.test('the memory command store sweeps records and idempotency keys past their retention', async (t) => {
  let clock = 0
  const s = createMemoryCommandStore(() => clock)
  for (let i = 0; i < 1000; i++) {
    await s.create(command('d1', `old-${i}`), { retentionMs: 10, ...(i % 2 ? { idempotencyKey: `k${i}` } : {}) })
  }
  t.equal(s.held(), 1500, '1,000 records and 500 idempotency keys')
  // a sweep runs each time what is held has doubled since the last one (at 1,024 nothing had expired)
  clock = 100
  for (let i = 0; i < 600; i++) await s.create(command('d1', `new-${i}`), { retentionMs: DAY })
  t.ok(s.held() <= 600, `a sweep dropped what had expired (${s.held()} left)`)
  t.equal(await s.get('d1', 'old-0'), undefined)
  t.equal((await s.get('d1', 'new-0'))?.id, 'new-0', 'and kept what had not')

  // a steady stream of short-lived commands: what is held stays bounded
  let most = 0
  for (let i = 0; i < 20_000; i++) {
    clock += 1
    await s.create(command('d2', `c-${i}`), { retentionMs: 50 })
    most = Math.max(most, s.held())
  }
  t.ok(most <= 2048 + 100, `at most ${most} held while 20,000 came and went`)
})
