// Live enforcement and presence on one node: registry changes close sessions within a second, and
// presence events tell services who is connected, in order.
import t from 'tap'
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
