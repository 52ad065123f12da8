// Models from the device's side, end to end on real sockets: binding with a 2-byte key (and the
// refusals: unknown key, another model than the registry's), self-descriptions (valid, invalid,
// oversize), compact telemetry read as JSON by a plain subscriber (single, batch with times),
// compact reported patches landing in the twin, bad frames reported and counted while the device
// keeps working, the SDK helpers, the worker pool, both stores, and a binding made on one node
// used on another.
import type { MqttClient } from 'mqtt'
import { unpack } from 'msgpackr'
import t, { type Test } from 'tap'
import type { App } from '../broker/app.js'
import { createCodec } from '../registry/compact.js'
import { keyBytes, type Model } from '../registry/models.js'
import { connectDevice } from '../sdk/index.js'
import { AIR_MODEL as sensor } from '../sdk/sample-model.js'
import {
  ADMIN_TOKEN,
  connect,
  createDevice,
  deviceOpts,
  inbox,
  mqttUrl,
  serviceOpts,
  startTestApp,
} from './helpers/app.js'
import { startRedis } from './helpers/redis.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
const reading = { temperature: 21.5, humidity: 40.2, co2: 412, door: 'open' }

async function register(app: App, def: object): Promise<Model> {
  const r = await app.http.inject({ method: 'POST', url: '/models', headers: auth, payload: def })
  if (r.statusCode !== 201) throw new Error(`POST /models: ${r.statusCode} ${r.body}`)
  return r.json()
}

/** A device on raw mqtt.js, subscribed to its twin answers. */
async function rawDevice(t: Test, app: App, id: string, key: string, url = mqttUrl(app)) {
  const c = await connect(url, deviceOpts(id, key))
  t.teardown(() => c.endAsync(true))
  const answers = inbox(c)
  await c.subscribeAsync(`$iot/${id}/twin/res`, { qos: 1 })
  return { c, answers }
}

const answerOf = (payload: Buffer) => {
  try {
    return JSON.parse(payload.toString())
  } catch {
    return unpack(payload)
  }
}

async function service(t: Test, app: App, name: string, topics: string[]) {
  const s = await connect(mqttUrl(app), serviceOpts(name))
  t.teardown(() => s.endAsync(true))
  const box = inbox(s)
  await s.subscribeAsync(topics, { qos: 1 })
  return box
}

