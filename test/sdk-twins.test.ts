// The SDK's twin helpers against a real broker on real sockets: requests and their errors, desired
// state kept in step (live patches, a lost patch, a device that was offline, a reconnect), remote
// configuration converging, MessagePack, a gateway's child, and the sample device.
import type { IPublishPacket } from 'mqtt'
import { unpack } from 'msgpackr'
import t from 'tap'
import type { App } from '../broker/app.js'
import type { TwinApi } from '../plugins/twins/api.js'
import {
  connectDevice,
  DesiredHandlerError,
  type DesiredInfo,
  type DeviceOptions,
  type JsonObject,
  parseSimulateArgs,
  RequestError,
  RequestTimeoutError,
  runSampleDevice,
} from '../sdk/index.js'
import { connectService } from '../sdk/service.js'
import { ADMIN_TOKEN, type Closer, createDevice, mqttUrl, sleep, startTestApp, waitFor } from './helpers/app.js'
import { payloadOf, publishes } from './helpers/sdk.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

async function device(t: Closer, app: App, id: string, key: string, extra: Partial<DeviceOptions> = {}) {
  const dev = await connectDevice({ url: mqttUrl(app), deviceId: id, key, ...extra })
  t.teardown(() => dev.end(true))
  return dev
}

async function patchDesired(app: App, id: string, patch: object): Promise<number> {
  const r = await app.http.inject({
    method: 'PATCH',
    url: `/devices/${id}/twin/desired`,
    headers: auth,
    payload: patch,
  })
  if (r.statusCode !== 200) throw new Error(`PATCH desired of ${id}: ${r.statusCode} ${r.body}`)
  return r.json().desired.$version
}

async function twinView(app: App, id: string) {
  const r = await app.http.inject({ method: 'GET', url: `/devices/${id}/twin`, headers: auth })
  if (r.statusCode !== 200) throw new Error(`GET twin of ${id}: ${r.statusCode}`)
  return r.json()
}

const twinStore = (app: App) => app.host.use<TwinApi>('twins').twins

const jsonOf = (p: IPublishPacket) => JSON.parse(payloadOf(p).toString())

