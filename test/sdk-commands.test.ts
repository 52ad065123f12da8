// The SDK's command helpers against a real broker on real sockets and the real HTTP API: handler
// results and failures, unknown names, deadlines, acknowledgement only, queued delivery (also to a
// persistent session before its handlers listen), answers across a reconnect, a QoS 1 duplicate,
// a gateway's child, MessagePack, key rollover over TLS (with the fallback when FleetHub keeps the
// old key), the service helper's results and errors, and the sample device's commands.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Packet } from 'mqtt'
import { unpack } from 'msgpackr'
import t from 'tap'
import type { App } from '../broker/app.js'
import { verifierOf } from '../registry/credentials.js'
import { encodeAnswer, outcomeOfError, outcomeOfResult } from '../sdk/command-answer.js'
import {
  ApiError,
  type CommandContext,
  CommandError,
  type CommandEvent,
  connectDevice,
  connectService,
  createApiClient,
  type DeviceClient,
  type DeviceOptions,
  runSampleDevice,
} from '../sdk/index.js'
import { createRecentIds } from '../sdk/recent.js'
import {
  ADMIN_TOKEN,
  type Closer,
  connackOf,
  createDevice,
  deviceOpts,
  mqttUrl,
  sleep,
  startTestApp,
  waitFor,
} from './helpers/app.js'
import { payloadOf, publishes } from './helpers/sdk.js'

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tls')
const ca = readFileSync(path.join(fixtures, 'cert.pem'))
const tlsEnv = () => ({
  FLEETHUB_TLS_CERT: path.join(fixtures, 'cert.pem'),
  FLEETHUB_TLS_KEY: path.join(fixtures, 'key.pem'),
})

const apiOf = (app: App) => createApiClient({ url: `http://127.0.0.1:${app.ports.http}`, token: ADMIN_TOKEN })

async function device(t: Closer, app: App, id: string, key: string, extra: Partial<DeviceOptions> = {}) {
  const dev = await connectDevice({ url: mqttUrl(app), deviceId: id, key, reconnectPeriodMs: 100, ...extra })
  t.teardown(() => dev.end(true))
  return dev
}

/** Resolves on the client's next accepted CONNACK; rejects after `ms`. */
function nextConnect(dev: DeviceClient, ms = 5000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      dev.mqtt.off('connect', connected)
      reject(new Error(`no reconnect within ${ms} ms`))
    }, ms)
    function connected() {
      clearTimeout(timer)
      resolve()
    }
    dev.mqtt.once('connect', connected)
  })
}

