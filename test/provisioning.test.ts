// Provisioning: enrollments over HTTP, the device flow over MQTT with real clients, allocation
// policies (a real webhook server), re-provisioning, and every refusal the issue lists, on one
// in-memory node. Two hubs and a Redis cluster are in provisioning-hubs.test.ts.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import type { App } from '../broker/app.js'
import { signToken } from '../registry/credentials.js'
import {
  deriveDeviceKey,
  type HubEndpoint,
  hashedHub,
  parseHubs,
  registerTopic,
  responseTopic,
} from '../registry/provisioning.js'
import { connectDevice } from '../sdk/device.js'
import { RequestError } from '../sdk/errors.js'
import { failureOf, parseFailMix, parseFleetArgs } from '../sdk/fleet.js'
import { provision } from '../sdk/provision.js'
import { ADMIN_TOKEN, closedWithin, connackOf, connect, inbox, mqttUrl, sleep, startTestApp } from './helpers/app.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

function api(app: App) {
  return async (method: string, url: string, payload?: unknown) => {
    const r = await app.http.inject({
      method: method as 'GET',
      url,
      headers: auth,
      ...(payload !== undefined ? { payload: payload as object } : {}),
    })
    // biome-ignore lint/suspicious/noExplicitAny: test code reads whatever JSON the API answered
    return { status: r.statusCode, json: (r.body ? JSON.parse(r.body) : undefined) as any }
  }
}