t.test('get and report round trips; refusals and timeouts are errors', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-rr')
  const dev = await device(t, app, 'tw-rr', keys.primary)

  t.equal(await dev.twin.report({ fw: '1.0.3', temp: { unit: 'C' } }), 2, 'a report answers the new version')
  t.equal(await dev.twin.report({ temp: { unit: null, max: 40 } }, { ifVersion: 2 }), 3, 'ifVersion at the version')
  const got = await dev.twin.get()
  t.match(got.reported, { fw: '1.0.3', temp: { max: 40 }, $version: 3 }, 'get shows reported with its version')
  t.notOk('unit' in (got.reported.temp as JsonObject), 'null deleted')
  t.type((got.reported.$metadata.fw as JsonObject).$lastUpdated, 'string', 'with metadata')
  t.match(got.desired, { $version: 1, $metadata: {} }, 'and desired')
  t.match((await twinView(app, 'tw-rr')).reported, { fw: '1.0.3', $version: 3 }, 'the broker stored it')

  const stale = await dev.twin.report({ fw: '9' }, { ifVersion: 2 }).catch((err: unknown) => err)
  t.ok(stale instanceof RequestError, 'a stale ifVersion rejects with a RequestError')
  t.match(stale, { status: 412, code: 'FLEETHUB_ERR_PRECONDITION_FAILED', message: /version 3, not 2/ })
  await t.rejects(
    dev.twin.report({ $version: 7 }),
    { status: 400, code: 'FLEETHUB_ERR_INVALID_PATCH' },
    'a reserved name is a 400',
  )
  await t.rejects(
    dev.twin.report({ huge: 'y'.repeat(40_000) }),
    { status: 413, code: 'FLEETHUB_ERR_TWIN_TOO_LARGE' },
    'too large is a 413',
  )
  t.equal((await dev.twin.get()).reported.$version, 3, 'refused reports changed nothing')
  await t.rejects(dev.twin.report([] as never), TypeError, 'a patch is an object')
  await t.rejects(dev.twin.report({ a: 1 }, { ifVersion: 0 }), TypeError, 'ifVersion is a version number')

  // a request made while offline waits for the reconnect (within its timeout) and is answered
  dev.mqtt.options.reconnectPeriod = 0
  app.broker.disconnectLocal('tw-rr', 'test')
  await waitFor('offline', () => !dev.mqtt.connected)
  // mqtt.js sends what it queued while offline before it resubscribes: the SDK must not count on that
  for (let i = 0; i < 20; i++) void dev.publishTelemetry({ i }, { qos: 1 })
  const whileOffline = dev.twin.report({ fw: '1.0.4' }, { timeoutMs: 5000 })
  await sleep(100)
  dev.mqtt.options.reconnectPeriod = 100
  dev.mqtt.reconnect()
  t.equal(await whileOffline, 4, 'a request made while offline is answered once the device is back')

  // a device that lost its connection (and does not reconnect) gets no answer
  const keys2 = await createDevice(app, 'tw-rr2')
  const offline = await device(t, app, 'tw-rr2', keys2.primary, { reconnectPeriodMs: 0, requestTimeoutMs: 300 })
  await offline.twin.get()
  app.broker.disconnectLocal('tw-rr2', 'test')
  await waitFor('disconnected', () => !offline.mqtt.connected)
  const t0 = Date.now()
  const late = await offline.twin.get().catch((err: unknown) => err)
  t.ok(late instanceof RequestTimeoutError, 'no answer in time rejects with a RequestTimeoutError')
  t.match(late, { code: 'FLEETHUB_SDK_TIMEOUT', message: /no answer to twin\/get .* within 300 ms/ })
  t.ok(Date.now() - t0 < 2000, 'after the default timeout of the client')
  await t.rejects(
    offline.twin.get({ timeoutMs: 50 }),
    { name: 'RequestTimeoutError', timeoutMs: 50 },
    'a timeout per call',
  )
  const waiting = offline.twin.get({ timeoutMs: 10_000 })
  const t1 = Date.now()
  await offline.end()
  await t.rejects(waiting, /the client has ended/, 'end() fails the requests still waiting')
  t.ok(Date.now() - t1 < 1000, 'at once, not at their timeout')
  await t.rejects(offline.twin.report({ a: 1 }), /the client has ended/, 'and any made after it')
})

t.test('MessagePack envelopes', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-mp')
  const dev = await device(t, app, 'tw-mp', keys.primary, { encoding: 'msgpack' })
  const sent = publishes(dev, 'packetsend', '/twin/reported')
  const answers = publishes(dev, 'packetreceive', '/twin/res')

  t.equal(await dev.twin.report({ fw: '2.0', at: new Date(0) as never, gone: undefined as never }), 2)
  const first = payloadOf(sent[0] as IPublishPacket)
  // msgpackr writes map16 headers (0xde) where a fixmap (0x80-0x8f) would do: a map either way
  t.ok(first[0] === 0xde || (first[0] !== undefined && first[0] >> 4 === 0x8), 'the request is a MessagePack map')
  t.match(unpack(first), { rid: /.+/, patch: { fw: '2.0', at: '1970-01-01T00:00:00.000Z' } }, 'of the JSON form')
  t.notOk('gone' in unpack(first).patch, 'undefined dropped, as JSON would')
  t.ok(
    answers.every((a) => payloadOf(a)[0] !== 0x7b),
    'answers came in MessagePack',
  )
  t.match(await dev.twin.get(), { reported: { fw: '2.0', at: '1970-01-01T00:00:00.000Z', $version: 2 } })
  await t.rejects(
    dev.twin.report({ a: 1 }, { ifVersion: 1 }),
    { name: 'RequestError', status: 412 },
    'errors decode too',
  )

  const seen: number[] = []
  await dev.twin.onDesired((_desired, info) => {
    seen.push(info.version)
  })
  await patchDesired(app, 'tw-mp', { config: { x: 1 } })
  await waitFor('desired version 2', () => seen.includes(2))
  t.same(seen, [1, 2], 'desired state follows (FleetHub sends desired messages in JSON)')
  await t.rejects(
    connectDevice({ url: mqttUrl(app), deviceId: 'tw-mp', key: keys.primary, encoding: 'cbor' as never }),
    TypeError,
  )
})