/** A promise with its resolver, for handlers the test releases. */
function gate() {
  let open = () => {}
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

t.test('handlers answer results and failures; unknown names get 404', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-h')
  const errors: Error[] = []
  const dev = await device(t, app, 'cmd-h', keys.primary, { onError: (err) => errors.push(err) })
  const contexts: CommandContext[] = []
  dev.commands.handle('echo', (body, ctx) => {
    contexts.push(ctx)
    return { echo: body }
  })
  dev.commands.handle('created', async () => ({ status: 201, body: { made: 1 } }))
  dev.commands.handle('plain', () => ({ status: 'ok' }))
  dev.commands.handle('nothing', () => {})
  dev.commands.handle('busy', () => {
    throw new CommandError(503, { code: 'E_BUSY', message: 'try later' })
  })
  dev.commands.handle('boom', async () => {
    throw new Error('flash write failed')
  })
  dev.commands.handle('huge', () => 'x'.repeat(70_000))
  await dev.commands.listen()

  const t0 = Date.now()
  const ok = await api.invoke('cmd-h', 'echo', { body: { delay: 1 }, timeoutMs: 5000 })
  t.same(ok, { id: ok.id, state: 'succeeded', status: 200, body: { echo: { delay: 1 } } }, 'a returned body is a 200')
  t.match(contexts[0], { rid: ok.id, name: 'echo', deviceId: 'cmd-h' }, 'the handler got the command id and name')
  const deadline = contexts[0]?.deadline ?? 0
  t.ok(deadline >= t0 + 4000 && deadline <= Date.now() + 5000, 'and the deadline')
  t.notOk(contexts[0]?.signal.aborted, 'its signal did not abort')
  const record = await api.command('cmd-h', ok.id)
  t.same(
    record.history.map((h) => h.state),
    ['queued', 'delivered', 'acknowledged', 'succeeded'],
    'acknowledged before the result',
  )

  t.match(
    await api.invoke('cmd-h', 'created'),
    { state: 'succeeded', status: 201, body: { made: 1 } },
    '{status, body}',
  )
  t.match(await api.invoke('cmd-h', 'plain'), { status: 200, body: { status: 'ok' } }, 'a body that only looks like it')
  const nothing = await api.invoke('cmd-h', 'nothing')
  t.same(nothing, { id: nothing.id, state: 'succeeded', status: 200 }, 'no return value: 200 without a body')

  const busy = await api.invoke('cmd-h', 'busy')
  t.same(
    busy,
    { id: busy.id, state: 'failed', status: 503, body: { code: 'E_BUSY', message: 'try later' } },
    'a CommandError is that failure (an answer, not an error)',
  )
  t.equal((await api.command('cmd-h', busy.id)).state, 'failed')
  t.match(
    await api.invoke('cmd-h', 'boom'),
    { state: 'failed', status: 500, body: { code: 'E_HANDLER', message: 'flash write failed' } },
    'any other throw is a 500 E_HANDLER',
  )
  t.ok(
    errors.some((e) => /command boom .* failed: flash write failed/.test(e.message)),
    'and goes to onError too',
  )
  t.notOk(
    errors.some((e) => /busy/.test(e.message)),
    'a CommandError does not',
  )
  t.match(
    await api.invoke('cmd-h', 'huge'),
    { status: 500, body: { code: 'E_ANSWER_TOO_LARGE' } },
    'a body FleetHub would drop is answered as a 500 instead of timing out',
  )
  const unknown = await api.invoke('cmd-h', 'selfDestruct')
  t.match(unknown, { state: 'failed', status: 404, body: { code: 'E_UNKNOWN_COMMAND' } }, 'an unknown name is a 404')
  t.same(
    (await api.command('cmd-h', unknown.id)).history.map((h) => h.state),
    ['queued', 'delivered', 'failed'],
    'without an acknowledgement: it never started',
  )

  const seen: string[] = []
  const removeAny = dev.commands.handleAny((body, ctx) => {
    seen.push(ctx.name)
    return { any: ctx.name, body }
  })
  t.match(await api.invoke('cmd-h', 'selfDestruct', { body: 1 }), {
    status: 200,
    body: { any: 'selfDestruct', body: 1 },
  })
  t.match(await api.invoke('cmd-h', 'echo', { body: 2 }), { body: { echo: 2 } }, 'a handler of its own comes first')
  t.same(seen, ['selfDestruct'], 'handleAny gets the rest')
  removeAny()
  t.match(await api.invoke('cmd-h', 'selfDestruct'), { status: 404 }, 'removed')

  t.throws(() => dev.commands.handle('echo', () => 1), /already has a handler/, 'one handler per name')
  t.throws(() => dev.commands.handle('$changeKey', () => 1), TypeError, '$ names are the SDK’s')
  t.throws(() => dev.commands.handle('a/b', () => 1), TypeError, 'a command name')
  t.throws(() => dev.commands.handle('ok', 'nope' as never), TypeError)
  const remove = dev.commands.handle('later', () => 'here')
  t.match(await api.invoke('cmd-h', 'later'), { body: 'here' }, 'a handler added after listen()')
  remove()
  t.match(await api.invoke('cmd-h', 'later'), { status: 404 }, 'and removed')
})

