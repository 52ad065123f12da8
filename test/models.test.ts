// Device models over HTTP: registering versions with keys, reading them, paging, a device's binding
// (registry modelId, key, self-description), bad input; in memory, in Redis, and on two nodes
// sharing Redis (models by key and bindings seen across nodes).
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import type { App } from '../broker/app.js'
import type { ModelRegistry } from '../registry/model-registry.js'
import { MAX_MODEL_KEY } from '../registry/models.js'
import { ADMIN_TOKEN, createDevice, sleep, startTestApp, waitFor } from './helpers/app.js'
import { startRedis } from './helpers/redis.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

function client(app: App) {
  return async (method: string, url: string, payload?: unknown) => {
    const r = await app.http.inject({
      method: method as 'GET',
      url,
      headers: { ...auth, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(payload !== undefined ? { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) } : {}),
    })
    return { status: r.statusCode, json: r.body ? r.json() : undefined, headers: r.headers }
  }
}

const modelsOf = (app: App) => app.host.use<ModelRegistry>('models')

/** A 10-field air sensor, as in docs/models.md. */
const AIR = {
  id: 'acme.air',
  version: 1,
  displayName: 'Acme air sensor',
  properties: [
    { name: 'firmware', type: 'string', maxLength: 32 },
    { name: 'interval', type: 'integer', unit: 's', minimum: 10, maximum: 3600, writable: true },
  ],
  telemetry: [
    { name: 'temperature', type: 'number', unit: '°C', minimum: -40, maximum: 85, scale: 0.1 },
    { name: 'humidity', type: 'number', unit: '%', minimum: 0, maximum: 100, scale: 0.1 },
    { name: 'co2', type: 'integer', unit: 'ppm', minimum: 0, maximum: 10000 },
    { name: 'pm25', type: 'number', unit: 'µg/m³', minimum: 0, maximum: 1000, scale: 0.1 },
    { name: 'voc', type: 'integer', unit: 'ppb', minimum: 0, maximum: 60000 },
    { name: 'pressure', type: 'number', unit: 'hPa', minimum: 300, maximum: 1100, scale: 0.1 },
    { name: 'battery', type: 'integer', unit: '%', minimum: 0, maximum: 100 },
    { name: 'alarm', type: 'boolean' },
  ],
  commands: [{ name: 'calibrate', request: [{ name: 'co2', type: 'integer', unit: 'ppm' }] }],
}

const SELF = { id: 'self.probe', version: 3, telemetry: [{ name: 'level', type: 'number' }] }