t.test('onDesired: live patches in order, each acknowledged', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-live')
  const dev = await device(t, app, 'tw-live', keys.primary)
  const gets = publishes(dev, 'packetsend', '/twin/get')
  const calls: [JsonObject, DesiredInfo][] = []
  let running = 0
  let overlapped = false
  const remove = await dev.twin.onDesired(async (desired, info) => {
    calls.push([desired, info])
    overlapped ||= running > 0
    running++
    await sleep(40) // slow on purpose: later versions wait, none is skipped
    running--
  })
  t.same(calls, [[{}, { version: 1, full: true }]], 'onDesired resolves once the current document was handed over')

  const patches = [
    { config: { a: 1 } },
    { config: { b: 2 } },
    { system: { logLevel: 'debug' } },
    { config: { a: null } },
    { label: 'x' },
  ]
  for (const p of patches) await patchDesired(app, 'tw-live', p)
  await waitFor('version 6', () => calls.length === 6)
  t.same(
    calls.slice(1).map(([, info]) => info),
    patches.map((patch, i) => ({ version: i + 2, patch, full: false })),
    'each live patch once, in order, with its patch',
  )
  t.notOk(overlapped, 'one version at a time: a handler never runs before the previous one resolved')
  const final = { config: { b: 2 }, system: { logLevel: 'debug' }, label: 'x' }
  t.same(calls[5]?.[0], final, 'merged into the whole document')
  t.same(dev.twin.desired(), { version: 6, desired: final }, 'which the SDK keeps')
  t.match((await twinView(app, 'tw-live')).desired, { ...final, $version: 6 }, 'as FleetHub has it')
  t.equal(gets.length, 1, 'one twin/get at start, none for live patches')
  await waitFor('acknowledged', async () => (await twinStore(app).get('tw-live')).desiredSeen === 6)
  t.pass('the last version is acknowledged ($lastDesiredVersion)')

  remove()
  await patchDesired(app, 'tw-live', { label: 'y' })
  await sleep(200)
  t.equal(calls.length, 6, 'a removed handler is not called')

  // autoAck off: the device acknowledges itself
  const keys2 = await createDevice(app, 'tw-noack')
  const manual = await device(t, app, 'tw-noack', keys2.primary, { autoAck: false })
  const versions: number[] = []
  await manual.twin.onDesired((_d, info) => {
    versions.push(info.version)
  })
  await patchDesired(app, 'tw-noack', { a: 1 })
  await patchDesired(app, 'tw-noack', { a: 2 })
  await waitFor('version 3', () => versions.includes(3))
  await sleep(100)
  t.equal((await twinStore(app).get('tw-noack')).desiredSeen, 1, 'nothing acknowledged but the first read')
  await manual.twin.report({ $lastDesiredVersion: 3 })
  t.equal((await twinStore(app).get('tw-noack')).desiredSeen, 3, 'until the device reports it')
})