t.test('a handler past its deadline: 504, and its signal aborts', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-slow')
  const dev = await device(t, app, 'cmd-slow', keys.primary)
  const answers = publishes(dev, 'packetsend', '/cmd/res')
  let signal: AbortSignal | undefined
  let abortedAfter = 0
  dev.commands.handle('slow', async (_body, ctx) => {
    signal = ctx.signal
    const t0 = Date.now()
    await new Promise((_resolve, reject) =>
      ctx.signal.addEventListener('abort', () => {
        abortedAfter = Date.now() - t0
        reject(ctx.signal.reason)
      }),
    )
  })
  await dev.commands.listen()
  const err = await api.invoke('cmd-slow', 'slow', { timeoutMs: 300 }).catch((e: unknown) => e)
  t.ok(err instanceof ApiError, 'the service gets an ApiError')
  t.match(err, { status: 504, code: 'FLEETHUB_ERR_COMMAND_TIMEOUT', commandId: String })
  await waitFor('aborted', () => signal?.aborted)
  t.equal((signal?.reason as Error | undefined)?.name, 'TimeoutError', 'the signal aborted with a TimeoutError')
  t.ok(abortedAfter >= 200 && abortedAfter < 1500, `at the deadline (${abortedAfter} ms)`)
  t.equal((await api.command('cmd-slow', (err as ApiError).commandId as string)).state, 'timed_out')
  await sleep(100)
  t.same(
    answers.map((p) => JSON.parse(payloadOf(p).toString()).status),
    [202],
    'a handler that gives up at the deadline gets no answer (it would only race the timeout)',
  )
})

t.test('ack only: the service gets 202 once the device acknowledged; the result follows', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-ack')
  const dev = await device(t, app, 'cmd-ack', keys.primary)
  const release = gate()
  dev.commands.handle('update', async () => {
    await release.opened
    return { fw: '2.0' }
  })
  await dev.commands.listen()
  const acked = await api.invoke('cmd-ack', 'update', { ack: true, timeoutMs: 5000 })
  t.same(acked, { id: acked.id, state: 'acknowledged' }, 'acknowledged while the handler still runs')
  t.equal((await api.command('cmd-ack', acked.id)).state, 'acknowledged')
  release.open()
  const done = await waitFor('succeeded', async () => {
    const r = await api.command('cmd-ack', acked.id)
    return r.state === 'succeeded' ? r : undefined
  })
  t.match(done.result, { status: 200, body: { fw: '2.0' } }, 'the result on the record')
})

t.test('a queued command is delivered when the SDK device connects and listens', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-q')
  const queued = await api.invoke('cmd-q', 'configure', { queue: { ttlMs: 60_000 }, body: { gain: 3 } })
  t.same(queued, { id: queued.id, state: 'queued' }, 'queued while the device is offline')
  const dev = await device(t, app, 'cmd-q', keys.primary)
  const got: unknown[] = []
  dev.commands.handle('configure', (body) => {
    got.push(body)
    return { applied: body }
  })
  await dev.commands.listen()
  const r = await waitFor('succeeded', async () => {
    const x = await api.command('cmd-q', queued.id)
    return x.state === 'succeeded' ? x : undefined
  })
  t.same(got, [{ gain: 3 }], 'the handler ran once with its body')
  t.match(r.result, { status: 200, body: { applied: { gain: 3 } } })

  // a persistent session gets its queued commands right after the CONNACK, before any handler
  // exists: they wait for listen() instead of being lost (or answered 404)
  const keys2 = await createDevice(app, 'cmd-q2')
  const first = await device(t, app, 'cmd-q2', keys2.primary, { clean: false })
  await first.commands.listen()
  await first.end()
  await waitFor('offline', () => !app.broker.localSession('cmd-q2'))
  const early = await api.invoke('cmd-q2', 'calibrate', { queue: { ttlMs: 60_000 }, body: { n: 1 } })
  const again = await device(t, app, 'cmd-q2', keys2.primary, { clean: false })
  await waitFor('delivered', async () => (await api.command('cmd-q2', early.id)).state === 'delivered')
  await sleep(100)
  const late: unknown[] = []
  again.commands.handle('calibrate', (body) => {
    late.push(body)
    return 'done'
  })
  await again.commands.listen()
  await waitFor('succeeded', async () => (await api.command('cmd-q2', early.id)).state === 'succeeded')
  t.same(late, [{ n: 1 }], 'a command that came before listen() runs once the handlers are in place')
})

