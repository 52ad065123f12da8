import { Redis } from 'ioredis'
import t from 'tap'
import { createRedisStore } from '../registry/redis/store.js'
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

  t.test('stored documents carry a format version and per-device hash tags', async (t) => {
    const s = await createRedisStore({ url: redis.url, prefix: 'fmt' })
    t.teardown(() => s.close())
    await s.devices.create(record('dev-1'))
    const raw = new Redis(redis.url)
    t.teardown(() => raw.quit())
    t.same(await raw.hmget('fmt:{dev-1}:dev', 'v', 'rev'), ['1', '1'])
    t.equal(JSON.parse((await raw.hget('fmt:{dev-1}:dev', 'doc')) as string).v, 1)
    await raw.hset('fmt:{dev-1}:dev', 'doc', JSON.stringify({ v: 99, id: 'dev-1' }))
    await t.rejects(s.devices.get('dev-1'), /format 99/, 'an unknown format is refused, not misread')
  })

  t.test('start-up fails clearly when Redis is not there', async (t) => {
    await t.rejects(
      createRedisStore({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 500 }),
      /Redis|ECONNREFUSED|connect/i,
    )
  })
})