t.test('a lost live patch is a gap: the SDK re-reads the twin', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-gap')
  const dev = await device(t, app, 'tw-gap', keys.primary)
  const gets = publishes(dev, 'packetsend', '/twin/get')
  const calls: [JsonObject, DesiredInfo][] = []
  await dev.twin.onDesired((desired, info) => {
    calls.push([desired, info])
  })
  await patchDesired(app, 'tw-gap', { config: { a: 1 } })
  await waitFor('version 2', () => calls.length === 2)
  t.equal(gets.length, 1, 'one read at start')

  // version 3 is written without its live message (the device never sees it), version 4 with one
  await twinStore(app).patch('tw-gap', 'desired', { config: { b: 2 } })
  await patchDesired(app, 'tw-gap', { config: { c: 3 } })
  await waitFor('version 4', () => calls.length === 3)
  t.same(
    calls[2],
    [{ config: { a: 1, b: 2, c: 3 } }, { version: 4, full: true }],
    'the handler gets the whole document of version 4, the lost change included',
  )
  t.equal(gets.length, 2, 'read with twin/get')
  await patchDesired(app, 'tw-gap', { config: { d: 4 } })
  await waitFor('version 5', () => calls.length === 4)
  t.same(calls[3]?.[1], { version: 5, patch: { config: { d: 4 } }, full: false }, 'and in step again after it')
  await waitFor('acknowledged', async () => (await twinStore(app).get('tw-gap')).desiredSeen === 5)

  // stale messages (a duplicate, or two concurrent changes published out of order) change nothing
  await app.broker.publish('$iot/tw-gap/twin/desired', JSON.stringify({ version: 3, patch: { config: { old: 1 } } }))
  await app.broker.publish('$iot/tw-gap/twin/desired', JSON.stringify({ version: 4, desired: { config: {} } }))
  await app.broker.publish('$iot/tw-gap/twin/desired', JSON.stringify({ version: 5, patch: { config: { dup: 1 } } }))
  await sleep(200)
  t.equal(calls.length, 4, 'older and repeated versions are ignored')
  t.equal(gets.length, 2, 'without reading the twin')
  t.same(dev.twin.desired()?.desired, { config: { a: 1, b: 2, c: 3, d: 4 } }, 'the document is unchanged')
})

t.test('remote configuration converges; a failing handler reports nothing', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-cfg')
  const errors: Error[] = []
  const dev = await device(t, app, 'tw-cfg', keys.primary, { onError: (e) => errors.push(e) })
  const reports = publishes(dev, 'packetsend', '/twin/reported')
  const configs: [JsonObject, number][] = []
  const systems: [JsonObject, number][] = []
  await dev.onConfig((config, { version }) => {
    if (config.mode === 'bad') throw new Error('mode bad is not supported')
    configs.push([config, version])
  })
  await dev.onSystem((system, { version }) => {
    systems.push([system as JsonObject, version])
  })
  t.same(configs, [[{}, 1]], 'the config handler had the (empty) section before onConfig resolved')
  t.same(systems, [[{}, 1]], 'so had the system handler')

  const config = { mode: 'eco', n: 1 }
  const system = { logLevel: 'debug', reportingIntervalSec: 5, timeServer: 'pool.ntp.org:123' }
  const v2 = await patchDesired(app, 'tw-cfg', { config, system })
  t.notOk((await twinView(app, 'tw-cfg')).converged, 'not converged before the device applied it')
  const view = await waitFor('converged', async () => {
    const v = await twinView(app, 'tw-cfg')
    return v.converged && v
  })
  t.match(view.reported, { config, system }, 'reported shows what was applied')
  t.notOk('pending' in view, 'nothing pending')
  const applied = reports.map(jsonOf).filter((r) => r.patch.$lastDesiredVersion === v2)
  t.equal(applied.length, 1, 'one reported patch for the version')
  t.same(applied[0]?.patch, { config, system, $lastDesiredVersion: v2 }, 'with both sections and the acknowledgement')
  t.equal((await twinStore(app).get('tw-cfg')).desiredSeen, v2, 'acknowledged')

  const v3 = await patchDesired(app, 'tw-cfg', { config: { mode: 'bad' } })
  const failed = await waitFor('the handler error', () => errors.find((e) => e instanceof DesiredHandlerError))
  t.match(failed, { version: v3, message: /version 3 failed: mode bad is not supported/ }, 'reported to onError')
  t.match((failed as Error).cause, { message: 'mode bad is not supported' }, 'with the cause')
  await sleep(200)
  t.equal(reports.map(jsonOf).filter((r) => r.patch.$lastDesiredVersion === v3).length, 0, 'nothing reported for it')
  t.match(await twinView(app, 'tw-cfg'), { converged: false, pending: { config: { mode: 'bad' } } })
  t.equal((await twinStore(app).get('tw-cfg')).desiredSeen, v2, 'nor acknowledged')

  const v4 = await patchDesired(app, 'tw-cfg', { config: { mode: 'fixed', n: null } })
  await waitFor('converged again', async () => (await twinView(app, 'tw-cfg')).converged)
  t.same(configs.at(-1), [{ mode: 'fixed' }, v4], 'the handler gets the section as it is now')
  t.same(
    reports.map(jsonOf).find((r) => r.patch.$lastDesiredVersion === v4)?.patch,
    { config: { mode: 'fixed', n: null }, $lastDesiredVersion: v4 },
    'a removed setting is reported as removed; the unchanged system section is not reported again',
  )
  t.same((await twinView(app, 'tw-cfg')).reported.config, { mode: 'fixed' })
  t.equal(systems.length, 2, 'the system handler ran only when system changed')
  t.equal(errors.length, 1, 'no other errors')
})