t.test('answers survive a reconnect, and the device is subscribed again after it', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-rc')
  const dev = await device(t, app, 'cmd-rc', keys.primary)
  const release = gate()
  let runs = 0
  dev.commands.handle('work', async (body) => {
    runs++
    if (body === 'wait') await release.opened
    return { done: body }
  })
  await dev.commands.listen()
  const pending = api.invoke('cmd-rc', 'work', { body: 'wait', timeoutMs: 5000 })
  await waitFor('running', () => runs === 1)
  dev.mqtt.options.reconnectPeriod = 0
  app.broker.disconnectLocal('cmd-rc', 'test')
  await waitFor('offline', () => !dev.mqtt.connected)
  release.open() // the result is made while the device is offline
  await sleep(100)
  const back = nextConnect(dev)
  dev.mqtt.options.reconnectPeriod = 100
  // with its own stores: reconnect() without them starts empty ones, losing what waits to be sent
  dev.mqtt.reconnect({ incomingStore: dev.mqtt.incomingStore, outgoingStore: dev.mqtt.outgoingStore })
  await back
  t.match(await pending, { state: 'succeeded', body: { done: 'wait' } }, 'the answer made offline arrived')
  t.match(
    await api.invoke('cmd-rc', 'work', { body: 'next', timeoutMs: 3000 }),
    { body: { done: 'next' } },
    'commands right after it too (they wait for the SDK to subscribe again)',
  )
  t.equal(runs, 2)
})

t.test('a command delivered twice (QoS 1 redelivery) runs once', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'cmd-dup')
  const dev = await device(t, app, 'cmd-dup', keys.primary, { clean: false })
  // withhold the PUBACK of the first command: the persistent session sends it again on reconnect
  let withhold = true
  const original = dev.mqtt.handleMessage.bind(dev.mqtt)
  dev.mqtt.handleMessage = (packet, callback) => {
    if (withhold && packet.topic.endsWith('/cmd/req')) {
      withhold = false
      return // never acknowledged (mqtt.js reads no more of that connection: the broker drops it below)
    }
    original(packet, callback)
  }
  const requests = publishes(dev, 'packetreceive', '/cmd/req')
  let runs = 0
  dev.commands.handle('pay', (body) => {
    runs++
    return { paid: body }
  })
  await dev.commands.listen()
  const r = await api.invoke('cmd-dup', 'pay', { body: 5, timeoutMs: 3000 })
  t.match(r, { state: 'succeeded', body: { paid: 5 } })
  const back = nextConnect(dev)
  app.broker.disconnectLocal('cmd-dup', 'test')
  await back
  await waitFor('redelivered', () => requests.length === 2)
  await sleep(200)
  const rids = requests.map((p) => JSON.parse(payloadOf(p).toString()).rid)
  t.same(rids, [r.id, r.id], 'FleetHub delivered the same command twice')
  t.equal(runs, 1, 'the handler ran once')
  t.match(
    await api.invoke('cmd-dup', 'pay', { body: 6, timeoutMs: 3000 }),
    { body: { paid: 6 } },
    'a new command still runs',
  )
  t.equal(runs, 2)
})

t.test('remembering recent command ids is bounded', async (t) => {
  const recent = createRecentIds(3)
  t.ok(recent.add('a'))
  t.notOk(recent.add('a'), 'a duplicate')
  for (const id of ['b', 'c', 'd']) recent.add(id)
  t.equal(recent.size, 3)
  t.notOk(recent.has('a'), 'the oldest is forgotten')
  t.ok(recent.has('d'))
  t.throws(() => createRecentIds(0), TypeError)
})

