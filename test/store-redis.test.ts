import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { MAX_MODEL_KEY } from '../registry/models.js'
import { createRedisStore } from '../registry/redis/store.js'
import { definition } from './contract/model-suite.js'
import { record, storeContract } from './contract/store-suite.js'
import { startRedis } from './helpers/redis.js'

t.test('Redis store contract', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  let n = 0
  let current = ''
  storeContract(t, {
    // each test gets its own key prefix, so tests never see each other's data
    async make() {
      current = `t${++n}`
      return createRedisStore({ url: redis.url, prefix: current })
    },
    async peer() {
      return createRedisStore({ url: redis.url, prefix: current })
    },
  })

  /** A store under `prefix`, and a plain client to look at what it wrote. */
  async function storeAndRaw(t: Test, prefix: string) {
    const s = await createRedisStore({ url: redis.url, prefix })
    t.teardown(() => s.close())
    const raw = new Redis(redis.url)
    t.teardown(() => raw.quit())
    return { s, raw }
  }

  t.test('stored documents carry a format version and per-device hash tags', async (t) => {
    const { s, raw } = await storeAndRaw(t, 'fmt')
    await s.devices.create(record('dev-1'))
    t.same(await raw.hmget('fmt:{dev-1}:dev', 'v', 'rev'), ['1', '1'])
    t.equal(JSON.parse((await raw.hget('fmt:{dev-1}:dev', 'doc')) as string).v, 1)
    await raw.hset('fmt:{dev-1}:dev', 'doc', JSON.stringify({ v: 99, id: 'dev-1' }))
    await t.rejects(s.devices.get('dev-1'), /format 99/, 'an unknown format is refused, not misread')
  })

  t.test('models share one hash tag and carry a format version; bindings go under the device tag', async (t) => {
    const { s, raw } = await storeAndRaw(t, 'mfmt')
    await s.models.create(definition('acme.air', 3), 'T')
    t.equal(JSON.parse((await raw.hget('mfmt:{models}:model:acme.air', '3')) as string).v, 1)
    t.equal(await raw.hget('mfmt:{models}:keys', '1'), 'acme.air@3')
    await s.devices.create(record('dev-1'))
    await s.models.setBinding('dev-1', { id: 'acme.air', version: 3, key: 1, source: 'key', at: 'T' })
    t.equal(await raw.hget('mfmt:{dev-1}:model', 'v'), '1')
    await raw.hset('mfmt:{models}:model:acme.air', '3', JSON.stringify({ v: 99 }))
    await t.rejects(s.models.get('acme.air'), /format 99/, 'an unknown format is refused, not misread')
  })

  t.test('model keys run out at 65535: refused clearly, with nothing stored', async (t) => {
    const { s, raw } = await storeAndRaw(t, 'full')
    await raw.set('full:{models}:seq', String(MAX_MODEL_KEY - 1))
    t.match(await s.models.create(definition('last'), 'T'), { created: true, model: { key: MAX_MODEL_KEY } })
    t.same(await s.models.create(definition('one-more'), 'T'), { created: false, reason: 'keys_exhausted' })
    t.equal(await s.models.get('one-more'), undefined)
    t.equal(await raw.get('full:{models}:seq'), String(MAX_MODEL_KEY), 'the counter stays at the last key')
  })

  t.test('start-up fails clearly when Redis is not there', async (t) => {
    await t.rejects(
      createRedisStore({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 500 }),
      /Redis|ECONNREFUSED|connect/i,
    )
  })
})