t.test('a version that failed is applied again after a reconnect', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-retry')
  const errors: Error[] = []
  const dev = await device(t, app, 'tw-retry', keys.primary, { reconnectPeriodMs: 100, onError: (e) => errors.push(e) })
  const applied: [JsonObject, number][] = []
  let failNext = false
  await dev.onConfig((config, { version }) => {
    applied.push([config, version])
    if (failNext) {
      failNext = false
      throw new Error('flash busy')
    }
  })
  failNext = true
  const v2 = await patchDesired(app, 'tw-retry', { config: { rate: 5 } })
  await waitFor('the failure', () => errors.length === 1)
  t.match(await twinView(app, 'tw-retry'), { converged: false }, 'nothing reported')

  const back = new Promise((resolve) => dev.mqtt.once('connect', resolve))
  app.broker.disconnectLocal('tw-retry', 'test')
  await back
  await waitFor('converged after the reconnect', async () => (await twinView(app, 'tw-retry')).converged)
  t.same(
    applied,
    [
      [{}, 1],
      [{ rate: 5 }, v2],
      [{ rate: 5 }, v2],
    ],
    'the same version again, from the full document FleetHub sends to a device that did not acknowledge it',
  )
  t.equal((await twinStore(app).get('tw-retry')).desiredSeen, v2, 'acknowledged this time')

  // a version that came by twin/get (at start) counts as seen, so FleetHub does not resend it: the
  // SDK reads the twin again itself after the reconnect
  const keys2 = await createDevice(app, 'tw-retry2')
  const v = await patchDesired(app, 'tw-retry2', { config: { rate: 7 } })
  const attempts: number[] = []
  const dev2 = await device(t, app, 'tw-retry2', keys2.primary, { reconnectPeriodMs: 100, onError: () => {} })
  await dev2.onConfig((_config, { version }) => {
    attempts.push(version)
    if (attempts.length === 1) throw new Error('flash busy')
  })
  t.match(await twinView(app, 'tw-retry2'), { converged: false }, 'the first attempt failed')
  const back2 = new Promise((resolve) => dev2.mqtt.once('connect', resolve))
  app.broker.disconnectLocal('tw-retry2', 'test')
  await back2
  await waitFor('converged after the reconnect', async () => (await twinView(app, 'tw-retry2')).converged)
  t.same(attempts, [v, v], 'applied again after the reconnect')
})