t.test('answer rules', async (t) => {
  t.same(outcomeOfResult({ status: 201 }), { status: 201 })
  t.same(outcomeOfResult({ body: { status: 200, body: 1 } }), { status: 200, body: { status: 200, body: 1 } })
  t.same(outcomeOfResult({ status: 3 }), { status: 200, body: { status: 3 } }, 'not a status: a body')
  t.same(outcomeOfResult({ status: 200, extra: 1 }), { status: 200, body: { status: 200, extra: 1 } })
  t.same(outcomeOfResult(0), { status: 200, body: 0 })
  t.match(outcomeOfResult({ status: 202 }), { status: 500, body: { code: 'E_HANDLER' } }, '202 is the acknowledgement')
  t.same(outcomeOfError(new CommandError(409)), { status: 409 })
  t.match(outcomeOfError('text'), { status: 500, body: { code: 'E_HANDLER', message: 'text' } })
  t.throws(() => new CommandError(200), TypeError, 'a failure is 4xx or 5xx')
  t.match(JSON.parse(encodeAnswer('r', { status: 200, body: 10n }, 'json').toString()), {
    rid: 'r',
    status: 500,
    body: { code: 'E_HANDLER', message: /no JSON form/ },
  })
  t.same(unpack(encodeAnswer('r', { status: 200, body: { at: new Date(0) } }, 'msgpack')), {
    rid: 'r',
    status: 200,
    body: { at: '1970-01-01T00:00:00.000Z' },
  })
})

t.test('MessagePack: answers in the device’s encoding', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'cmd-mp')
  const dev = await device(t, app, 'cmd-mp', keys.primary, { encoding: 'msgpack' })
  const answers = publishes(dev, 'packetsend', '/cmd/res')
  dev.commands.handle('read', () => ({ temp: 21.5, at: new Date(0) }))
  await dev.commands.listen()
  const r = await apiOf(app).invoke('cmd-mp', 'read')
  t.match(r, { status: 200, body: { temp: 21.5, at: '1970-01-01T00:00:00.000Z' } })
  t.same(
    answers.map((p) => unpack(payloadOf(p)).status),
    [202, 200],
    'both answers are MessagePack maps',
  )
})

t.test('a gateway handles its child’s commands', async (t) => {
  const app = await startTestApp(t)
  const api = apiOf(app)
  const keys = await createDevice(app, 'gw-cmd')
  await createDevice(app, 'gw-cmd-kid', { parentId: 'gw-cmd' })
  await createDevice(app, 'gw-cmd-stranger')
  const gw = await device(t, app, 'gw-cmd', keys.primary)
  gw.commands.handle('blink', () => ({ who: 'gateway' }))
  await gw.commands.listen()
  const kid = gw.forChild('gw-cmd-kid')
  const ids: string[] = []
  kid.commands.handle('blink', (_body, ctx) => {
    ids.push(ctx.deviceId)
    return { who: 'kid' }
  })
  await kid.commands.listen()
  t.match(await api.invoke('gw-cmd-kid', 'blink'), { status: 200, body: { who: 'kid' } }, 'the child’s handler')
  t.match(await api.invoke('gw-cmd', 'blink'), { status: 200, body: { who: 'gateway' } }, 'the gateway’s own')
  t.same(ids, ['gw-cmd-kid'], 'with the child’s id')
  await t.rejects(
    gw.forChild('gw-cmd-stranger').commands.listen(),
    /refused the subscription to cmd\/req of gw-cmd-stranger/,
    'not a child of this gateway',
  )
  t.match(await api.invoke('gw-cmd-kid', 'blink'), { body: { who: 'kid' } }, 'the refusal broke nothing')

  // the child is removed: mqtt.js resubscribes the gateway's topics in one SUBSCRIBE after a
  // reconnect, and when one topic is refused it forgets them all for the next reconnect
  await app.registry.deleteDevice('gw-cmd-kid')
  let subacks = 0
  gw.mqtt.on('packetreceive', (p: Packet) => {
    if (p.cmd === 'suback') subacks++
  })
  const back = nextConnect(gw)
  app.broker.disconnectLocal('gw-cmd', 'test')
  await back
  await waitFor('the resubscription refused in part', () => subacks > 0) // and mqtt.js forgot both topics
  const again = nextConnect(gw)
  app.broker.disconnectLocal('gw-cmd', 'test')
  await again
  t.match(
    await api.invoke('gw-cmd', 'blink', { timeoutMs: 2000 }),
    { status: 200, body: { who: 'gateway' } },
    'the gateway still gets its own commands two reconnects later',
  )
})

