// The cluster bus: a node alone sends no message through Redis; with a second node, messages
// cross in batches, once each; a node that leaves stops the traffic.
import { Redis } from 'ioredis'
import t from 'tap'
import { connect, createDevice, deviceOpts, inbox, mqttUrl, serviceOpts, sleep, startTestApp } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'

async function publishCount(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats')
  return Number(/cmdstat_publish:calls=(\d+)/.exec(info)?.[1] ?? 0)
}

t.test('cluster bus', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const raw = new Redis(redis.url)
  t.teardown(() => raw.quit())

  await t.test('a single node with the Redis store keeps its traffic local', async (t) => {
    const a = await startTestApp(t, { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_NODE_ID: 'solo' })
    const keys = await createDevice(a, 's-1')
    const svc = await connect(mqttUrl(a), serviceOpts('svc-solo'))
    const dev = await connect(mqttUrl(a), deviceOpts('s-1', keys.primary))
    t.teardown(() => Promise.all([svc.endAsync(true), dev.endAsync(true)]))
    const box = inbox(svc)
    await svc.subscribeAsync('$iot/+/telemetry')
    const before = await publishCount(raw)
    for (let i = 0; i < 500; i++) dev.publish('$iot/s-1/telemetry', `m${i}`)
    for (let i = 0; i < 500 && box.box.length < 500; i++) await sleep(20)
    t.equal(box.box.length, 500, 'every message delivered')
    const used = (await publishCount(raw)) - before
    t.ok(used < 10, `${used} Redis PUBLISH for 500 messages (control traffic only)`)
  })

  await t.test('two nodes: messages cross once, in batches; a node that leaves stops the traffic', async (t) => {
    const a = await startTestApp(t, { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_NODE_ID: 'bus-a' })
    const b = await startTestApp(t, { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_NODE_ID: 'bus-b' })
    const keys = await createDevice(a, 'x-1')
    const svc = await connect(mqttUrl(b), serviceOpts('svc-b'))
    const local = await connect(mqttUrl(a), serviceOpts('svc-a'))
    const dev = await connect(mqttUrl(a), deviceOpts('x-1', keys.primary))
    const remoteBox = inbox(svc)
    const localBox = inbox(local)
    await svc.subscribeAsync('$iot/+/telemetry')
    await local.subscribeAsync('$iot/+/telemetry')
    const before = await publishCount(raw)
    for (let i = 0; i < 1000; i++) dev.publish('$iot/x-1/telemetry', `m${i}`)
    for (let i = 0; i < 500 && (remoteBox.box.length < 1000 || localBox.box.length < 1000); i++) await sleep(20)
    t.equal(remoteBox.box.length, 1000, 'all 1000 reached the service on the other node')
    t.equal(localBox.box.length, 1000, 'and the one on the same node, each once')
    t.same(
      remoteBox.box.slice(0, 3).map((m) => m.payload.toString()),
      ['m0', 'm1', 'm2'],
      'in order',
    )
    const used = (await publishCount(raw)) - before
    t.ok(used < 200, `${used} Redis PUBLISH carried 1000 messages`)
    await Promise.all([svc.endAsync(true), local.endAsync(true), dev.endAsync(true)])

    await b.close()
    await sleep(100)
    const dev2 = await connect(mqttUrl(a), deviceOpts('x-1', keys.primary))
    const quiet = await publishCount(raw)
    for (let i = 0; i < 300; i++) dev2.publish('$iot/x-1/telemetry', 'alone again')
    await sleep(300)
    t.ok((await publishCount(raw)) - quiet < 10, 'once the other node said goodbye, nothing goes to Redis')
    await dev2.endAsync(true)
  })
})
