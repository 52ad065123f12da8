// Provisioning end to end across broker processes: a bootstrap hub assigning devices to a separate
// hub (registered through its HTTP API) and moving one back; and a Redis cluster whose nodes are the
// hubs, sharing one store. Devices know only the bootstrap endpoint and their group key.
import t from 'tap'
import { signToken } from '../registry/credentials.js'
import { deriveDeviceKey } from '../registry/provisioning.js'
import { connectDevice } from '../sdk/device.js'
import { provision } from '../sdk/provision.js'
import { connackOf, waitFor } from './helpers/app.js'
import { api, exitOf, runCli, startNode } from './helpers/process.js'
import { freePort, startRedis } from './helpers/redis.js'

const TOKEN_A = 'bootstrap-admin-token-0123456789'
const TOKEN_B = 'hub-b-admin-token-0123456789'

t.test('a bootstrap hub and a separate hub', async (t) => {
  const b = await startNode({ FLEETHUB_ADMIN_TOKEN: TOKEN_B, FLEETHUB_NODE_ID: 'hub-b' }, t.teardown)
  t.teardown(() => b.stop())
  const urlB = `mqtt://127.0.0.1:${b.ports.mqtt}`
  const hubs = [
    { name: 'a' },
    {
      name: 'b',
      mqtt: urlB,
      ws: `ws://127.0.0.1:${b.ports.ws}/mqtt`,
      api: { url: `http://127.0.0.1:${b.ports.http}`, token: TOKEN_B },
    },
  ]
  const a = await startNode(
    { FLEETHUB_ADMIN_TOKEN: TOKEN_A, FLEETHUB_NODE_ID: 'hub-a', FLEETHUB_PROVISIONING_HUBS: JSON.stringify(hubs) },
    t.teardown,
  )
  t.teardown(() => a.stop())
  const urlA = `mqtt://127.0.0.1:${a.ports.mqtt}`

  const created = await api(a, TOKEN_A, 'POST', '/enrollments', {
    id: 'plant-7',
    kind: 'group',
    tags: { site: 'plant-7' },
    desired: { config: { interval: 30 } },
    allocation: { policy: 'static', hub: 'b' },
  })
  t.equal(created.status, 201)
  const groupKey = created.json.key as string
  t.same(
    (await api(a, TOKEN_A, 'GET', '/provisioning/hubs')).json.items.map((h: { name: string; remote: boolean }) => [
      h.name,
      h.remote,
    ]),
    [
      ['a', false],
      ['b', true],
    ],
  )

  // the device: flashed with the group key and the bootstrap endpoint, nothing else
  const p = await provision({ url: urlA, enrollmentId: 'plant-7', registrationId: 'meter-1', groupKey })
  t.same(p.hub, { mqtt: urlB, ws: `ws://127.0.0.1:${b.ports.ws}/mqtt` }, 'assigned to hub b')
  t.equal((await api(a, TOKEN_A, 'GET', '/devices/meter-1')).status, 404, 'not registered on the bootstrap hub')
  t.match((await api(b, TOKEN_B, 'GET', '/devices/meter-1')).json, { id: 'meter-1', tags: { site: 'plant-7' } })
  const d = await connectDevice({ url: p.hub.mqtt, deviceId: p.deviceId, key: p.key })
  const twin = await d.twin.get()
  t.same(twin.desired.config, { interval: 30 }, 'connected to hub b at once, with its initial twin')
  await d.end()

  // an operator changes its configuration on hub b; then the device is reset and moved to hub a
  t.equal((await api(b, TOKEN_B, 'PATCH', '/devices/meter-1/twin/desired', { config: { interval: 5 } })).status, 200)
  await api(a, TOKEN_A, 'PATCH', '/enrollments/plant-7', { allocation: { policy: 'static', hub: 'a' } })
  const moved = await provision({ url: urlA, enrollmentId: 'plant-7', registrationId: 'meter-1', groupKey })
  t.equal(moved.hub.mqtt, urlA, 'assigned to hub a now')
  t.equal(moved.key, p.key, 'same identity, same key')
  t.equal((await api(b, TOKEN_B, 'GET', '/devices/meter-1')).status, 404, 'gone from hub b')
  const d2 = await connectDevice({ url: moved.hub.mqtt, deviceId: 'meter-1', key: moved.key })
  t.same((await d2.twin.get()).desired.config, { interval: 5 }, 'its twin moved with it')
  await d2.end()
  const reg = (await api(a, TOKEN_A, 'GET', '/registrations/meter-1')).json
  t.same(
    reg.history.map((s: { hub: string }) => s.hub),
    ['b', 'a'],
    'the registry records where it went',
  )

  // hub b down: a clear answer, nothing half-registered
  await api(a, TOKEN_A, 'PATCH', '/enrollments/plant-7', { allocation: { policy: 'static', hub: 'b' } })
  await b.stop()
  const err = await provision({ url: urlA, enrollmentId: 'plant-7', registrationId: 'meter-2', groupKey }).catch(
    (e: unknown) => e,
  )
  t.match(err, { status: 502, code: 'FLEETHUB_ERR_HUB_UNAVAILABLE' })
  t.equal((await api(a, TOKEN_A, 'GET', '/registrations/meter-2')).status, 404)
})