t.test('key rollover over TLS: $changeKey', async (t) => {
  const app = await startTestApp(t, tlsEnv())
  const api = apiOf(app)
  const tlsUrl = `mqtts://localhost:${app.ports.mqtts}`

  await t.test('the device stores the key and reconnects with it', async (t) => {
    const keys = await createDevice(app, 'rk-1')
    const stored: string[] = []
    const errors: Error[] = []
    const dev = await device(t, app, 'rk-1', keys.primary, {
      url: tlsUrl,
      mqtt: { ca },
      onKeyChange: async (key) => {
        await sleep(10) // as a flash write would
        stored.push(key)
      },
      onError: (err) => errors.push(err),
    })
    t.equal(dev.auth, 'key', 'the key itself over TLS')
    await dev.commands.listen()
    const r = await api.rolloverKey('rk-1')
    t.match(r, { state: 'succeeded', keysRotatedAt: String })
    t.equal(stored.length, 1, 'onKeyChange got the new key')
    const newKey = stored[0] as string
    t.match(newKey, /^[A-Za-z0-9_-]{43}$/)
    t.equal((await app.registry.getRecord('rk-1'))?.verifiers.primary, verifierOf(newKey), 'FleetHub switched to it')
    t.equal(await connackOf(mqttUrl(app), deviceOpts('rk-1', keys.primary)), 4, 'the old primary key is refused')

    const back = nextConnect(dev)
    app.broker.disconnectLocal('rk-1', 'test')
    await back
    t.ok(app.broker.localSession('rk-1'), 'the device got back in, with the new key')
    t.same(errors, [], 'without falling back')
    t.ok(dev.mqtt.connected)
  })

  await t.test('a token device signs with the new key', async (t) => {
    const keys = await createDevice(app, 'rk-tok')
    let stored = ''
    const dev = await device(t, app, 'rk-tok', keys.primary, {
      url: tlsUrl,
      mqtt: { ca },
      auth: 'token',
      onKeyChange: (key) => {
        stored = key
      },
    })
    await dev.commands.listen()
    await api.rolloverKey('rk-tok')
    t.equal((await app.registry.getRecord('rk-tok'))?.verifiers.primary, verifierOf(stored))
    const back = nextConnect(dev)
    app.broker.disconnectLocal('rk-tok', 'test')
    await back
    t.ok(app.broker.localSession('rk-tok'), 'back in with a token from the new key')
  })

  await t.test('a failing onKeyChange keeps the old key on both sides', async (t) => {
    const keys = await createDevice(app, 'rk-2')
    const dev = await device(t, app, 'rk-2', keys.primary, {
      url: tlsUrl,
      mqtt: { ca },
      onKeyChange: () => {
        throw new Error('read-only storage')
      },
    })
    await dev.commands.listen()
    const err = await api.rolloverKey('rk-2').catch((e: unknown) => e)
    t.match(err, { name: 'ApiError', status: 502, code: 'FLEETHUB_ERR_ROLLOVER_FAILED', message: /status 500/ })
    t.equal((await app.registry.getRecord('rk-2'))?.verifiers.primary, verifierOf(keys.primary), 'FleetHub kept it')
    const back = nextConnect(dev)
    app.broker.disconnectLocal('rk-2', 'test')
    await back
    t.ok(app.broker.localSession('rk-2'), 'and so did the device')
  })

  await t.test('without onKeyChange, $changeKey is unknown and nothing changes', async (t) => {
    const keys = await createDevice(app, 'rk-3')
    const dev = await device(t, app, 'rk-3', keys.primary, { url: tlsUrl, mqtt: { ca } })
    const any: string[] = []
    dev.commands.handleAny((_b, ctx) => {
      any.push(ctx.name)
      return 'ok'
    })
    await dev.commands.listen()
    await t.rejects(api.rolloverKey('rk-3'), { status: 502, message: /status 404/ })
    t.same(any, [], 'handleAny never answers a $ command')
    t.equal((await app.registry.getRecord('rk-3'))?.verifiers.primary, verifierOf(keys.primary))
  })

  await t.test('an answer FleetHub did not take in time: the device falls back to the old key', async (t) => {
    const keys = await createDevice(app, 'rk-4')
    const errors: Error[] = []
    const dev = await device(t, app, 'rk-4', keys.primary, {
      url: tlsUrl,
      mqtt: { ca },
      onKeyChange: async () => {
        await sleep(400) // slower than the rollover's timeout: the 200 comes late
      },
      onError: (err) => errors.push(err),
    })
    await dev.commands.listen()
    await t.rejects(api.rolloverKey('rk-4', { timeoutMs: 150 }), { status: 504, code: 'FLEETHUB_ERR_COMMAND_TIMEOUT' })
    await sleep(400) // the device has switched to the new key by now, FleetHub has not
    t.equal((await app.registry.getRecord('rk-4'))?.verifiers.primary, verifierOf(keys.primary))
    const back = nextConnect(dev)
    app.broker.disconnectLocal('rk-4', 'test')
    await back
    t.ok(app.broker.localSession('rk-4'), 'back in with the old key after the new one was refused')
    t.ok(
      errors.some((e) => /refused the key from \$changeKey/.test(e.message)),
      'and says so',
    )
  })
})