async function suite(t: Test, env: Record<string, string>) {
  const app = await startTestApp(t, env)
  const model = await register(app, sensor)
  t.ok(model.key >= 1 && model.key <= 0xffff, `the model got key ${model.key}`)
  const codec = createCodec(model)

  await t.test('2-byte key, then compact telemetry a plain subscriber reads as JSON', async (t) => {
    const keys = await createDevice(app, 'm-1')
    const svc = await service(t, app, 'svc-m1', ['$iot/+/telemetry/decoded', '$iot/+/events/error'])
    const { c, answers } = await rawDevice(t, app, 'm-1', keys.primary)
    await c.publishAsync('$iot/m-1/model', keyBytes(model.key), { qos: 1 })
    const bound = await answers.next()
    t.same(answerOf(bound?.payload as Buffer), {
      rid: '$model',
      status: 200,
      body: { id: 'acme.air', version: 1, key: model.key },
    })
    const dev = (await app.http.inject({ method: 'GET', url: '/devices/m-1', headers: auth })).json()
    t.match(dev.model, { id: 'acme.air', version: 1, key: model.key, source: 'key' }, 'the binding shows on the device')

    await c.publishAsync('$iot/m-1/telemetry', codec.encodeTelemetry(reading), { qos: 1 })
    const decoded = await svc.next((m) => m.topic === '$iot/m-1/telemetry/decoded')
    const d = JSON.parse(decoded?.payload.toString() ?? '{}')
    t.match(d, { model: 'acme.air', version: 1, readings: [{ data: reading }] })
    t.ok(Math.abs(d.readings[0].ts - Date.now()) < 5000, 'stamped when received')

    const times = [1_764_000_000_000, 1_764_000_001_000, 1_764_000_002_000]
    const batch = times.map((_, i) => ({ ...reading, co2: 400 + i }))
    await c.publishAsync('$iot/m-1/telemetry', codec.encodeTelemetry(batch, { ts: times }), { qos: 0 })
    const many = JSON.parse(
      (await svc.next((m) => m.topic === '$iot/m-1/telemetry/decoded'))?.payload.toString() ?? '{}',
    )
    t.same(
      many.readings.map((r: { ts: number; data: { co2: number } }) => [r.ts, r.data.co2]),
      times.map((ts, i) => [ts, 400 + i]),
      'a batch with its times',
    )
    t.equal(svc.box.filter((m) => m.topic.endsWith('/events/error')).length, 0, 'no errors on the way')
  })

  await t.test('compact reported patches land in the twin', async (t) => {
    const keys = await createDevice(app, 'm-2')
    const { c, answers } = await rawDevice(t, app, 'm-2', keys.primary)
    await c.publishAsync('$iot/m-2/model', keyBytes(model.key), { qos: 1 })
    await answers.next()
    await c.publishAsync(
      '$iot/m-2/twin/reported',
      codec.encodeReported({ firmware: '2.1.0', interval: 30 }, { rid: 'p1' }),
      {
        qos: 1,
      },
    )
    t.match(answerOf((await answers.next())?.payload as Buffer), { rid: 'p1', status: 204, version: 2 })
    await c.publishAsync('$iot/m-2/twin/reported', codec.encodeReported({ interval: null }), { qos: 1 })
    await c.publishAsync('$iot/m-2/twin/reported', codec.encodeReported({}, { rid: 'p2' }), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), { rid: 'p2', status: 204 })
    const twin = (await app.http.inject({ method: 'GET', url: '/devices/m-2/twin', headers: auth })).json()
    t.match(twin.reported, { firmware: '2.1.0' })
    t.notOk('interval' in twin.reported, 'null deleted it')
  })

  await t.test('bad input: refused, reported, counted; the device keeps working', async (t) => {
    const keys = await createDevice(app, 'm-3')
    const svc = await service(t, app, 'svc-m3', ['$iot/m-3/events/error', '$iot/m-3/telemetry/decoded'])
    const { c, answers } = await rawDevice(t, app, 'm-3', keys.primary)
    const errorsOf = async (n: number) => {
      const out = []
      for (let i = 0; i < n; i++) {
        out.push(JSON.parse((await svc.next((m) => m.topic.endsWith('/events/error')))?.payload.toString() ?? '{}'))
      }
      return out
    }

    await c.publishAsync('$iot/m-3/telemetry', codec.encodeTelemetry(reading), { qos: 1 })
    t.match((await errorsOf(1))[0], { kind: 'decode', topic: 'telemetry', reason: 'no_model', error: /2-byte key/ })

    await c.publishAsync('$iot/m-3/model', keyBytes(0xfffe), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), {
      rid: '$model',
      status: 404,
      body: { code: 'FLEETHUB_ERR_MODEL_KEY_NOT_FOUND' },
    })
    t.match((await errorsOf(1))[0], { reason: 'binding' })

    await c.publishAsync('$iot/m-3/model', keyBytes(model.key), { qos: 1 })
    await answers.next()
    const good = codec.encodeTelemetry(reading)
    const bad = [
      good.subarray(0, 5),
      Buffer.concat([Buffer.of(0xf8), good.subarray(1)]),
      Buffer.concat([Buffer.of(0xe8), Buffer.from('d47240 92 a168 a174 0102'.replace(/ /g, ''), 'hex')]),
      codec.encodeReported({ interval: 5 }),
    ]
    for (const f of bad) await c.publishAsync('$iot/m-3/telemetry', f, { qos: 1 })
    const refused = await errorsOf(bad.length)
    t.same(
      refused.map((e) => e.reason),
      ['invalid', 'invalid', 'invalid', 'invalid'],
    )
    t.match(refused.map((e) => e.error).join('\n'), /truncated[\s\S]*version 3[\s\S]*own field names[\s\S]*not a field/)
    t.equal(refused.at(-1).count, 6, "the device's refused frames, counted")
    t.match(refused[0], { model: 'acme.air@1' })
    await c.publishAsync('$iot/m-3/telemetry', good, { qos: 1 })
    t.ok(await svc.next((m) => m.topic.endsWith('/telemetry/decoded')), 'and the next good frame decodes')
    t.ok(c.connected, 'still connected')
    const metrics = await app.metrics.registry.getSingleMetricAsString('fleethub_decode_errors_total')
    t.match(metrics, /model="acme.air@1",reason="invalid"\} [4-9]/)

    // self-descriptions: valid, invalid, oversize
    const self = { id: 'lab.proto', version: 3, telemetry: [{ name: 'x', type: 'number' }] }
    await c.publishAsync('$iot/m-3/model', JSON.stringify({ rid: 's1', model: self }), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), { rid: 's1', status: 200, body: { source: 'self' } })
    await c.publishAsync('$iot/m-3/model', JSON.stringify({ rid: 's2', model: { id: 'x', version: 1 } }), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), {
      rid: 's2',
      status: 400,
      body: { code: 'FLEETHUB_ERR_INVALID_MODEL', message: /at least one property/ },
    })
    const huge = {
      ...self,
      description: 'y'.repeat(200),
      telemetry: Array.from({ length: 64 }, (_, i) => ({
        name: `f${i}`,
        type: 'number',
        description: 'z'.repeat(250),
      })),
    }
    await c.publishAsync('$iot/m-3/model', JSON.stringify({ rid: 's3', model: huge }), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), { rid: 's3', status: 413 })
    const dev = (await app.http.inject({ method: 'GET', url: '/devices/m-3', headers: auth })).json()
    t.match(dev.model, { id: 'lab.proto', version: 3, source: 'self' }, 'the valid self-description is the binding')
    await c.publishAsync('$iot/m-3/telemetry', good, { qos: 1 })
    t.match((await errorsOf(1))[0], { reason: 'no_model', error: /described itself/ })
  })

  await t.test("a key for another model than the registry's is refused", async (t) => {
    await register(app, { ...sensor, id: 'acme.valve' })
    const keys = (await app.registry.createDevice({ id: 'm-4', modelId: 'acme.valve' })).keys
    const { c, answers } = await rawDevice(t, app, 'm-4', keys.primary)
    await c.publishAsync('$iot/m-4/model', keyBytes(model.key), { qos: 1 })
    t.match(answerOf((await answers.next())?.payload as Buffer), { status: 409, body: { message: /acme.valve/ } })
    const valve = (await app.http.inject({ method: 'GET', url: '/models/acme.valve', headers: auth })).json()
    const svc = await service(t, app, 'svc-m4', ['$iot/m-4/telemetry/decoded'])
    await c.publishAsync('$iot/m-4/telemetry', createCodec(valve).encodeTelemetry(reading), { qos: 1 })
    t.match(
      JSON.parse((await svc.next())?.payload.toString() ?? '{}'),
      { model: 'acme.valve' },
      'its registry model decodes',
    )
  })

  await t.test('the SDK: bind, compact telemetry and acknowledged reports', async (t) => {
    const keys = await createDevice(app, 'm-5')
    const svc = await service(t, app, 'svc-m5', ['$iot/m-5/telemetry/decoded'])
    const dev = await connectDevice({ url: mqttUrl(app), deviceId: 'm-5', key: keys.primary })
    t.teardown(() => dev.end(true))
    t.same(await dev.models.bindKey(model.key), { id: 'acme.air', version: 1, key: model.key })
    const compact = dev.models.compact(model)
    await compact.telemetry([reading, reading], { qos: 1 })
    t.equal(JSON.parse((await svc.next())?.payload.toString() ?? '{}').readings.length, 2)
    t.equal(await compact.report({ firmware: '3.0.0' }), 2, 'answered with the reported version')
    await t.rejects(dev.models.bindKey(0xfffd), { status: 404, code: 'FLEETHUB_ERR_MODEL_KEY_NOT_FOUND' })
    t.same(await dev.models.describe({ id: 'lab.m5', version: 1, telemetry: [{ name: 'v', type: 'number' }] }), {
      id: 'lab.m5',
      version: 1,
      source: 'self',
    })
  })
}