async function modelSuite(t: Test, env: Record<string, string>) {
  const app = await startTestApp(t, env)
  const api = client(app)
  const models = modelsOf(app)

  await t.test('a model version is registered once and gets a key', async (t) => {
    const r = await api('POST', '/models', AIR)
    t.equal(r.status, 201)
    t.same(r.json, { ...AIR, key: r.json.key, createdAt: r.json.createdAt })
    t.ok(Number.isInteger(r.json.key) && r.json.key >= 1, 'a key from 1')
    t.equal(r.headers.location, '/models/acme.air?version=1')
    const again = await api('POST', '/models', { ...AIR, displayName: 'changed' })
    t.equal(again.status, 409)
    t.match(again.json.error, { code: 'FLEETHUB_ERR_MODEL_EXISTS', message: /acme\.air@1 already exists/ })
    const v2 = await api('POST', '/models', { ...AIR, version: 2, commands: undefined })
    t.equal(v2.status, 201)
    t.not(v2.json.key, r.json.key, 'each version has its own key')
    t.same(v2.json.commands, [], 'left-out sections are empty')

    t.equal((await api('GET', '/models/acme.air')).json.version, 2, 'latest by default')
    t.same((await api('GET', '/models/acme.air?version=1')).json, r.json)
    t.same((await api('GET', `/model-keys/${r.json.key}`)).json, r.json)
    t.same((await api('GET', '/models/acme.air/versions')).json, { id: 'acme.air', versions: [1, 2] })
    t.match((await api('GET', '/models/acme.air?version=9')).json.error, {
      code: 'FLEETHUB_ERR_MODEL_NOT_FOUND',
      message: 'model acme.air@9 does not exist',
    })
    t.equal((await api('GET', '/models/nope')).status, 404)
    t.equal((await api('GET', '/models/nope/versions')).status, 404)
    t.match((await api('GET', '/model-keys/65535')).json.error, { code: 'FLEETHUB_ERR_MODEL_KEY_NOT_FOUND' })
    t.equal((await api('GET', '/model-keys/0')).status, 400)
    t.equal((await api('GET', '/model-keys/x')).status, 400)
    t.equal((await api('PATCH', '/models/acme.air', {})).status, 404, 'no PATCH: versions are immutable')
    t.equal((await api('DELETE', '/models/acme.air')).status, 404, 'no DELETE')
  })

  await t.test('models are listed in id order, in pages', async (t) => {
    for (const id of ['m-c', 'm-a', 'm-b']) await api('POST', '/models', { ...SELF, id })
    const seen: { id: string; version: number; versions: number[] }[] = []
    let url = '/models?limit=2'
    for (let i = 0; i < 10; i++) {
      const page = await api('GET', url)
      t.equal(page.status, 200)
      seen.push(...page.json.items)
      if (!page.json.nextCursor) break
      url = `/models?limit=2&cursor=${page.json.nextCursor}`
    }
    t.same(
      seen.map((m) => m.id),
      ['acme.air', 'm-a', 'm-b', 'm-c'],
    )
    t.match(seen[0], { version: 2, versions: [1, 2] })
    t.match((await api('GET', '/models?cursor=AAAA')).json.error, { code: 'FLEETHUB_ERR_INVALID_CURSOR' })
    t.equal((await api('GET', '/models?limit=0')).status, 400)
  })

  await t.test('a bad definition is refused with what is wrong and where', async (t) => {
    const temp = { name: 't', type: 'number' }
    const bad: [string, unknown, RegExp][] = [
      ['not an object', [AIR], /a model is an object/],
      ['no body', undefined, /a model is an object/],
      ['an unknown key', { ...SELF, colour: 'red' }, /unknown key colour/],
      ['an unknown field key', { ...SELF, telemetry: [{ ...temp, precision: 2 }] }, /telemetry: unknown key precision/],
      ['a bad id', { ...SELF, id: 'a b' }, /id must match/],
      ['version 0', { ...SELF, version: 0 }, /version is a whole number/],
      ['a version that is text', { ...SELF, version: '1' }, /version is a whole number/],
      ['no fields', { id: 'x', version: 1 }, /at least one property or telemetry field/],
      ['a field twice', { ...SELF, telemetry: [temp, temp] }, /telemetry: t appears twice/],
      ['minimum above maximum', { ...SELF, telemetry: [{ ...temp, minimum: 5, maximum: 1 }] }, /t: minimum is above/],
      [
        'a scale on an integer',
        { ...SELF, telemetry: [{ ...temp, type: 'integer', scale: 1 }] },
        /scale is for numbers/,
      ],
      ['a bad field type', { ...SELF, telemetry: [{ ...temp, type: 'float' }] }, /telemetry\.t: type is one of/],
      ['writable telemetry', { ...SELF, telemetry: [{ ...temp, writable: true }] }, /writable is for properties/],
      ['65 fields', { ...SELF, telemetry: manyFields(65) }, /telemetry: at most 64 fields/],
    ]
    for (const [what, body, message] of bad) {
      const r = await api('POST', '/models', body)
      t.equal(r.status, 400, what)
      t.match(r.json?.error, { code: 'FLEETHUB_ERR_INVALID_MODEL', message }, what)
    }
    const huge = await api('POST', '/models', { ...SELF, id: 'huge', displayName: 'h', pad: 'p'.repeat(70_000) })
    t.equal(huge.status, 413, 'over 64 KiB of JSON')
    t.match(huge.json.error, { code: 'FLEETHUB_ERR_PAYLOAD_TOO_LARGE', message: /at most 65536 bytes/ })
    const body = await api('POST', '/models', { ...SELF, pad: 'p'.repeat(300_000) })
    t.equal(body.status, 413, 'over the 256 KiB body limit')
    const json = await api('POST', '/models', '{"id": ')
    t.match(json.json.error, { code: 'FLEETHUB_ERR_BAD_REQUEST' }, 'not JSON')
    t.equal((await api('GET', '/models/a%20b')).status, 404, 'nothing was stored')
    t.equal((await api('GET', '/models/huge')).status, 404)
  })

  await t.test('a device shows its binding: its modelId, a key, or its self-description', async (t) => {
    const air1 = (await api('GET', '/models/acme.air?version=1')).json
    const air2 = (await api('GET', '/models/acme.air')).json
    await app.registry.createDevice({ id: 'd-latest', modelId: 'acme.air' })
    await app.registry.createDevice({ id: 'd-pinned', modelId: 'acme.air@1' })
    await app.registry.createDevice({ id: 'd-unknown', modelId: 'not.there' })
    await createDevice(app, 'd-plain')

    const latest = (await api('GET', '/devices/d-latest')).json
    t.match(latest.model, { id: 'acme.air', version: 2, key: air2.key, source: 'registry', at: latest.createdAt })
    t.match((await api('GET', '/devices/d-pinned')).json.model, { version: 1, key: air1.key, source: 'registry' })
    const full = await api('GET', '/devices/d-latest/model')
    t.same(full.json, { binding: latest.model, model: air2 }, 'the binding with the model')
    t.notOk('model' in (await api('GET', '/devices/d-plain')).json, 'an unbound device has no model')
    t.notOk('model' in (await api('GET', '/devices/d-unknown')).json, 'nor one whose modelId names no model')
    t.match((await api('GET', '/devices/d-plain/model')).json.error, { code: 'FLEETHUB_ERR_MODEL_NOT_BOUND' })
    t.match((await api('GET', '/devices/ghost/model')).json.error, { code: 'FLEETHUB_ERR_DEVICE_NOT_FOUND' })

    t.equal(await models.bind('d-plain', { id: 'acme.air', version: 1, source: 'key', at: 'T' }), true)
    t.equal(await models.bind('d-plain', { id: 'acme.air', version: 1, source: 'key', at: 'T2' }), false, 'again')
    t.same((await api('GET', '/devices/d-plain')).json.model, {
      id: 'acme.air',
      version: 1,
      key: air1.key,
      source: 'key',
      at: 'T',
    })
    await t.rejects(models.bind('ghost', { id: 'acme.air', version: 1, source: 'key', at: 'T' }), {
      code: 'FLEETHUB_ERR_DEVICE_NOT_FOUND',
    })
    await t.rejects(models.bind('d-plain', { id: 'acme.air', version: 7, source: 'key', at: 'T' }), {
      code: 'FLEETHUB_ERR_MODEL_NOT_FOUND',
    })

    const b = await models.describe('d-unknown', SELF)
    t.match(b, { id: 'self.probe', version: 3, source: 'self' })
    const self = await api('GET', '/devices/d-unknown/model')
    t.same(self.json, { binding: b, self: { ...SELF, properties: [], commands: [] } }, 'a self-described model')
    t.notOk('key' in self.json.binding, 'self-described models have no key')
    await t.rejects(models.describe('d-unknown', { ...SELF, telemetry: 'x' }), { code: 'FLEETHUB_ERR_INVALID_MODEL' })
    await t.rejects(models.describe('d-unknown', { ...SELF, pad: 'x'.repeat(17_000) }), {
      code: 'FLEETHUB_ERR_PAYLOAD_TOO_LARGE',
    })

    const v3 = await api('POST', '/models', { ...AIR, version: 3 })
    await waitFor('d-latest follows the new version', async () => {
      return (await api('GET', '/devices/d-latest')).json.model.version === 3
    })
    t.equal((await api('GET', '/devices/d-latest')).json.model.key, v3.json.key)
    t.equal((await api('GET', '/devices/d-pinned')).json.model.version, 1, 'a pinned version stays')

    await models.unbind('d-pinned')
    t.match((await api('GET', '/devices/d-pinned')).json.model, { source: 'registry' }, 'its modelId, as before')
    await models.unbind('d-plain')
    t.notOk('model' in (await api('GET', '/devices/d-plain')).json, 'unbound')
    await models.bind('d-plain', { id: 'acme.air', version: 1, source: 'key', at: 'T' })
    await api('DELETE', '/devices/d-plain')
    await createDevice(app, 'd-plain')
    t.notOk('model' in (await api('GET', '/devices/d-plain')).json, 'a deleted device took its binding along')
  })
}

