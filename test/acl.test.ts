// The ACL matrix: what devices, gateways and services may publish and subscribe to.
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { connect, createDevice, deviceOpts, inbox, mqttUrl, serviceOpts, sleep, startTestApp } from './helpers/app.js'

/** The SUBACK codes of subscribing each topic alone (128 = refused). */
async function granted(c: MqttClient, topic: string): Promise<number> {
  try {
    const g = await c.subscribeAsync(topic, { qos: 1 })
    return g[0]?.qos ?? -1
  } catch (err) {
    return ((err as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1) as number
  }
}

t.test('reserved topics: devices, gateways and services', async (t) => {
  const app = await startTestApp(t)
  const url = mqttUrl(app)
  const k1 = await createDevice(app, 'd1')
  await createDevice(app, 'd2')
  const kgw = await createDevice(app, 'gw')
  const kc = await createDevice(app, 'c1', { parentId: 'gw' })
  const d1 = await connect(url, deviceOpts('d1', k1.primary))
  const gw = await connect(url, deviceOpts('gw', kgw.primary))
  const c1 = await connect(url, deviceOpts('c1', kc.primary))
  const svc = await connect(url, serviceOpts('svc-acl'))
  const watcher = await connect(url, serviceOpts('svc-watch'))
  t.teardown(() => Promise.all([d1, gw, c1, svc, watcher].map((c) => c.endAsync(true))))

  await t.test('subscriptions', async (t) => {
    const cases: [string, MqttClient, string, number][] = [
      ['device: own desired', d1, '$iot/d1/twin/desired', 1],
      ['device: own twin responses', d1, '$iot/d1/twin/res', 1],
      ['device: own commands', d1, '$iot/d1/cmd/req', 1],
      ['device: own update notices', d1, '$iot/d1/ota/notify', 1],
      ['device: own uplink topic', d1, '$iot/d1/telemetry', 128],
      ['device: own events', d1, '$iot/d1/events/connected', 128],
      ['device: another device', d1, '$iot/d2/twin/desired', 128],
      ['device: wildcard over devices', d1, '$iot/+/twin/desired', 128],
      ['device: wildcard over its own topics', d1, '$iot/d1/#', 128],
      ['device: all of $iot', d1, '$iot/#', 128],
      ['device: fleet events', d1, '$fleet/#', 128],
      ['device: $SYS', d1, '$SYS/#', 128],
      ['device: ordinary topics', d1, 'plain/+', 1],
      ['device: everything outside $', d1, '#', 1],
      ['gateway: its child', gw, '$iot/c1/cmd/req', 1],
      ['gateway: not its child', gw, '$iot/d1/cmd/req', 128],
      ['gateway: an id that cannot exist', gw, '$iot/a{b}/cmd/req', 128],
      ['child: its own topic', c1, '$iot/c1/cmd/req', 1],
      ['service: all telemetry', svc, '$iot/+/telemetry', 1],
      ['service: all of $iot', svc, '$iot/#', 1],
      ['service: fleet events', svc, '$fleet/#', 1],
      ['service: $SYS', svc, '$SYS/#', 128],
      ['service: other $ topics', svc, '$other/x', 128],
      ['service: ordinary topics', svc, '#', 1],
    ]
    for (const [name, c, topic, code] of cases) t.equal(await granted(c, topic), code, `${name}: ${topic} → ${code}`)
  })

  await t.test('publications', async (t) => {
    const seen = inbox(watcher)
    await watcher.subscribeAsync(['$iot/#', '$fleet/#', '#'], { qos: 0 })
    const cases: [string, MqttClient, string, boolean][] = [
      ['device: own telemetry', d1, '$iot/d1/telemetry', true],
      ['device: own reported state', d1, '$iot/d1/twin/reported', true],
      ['device: own command result', d1, '$iot/d1/cmd/res', true],
      ['device: another device', d1, '$iot/d2/telemetry', false],
      ['device: own downlink', d1, '$iot/d1/twin/desired', false],
      ['device: forged event', d1, '$iot/d1/events/connected', false],
      ['device: forged decoded stream', d1, '$iot/d1/telemetry/decoded', false],
      ['device: fleet topic', d1, '$fleet/jobs/j/events', false],
      ['device: $SYS', d1, '$SYS/x', false],
      ['device: ordinary topic', d1, 'plain/d1', true],
      ['gateway: for its child', gw, '$iot/c1/telemetry', true],
      ['gateway: for a stranger', gw, '$iot/d1/telemetry', false],
      ['child: itself', c1, '$iot/c1/telemetry', true],
      ['service: a command to a device', svc, '$iot/d1/cmd/req', false],
      ['service: telemetry as a device', svc, '$iot/d1/telemetry', false],
      ['service: fleet topic', svc, '$fleet/x', false],
      ['service: ordinary topic', svc, 'plain/svc', true],
    ]
    for (const [i, [, c, topic]] of cases.entries()) await c.publishAsync(topic, `case-${i}`, { qos: 1 })
    await sleep(400)
    for (const [i, [name, , topic, delivered]] of cases.entries()) {
      const got = seen.box.some((m) => m.topic === topic && m.payload.toString() === `case-${i}`)
      t.equal(got, delivered, `${name}: ${topic} ${delivered ? 'delivered' : 'dropped'}`)
    }
    for (const c of [d1, gw, c1, svc]) t.ok(c.connected, 'a refused PUBLISH drops the message, not the connection')
    const metrics = await app.metrics.registry.getSingleMetricAsString('fleethub_rejected_total')
    t.match(metrics, /reason="publish_denied"\} 10/, 'and counts each one')
  })

  await t.test('# and + never match $ topics [MQTT-4.7.2-1]', async (t) => {
    const plain = await connect(url, deviceOpts('d2', (await app.registry.rotateKeys('d2')).primary))
    t.teardown(() => plain.endAsync(true))
    const box = inbox(plain)
    await plain.subscribeAsync(['#', '+/d1/telemetry'], { qos: 0 })
    await d1.publishAsync('$iot/d1/telemetry', 'hidden', { qos: 1 })
    await d1.publishAsync('open/topic', 'visible', { qos: 1 })
    t.ok(await box.next((m) => m.topic === 'open/topic'))
    t.notOk(box.box.some((m) => m.topic.startsWith('$')))
  })

  await t.test('a child created while its gateway is connected is usable at once', async (t) => {
    t.equal(await granted(gw, '$iot/c2/cmd/req'), 128, 'not a child yet')
    await createDevice(app, 'c2', { parentId: 'gw' })
    await sleep(50)
    t.equal(await granted(gw, '$iot/c2/cmd/req'), 1)
    await app.registry.deleteDevice('c2')
    await sleep(50)
    t.equal(await granted(gw, '$iot/c2/cmd/req'), 128, 'and no longer once deleted')
  })
})