t.test('the service helper: results, errors, idempotency, events', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'svc-d')
  await createDevice(app, 'svc-off')
  const dev = await device(t, app, 'svc-d', keys.primary)
  let runs = 0
  dev.commands.handle('charge', (body) => {
    runs++
    return { charged: body }
  })
  dev.commands.handle('never', () => new Promise(() => {}))
  await dev.commands.listen()

  const svc = await connectService({
    url: mqttUrl(app),
    name: 'cmd-svc',
    token: ADMIN_TOKEN,
    apiUrl: `http://127.0.0.1:${app.ports.http}/`,
  })
  t.teardown(() => svc.end(true))
  const events: [string, CommandEvent][] = []
  await svc.onCommandEvents((id, e) => {
    events.push([id, e])
  })

  const r = await svc.invoke('svc-d', 'charge', { body: 7, idempotencyKey: 'order-1' })
  t.same(r, { id: r.id, state: 'succeeded', status: 200, body: { charged: 7 } }, 'invoke over the HTTP API')
  const retried = await svc.invoke('svc-d', 'charge', { body: 7, idempotencyKey: 'order-1' })
  t.same(retried, r, 'a retry with the same idempotency key gets the same answer')
  t.equal(runs, 1, 'and the command ran once')
  await waitFor('four events', () => events.filter(([, e]) => e.id === r.id).length === 4)
  t.same(
    events.filter(([, e]) => e.id === r.id).map(([id, e]) => [id, e.name, e.state]),
    [
      ['svc-d', 'charge', 'queued'],
      ['svc-d', 'charge', 'delivered'],
      ['svc-d', 'charge', 'acknowledged'],
      ['svc-d', 'charge', 'succeeded'],
    ],
    'services see every state',
  )
  t.match(events.find(([, e]) => e.state === 'succeeded')?.[1], { status: 200, body: { charged: 7 } })

  const errorOf = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      (e: unknown) => e,
    )
  const notFound = await errorOf(svc.invoke('nobody', 'charge'))
  t.ok(notFound instanceof ApiError)
  t.match(notFound, { status: 404, code: 'FLEETHUB_ERR_DEVICE_NOT_FOUND', message: /nobody/ }, '404 unknown device')
  t.match(
    await errorOf(svc.invoke('svc-off', 'charge')),
    { status: 409, code: 'FLEETHUB_ERR_DEVICE_OFFLINE' },
    '409 offline without queue',
  )
  const timeout = await errorOf(svc.invoke('svc-d', 'never', { timeoutMs: 200 }))
  t.match(timeout, { status: 504, code: 'FLEETHUB_ERR_COMMAND_TIMEOUT', commandId: String }, '504 with the command id')
  t.equal((await svc.command('svc-d', (timeout as ApiError).commandId as string)).state, 'timed_out')
  t.match(
    await errorOf(svc.invoke('svc-d', '$changeKey')),
    { status: 400, code: 'FLEETHUB_ERR_BAD_REQUEST' },
    '400: services cannot send $ commands',
  )
  t.match(await errorOf(svc.cancel('svc-d', r.id)), { status: 409, code: 'FLEETHUB_ERR_COMMAND_FINISHED' })
  t.match(await errorOf(svc.command('svc-d', 'no-such-command')), {
    status: 404,
    code: 'FLEETHUB_ERR_COMMAND_NOT_FOUND',
  })
  const queued = await svc.invoke('svc-off', 'charge', { queue: { ttlMs: 60_000 } })
  t.match(await svc.cancel('svc-off', queued.id), { state: 'cancelled' }, 'a queued command cancelled')
  const wrongToken = createApiClient({ url: `http://127.0.0.1:${app.ports.http}`, token: 'wrong' })
  t.match(await errorOf(wrongToken.invoke('svc-d', 'charge')), { status: 401, code: 'FLEETHUB_ERR_UNAUTHORIZED' })

  const plain = await connectService({ url: mqttUrl(app), name: 'no-api', token: ADMIN_TOKEN })
  t.teardown(() => plain.end(true))
  await t.rejects(plain.invoke('svc-d', 'charge'), { name: 'TypeError', message: /apiUrl/ }, 'no apiUrl, no API')
  t.throws(() => createApiClient({ url: 'mqtt://x', token: 't' }), TypeError)
})