t.test('a device that was offline gets one full document and converges', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'tw-off')
  await patchDesired(app, 'tw-off', { config: { a: 1 } })
  await patchDesired(app, 'tw-off', { config: { b: 2 }, system: { logLevel: 'warn' } })
  await patchDesired(app, 'tw-off', { config: { a: null }, system: { reportingIntervalSec: 30 } })

  const dev = await device(t, app, 'tw-off', keys.primary)
  const gets = publishes(dev, 'packetsend', '/twin/get')
  const desiredIn = publishes(dev, 'packetreceive', '/twin/desired')
  const calls: DesiredInfo[] = []
  const configs: [JsonObject, number][] = []
  await dev.twin.onDesired((_d, info) => {
    calls.push(info)
  })
  await dev.onConfig((config, { version }) => {
    configs.push([config, version])
  })
  await dev.onSystem(() => {})
  t.same(calls, [{ version: 4, full: true }], 'a device starting up gets everything at once')
  t.same(configs, [[{ b: 2 }, 4]])
  await waitFor('converged', async () => (await twinView(app, 'tw-off')).converged)
  t.match((await twinView(app, 'tw-off')).reported, { config: { b: 2 }, system: { logLevel: 'warn' } })

  // offline with its state: no reconnect until the test asks for it
  dev.mqtt.options.reconnectPeriod = 0
  app.broker.disconnectLocal('tw-off', 'test')
  await waitFor('offline', () => !dev.mqtt.connected && !app.broker.localSession('tw-off'))
  const getsBefore = gets.length
  await patchDesired(app, 'tw-off', { config: { c: 3 } })
  await patchDesired(app, 'tw-off', { system: { logLevel: 'trace' } })
  t.notOk((await twinView(app, 'tw-off')).converged)
  dev.mqtt.options.reconnectPeriod = 100
  dev.mqtt.reconnect()

  await waitFor('converged after the reconnect', async () => (await twinView(app, 'tw-off')).converged)
  t.same(calls.slice(1), [{ version: 6, full: true }], 'one full document after the reconnect')
  t.same(configs.at(-1), [{ b: 2, c: 3 }, 6])
  t.equal(desiredIn.filter((p) => 'desired' in jsonOf(p)).length, 1, 'FleetHub sent it once')
  t.equal(gets.length, getsBefore, 'without a twin/get: FleetHub pushed it on the resubscription')
  t.match((await twinView(app, 'tw-off')).reported, { config: { b: 2, c: 3 }, system: { logLevel: 'trace' } })
  t.equal((await twinStore(app).get('tw-off')).desiredSeen, 6, 'acknowledged')
})

t.test('a gateway follows its child’s twin', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'gw-t')
  await createDevice(app, 'gw-t-child', { parentId: 'gw-t' })
  await createDevice(app, 'gw-t-stranger')
  const gw = await device(t, app, 'gw-t', keys.primary)
  const child = gw.forChild('gw-t-child')
  t.equal(gw.forChild('gw-t-child'), child, 'one handle per child')
  t.equal(await child.twin.report({ lux: 310 }), 2, 'reports for the child')
  t.match((await twinView(app, 'gw-t-child')).reported, { lux: 310 }, 'land in the child’s twin')
  t.match((await twinView(app, 'gw-t')).reported, { $version: 1 }, 'not the gateway’s')
  const seen: JsonObject[] = []
  await child.onConfig((config) => {
    seen.push(config)
  })
  await patchDesired(app, 'gw-t-child', { config: { gain: 2 } })
  await waitFor('child converged', async () => (await twinView(app, 'gw-t-child')).converged)
  t.same(seen.at(-1), { gain: 2 }, 'the child’s configuration applied')
  await t.rejects(gw.forChild('gw-t-stranger').twin.get(), /refused the subscription to twin\/res/)
})