t.test('models in memory, decoded inline', async (t) => suite(t, { FLEETHUB_DECODE_POLICY: 'inline' }))
t.test('models in memory, decoded in the worker pool', async (t) =>
  suite(t, { FLEETHUB_DECODE_POLICY: 'pool', FLEETHUB_DECODE_THREADS: '1' }),
)

t.test('models in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('one node', async (t) => suite(t, { FLEETHUB_REDIS_URL: redis.url }))

  await t.test('bound on one node, decoded on another', async (t) => {
    const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_REDIS_PREFIX: 'mx' }
    const a = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'model-a' })
    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'model-b' })
    const model = await register(a, sensor)
    const keys = await createDevice(a, 'mx-1')
    const first = await rawDevice(t, a, 'mx-1', keys.primary)
    await first.c.publishAsync('$iot/mx-1/model', keyBytes(model.key), { qos: 1 })
    t.match(answerOf((await first.answers.next())?.payload as Buffer), { status: 200 })
    await first.c.endAsync()
    const svc = await service(t, b, 'svc-mx', ['$iot/mx-1/telemetry/decoded'])
    const again: MqttClient = await connect(mqttUrl(b), deviceOpts('mx-1', keys.primary))
    t.teardown(() => again.endAsync(true))
    await again.publishAsync('$iot/mx-1/telemetry', createCodec(model).encodeTelemetry(reading), { qos: 1 })
    t.match(JSON.parse((await svc.next())?.payload.toString() ?? '{}'), {
      model: 'acme.air',
      readings: [{ data: reading }],
    })
  })
})