t.test('the sample device: reboot, ping and $changeKey', async (t) => {
  const app = await startTestApp(t, { FLEETHUB_ALLOW_INSECURE_ROLLOVER: 'true' })
  const api = apiOf(app)
  const keys = await createDevice(app, 'sample-cmd')
  const lines: string[] = []
  const stop = new AbortController()
  t.teardown(() => stop.abort())
  const run = runSampleDevice({
    url: mqttUrl(app),
    deviceId: 'sample-cmd',
    key: keys.primary,
    signal: stop.signal,
    rebootMs: 200,
    log: (line) => lines.push(line),
  })
  await waitFor('listening', () => lines.some((l) => /connected to/.test(l)))

  const ping = await api.invoke('sample-cmd', 'ping')
  t.match(ping, { status: 200, body: { pong: Number } }, 'ping answers its uptime')
  const t0 = Date.now()
  const reboot = await api.invoke('sample-cmd', 'reboot', { timeoutMs: 5000 })
  t.match(reboot, { status: 200, body: { ok: true } }, 'reboot answers 200 {ok: true}')
  t.ok(Date.now() - t0 >= 200, 'after a moment')
  t.same(
    (await api.command('sample-cmd', reboot.id)).history.map((h) => h.state),
    ['queued', 'delivered', 'acknowledged', 'succeeded'],
  )
  const twin = (
    await app.http.inject({
      method: 'GET',
      url: '/devices/sample-cmd/twin',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    })
  ).json()
  const rebootedAt = Date.parse(twin.reported.lastReboot?.rebootedAt)
  t.ok(rebootedAt >= t0 && rebootedAt <= Date.now(), 'reported as lastReboot.rebootedAt')

  await api.rolloverKey('sample-cmd')
  t.ok(
    lines.some((l) => /would persist the new key/.test(l)),
    'it says it would persist the key',
  )
  const record = await app.registry.getRecord('sample-cmd')
  t.notOk(
    lines.some((l) => /[A-Za-z0-9_-]{43}/.test(l)),
    'without logging it',
  )
  t.not(record?.verifiers.primary, verifierOf(keys.primary), 'FleetHub switched the key')
  app.broker.disconnectLocal('sample-cmd', 'test')
  await waitFor('offline', () => !app.broker.localSession('sample-cmd'))
  await waitFor('back in with the new key', () => app.broker.localSession('sample-cmd'), 5000)
  t.match(await api.invoke('sample-cmd', 'ping', { timeoutMs: 3000 }), { status: 200 }, 'and answers again')

  stop.abort()
  await run
})
