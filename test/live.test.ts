// Live enforcement and presence on one node: registry changes close sessions within a second, and
// presence events tell services who is connected, in order.
import { Redis } from 'ioredis'
import t from 'tap'
import type { Plugin } from '../broker/plugin-host.js'
import { generateKeys, verifiersOf } from '../registry/credentials.js'
import { createRedisStore, EVENTS_CONNECTION } from '../registry/redis/store.js'
import type { DeviceRecord } from '../registry/types.js'
import {
  closedWithin,
  connackOf,
  connect,
  createDevice,
  deviceOpts,
  inbox,
  mqttUrl,
  serviceOpts,
  sleep,
  startTestApp,
} from './helpers/app.js'
import { startRedis } from './helpers/redis.js'

t.test('disable, delete and key rotation close the session within a second', async (t) => {
  const app = await startTestApp(t)
  const url = mqttUrl(app)
  const changes: [string, (id: string) => Promise<unknown>][] = [
    ['disable', (id) => app.registry.updateDevice(id, { status: 'disabled' })],
    ['delete', (id) => app.registry.deleteDevice(id)],
    ['rotate keys', (id) => app.registry.rotateKeys(id)],
  ]
  for (const [name, change] of changes) {
    const id = `kick-${name.replace(' ', '-')}`
    const keys = await createDevice(app, id)
    const c = await connect(url, deviceOpts(id, keys.primary))
    const bystanderKeys = await createDevice(app, `${id}-other`)
    const bystander = await connect(url, deviceOpts(`${id}-other`, bystanderKeys.primary))
    await change(id)
    const ms = await closedWithin(c, 1000)
    t.ok(ms <= 1000, `${name}: closed after ${ms} ms`)
    t.equal(
      await connackOf(url, deviceOpts(id, keys.primary)),
      name === 'disable' ? 5 : 4,
      `${name}: the old credentials no longer work`,
    )
    t.ok(bystander.connected, `${name}: other devices stay connected`)
    await bystander.endAsync(true)
    c.end(true)
  }
  t.match(await app.metrics.registry.getSingleMetricAsString('fleethub_kicks_total'), /device\.disabled/)
})

t.test('a change is in force on the node that made it once it is answered', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  for (const [store, env] of [
    ['memory', {}],
    ['Redis', { FLEETHUB_REDIS_URL: redis.url }],
  ] as const) {
    const app = await startTestApp(t, env)
    const url = mqttUrl(app)
    let key = (await createDevice(app, 'rekeyed')).primary
    for (let i = 0; i < 20; i++) {
      const before = await connect(url, deviceOpts('rekeyed', key)) // its credentials are cached now
      key = (await app.registry.rotateKeys('rekeyed')).primary
      // no wait: the node evicted its cache and closed the session before the rotation was answered
      const after = await connect(url, deviceOpts('rekeyed', key))
      await closedWithin(before, 1000)
      await after.subscribeAsync('$iot/rekeyed/cmd/req')
      await sleep(20)
      t.equal(after.connected, true, `${store} ${i}: the new key's session is not closed by the rotation`)
      await after.endAsync()
    }
  }
})

t.test('after its Redis subscription broke, a node reads again what it may have missed', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await startTestApp(t, { FLEETHUB_REDIS_URL: redis.url })
  const url = mqttUrl(app)
  const keys = await Promise.all(['gap-1', 'gap-2', 'gap-3'].map((id) => createDevice(app, id)))
  const changed = await connect(url, deviceOpts('gap-1', keys[0].primary))
  const unchanged = await connect(url, deviceOpts('gap-2', keys[1].primary))
  t.teardown(() => unchanged.endAsync(true))
  t.equal(await connackOf(url, deviceOpts('gap-3', keys[2].primary)), 0, 'gap-3 is in the credential cache')
  // changes whose events this node never hears: written to Redis directly
  const store = await createRedisStore({ url: redis.url })
  t.teardown(() => store.close())
  const write = async (id: string, change: Partial<DeviceRecord>) => {
    const before = (await store.devices.get(id)) as DeviceRecord
    t.ok(await store.devices.compareAndSet({ ...before, ...change, rev: before.rev + 1 }, before))
  }
  await write('gap-1', { status: 'disabled' })
  const rekeyed = generateKeys()
  await write('gap-3', { verifiers: verifiersOf(rekeyed) })
  await sleep(100)
  t.equal(changed.connected, true, 'no event, no kick')
  t.equal(await connackOf(url, deviceOpts('gap-3', keys[2].primary)), 0, 'no event, the cache still has the old key')

  const admin = new Redis(redis.url)
  t.teardown(() => admin.quit())
  const list = (await admin.client('LIST')) as string
  const ids = [...list.matchAll(new RegExp(`id=(\\d+) .*name=${EVENTS_CONNECTION} `, 'g'))].map((m) => m[1] as string)
  t.ok(ids.length >= 1, 'the events connection is named')
  for (const id of ids) await admin.client('KILL', 'ID', id)

  t.ok(
    (await closedWithin(changed, 5000)) <= 5000,
    'once subscribed again, the session of the device changed meanwhile is closed',
  )
  t.equal(unchanged.connected, true, 'an unchanged one stays')
  t.equal(
    await connackOf(url, deviceOpts('gap-3', keys[2].primary)),
    4,
    'the cache was dropped: the old key is refused',
  )
  t.equal(await connackOf(url, deviceOpts('gap-3', rekeyed.primary)), 0, 'and the new one let in')
  t.equal(await connackOf(url, deviceOpts('gap-1', keys[0].primary)), 5)
  t.match(await app.metrics.registry.getSingleMetricAsString('fleethub_kicks_total'), /event="gap"/)
})