function manyFields(n: number) {
  return Array.from({ length: n }, (_, i) => ({ name: `f${i}`, type: 'number' }))
}

t.test('models in memory', async (t) => {
  await modelSuite(t, {})
})

t.test('models in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('one node', async (t) => modelSuite(t, { FLEETHUB_REDIS_URL: redis.url }))

  await t.test('two nodes: models, keys and bindings are shared', async (t) => {
    const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_REDIS_PREFIX: 'mn' }
    const a = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'm-a' })
    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'm-b' })
    const [onA, onB] = [client(a), client(b)]

    t.equal((await onB('GET', '/model-keys/1')).status, 404, 'B looks for a key before it exists')
    const created = await onA('POST', '/models', AIR)
    t.same((await onB('GET', `/model-keys/${created.json.key}`)).json, created.json, 'B finds it by key at once')

    const all = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? onA : onB)('POST', '/models', { ...SELF, id: `k${i}` })),
    )
    const keys = new Set(all.map((r) => r.json.key))
    t.equal(keys.size, 40, 'concurrent creates on both nodes never share a key')
    t.notOk(keys.has(created.json.key))

    await createDevice(a, 'shared')
    await b.registry.createDevice({ id: 'follower', modelId: 'acme.air' })
    await sleep(200) // the device.created events have arrived: what B reads next stays in its cache
    t.notOk('model' in (await onB('GET', '/devices/shared')).json, 'B has read the device unbound')
    await modelsOf(a).bind('shared', { id: 'acme.air', version: 1, source: 'key', at: 'T' })
    const seen = await waitFor(
      'B sees the binding set on A',
      async () => (await onB('GET', '/devices/shared')).json.model,
    )
    t.match(seen, { id: 'acme.air', version: 1, key: created.json.key, source: 'key' })
    t.equal((await onB('GET', '/devices/follower')).json.model.version, 1, 'B has resolved the latest version')
    await onA('POST', '/models', { ...AIR, version: 2 })
    await waitFor('B follows a new version created on A', async () => {
      return (await onB('GET', '/devices/follower')).json.model.version === 2
    })
    await modelsOf(b).describe('shared', SELF)
    await waitFor('A sees the self-description set on B', async () => {
      return (await onA('GET', '/devices/shared/model')).json.self?.id === 'self.probe'
    })

    const raw = new Redis(redis.url)
    t.teardown(() => raw.quit())
    await raw.set('mn:{models}:seq', String(MAX_MODEL_KEY))
    const full = await onB('POST', '/models', { ...SELF, id: 'one-too-many' })
    t.equal(full.status, 507, 'once every key is taken')
    t.match(full.json.error, { code: 'FLEETHUB_ERR_MODEL_KEYS_EXHAUSTED', message: /all 65535 model keys are taken/ })
  })
})