/** The SUBACK code of subscribing one topic (128 = refused). */
async function granted(c: MqttClient, topic: string): Promise<number> {
  try {
    return (await c.subscribeAsync(topic))[0]?.qos ?? -1
  } catch (err) {
    return ((err as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1) as number
  }
}

/** A token not used before (each is accepted once): the expiry moves on by a second per call. */
let tick = 0
const token = (id: string, key: string) => signToken(id, key, Math.floor(Date.now() / 1000) + 300 + tick++)

function provisionOpts(enrollmentId: string, id: string, key: string) {
  return { clientId: id, username: `$provision/${enrollmentId}`, password: token(id, key) }
}

/** A webhook server whose answer the test decides per request. */
async function webhook(
  t: { teardown(fn: () => unknown): void },
  answer: (body: Record<string, unknown>) => { status: number; body: string } | undefined,
) {
  const seen: Record<string, unknown>[] = []
  const server: Server = createServer((req, res) => {
    let data = ''
    req.on('data', (c) => {
      data += c
    })
    req.on('end', () => {
      const body = JSON.parse(data) as Record<string, unknown>
      seen.push(body)
      const a = answer(body)
      if (!a) return // hang
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((r) => server.close(() => r(undefined)))
  })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/assign`, seen }
}

t.test('key derivation and allocation are pure and stable', async (t) => {
  const group = 'z40tL1UX92dcsTZeuNvEk8bfar5f5mOWIIhbFQv_as0'
  t.equal(deriveDeviceKey(group, 'dev-1'), deriveDeviceKey(group, 'dev-1'), 'the same key every time')
  t.not(deriveDeviceKey(group, 'dev-1'), deriveDeviceKey(group, 'dev-2'), 'another id, another key')
  t.equal(Buffer.from(deriveDeviceKey(group, 'dev-1'), 'base64url').length, 32, '32 bytes, like any device key')
  t.throws(() => deriveDeviceKey('short', 'dev-1'), /32 bytes/)

  const hubs: HubEndpoint[] = [
    { name: 'a', mqtt: 'mqtt://a:1883', weight: 1, tags: {} },
    { name: 'b', mqtt: 'mqtt://b:1883', weight: 3, tags: {} },
  ]
  const counts = { a: 0, b: 0 }
  for (let i = 0; i < 4000; i++) counts[hashedHub(`d-${i}`, hubs)?.name as 'a' | 'b']++
  t.ok(counts.b > 2.6 * counts.a && counts.b < 3.4 * counts.a, `weights 1:3 give ${counts.a}:${counts.b}`)
  t.equal(
    hashedHub('d-7', hubs)?.name,
    hashedHub('d-7', [...hubs].reverse())?.name,
    'order of the list does not matter',
  )
  t.equal(hashedHub('d-7', [hubs[0] as HubEndpoint])?.name, 'a', 'one hub takes everything')
  t.equal(hashedHub('d-7', [{ ...(hubs[0] as HubEndpoint), weight: 0 }]), undefined, 'unless its weight is 0')
  t.equal(hashedHub('d-7', []), undefined, 'no hub, no answer')
  // adding a hub moves only the ids the new hub wins
  const more = [...hubs, { name: 'c', mqtt: 'mqtt://c:1883', weight: 1, tags: {} }]
  let moved = 0
  for (let i = 0; i < 1000; i++) {
    const before = hashedHub(`d-${i}`, hubs)?.name
    const after = hashedHub(`d-${i}`, more)?.name
    if (before !== after) {
      moved++
      t.equal(after, 'c', 'a moved id went to the new hub')
      if (after !== 'c') break
    }
  }
  t.ok(moved > 100 && moved < 300, `about a fifth moved (${moved} of 1000)`)

  t.same(parseHubs(undefined), [{ name: 'local', mqtt: '', weight: 1, tags: {}, self: true }], 'unset: this node')
  t.throws(() => parseHubs('{'), /not JSON/)
  t.throws(() => parseHubs('[]'), /non-empty/)
  t.throws(() => parseHubs('[{"name":"x","mqtt":"http://x"}]'), /mqtt:/)
  t.throws(() => parseHubs('[{"name":"x"},{"name":"x"}]'), /twice/)
  t.throws(() => parseHubs('[{"name":"x","mqtt":"mqtt://x","api":{"url":"ftp://x","token":"t"}}]'), /http/)
})

t.test('fleethub simulate --provision: flags and the failure mix', async (t) => {
  const base = ['--provision', '--enrollment', 'e', '--group-key', 'k', '--count', '200']
  t.match(parseFleetArgs(base, {}), { enrollmentId: 'e', groupKey: 'k', count: 200, prefix: 'sim-' })
  t.throws(() => parseFleetArgs(['--provision', '--group-key', 'k'], {}), /--enrollment/)
  t.throws(() => parseFleetArgs([...base, '--count', '0'], {}), /--count/)
  t.throws(() => parseFleetArgs([...base, '--ota-fail', 'bad_hash:5'], {}), /--ota-dir/)
  const key = 'TgzV_NpOeuLi0WAAwfyZeQ1WAAwfyZeQ1WAAwfyZeQ1'
  const withOta = parseFleetArgs(
    [...base, '--ota-dir', '/tmp/x', '--ota-public-key', key, '--ota-fail', 'bad_hash:4,no_confirm:3'],
    {},
  )
  t.same(withOta.otaFailMix, [
    { failure: 'bad_hash', percent: 4 },
    { failure: 'no_confirm', percent: 3 },
  ])
  t.equal(withOta.ota?.fail, undefined, 'a mix is not one failure for all')
  t.throws(() => parseFailMix('melt:5'), /not one of/)
  t.throws(() => parseFailMix('bad_hash:60,no_confirm:50'), /over 100/)
  const mix = parseFailMix('bad_hash:4,no_confirm:3,crash_after_reboot:3')
  const counts: Record<string, number> = {}
  for (let n = 1; n <= 200; n++) {
    const f = failureOf(mix, n) ?? 'none'
    counts[f] = (counts[f] ?? 0) + 1
  }
  t.same(counts, { bad_hash: 8, no_confirm: 6, crash_after_reboot: 6, none: 180 }, 'the percents of 200 devices')
  t.equal(failureOf(mix, 1), failureOf(mix, 1), 'the same device every run')
})

t.test('provisioning on one node', async (t) => {
  const hook = await webhook(t, (body) => {
    const id = String(body.registrationId)
    if (id.startsWith('hang')) return undefined
    if (id.startsWith('garbage')) return { status: 200, body: 'not json' }
    if (id.startsWith('nohub')) return { status: 200, body: '{"hub":"mars"}' }
    if (id.startsWith('err')) return { status: 500, body: '{"error":"down"}' }
    return { status: 200, body: JSON.stringify({ hub: 'eu', tags: { chosenBy: 'webhook' } }) }
  })
  // this node is hub `eu` (region eu) and `us` (region us): two names for its own endpoints
  const hubs = JSON.stringify([
    { name: 'eu', tags: { region: 'eu' } },
    { name: 'us', tags: { region: 'us' } },
  ])
  const app = await startTestApp(t, { FLEETHUB_PROVISIONING_HUBS: hubs })
  const call = api(app)
  const url = mqttUrl(app)

  await t.test('enrollments over HTTP', async (t) => {
    const created = await call('POST', '/enrollments', {
      id: 'line-1',
      kind: 'group',
      tags: { factory: 'lyon' },
      desired: { config: { interval: 5 } },
      allocation: { policy: 'static', hub: 'eu' },
    })
    t.equal(created.status, 201)
    t.match(created.json.enrollment, { id: 'line-1', kind: 'group', status: 'enabled', reprovision: 'reassign' })
    t.equal(Buffer.from(created.json.key, 'base64url').length, 32, 'the group key, once')
    const got = await call('GET', '/enrollments/line-1')
    t.equal(got.status, 200)
    t.notOk('key' in got.json || 'secret' in got.json || 'rev' in got.json, 'never the key again')
    t.equal((await call('POST', '/enrollments', { id: 'line-1', kind: 'group' })).status, 409, 'ids are unique')
    t.equal((await call('GET', '/enrollments/nope')).status, 404)
    const bad = [
      { id: 'bad/id', kind: 'group' },
      { id: 'x1', kind: 'group', allocation: { policy: 'static' } },
      { id: 'x2', kind: 'group', allocation: { policy: 'static', hub: 'mars' } },
      { id: 'x3', kind: 'group', allocation: { policy: 'webhook', url: 'ftp://x' } },
      { id: 'x4', kind: 'group', allocation: { policy: 'tag' } },
      { id: 'x5', kind: 'group', registrationId: 'r' },
      { id: 'x6', kind: 'individual', registrationId: 'bad/id' },
      { id: 'x7', kind: 'group', modelId: 'bad model' },
      { id: 'x8', kind: 'robot' },
    ]
    for (const body of bad) {
      const r = await call('POST', '/enrollments', body)
      t.equal(r.status, 400, `refused: ${JSON.stringify(body)} (${r.json?.error?.message})`)
    }
    for (let i = 0; i < 5; i++) await call('POST', '/enrollments', { id: `page-${i}`, kind: 'group' })
    const p1 = await call('GET', '/enrollments?limit=3')
    t.equal(p1.json.items.length, 3)
    const p2 = await call('GET', `/enrollments?limit=3&cursor=${p1.json.nextCursor}`)
    t.notOk(p2.json.nextCursor, 'the last page says so')
    const ids = [...p1.json.items, ...p2.json.items].map((e: { id: string }) => e.id)
    t.same(ids, ['line-1', 'page-0', 'page-1', 'page-2', 'page-3', 'page-4'], 'paged in id order')
    t.equal((await call('DELETE', '/enrollments/page-4')).status, 204)
    t.equal((await call('DELETE', '/enrollments/page-4')).status, 404)
    const hubList = await call('GET', '/provisioning/hubs')
    t.same(
      hubList.json.items.map((h: { name: string; mqtt: string }) => [h.name, h.mqtt]),
      [
        ['eu', url],
        ['us', url],
      ],
      "hubs without endpoints are this node's",
    )
  })

  const groupKey = (await call('POST', '/enrollments/line-1/keys/rotate')).json.key as string

  await t.test('a group member provisions, then connects to its hub with its derived key', async (t) => {
    const p = await provision({ url, enrollmentId: 'line-1', registrationId: 'sensor-1', groupKey })
    t.equal(p.deviceId, 'sensor-1')
    t.equal(p.key, deriveDeviceKey(groupKey, 'sensor-1'), 'the derived key, computed on the device')
    t.same(p.hub, { mqtt: url, ws: `ws://127.0.0.1:${app.ports.ws}/mqtt` })
    const device = (await call('GET', '/devices/sensor-1')).json
    t.match(device, { id: 'sensor-1', status: 'enabled', tags: { factory: 'lyon' } }, 'registered with its tags')
    const d = await connectDevice({ url: p.hub.mqtt, deviceId: p.deviceId, key: p.key })
    t.teardown(() => d.end(true))
    const twin = await d.twin.get()
    t.same(twin.desired.config, { interval: 5 }, 'with its initial desired twin')
    const regs = (await call('GET', '/enrollments/line-1/registrations')).json
    t.match(regs.items, [{ registrationId: 'sensor-1', deviceId: 'sensor-1', hub: 'eu', count: 1 }])
    const reg = (await call('GET', '/registrations/sensor-1')).json
    t.match(reg.history, [{ hub: 'eu', enrollmentId: 'line-1', node: app.config.nodeId }], 'when and where')
    t.equal((await call('GET', '/registrations/unknown')).status, 404)
  })

  await t.test('re-provisioning keeps identity and twin, moves hub when the policy says so', async (t) => {
    await call('PATCH', '/devices/sensor-1/twin/desired', { config: { interval: 60 } })
    await call('PATCH', '/enrollments/line-1', { allocation: { policy: 'static', hub: 'us' } })
    const again = await provision({ url, enrollmentId: 'line-1', registrationId: 'sensor-1', groupKey })
    t.equal(again.deviceId, 'sensor-1')
    const twin = (await call('GET', '/devices/sensor-1/twin')).json
    t.same(twin.desired.config, { interval: 60 }, 'the twin stays, with what operators changed since')
    const reg = (await call('GET', '/registrations/sensor-1')).json
    t.equal(reg.count, 2)
    t.same(
      reg.history.map((s: { hub: string }) => s.hub),
      ['eu', 'us'],
      'history records the move',
    )
    await call('PATCH', '/enrollments/line-1', { reprovision: 'keep', allocation: { policy: 'static', hub: 'eu' } })
    await provision({ url, enrollmentId: 'line-1', registrationId: 'sensor-1', groupKey })
    t.equal((await call('GET', '/registrations/sensor-1')).json.hub, 'us', 'reprovision keep: the hub stays')
  })

  await t.test('individual enrollments', async (t) => {
    const created = await call('POST', '/enrollments', { id: 'solo', kind: 'individual', registrationId: 'pump-7' })
    t.equal(created.json.enrollment.registrationId, 'pump-7')
    const key = created.json.key as string
    t.equal(await connackOf(url, provisionOpts('solo', 'pump-8', key)), 4, 'another registration id cannot use it')
    const p = await provision({ url, enrollmentId: 'solo', registrationId: 'pump-7', key })
    t.equal(p.key, key, 'the device key is the enrollment key')
    const d = await connectDevice({ url, deviceId: 'pump-7', key })
    await d.end(true)
  })

  await t.test('refusals at CONNECT', async (t) => {
    const other = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
    t.equal(await connackOf(url, provisionOpts('line-1', 'x-1', deriveDeviceKey(other, 'x-1'))), 4, 'wrong derived key')
    t.equal(await connackOf(url, provisionOpts('line-1', 'x-1', groupKey)), 4, 'the group key itself is no device key')
    t.equal(await connackOf(url, provisionOpts('nope', 'x-1', groupKey)), 4, 'unknown enrollment')
    const key = deriveDeviceKey(groupKey, 'x-1')
    const expired = signToken('x-1', key, Math.floor(Date.now() / 1000) - 5)
    t.equal(await connackOf(url, { clientId: 'x-1', username: '$provision/line-1', password: expired }), 4, 'expired')
    const far = signToken('x-1', key, Math.floor(Date.now() / 1000) + 7200)
    t.equal(await connackOf(url, { clientId: 'x-1', username: '$provision/line-1', password: far }), 4, 'over 1 h')
    t.equal(
      await connackOf(url, { clientId: 'x-1', username: '$provision/line-1', password: key }),
      4,
      'a key in clear',
    )
    const once = { clientId: 'x-1', username: '$provision/line-1', password: token('x-1', key) }
    t.equal(await connackOf(url, once), 0, 'a fresh token is accepted')
    t.equal(await connackOf(url, once), 4, 'the same token again is a replay')
    t.equal(await connackOf(url, provisionOpts('line-1', 'bad.id+', key)), 2, 'a registration id outside the id rules')
    t.equal(await connackOf(url, { ...provisionOpts('line-1', 'x-1', key), username: '$provision/' }), 4)
    t.notOk((await call('GET', '/devices/x-1')).status === 200, 'nothing registered')
  })

  await t.test('a provisioning connection can do nothing else', async (t) => {
    const key = deriveDeviceKey(groupKey, 'probe-1')
    const c = await connect(url, provisionOpts('line-1', 'probe-1', key))
    t.teardown(() => c.endAsync(true))
    const box = inbox(c)
    for (const topic of ['$iot/probe-1/twin/res', '$provision/other/res', 'plain/topic', '#']) {
      t.equal(await granted(c, topic), 128, `no subscription to ${topic}`)
    }
    t.same((await c.subscribeAsync(responseTopic('probe-1')))[0]?.qos, 0, 'its own response topic is allowed')
    await c.publishAsync('$iot/probe-1/telemetry', '{}', { qos: 1 })
    await c.publishAsync('plain/topic', 'x', { qos: 1 })
    await c.publishAsync('$provision/other/register', '{"rid":"1"}', { qos: 1 })
    t.equal((await call('GET', '/devices/other')).status, 404, 'no registration under another id')
    c.publish(registerTopic('probe-1'), JSON.stringify({ rid: 'r1' }), { qos: 1 })
    const m = await box.next((x) => x.topic === responseTopic('probe-1'))
    t.match(JSON.parse(String(m?.payload)), { rid: 'r1', status: 200, deviceId: 'probe-1' }, 'answered exactly once')
    await closedWithin(c, 2000)
    t.pass('closed after the answer')
  })

  await t.test('a key rotated between CONNECT and register: the device gets the key it proved', async (t) => {
    await call('POST', '/enrollments', { id: 'turn', kind: 'group' })
    const oldKey = (await call('POST', '/enrollments/turn/keys/rotate')).json.key as string
    const key = deriveDeviceKey(oldKey, 'turn-1')
    const c = await connect(url, provisionOpts('turn', 'turn-1', key))
    t.teardown(() => c.endAsync(true))
    const box = inbox(c)
    const newKey = (await call('POST', '/enrollments/turn/keys/rotate')).json.key as string
    t.not(newKey, oldKey)
    c.publish(registerTopic('turn-1'), JSON.stringify({ rid: 'r' }), { qos: 1 })
    const m = await box.next((x) => x.topic === responseTopic('turn-1'))
    t.match(JSON.parse(String(m?.payload)), { status: 200, deviceId: 'turn-1' })
    await closedWithin(c, 2000)
    const d = await connectDevice({ url, deviceId: 'turn-1', key })
    t.pass('it connects to its hub with the key it provisioned with')
    await d.end(true)
    t.equal(
      await connackOf(url, {
        clientId: 'turn-1',
        username: 'turn-1',
        password: token('turn-1', deriveDeviceKey(newKey, 'turn-1')),
      }),
      4,
      'not with a key derived from the new group key, which it never had',
    )
  })

  await t.test('bad envelopes and disallowed models get a clear answer and register nothing', async (t) => {
    await call('POST', '/enrollments', { id: 'air', kind: 'group', modelId: 'acme.air' })
    const airKey = (await call('POST', '/enrollments/air/keys/rotate')).json.key as string
    const err = await provision({
      url,
      enrollmentId: 'air',
      registrationId: 'air-1',
      groupKey: airKey,
      payload: { modelId: 'acme.water' },
    }).catch((e: unknown) => e)
    t.ok(err instanceof RequestError)
    t.match(err, { status: 403, code: 'FLEETHUB_ERR_MODEL_NOT_ALLOWED' })
    t.equal((await call('GET', '/devices/air-1')).status, 404, 'nothing registered')
    const ok = await provision({ url, enrollmentId: 'air', registrationId: 'air-2', groupKey: airKey })
    t.equal((await call('GET', '/devices/air-2')).json.modelId, 'acme.air', "bound to the enrollment's model")

    for (const [payload, what] of [
      ['{not json', 'invalid JSON'],
      ['{"rid":""}', 'an empty rid'],
      [JSON.stringify({ rid: 'x'.repeat(65) }), 'a rid over 64 characters'],
      ['[1,2]', 'not an object'],
    ] as const) {
      const key = deriveDeviceKey(airKey, 'air-3')
      const c = await connect(url, provisionOpts('air', 'air-3', key))
      const box = inbox(c)
      c.publish(registerTopic('air-3'), payload, { qos: 0 })
      const m = await box.next((x) => x.topic === responseTopic('air-3'))
      t.match(JSON.parse(String(m?.payload)), { status: 400, error: { code: 'FLEETHUB_ERR_BAD_REQUEST' } }, what)
      await closedWithin(c, 2000)
    }
    t.equal((await call('GET', '/devices/air-3')).status, 404, 'nothing registered')
    t.ok(ok)
  })

  await t.test('a disabled enrollment refuses new registrations, its devices stay', async (t) => {
    await call('POST', '/enrollments', { id: 'old-line', kind: 'group' })
    const key = (await call('POST', '/enrollments/old-line/keys/rotate')).json.key as string
    const p = await provision({ url, enrollmentId: 'old-line', registrationId: 'old-1', groupKey: key })
    t.equal((await call('PATCH', '/enrollments/old-line', { status: 'disabled' })).json.status, 'disabled')
    t.equal(await connackOf(url, provisionOpts('old-line', 'old-2', deriveDeviceKey(key, 'old-2'))), 5, 'CONNACK 5')
    const d = await connectDevice({ url, deviceId: 'old-1', key: p.key })
    t.pass('a device it registered still connects')
    await d.end(true)
    t.equal((await call('GET', '/devices/old-2')).status, 404)
  })

  await t.test('an id registered through one enrollment is not taken over by another', async (t) => {
    await call('POST', '/enrollments', { id: 'rival', kind: 'group' })
    const key = (await call('POST', '/enrollments/rival/keys/rotate')).json.key as string
    const err = await provision({ url, enrollmentId: 'rival', registrationId: 'sensor-1', groupKey: key }).catch(
      (e: unknown) => e,
    )
    t.match(err, { status: 409, code: 'FLEETHUB_ERR_REGISTRATION_CONFLICT' })
    t.equal((await call('GET', '/registrations/sensor-1')).json.enrollmentId, 'line-1')
  })

  await t.test('tag policy', async (t) => {
    await call('POST', '/enrollments', { id: 'by-region', kind: 'group', allocation: { policy: 'tag', tag: 'region' } })
    const key = (await call('POST', '/enrollments/by-region/keys/rotate')).json.key as string
    await provision({
      url,
      enrollmentId: 'by-region',
      registrationId: 'r-us',
      groupKey: key,
      payload: { tags: { region: 'us' } },
    })
    t.equal((await call('GET', '/registrations/r-us')).json.hub, 'us', 'the hub whose region matches')
    const err = await provision({
      url,
      enrollmentId: 'by-region',
      registrationId: 'r-mars',
      groupKey: key,
      payload: { tags: { region: 'mars' } },
    }).catch((e: unknown) => e)
    t.match(err, { status: 409, code: 'FLEETHUB_ERR_NO_HUB' })
    const none = await provision({ url, enrollmentId: 'by-region', registrationId: 'r-none', groupKey: key }).catch(
      (e: unknown) => e,
    )
    t.match(none, { status: 409, message: /no tag region/ })
    t.equal((await call('GET', '/devices/r-mars')).status, 404)
  })

  await t.test('webhook policy', async (t) => {
    await call('POST', '/enrollments', {
      id: 'hooked',
      kind: 'group',
      tags: { line: 'h' },
      allocation: { policy: 'webhook', url: hook.url, timeoutMs: 300 },
    })
    const key = (await call('POST', '/enrollments/hooked/keys/rotate')).json.key as string
    const p = await provision({
      url,
      enrollmentId: 'hooked',
      registrationId: 'w-1',
      groupKey: key,
      payload: { fw: '1.0' },
    })
    t.equal(p.hub.mqtt, url)
    t.match(hook.seen.at(-1), {
      registrationId: 'w-1',
      enrollmentId: 'hooked',
      payload: { fw: '1.0' },
      tags: { line: 'h' },
    })
    t.match((await call('GET', '/devices/w-1')).json.tags, { line: 'h', chosenBy: 'webhook' }, 'tags from the webhook')
    for (const [id, status, code] of [
      ['hang-1', 504, 'FLEETHUB_ERR_WEBHOOK_TIMEOUT'],
      ['garbage-1', 502, 'FLEETHUB_ERR_WEBHOOK_FAILED'],
      ['nohub-1', 502, 'FLEETHUB_ERR_WEBHOOK_FAILED'],
      ['err-1', 502, 'FLEETHUB_ERR_WEBHOOK_FAILED'],
    ] as const) {
      const err = await provision({ url, enrollmentId: 'hooked', registrationId: id, groupKey: key }).catch(
        (e: unknown) => e,
      )
      t.match(err, { status, code }, `${id}: ${status}`)
      t.equal((await call('GET', `/devices/${id}`)).status, 404, `${id}: nothing registered`)
      t.equal((await call('GET', `/registrations/${id}`)).status, 404)
    }
  })

  await t.test('metrics count answers by status', async (t) => {
    const text = (await app.http.inject({ method: 'GET', url: '/metrics' })).body
    t.match(text, /fleethub_provisioning_registrations_total\{status="200"\} \d+/)
    t.match(text, /fleethub_provisioning_registrations_total\{status="504"\} 1/)
    t.match(text, /fleethub_auth_failures_total\{reason="replayed_token"\} 1/)
  })
  await sleep(0)
})