t.test('a will must be one the client could publish', async (t) => {
  const app = await startTestApp(t)
  const k = await createDevice(app, 'w1')
  const bad = connect(mqttUrl(app), {
    ...deviceOpts('w1', k.primary),
    will: { topic: '$iot/other/telemetry', payload: Buffer.from('x'), qos: 0, retain: false },
  })
  await t.rejects(bad, { code: 5 }, 'a will on another device is refused at CONNECT')
  const good = await connect(mqttUrl(app), {
    ...deviceOpts('w1', k.primary),
    will: { topic: '$iot/w1/telemetry', payload: Buffer.from('bye'), qos: 0, retain: false },
  })
  const svc = await connect(mqttUrl(app), serviceOpts('svc-will'))
  t.teardown(() => svc.endAsync(true))
  const box = inbox(svc)
  await svc.subscribeAsync('$iot/+/telemetry')
  ;(good as unknown as { stream: { destroy(): void } }).stream.destroy()
  const will = await box.next((m) => m.topic === '$iot/w1/telemetry')
  t.equal(will?.payload.toString(), 'bye', 'its own will is published when the connection drops')
  good.end(true)
})

t.test('an ACL file decides outside $', async (t) => {
  const file = path.join(tmpdir(), `fh-acl-${process.pid}.conf`)
  writeFileSync(
    file,
    [
      '# devices own devices/{id}/…; everyone reads public/ but not public/secret',
      'topic read public/#',
      'topic deny public/secret',
      'pattern readwrite devices/%u/#',
      'user service:ops',
      'topic readwrite ops/#',
    ].join('\n'),
  )
  const app = await startTestApp(t, { FLEETHUB_ACL_FILE: file })
  const url = mqttUrl(app)
  const k = await createDevice(app, 'a1')
  const dev = await connect(url, deviceOpts('a1', k.primary))
  const ops = await connect(url, serviceOpts('svc-ops', 'ops'))
  const watch = await connect(url, serviceOpts('svc-w', 'ops'))
  t.teardown(() => Promise.all([dev, ops, watch].map((c) => c.endAsync(true))))
  const subs: [string, MqttClient, string, number][] = [
    ['device: its own subtree', dev, 'devices/a1/#', 1],
    ['device: another subtree', dev, 'devices/a2/x', 128],
    ['device: wider than its rule', dev, 'devices/+/x', 128],
    ['device: a public topic', dev, 'public/news', 1],
    ['device: the secret', dev, 'public/secret', 128],
    ['device: a filter that includes the secret', dev, 'public/#', 128],
    ['device: ops', dev, 'ops/x', 128],
    ['service: ops', ops, 'ops/#', 1],
    ['reserved topics still follow their own rules', dev, '$iot/a1/cmd/req', 1],
  ]
  for (const [name, c, topic, code] of subs) t.equal(await granted(c, topic), code, `${name}: ${topic} → ${code}`)
  const box = inbox(watch)
  await watch.subscribeAsync('ops/#')
  await ops.publishAsync('ops/restart', 'svc', { qos: 1 })
  await dev.publishAsync('ops/restart', 'dev', { qos: 1 })
  await dev.publishAsync('public/news', 'dev', { qos: 1 })
  await sleep(300)
  t.same(
    box.box.map((m) => m.payload.toString()),
    ['svc'],
    'only the service may publish to ops/',
  )
  t.ok(dev.connected)
})

t.test('a device that is no gateway costs one look-up per session, not one per foreign topic', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'plain')
  let lookups = 0
  const getRecord = app.registry.getRecord
  const hasChildren = app.registry.hasChildren
  app.registry.getRecord = async (id) => {
    lookups++
    return getRecord(id)
  }
  app.registry.hasChildren = async (id) => {
    lookups++
    return hasChildren(id)
  }
  t.teardown(() => {
    app.registry.getRecord = getRecord
    app.registry.hasChildren = hasChildren
  })
  const c = await connect(mqttUrl(app), deviceOpts('plain', keys.primary))
  t.teardown(() => c.endAsync(true))
  lookups = 0
  for (let i = 0; i < 50; i++) await c.publishAsync(`$iot/random-${i}/telemetry`, 'x', { qos: 1 })
  t.equal(lookups, 1, 'one "has it children?" look-up, then nothing')
  t.ok(c.connected)
})