t.test('a tag change or re-enable does not close the session', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'calm')
  const c = await connect(mqttUrl(app), deviceOpts('calm', keys.primary))
  t.teardown(() => c.endAsync(true))
  await app.registry.updateDevice('calm', { tags: { room: 'b' } })
  await sleep(300)
  t.ok(c.connected)
})

t.test('presence events and the device view', async (t) => {
  const app = await startTestApp(t)
  const url = mqttUrl(app)
  const keys = await createDevice(app, 'p1')
  const svc = await connect(url, serviceOpts('svc-presence'))
  t.teardown(() => svc.endAsync(true))
  const box = inbox(svc)
  await svc.subscribeAsync('$iot/+/events/#', { qos: 1 })
  const event = async (kind: string) => {
    const m = await box.next((x) => x.topic === `$iot/p1/events/${kind}`)
    return m && JSON.parse(m.payload.toString())
  }

  const first = await connect(url, deviceOpts('p1', keys.primary))
  const up = await event('connected')
  t.match(up, { deviceId: 'p1', seq: 1, online: true, node: app.config.nodeId, transport: 'tcp' })
  t.type(up.session, 'string')
  const view = await app.registry.getDevice('p1')
  t.match(view?.presence, { connected: true, node: app.config.nodeId, seq: 1 })

  // [MQTT-3.1.4-2] a second CONNECT with the same id takes over
  const second = await connect(url, deviceOpts('p1', keys.secondary))
  await closedWithin(first, 1000)
  const events = [await event('disconnected'), await event('connected')]
  const bySeq = events.sort((a, b) => a.seq - b.seq)
  t.same(
    bySeq.map((e) => e.seq),
    [2, 3],
    'each event has its own sequence number',
  )
  t.equal(bySeq[1].online, true, 'ordered by sequence, the last event says the device is online')
  t.equal((await app.registry.getDevice('p1'))?.presence.connected, true)

  await second.endAsync()
  const down = await event('disconnected')
  t.match(down, { seq: 4, online: false })
  const after = await app.registry.getDevice('p1')
  t.equal(after?.presence.connected, false)
  t.type(after?.presence.lastDisconnectAt, 'string')
  t.equal(after?.presence.node, undefined, 'no node once disconnected')
})

t.test('services see no presence of other services', async (t) => {
  const app = await startTestApp(t)
  const svc = await connect(mqttUrl(app), serviceOpts('svc-a'))
  t.teardown(() => svc.endAsync(true))
  const box = inbox(svc)
  await svc.subscribeAsync('$iot/#')
  const other = await connect(mqttUrl(app), serviceOpts('svc-b'))
  await other.endAsync()
  await sleep(200)
  t.same(box.box, [])
})

t.test('a revocation that lands while a CONNECT is being checked still closes that session', async (t) => {
  let armed = false
  const racer: Plugin = {
    name: 'racer',
    register({ registry }) {
      const getRecord = registry.getRecord
      registry.getRecord = async function staleRead(id) {
        const before = await getRecord(id)
        if (armed && id === 'racy') {
          armed = false
          // the device is disabled after its record was read, before the CONNECT completes
          await registry.updateDevice(id, { status: 'disabled' })
          await sleep(20)
        }
        return before
      }
    },
  }
  const app = await startTestApp(t, {}, { plugins: [racer] })
  const keys = await createDevice(app, 'racy')
  armed = true
  const c = await connect(mqttUrl(app), deviceOpts('racy', keys.primary))
  t.ok((await closedWithin(c, 1000)) <= 1000, 'accepted with the stale record, then closed at once')
  t.equal(await connackOf(mqttUrl(app), deviceOpts('racy', keys.primary)), 5, 'and refused from then on')
})

t.test('a reconnect storm reads each device from the store once', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'stormy')
  let reads = 0
  const getRecord = app.registry.getRecord
  app.registry.getRecord = async (id) => {
    reads++
    return getRecord(id)
  }
  t.teardown(() => {
    app.registry.getRecord = getRecord
  })
  const url = mqttUrl(app)
  const codes = await Promise.all(Array.from({ length: 20 }, () => connackOf(url, deviceOpts('stormy', keys.primary))))
  t.ok(codes.every((c) => c === 0))
  for (let i = 0; i < 10; i++) t.equal(await connackOf(url, deviceOpts('stormy', keys.primary)), 0)
  t.equal(reads, 1, '30 CONNECTs, one store read')
  await app.registry.rotateKeys('stormy')
  await sleep(20)
  t.equal(await connackOf(url, deviceOpts('stormy', keys.primary)), 4, 'the cache follows a key rotation')
  t.equal(reads, 2)
  for (let i = 0; i < 5; i++) await connackOf(url, deviceOpts('ghost', keys.primary))
  t.equal(reads, 3, 'an unknown id is remembered too')
  await createDevice(app, 'ghost')
  await sleep(20)
  t.equal(await connackOf(url, deviceOpts('ghost', keys.primary)), 4, 'until it is created (then its own keys count)')
  t.equal(reads, 4)
})