t.test('a Redis cluster whose nodes are the hubs', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const [mqttA, mqttB] = [await freePort(), await freePort()]
  const hubs = JSON.stringify([
    { name: 'node-a', mqtt: `mqtt://127.0.0.1:${mqttA}` },
    { name: 'node-b', mqtt: `mqtt://127.0.0.1:${mqttB}` },
  ])
  const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_ADMIN_TOKEN: TOKEN_A, FLEETHUB_PROVISIONING_HUBS: hubs }
  const a = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-a', FLEETHUB_MQTT_PORT: String(mqttA) }, t.teardown)
  const b = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-b', FLEETHUB_MQTT_PORT: String(mqttB) }, t.teardown)
  t.teardown(() => Promise.all([a.stop(), b.stop()]))

  const created = await api(a, TOKEN_A, 'POST', '/enrollments', {
    id: 'fleet',
    kind: 'group',
    desired: { system: { logLevel: 'debug' } },
    allocation: { policy: 'static', hub: 'node-b' },
  })
  const groupKey = created.json.key as string
  const p = await provision({
    url: `mqtt://127.0.0.1:${mqttA}`,
    enrollmentId: 'fleet',
    registrationId: 'cl-1',
    groupKey,
  })
  t.equal(p.hub.mqtt, `mqtt://127.0.0.1:${mqttB}`, 'registered through node a, assigned to node b')
  const d = await connectDevice({ url: p.hub.mqtt, deviceId: 'cl-1', key: p.key })
  t.same((await d.twin.get()).desired.system, { logLevel: 'debug' }, 'node b knows it at once (shared store)')
  await d.end()
  t.equal((await api(b, TOKEN_A, 'GET', '/enrollments/fleet/registrations')).json.items.length, 1)

  // a token used on one node is a replay on the other
  const key = deriveDeviceKey(groupKey, 'cl-2')
  const once = {
    clientId: 'cl-2',
    username: '$provision/fleet',
    password: signToken('cl-2', key, Math.floor(Date.now() / 1000) + 60),
  }
  t.equal(await connackOf(`mqtt://127.0.0.1:${mqttA}`, once), 0)
  t.equal(await connackOf(`mqtt://127.0.0.1:${mqttB}`, once), 4, 'refused on the other node')
})

t.test('fleethub simulate --provision: a fleet from a group key', async (t) => {
  const hub = await startNode({ FLEETHUB_ADMIN_TOKEN: TOKEN_A }, t.teardown)
  t.teardown(() => hub.stop())
  const created = await api(hub, TOKEN_A, 'POST', '/enrollments', { id: 'sim-line', kind: 'group' })
  const sim = runCli(
    [
      'simulate',
      '--provision',
      '--url',
      `mqtt://127.0.0.1:${hub.ports.mqtt}`,
      '--enrollment',
      'sim-line',
      '--count',
      '3',
      '--prefix',
      'sim-',
    ],
    { FLEETHUB_GROUP_KEY: created.json.key },
  )
  let out = ''
  sim.stdout?.on('data', (d) => {
    out += d
  })
  sim.stderr?.on('data', (d) => {
    out += d
  })
  t.teardown(() => sim.kill('SIGKILL'))
  await waitFor(
    'three simulated devices online',
    async () => {
      const list = (await api(hub, TOKEN_A, 'GET', '/devices')).json
      return list.items.filter((d: { presence: { connected: boolean } }) => d.presence.connected).length === 3
    },
    30_000,
  )
  t.same(
    (await api(hub, TOKEN_A, 'GET', '/enrollments/sim-line/registrations')).json.items.map(
      (r: { registrationId: string }) => r.registrationId,
    ),
    ['sim-1', 'sim-2', 'sim-3'],
  )
  sim.kill('SIGINT')
  t.equal(await exitOf(sim), 0, out)
  t.match(out, /provisioned 3 of 3 devices/)
  t.match(out, /stopped: 3 provisioned, 0 failed/)
})
