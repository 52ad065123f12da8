// Commands end to end: results and acknowledgements over HTTP, failures, timeouts, queued delivery,
// late and duplicate answers, idempotency, cancellation, gateways, cross-node, key rollover.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MqttClient } from 'mqtt'
import t, { type Test } from 'tap'
import type { App } from '../broker/app.js'
import { verifierOf } from '../registry/credentials.js'
import {
  ADMIN_TOKEN,
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

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tls')

interface Request {
  rid: string
  name: string
  body?: unknown
  deadline: number
}

/** A device that answers its commands with `answer` (ack 202 first unless it returns 'silent'). */
async function responder(
  app: App,
  id: string,
  key: string,
  answer: (r: Request) => { status: number; body?: unknown } | 'silent' = (r) => ({
    status: 200,
    body: { echo: r.body },
  }),
  opts: { url?: string; ca?: Buffer; subscribeTo?: string[] } = {},
) {
  const c = await connect(opts.url ?? mqttUrl(app), { ...deviceOpts(id, key), ...(opts.ca ? { ca: opts.ca } : {}) })
  const seen: Request[] = []
  c.on('message', (topic, payload) => {
    if (!topic.endsWith('/cmd/req')) return
    const r = JSON.parse(payload.toString()) as Request
    seen.push(r)
    const a = answer(r)
    if (a === 'silent') return
    const res = topic.replace('/cmd/req', '/cmd/res')
    c.publish(res, JSON.stringify({ rid: r.rid, status: 202 }), { qos: 1 })
    c.publish(res, JSON.stringify({ rid: r.rid, ...a }), { qos: 1 })
  })
  await c.subscribeAsync(opts.subscribeTo ?? [`$iot/${id}/cmd/req`], { qos: 1 })
  return { client: c, seen }
}

function api(app: App) {
  return (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    app.http.inject({ method: method as 'GET', url, headers: { ...auth, ...headers }, ...(payload ? { payload } : {}) })
}

async function suite(t: Test, env: Record<string, string>) {
  const app = await startTestApp(t, { FLEETHUB_COMMAND_QUEUE_MAX: '3', ...env })
  const call = api(app)

  await t.test('a command gets the device’s result; services see every state', async (t) => {
    const keys = await createDevice(app, 'c-1')
    const d = await responder(app, 'c-1', keys.primary)
    const svc = await connect(mqttUrl(app), serviceOpts('svc-cmd'))
    t.teardown(() => Promise.all([d.client.endAsync(true), svc.endAsync(true)]))
    const events = inbox(svc)
    await svc.subscribeAsync('$iot/+/events/command', { qos: 1 })
    const r = await call('POST', '/devices/c-1/commands/reboot', { body: { delay: 1 }, timeoutMs: 5000 })
    t.equal(r.statusCode, 200)
    const out = r.json()
    t.match(out, { status: 200, body: { echo: { delay: 1 } } })
    t.match(d.seen[0], { rid: out.id, name: 'reboot', body: { delay: 1 } })
    t.ok((d.seen[0]?.deadline ?? 0) > Date.now(), 'with its deadline')
    const record = (await call('GET', `/devices/c-1/commands/${out.id}`)).json()
    t.same(
      record.history.map((h: { state: string }) => h.state),
      ['queued', 'delivered', 'acknowledged', 'succeeded'],
    )
    t.match(record, { state: 'succeeded', result: { status: 200 }, ack: {} })
    const states = []
    for (let i = 0; i < 4; i++) states.push(JSON.parse((await events.next())?.payload.toString() ?? '{}').state)
    t.same(states, ['queued', 'delivered', 'acknowledged', 'succeeded'])
  })

  await t.test('a command sent between CONNACK and SUBSCRIBE waits for the SUBSCRIBE', async (t) => {
    const keys = await createDevice(app, 'c-early')
    const c = await connect(mqttUrl(app), deviceOpts('c-early', keys.primary))
    t.teardown(() => c.endAsync(true))
    const pending = call('POST', '/devices/c-early/commands/hello', { body: { n: 1 }, timeoutMs: 5000 })
    await sleep(150)
    c.on('message', (_topic, payload) => {
      const r = JSON.parse(payload.toString()) as Request
      c.publish('$iot/c-early/cmd/res', JSON.stringify({ rid: r.rid, status: 200, body: r.body }), { qos: 1 })
    })
    await c.subscribeAsync('$iot/c-early/cmd/req', { qos: 1 })
    const r = await pending
    t.equal(r.statusCode, 200, 'delivered once the device subscribed')
    t.same(r.json().body, { n: 1 })

    // a connected device that never subscribes: the command expires at its deadline, 504
    const never = await call('POST', '/devices/c-early/commands/x', { timeoutMs: 200 })
    await c.unsubscribeAsync('$iot/c-early/cmd/req')
    const lost = await call('POST', '/devices/c-early/commands/lost', { timeoutMs: 200 })
    t.equal(never.statusCode, 200, 'while subscribed it answers')
    t.equal(lost.statusCode, 504)
    t.equal(lost.json().error.code, 'FLEETHUB_ERR_COMMAND_TIMEOUT')
    t.equal((await call('GET', `/devices/c-early/commands/${lost.json().id}`)).json().state, 'expired')
  })

  await t.test('acknowledgement only, failures, timeouts and refusals', async (t) => {
    const keys = await createDevice(app, 'c-2')
    const d = await responder(app, 'c-2', keys.primary, (r) =>
      r.name === 'fail' ? { status: 503, body: { code: 'E_BUSY' } } : r.name === 'ignore' ? 'silent' : { status: 200 },
    )
    t.teardown(() => d.client.endAsync(true))
    const acked = await call('POST', '/devices/c-2/commands/slow', { ack: true })
    t.equal(acked.statusCode, 202)
    t.match(acked.json(), { state: 'acknowledged' })
    await sleep(100)
    t.equal((await call('GET', `/devices/c-2/commands/${acked.json().id}`)).json().state, 'succeeded')
    const failed = await call('POST', '/devices/c-2/commands/fail', {})
    t.equal(failed.statusCode, 200, 'a failure the device reports is an answer')
    t.match(failed.json(), { status: 503, body: { code: 'E_BUSY' } })
    t.equal((await call('GET', `/devices/c-2/commands/${failed.json().id}`)).json().state, 'failed')
    const silent = await call('POST', '/devices/c-2/commands/ignore', { timeoutMs: 300 })
    t.equal(silent.statusCode, 504)
    t.equal(silent.json().error.code, 'FLEETHUB_ERR_COMMAND_TIMEOUT')
    t.equal((await call('GET', `/devices/c-2/commands/${silent.json().id}`)).json().state, 'timed_out')
    const refused: [string, object, number, string][] = [
      ['/devices/c-2/commands/reboot', { timeoutMs: 999_999_999 }, 400, 'FLEETHUB_ERR_BAD_REQUEST'],
      ['/devices/c-2/commands/$changeKey', {}, 400, 'FLEETHUB_ERR_BAD_REQUEST'],
      [`/devices/c-2/commands/${'x'.repeat(65)}`, {}, 400, 'FLEETHUB_ERR_BAD_REQUEST'],
      ['/devices/c-2/commands/reboot', { body: 'y'.repeat(70_000) }, 413, 'FLEETHUB_ERR_PAYLOAD_TOO_LARGE'],
      ['/devices/nobody/commands/reboot', {}, 404, 'FLEETHUB_ERR_DEVICE_NOT_FOUND'],
      ['/devices/c-2/commands/reboot', { extra: 1 }, 400, 'FLEETHUB_ERR_BAD_REQUEST'],
    ]
    for (const [url, body, status, code] of refused) {
      const r = await call('POST', url, body)
      t.equal(r.statusCode, status, `${url.slice(0, 40)} ${JSON.stringify(body).slice(0, 30)} → ${status}`)
      t.equal(r.json().error.code, code)
    }
    await createDevice(app, 'c-offline')
    const offline = await call('POST', '/devices/c-offline/commands/reboot', {})
    t.equal(offline.statusCode, 409)
    t.equal(offline.json().error.code, 'FLEETHUB_ERR_DEVICE_OFFLINE')
  })

  await t.test('queued commands: kept, delivered in order, bounded, expiring, cancellable', async (t) => {
    const keys = await createDevice(app, 'c-3')
    const ids = []
    for (const name of ['first', 'second', 'third']) {
      const r = await call('POST', `/devices/c-3/commands/${name}`, { queue: { ttlMs: 60_000 }, body: { name } })
      t.equal(r.statusCode, 202)
      t.match(r.json(), { state: 'queued' })
      ids.push(r.json().id)
    }
    const full = await call('POST', '/devices/c-3/commands/fourth', { queue: { ttlMs: 60_000 } })
    t.equal(full.statusCode, 429, 'over the bound')
    t.equal(full.json().error.code, 'FLEETHUB_ERR_QUEUE_FULL')
    t.equal((await call('DELETE', `/devices/c-3/commands/${ids[1]}`)).json().state, 'cancelled')
    const d = await responder(app, 'c-3', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    for (let i = 0; i < 500 && d.seen.length < 2; i++) await sleep(20)
    await sleep(100)
    t.same(
      d.seen.map((r) => r.name),
      ['first', 'third'],
      'delivered in order once the device subscribed; the cancelled one never',
    )
    await sleep(100)
    t.equal((await call('GET', `/devices/c-3/commands/${ids[0]}`)).json().state, 'succeeded')
    t.equal(
      (await call('DELETE', `/devices/c-3/commands/${ids[0]}`)).statusCode,
      409,
      'a finished command cannot be cancelled',
    )

    await createDevice(app, 'c-4')
    const short = await call('POST', '/devices/c-4/commands/stale', { queue: { ttlMs: 50 } })
    await sleep(150)
    const keys4 = (await app.registry.rotateKeys('c-4')).primary
    const d4 = await responder(app, 'c-4', keys4)
    t.teardown(() => d4.client.endAsync(true))
    await sleep(200)
    t.equal(d4.seen.length, 0, 'an expired command is not delivered')
    t.equal((await call('GET', `/devices/c-4/commands/${short.json().id}`)).json().state, 'expired')
  })

  await t.test('late, duplicate, foreign and invalid answers are dropped and counted', async (t) => {
    const keys = await createDevice(app, 'c-5')
    const other = await createDevice(app, 'c-6')
    let cmdTopicClient: MqttClient | undefined
    const d = await responder(app, 'c-5', keys.primary, () => 'silent')
    cmdTopicClient = d.client
    const o = await responder(app, 'c-6', other.primary)
    const svc = await connect(mqttUrl(app), serviceOpts('svc-err'))
    t.teardown(() => Promise.all([d.client.endAsync(true), o.client.endAsync(true), svc.endAsync(true)]))
    const errorsBox = inbox(svc)
    await svc.subscribeAsync('$iot/+/events/error', { qos: 1 })
    const pending = call('POST', '/devices/c-5/commands/once', { timeoutMs: 3000 })
    for (let i = 0; i < 500 && d.seen.length === 0; i++) await sleep(10)
    const rid = d.seen[0]?.rid as string
    const res = '$iot/c-5/cmd/res'
    const send = (m: object) => cmdTopicClient?.publishAsync(res, JSON.stringify(m), { qos: 1 })
    await send({ rid, status: 200, body: { n: 1 } })
    await send({ rid, status: 200, body: { n: 2 } })
    await send({ rid, status: 202 })
    await send({ rid: 'not-a-command', status: 200 })
    await send({ rid, status: 700 })
    await o.client.publishAsync('$iot/c-6/cmd/res', JSON.stringify({ rid, status: 200 }), { qos: 1 })
    await cmdTopicClient?.publishAsync(res, '{broken', { qos: 1 })
    const r = await pending
    t.match(r.json(), { status: 200, body: { n: 1 } }, 'the first answer wins')
    await sleep(200)
    const m = await app.metrics.registry.getSingleMetricAsString('fleethub_command_answers_dropped_total')
    const count = (reason: string) => Number(new RegExp(`reason="${reason}"\\} (\\d+)`).exec(m)?.[1] ?? 0)
    t.equal(count('late') + count('duplicate'), 2, 'a second result and an ack after it: late or duplicate')
    t.match(m, /reason="unknown"\} 2/, "an unknown rid and another device's rid")
    t.match(m, /reason="invalid"\} 2/, 'a status out of range and a broken envelope')
    t.ok(errorsBox.box.length >= 5, 'services are told on events/error')
  })

  await t.test('Idempotency-Key: a retried request does not run the command twice', async (t) => {
    const keys = await createDevice(app, 'c-7')
    const d = await responder(app, 'c-7', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    const headers = { 'idempotency-key': 'order-4711' }
    const [a, b] = await Promise.all([
      call('POST', '/devices/c-7/commands/pay', { body: { amount: 3 } }, headers),
      call('POST', '/devices/c-7/commands/pay', { body: { amount: 3 } }, headers),
    ])
    const c = await call('POST', '/devices/c-7/commands/pay', { body: { amount: 3 } }, headers)
    t.equal(d.seen.length, 1, 'the device got the command once')
    t.equal(a.json().id, b.json().id)
    t.equal(a.json().id, c.json().id, 'later retries too')
    t.same(c.json(), a.json(), 'with the same answer')
  })

  await t.test('a gateway answers for its child on the child’s topics', async (t) => {
    const gw = await createDevice(app, 'gw-c')
    await createDevice(app, 'kid-c', { parentId: 'gw-c' })
    const g = await responder(
      app,
      'gw-c',
      gw.primary,
      (r) => ({ status: 200, body: { via: 'gateway', name: r.name } }),
      {
        subscribeTo: ['$iot/kid-c/cmd/req'],
      },
    )
    t.teardown(() => g.client.endAsync(true))
    const r = await call('POST', '/devices/kid-c/commands/blink', {})
    t.equal(r.statusCode, 200, 'the child counts as reachable through its gateway')
    t.match(r.json(), { status: 200, body: { via: 'gateway', name: 'blink' } })
    const rollover = await call('POST', '/devices/kid-c/keys/rollover', {})
    t.equal(rollover.statusCode, 403, "a child's new key would travel over its gateway's plain TCP")
    t.match(rollover.json().error.message, /TLS/)
  })

  await t.test('key rollover', async (t) => {
    const keys = await createDevice(app, 'c-8')
    const plain = await responder(app, 'c-8', keys.primary)
    const refused = await call('POST', '/devices/c-8/keys/rollover', {})
    t.equal(refused.statusCode, 403, 'not over a connection without TLS')
    t.match(refused.json().error.message, /TLS/)
    await plain.client.endAsync()

    const ca = readFileSync(path.join(fixtures, 'cert.pem'))
    const tlsUrl = `mqtts://localhost:${app.ports.mqtts}`
    let newKey = ''
    let refuse = true
    const d = await responder(
      app,
      'c-8',
      keys.primary,
      (r) => {
        if (r.name !== '$changeKey') return { status: 404 }
        if (refuse) return { status: 500, body: { code: 'E_FLASH' } }
        newKey = (r.body as { key: string }).key
        return { status: 200 }
      },
      { url: tlsUrl, ca },
    )
    t.teardown(() => d.client.endAsync(true))
    const failed = await call('POST', '/devices/c-8/keys/rollover', {})
    t.equal(failed.statusCode, 502, 'the device refused: nothing changes')
    const before = (await call('GET', '/devices/c-8')).json().keysRotatedAt
    t.equal(
      (await app.registry.getRecord('c-8'))?.verifiers.primary,
      verifierOf(keys.primary),
      'the old key is still the key',
    )
    const stored = (await call('GET', `/devices/c-8/commands/${d.seen[0]?.rid}`)).json()
    t.notMatch(JSON.stringify(stored), /[A-Za-z0-9_-]{43}/, 'the record never holds the key')

    refuse = false
    const ok = await call('POST', '/devices/c-8/keys/rollover', {})
    t.equal(ok.statusCode, 200, ok.body)
    t.not(ok.json().keysRotatedAt, before)
    t.match(newKey, /^[A-Za-z0-9_-]{43}$/, 'the device got a new key')
    t.ok(d.client.connected, 'and kept its session')
    await sleep(50)
    t.equal(await connackOf(mqttUrl(app), deviceOpts('c-8', newKey)), 0, 'the new key works')
    t.equal(await connackOf(mqttUrl(app), deviceOpts('c-8', keys.primary)), 4, 'the old primary no longer')
    t.equal(await connackOf(mqttUrl(app), deviceOpts('c-8', keys.secondary)), 0, 'the secondary is untouched')
  })
}

const tls = () => ({
  FLEETHUB_TLS_CERT: path.join(fixtures, 'cert.pem'),
  FLEETHUB_TLS_KEY: path.join(fixtures, 'key.pem'),
})

t.test('commands in memory', async (t) => suite(t, tls()))

t.test('commands in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('one node', async (t) => suite(t, { ...tls(), FLEETHUB_REDIS_URL: redis.url }))

  await t.test('the request on one node, the device on another', async (t) => {
    const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_REDIS_PREFIX: 'x' }
    const a = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'cmd-a' })
    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'cmd-b' })
    const keys = await createDevice(a, 'x-1')
    const d = await responder(b, 'x-1', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    await sleep(100)
    for (const [name, node] of [
      ['via-a', a],
      ['via-b', b],
    ] as const) {
      const r = await api(node)('POST', `/devices/x-1/commands/${name}`, { body: { name } })
      t.equal(r.statusCode, 200, `${name}: answered`)
      t.match(r.json(), { body: { echo: { name } } })
    }

    // the device on b has connected but not subscribed yet when a sends the command
    const early = await createDevice(a, 'x-2')
    const c = await connect(mqttUrl(b), deviceOpts('x-2', early.primary))
    t.teardown(() => c.endAsync(true))
    await sleep(100)
    const pending = api(a)('POST', '/devices/x-2/commands/hello', { timeoutMs: 5000 })
    await sleep(150)
    c.on('message', (_topic, payload) => {
      const r = JSON.parse(payload.toString()) as Request
      c.publish('$iot/x-2/cmd/res', JSON.stringify({ rid: r.rid, status: 200 }), { qos: 1 })
    })
    await c.subscribeAsync('$iot/x-2/cmd/req', { qos: 1 })
    t.equal((await pending).statusCode, 200, 'delivered by b once the device subscribed')
  })

  await t.test('key rollover across nodes: the key travels with the signal, never the store', async (t) => {
    const env = { ...tls(), FLEETHUB_REDIS_URL: redis.url, FLEETHUB_REDIS_PREFIX: 'k' }
    const a = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'key-a' })
    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'key-b' })
    const keys = await createDevice(a, 'k-1')
    let newKey = ''
    const ca = readFileSync(path.join(fixtures, 'cert.pem'))
    const d = await responder(
      b,
      'k-1',
      keys.primary,
      (r) => {
        newKey = (r.body as { key: string }).key
        return { status: 200 }
      },
      { url: `mqtts://localhost:${b.ports.mqtts}`, ca },
    )
    t.teardown(() => d.client.endAsync(true))
    await sleep(100)
    const ok = await api(a)('POST', '/devices/k-1/keys/rollover', {})
    t.equal(ok.statusCode, 200, ok.body)
    t.match(newKey, /^[A-Za-z0-9_-]{43}$/, 'the device on b got the key from a')
    t.equal((await a.registry.getRecord('k-1'))?.verifiers.primary, verifierOf(newKey))
  })

  await t.test('a queued command survives a restart of the broker', async (t) => {
    const env = { FLEETHUB_REDIS_URL: redis.url, FLEETHUB_REDIS_PREFIX: 'r' }
    const first = await startTestApp({ teardown: () => {} }, { ...env, FLEETHUB_NODE_ID: 'before' })
    const keys = await createDevice(first, 'q-1')
    const r = await api(first)('POST', '/devices/q-1/commands/update', { queue: { ttlMs: 60_000 } })
    t.equal(r.statusCode, 202)
    await first.close()
    const second = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'after' })
    const d = await responder(second, 'q-1', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    for (let i = 0; i < 500 && d.seen.length === 0; i++) await sleep(20)
    t.equal(d.seen[0]?.rid, r.json().id, 'delivered by the restarted broker')
  })
})