t.test('the sample device follows system.reportingIntervalSec and stops on abort', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'sample-1')
  const svc = await connectService({ url: mqttUrl(app), name: 'sample-test', token: ADMIN_TOKEN })
  t.teardown(() => svc.end(true))
  const readings: { at: number; value: JsonObject }[] = []
  await svc.onTelemetry((id, value) => {
    if (id === 'sample-1') readings.push({ at: Date.now(), value: value as JsonObject })
  })
  const lines: string[] = []
  const stop = new AbortController()
  t.teardown(() => stop.abort())
  const run = runSampleDevice({
    url: mqttUrl(app),
    deviceId: 'sample-1',
    key: keys.primary,
    auth: 'token',
    signal: stop.signal,
    log: (line) => lines.push(line),
  })
  await waitFor('the first reading', () => readings.length === 1)
  t.match(readings[0]?.value, { temp: Number, humidity: Number, uptimeSec: Number }, 'fake readings')
  await sleep(1500)
  t.equal(readings.length, 1, 'every 10 s by default')
  t.notOk(
    lines.some((l) => / debug /.test(l)),
    'log level info by default',
  )

  await patchDesired(app, 'sample-1', { system: { reportingIntervalSec: 1, logLevel: 'debug' } })
  await waitFor('3 more readings', () => readings.length >= 4, 6000)
  const gaps = readings.slice(1).map((r, i) => r.at - (readings[i] as { at: number }).at)
  t.ok(
    gaps.slice(1).every((g) => g > 600 && g < 1600),
    `then every second (${gaps.slice(1).join(', ')} ms)`,
  )
  const view = await waitFor('converged', async () => {
    const v = await twinView(app, 'sample-1')
    return v.converged && v
  })
  t.match(view.reported.system, { reportingIntervalSec: 1, logLevel: 'debug' }, 'it reports what it applied')
  t.ok(
    lines.some((l) => / debug sample-1: telemetry \{/.test(l)),
    'and logs at the new level',
  )

  stop.abort()
  const t0 = Date.now()
  const summary = await run
  t.ok(Date.now() - t0 < 2000, 'stops promptly on abort')
  t.ok(summary.telemetrySent >= 4, `counts what it sent (${summary.telemetrySent})`)
  await waitFor('disconnected', () => !app.broker.localSession('sample-1'))
  const after = readings.length
  await sleep(1300)
  t.equal(readings.length, after, 'and sends nothing after')
  t.equal(summary.telemetrySent, after, 'everything it sent arrived')

  const idle = await runSampleDevice({
    url: mqttUrl(app),
    deviceId: 'sample-1',
    key: keys.primary,
    signal: stop.signal,
  })
  t.same(idle, { telemetrySent: 0 }, 'an aborted signal stops it before it starts')
})

t.test('parseSimulateArgs', async (t) => {
  const key = 'k'.repeat(43)
  t.same(parseSimulateArgs(['--device-id', 'd1', '--key', key], {}), {
    url: 'mqtt://localhost:1883',
    deviceId: 'd1',
    key,
  })
  t.same(
    parseSimulateArgs(['--url=ws://h:8083/mqtt', '--device-id=d1', '--auth', 'token'], { FLEETHUB_DEVICE_KEY: key }),
    { url: 'ws://h:8083/mqtt', deviceId: 'd1', key, auth: 'token' },
    'the key from FLEETHUB_DEVICE_KEY, flags with =',
  )
  t.equal(parseSimulateArgs(['--device-id', 'd1', '--key', 'a'], { FLEETHUB_DEVICE_KEY: key }).key, 'a', 'flag wins')
  t.throws(() => parseSimulateArgs(['--key', key], {}), /missing option --device-id/)
  t.throws(() => parseSimulateArgs(['--device-id', 'd1'], {}), /missing option --key/)
  t.throws(
    () => parseSimulateArgs(['--device-id', 'd1', '--key', key, '--auth', 'x'], {}),
    /--auth must be key or token/,
  )
  t.throws(() => parseSimulateArgs(['--device-id', '--key', key], {}), /device-id.*(ambiguous|needs a value)/is)
  t.throws(() => parseSimulateArgs(['--device-id', 'd1', '--key', key, '--port', '1'], {}), /unknown option '--port'/i)
})
