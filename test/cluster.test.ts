// Two broker processes on one real redis-server behave as one broker: cross-node delivery, retained
// messages, persistent sessions, takeover, kicks and presence.
import { Redis } from 'ioredis'
import t from 'tap'
import { createClusterLink } from '../broker/mqtt/bus/cluster.js'
import { RECHECK_MS } from '../plugins/auth/cache.js'
import { generateKeys, verifiersOf } from '../registry/credentials.js'
import { createRedisStore } from '../registry/redis/store.js'
import type { DeviceRecord } from '../registry/types.js'
import {
  closedWithin,
  connackOf,
  connect,
  connectWithInbox,
  deviceOpts,
  inbox,
  serviceOpts,
  sleep,
  waitFor,
} from './helpers/app.js'
import { api, startNode } from './helpers/process.js'
import { startRedis } from './helpers/redis.js'

const TOKEN = 'cluster-admin-token-0123456789'

t.test('two nodes sharing Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_ADMIN_TOKEN: TOKEN }
  const a = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-a' }, t.teardown)
  const b = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-b' }, t.teardown)
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const urlA = `mqtt://127.0.0.1:${a.ports.mqtt}`
  const urlB = `mqtt://127.0.0.1:${b.ports.mqtt}`

  const created = await api(a, TOKEN, 'POST', '/devices', { id: 'c-1' })
  t.equal(created.status, 201, 'a device created through node A')
  const key = created.json.keys.primary as string
  t.equal((await api(b, TOKEN, 'GET', '/devices/c-1')).status, 200, 'is visible on node B')

  await t.test('a device on B reaches a service on A', async (t) => {
    const svc = await connect(urlA, serviceOpts('svc-x', 'test', TOKEN))
    t.teardown(() => svc.endAsync(true))
    const box = inbox(svc)
    await svc.subscribeAsync('$iot/+/telemetry', { qos: 1 })
    const dev = await connect(urlB, deviceOpts('c-1', key))
    t.teardown(() => dev.endAsync(true))
    await dev.publishAsync('$iot/c-1/telemetry', '{"t":1}', { qos: 1 })
    const m = await box.next((x) => x.topic === '$iot/c-1/telemetry')
    t.equal(m?.payload.toString(), '{"t":1}')
    await sleep(300)
    t.equal(box.box.length, 0, 'exactly once')
    const view = (await api(a, TOKEN, 'GET', '/devices/c-1')).json
    t.match(view.presence, { connected: true, node: 'node-b' }, 'A knows the device is on B')
  })

  await t.test('retained messages and persistent sessions cross nodes', async (t) => {
    await api(a, TOKEN, 'POST', '/devices', { id: 'c-2' })
    const k2 = (await api(a, TOKEN, 'POST', '/devices/c-2/keys/rotate')).json.keys.primary
    const pub = await connect(urlA, serviceOpts('svc-pub', 'test', TOKEN))
    await pub.publishAsync('site/status', 'retained-value', { qos: 1, retain: true })
    const late = await connect(urlB, deviceOpts('c-2', k2))
    const box = inbox(late)
    await late.subscribeAsync('site/status', { qos: 1 })
    t.equal((await box.next())?.payload.toString(), 'retained-value', 'a retained message set on A reaches B')
    await late.endAsync()

    const durable = { ...deviceOpts('c-2', k2), clean: false }
    const first = await connect(urlA, durable)
    await first.subscribeAsync('jobs/c-2', { qos: 1 })
    await first.endAsync()
    await pub.publishAsync('jobs/c-2', 'queued-while-away', { qos: 1 })
    const { client: back, box: box2 } = await connectWithInbox(urlB, durable)
    t.equal((await box2.next())?.payload.toString(), 'queued-while-away', 'a persistent session resumes on B')
    await back.endAsync()
    await pub.endAsync()
  })

  await t.test('one session per device across nodes [MQTT-3.1.4-2]', async (t) => {
    const onA = await connect(urlA, deviceOpts('c-1', key))
    const onB = await connect(urlB, deviceOpts('c-1', key))
    t.teardown(() => onB.endAsync(true))
    const ms = await closedWithin(onA, 2000)
    t.pass(`the session on A was taken over after ${ms} ms`)
    const presence = await waitFor('presence on B', async () => {
      const p = (await api(a, TOKEN, 'GET', '/devices/c-1')).json.presence
      return p.node === 'node-b' && p
    })
    t.match(presence, { connected: true, node: 'node-b' })
  })

  await t.test('an older session announced late by another node does not close the newer one', async (t) => {
    const dev = await connect(urlB, deviceOpts('c-1', key))
    t.teardown(() => dev.endAsync(true))
    // a third node, as far as A and B can tell
    const pub = new Redis(redis.url)
    const sub = new Redis(redis.url)
    const z = await createClusterLink({ node: 'node-z', prefix: 'fh', pub, sub, onError: (err) => t.error(err) })
    t.teardown(() => z.close())
    t.same((await z.join(['node-a', 'node-b'])).sort(), ['node-a', 'node-b'])
    const announce = (topic: string, payload: string) =>
      z.forward({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false })

    announce('$SYS/node-z/takeover/clients', JSON.stringify(['c-1', Date.now() - 60_000]))
    announce('$SYS/node-z/new/clients', 'c-1') // Aedes's own announcement: no longer acted on
    announce('$SYS/node-z/takeover/clients', '{not json')
    await sleep(300)
    t.equal(dev.connected, true, 'the session on B, newer, stays')

    announce('$SYS/node-z/takeover/clients', JSON.stringify(['c-1', Date.now()]))
    t.ok((await closedWithin(dev, 1000)) <= 1000, 'a session that started later elsewhere takes over')
    const metrics = await (await fetch(`http://127.0.0.1:${b.ports.http}/metrics`)).text()
    t.match(metrics, /^fleethub_cluster_takeovers_total [1-9]/m, 'counted')
  })

  await t.test('key rotation on A closes the session on B within a second', async (t) => {
    const dev = await connect(urlB, deviceOpts('c-1', key))
    const rotated = await api(a, TOKEN, 'POST', '/devices/c-1/keys/rotate')
    t.equal(rotated.status, 200)
    const ms = await closedWithin(dev, 1000)
    t.ok(ms <= 1000, `closed after ${ms} ms`)
    t.equal(await connackOf(urlB, deviceOpts('c-1', key)), 4, 'and B refuses the old key')
    t.equal(await connackOf(urlB, deviceOpts('c-1', rotated.json.keys.primary)), 0, 'and takes the new one')
  })

  await t.test('a revocation arriving late leaves alone a session admitted after it', async (t) => {
    const store = await createRedisStore({ url: redis.url })
    t.teardown(() => store.close())
    const k = (await api(a, TOKEN, 'POST', '/devices/c-1/keys/rotate')).json.keys.primary
    await waitFor('B hears of the rotation', async () => (await connackOf(urlB, deviceOpts('c-1', k))) === 0)
    const dev = await connect(urlB, deviceOpts('c-1', k))
    t.teardown(() => dev.endAsync(true))
    const rev = (await store.devices.get('c-1'))?.rev as number
    // the event of the rotation that gave this key, as if it reached B only now
    const late = { type: 'credential.revoked', deviceId: 'c-1', origin: 'node-a', at: new Date().toISOString() }
    const pub = new Redis(redis.url)
    t.teardown(() => pub.quit())
    await pub.publish('fh:events', JSON.stringify({ ...late, rev }))
    await sleep(300)
    t.equal(dev.connected, true, 'admitted at the revision the event made: stays')
    await pub.publish('fh:events', JSON.stringify({ ...late, rev: rev + 1 }))
    t.ok((await closedWithin(dev, 1000)) <= 1000, 'a later revision closes it')
  })

  await t.test('a CONNECT refused on a cached answer asks the store again', async (t) => {
    const store = await createRedisStore({ url: redis.url })
    t.teardown(() => store.close())
    const old = (await api(a, TOKEN, 'POST', '/devices/c-1/keys/rotate')).json.keys.primary
    await waitFor('B caches the device', async () => (await connackOf(urlB, deviceOpts('c-1', old))) === 0)
    await sleep(RECHECK_MS + 50)
    // new keys written where B's cache cannot hear of them (no event): as when the event is late
    const before = (await store.devices.get('c-1')) as DeviceRecord
    const keys = generateKeys()
    const after = { ...before, rev: before.rev + 1, verifiers: verifiersOf(keys) }
    t.ok(await store.devices.compareAndSet(after, before))
    t.equal(await connackOf(urlB, deviceOpts('c-1', keys.primary)), 0, 'the new key is let in')
    t.equal(await connackOf(urlB, deviceOpts('c-1', old)), 4, 'the old one is not')
    t.equal(await connackOf(urlB, deviceOpts('c-1', keys.primary)), 0)
  })

  await t.test('disable on B closes the session on A', async (t) => {
    const k = (await api(b, TOKEN, 'POST', '/devices/c-1/keys/rotate')).json.keys.primary
    await sleep(100)
    const dev = await connect(urlA, deviceOpts('c-1', k))
    await api(b, TOKEN, 'PATCH', '/devices/c-1', { status: 'disabled' })
    t.ok((await closedWithin(dev, 1000)) <= 1000)
    t.equal(await connackOf(urlA, deviceOpts('c-1', k)), 5)
  })

  await t.test('the will a crashed node left is dropped when the device connects elsewhere', async (t) => {
    const doomed = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-doomed' }, t.teardown)
    const k = (await api(a, TOKEN, 'POST', '/devices', { id: 'w-1' })).json.keys.primary
    const dev = await connect(`mqtt://127.0.0.1:${doomed.ports.mqtt}`, {
      ...deviceOpts('w-1', k),
      will: { topic: '$iot/w-1/telemetry', payload: Buffer.from('gone'), qos: 0, retain: false },
    })
    const redisClient = new Redis(redis.url)
    t.teardown(() => redisClient.quit())
    t.equal(
      await redisClient.exists('fh:aedes:will:node-doomed:w-1'),
      1,
      'the will is stored by the node that holds the session',
    )
    doomed.proc.kill('SIGKILL')
    dev.end(true)
    await doomed.stop()
    const again = await connect(urlA, deviceOpts('w-1', k))
    t.equal(
      await redisClient.exists('fh:aedes:will:node-doomed:w-1'),
      0,
      "reconnecting on A deleted the dead node's will",
    )
    t.equal(await redisClient.exists('fh:aedes:willowner:w-1'), 0)
    await again.endAsync()
  })

  await t.test('a graceful stop exits 0 and leaves the cluster', async (t) => {
    t.equal(await b.stop('SIGTERM'), 0)
    const health = await fetch(`http://127.0.0.1:${a.ports.http}/healthz`)
    t.same(await health.json(), { ok: true, checks: { mqtt: true, http: true, redis: true } })
  })
})
