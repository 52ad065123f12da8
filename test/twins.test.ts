// Twins end to end: the device's requests over MQTT, the operator's routes, re-sync after a
// reconnect, bad input, and concurrent writers on both stores.
import { pack } from 'msgpackr'
import t, { type Test } from 'tap'
import type { App } from '../broker/app.js'
import type { TwinApi } from '../plugins/twins/api.js'
import { decodeEnvelope } from '../registry/envelope.js'
import {
  ADMIN_TOKEN,
  connect,
  createDevice,
  deviceOpts,
  inbox,
  mqttUrl,
  serviceOpts,
  sleep,
  startTestApp,
  waitFor,
} from './helpers/app.js'
import { startRedis } from './helpers/redis.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

/** A device with helpers for twin requests. */
async function twinDevice(app: App, id: string, key: string) {
  const c = await connect(mqttUrl(app), deviceOpts(id, key))
  const box = inbox(c)
  await c.subscribeAsync([`$iot/${id}/twin/res`, `$iot/${id}/twin/desired`], { qos: 1 })
  let n = 0
  return {
    client: c,
    box,
    async request(kind: 'twin/get' | 'twin/reported', body: object | Buffer, msgpack = false) {
      const rid = `r${++n}`
      const payload = Buffer.isBuffer(body) ? body : msgpack ? pack({ rid, ...body }) : JSON.stringify({ rid, ...body })
      await c.publishAsync(`$iot/${id}/${kind}`, payload, { qos: 1 })
      const m = await box.next((x) => x.topic.endsWith('/twin/res'))
      if (!m) throw new Error(`no answer to ${kind}`)
      // answers come in the request's encoding
      const d = decodeEnvelope(m.payload)
      if (!d.ok) throw new Error(d.error)
      if (d.encoding !== (msgpack || (Buffer.isBuffer(body) && body[0] !== 0x7b) ? 'msgpack' : 'json')) {
        throw new Error(`answered in ${d.encoding}`)
      }
      // biome-ignore lint/suspicious/noExplicitAny: the test reads whatever the broker answered
      return d.value as any
    },
    desired: () => box.next((x) => x.topic.endsWith('/twin/desired')),
  }
}

async function twinSuite(t: Test, env: Record<string, string>) {
  const app = await startTestApp(t, env)
  const api = (method: string, url: string, payload?: object, headers: Record<string, string> = {}) =>
    app.http.inject({ method: method as 'GET', url, headers: { ...auth, ...headers }, ...(payload ? { payload } : {}) })

  await t.test('a device reports, reads and is told of desired changes', async (t) => {
    const keys = await createDevice(app, 'tw-1')
    const d = await twinDevice(app, 'tw-1', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    const r1 = await d.request('twin/reported', { patch: { fw: '1.0.3', temp: { unit: 'C' } } })
    t.match(r1, { rid: 'r1', status: 204, version: 2 })
    const r2 = await d.request('twin/reported', { patch: { temp: { unit: null, max: 40 } }, ifVersion: 2 })
    t.match(r2, { status: 204, version: 3 })
    const stale = await d.request('twin/reported', { patch: { fw: '9' }, ifVersion: 2 })
    t.match(stale, { status: 412, body: { code: 'FLEETHUB_ERR_PRECONDITION_FAILED' } })
    const got = await d.request('twin/get', {})
    t.match(got, {
      status: 200,
      body: { reported: { fw: '1.0.3', temp: { max: 40 }, $version: 3 }, desired: { $version: 1 } },
    })
    t.notOk('tags' in got.body, 'the device never sees tags')
    t.type(got.body.reported.$metadata.fw.$lastUpdated, 'string')

    const patched = await api('PATCH', '/devices/tw-1/twin/desired', { config: { interval: 30 } })
    t.equal(patched.statusCode, 200)
    t.equal(patched.headers.etag, '"2"')
    const live = await d.desired()
    t.same(JSON.parse(live?.payload.toString() ?? '{}'), { version: 2, patch: { config: { interval: 30 } } })

    const view = await api('GET', '/devices/tw-1/twin')
    t.equal(view.headers.etag, '"2"')
    t.match(view.json(), {
      desired: { config: { interval: 30 }, $version: 2 },
      reported: { fw: '1.0.3', $version: 3 },
      pending: { config: { interval: 30 } },
      converged: false,
    })
    await d.request('twin/reported', { patch: { config: { interval: 30 }, $lastDesiredVersion: 2 } })
    t.match((await api('GET', '/devices/tw-1/twin')).json(), { converged: true })
    t.notOk('pending' in (await api('GET', '/devices/tw-1/twin')).json())
  })

  await t.test('If-Match, limits and the built-in sections over HTTP', async (t) => {
    await createDevice(app, 'tw-2')
    t.equal((await api('PATCH', '/devices/tw-2/twin/desired', { a: 1 }, { 'if-match': '"1"' })).statusCode, 200)
    const stale = await api('PATCH', '/devices/tw-2/twin/desired', { a: 2 }, { 'if-match': '"1"' })
    t.equal(stale.statusCode, 412)
    t.equal(stale.json().error.code, 'FLEETHUB_ERR_PRECONDITION_FAILED')
    t.equal((await api('PATCH', '/devices/tw-2/twin/desired', { a: 3 }, { 'if-match': 'W/"2"' })).statusCode, 200)
    t.equal((await api('PATCH', '/devices/tw-2/twin/desired', { a: 4 }, { 'if-match': 'nonsense' })).statusCode, 400)
    const cases: [object, number, string][] = [
      [{ $version: 9 }, 400, 'FLEETHUB_ERR_INVALID_PATCH'],
      [{ system: { logLevel: 'loud' } }, 400, 'FLEETHUB_ERR_INVALID_PATCH'],
      [{ config: 'on' }, 400, 'FLEETHUB_ERR_INVALID_PATCH'],
      [{ blob: 'x'.repeat(40_000) }, 413, 'FLEETHUB_ERR_TWIN_TOO_LARGE'],
    ]
    for (const [body, status, code] of cases) {
      const r = await api('PATCH', '/devices/tw-2/twin/desired', body)
      t.equal(r.statusCode, status, `${JSON.stringify(body).slice(0, 40)} → ${status}`)
      t.equal(r.json().error.code, code)
    }
    t.match(
      (await api('GET', '/devices/tw-2/twin')).json(),
      { desired: { a: 3, $version: 3 } },
      'refused patches changed nothing',
    )
    t.equal((await api('GET', '/devices/nobody/twin')).statusCode, 404)
    t.equal((await api('PATCH', '/devices/nobody/twin/desired', { a: 1 })).statusCode, 404)
    const tags = await api('PATCH', '/devices/tw-2/tags', { building: '109', floor: 2 })
    t.same(tags.json(), { tags: { building: '109', floor: 2 } })
    t.same((await api('PATCH', '/devices/tw-2/tags', { floor: null })).json(), { tags: { building: '109' } })
  })

  await t.test('services see every change on events/twin', async (t) => {
    const keys = await createDevice(app, 'tw-3')
    const svc = await connect(mqttUrl(app), serviceOpts('svc-twin'))
    t.teardown(() => svc.endAsync(true))
    const events = inbox(svc)
    await svc.subscribeAsync('$iot/+/events/twin', { qos: 1 })
    const d = await twinDevice(app, 'tw-3', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    await d.request('twin/reported', { patch: { x: 1 } })
    await api('PATCH', '/devices/tw-3/twin/desired', { y: 2 })
    await api('PATCH', '/devices/tw-3/tags', { z: '3' })
    const seen = []
    for (let i = 0; i < 3; i++) seen.push(JSON.parse((await events.next())?.payload.toString() ?? '{}'))
    t.same(
      seen.map((e) => [e.side, e.patch]).sort(),
      [
        ['desired', { y: 2 }],
        ['reported', { x: 1 }],
        ['tags', { z: '3' }],
      ].sort(),
    )
  })

  await t.test('bad requests get a clear answer and change nothing', async (t) => {
    const keys = await createDevice(app, 'tw-4')
    const d = await twinDevice(app, 'tw-4', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    const bad: [object | Buffer, number, RegExp][] = [
      [Buffer.from('{not json'), 400, /not valid JSON/],
      [Buffer.from([0x82, 0xa3]), 400, /MessagePack/],
      [{ patch: 'x' }, 400, /JSON object/],
      [{ patch: [1] }, 400, /JSON object/],
      [{ patch: { $version: 5 } }, 400, /reserved/],
      [{ patch: { a: 1 }, ifVersion: 'one' }, 400, /ifVersion/],
      [{ patch: { huge: 'y'.repeat(40_000) } }, 413, /limit/],
    ]
    for (const [body, status, why] of bad) {
      const r = await d.request('twin/reported', body)
      t.equal(
        r.status,
        status,
        `${Buffer.isBuffer(body) ? body.toString('hex') : JSON.stringify(body).slice(0, 30)} → ${status}`,
      )
      t.match(r.body.message, why)
    }
    await d.client.publishAsync('$iot/tw-4/twin/get', JSON.stringify({ rid: 'x'.repeat(65) }), { qos: 1 })
    const long = JSON.parse((await d.box.next())?.payload.toString() ?? '{}')
    t.match(long, { status: 400, body: { message: /at most 64/ } })
    t.match((await d.request('twin/get', {})).body.reported, { $version: 1 }, 'nothing changed')
    const viaMsgpack = await d.request('twin/reported', { patch: { m: 1 } }, true)
    t.match(viaMsgpack, { rid: 'r9', status: 204, version: 2 }, 'MessagePack in, MessagePack out')
  })

  await t.test('re-sync: a device that was offline gets everything in one message, once', async (t) => {
    const keys = await createDevice(app, 'tw-5')
    await api('PATCH', '/devices/tw-5/twin/desired', { config: { a: 1 } })
    await api('PATCH', '/devices/tw-5/twin/desired', { config: { b: 2 }, system: { logLevel: 'debug' } })
    await api('PATCH', '/devices/tw-5/twin/desired', { config: { a: null } })
    const d = await twinDevice(app, 'tw-5', keys.primary)
    const first = await d.desired()
    t.same(JSON.parse(first?.payload.toString() ?? '{}'), {
      version: 4,
      desired: { config: { b: 2 }, system: { logLevel: 'debug' } },
    })
    await d.client.subscribeAsync('$iot/tw-5/twin/desired', { qos: 1 })
    await sleep(200)
    t.equal(d.box.box.filter((m) => m.topic.endsWith('/twin/desired')).length, 0, 'a second SUBSCRIBE does not resend')
    await d.client.endAsync()

    const again = await twinDevice(app, 'tw-5', keys.primary)
    t.ok(await again.desired(), 'not acknowledged yet: sent again on the next connection')
    await again.request('twin/reported', { patch: { $lastDesiredVersion: 4 } })
    await again.client.endAsync()
    const third = await twinDevice(app, 'tw-5', keys.primary)
    t.teardown(() => third.client.endAsync(true))
    t.equal(await third.desired(), undefined, 'acknowledged: nothing to send')
  })

  await t.test('queries over tags, twins and presence', async (t) => {
    const twins = app.host.use<TwinApi>('twins').twins
    for (let i = 0; i < 30; i++) {
      const id = `q-${String(i).padStart(2, '0')}`
      await app.registry.createDevice({ id, tags: { building: i % 3 === 0 ? '109' : '110', floor: i % 4 } })
      if (i % 2 === 0) await twins.patch(id, 'reported', { firmware: { version: i < 10 ? '1.9' : '2.1' } })
      if (i % 5 === 0) await twins.patch(id, 'desired', { config: { interval: 30 } })
      if (i === 5) await twins.patch(id, 'reported', { config: { interval: 30 } })
    }
    const keys = await app.registry.rotateKeys('q-07')
    const online = await connect(mqttUrl(app), deviceOpts('q-07', keys.primary))
    t.teardown(() => online.endAsync(true))
    // the presence write follows the CONNACK
    await waitFor('q-07 shown as connected', async () => (await app.registry.getDevice('q-07'))?.presence.connected)
    const all = async (where: string, limit = 7) => {
      const ids: string[] = []
      let cursor: string | undefined
      for (let i = 0; i < 50; i++) {
        const r = await api(
          'GET',
          `/devices?limit=${limit}&where=${encodeURIComponent(where)}${cursor ? `&cursor=${cursor}` : ''}`,
        )
        if (r.statusCode !== 200) throw new Error(r.body)
        ids.push(
          ...r
            .json()
            .items.map((d: { id: string }) => d.id)
            .filter((id: string) => id.startsWith('q-')),
        )
        cursor = r.json().nextCursor
        if (!cursor) return ids
      }
      throw new Error('paging did not end')
    }
    const q = (n: number) => `q-${String(n).padStart(2, '0')}`
    const range = (pred: (i: number) => boolean) =>
      Array.from({ length: 30 }, (_, i) => i)
        .filter(pred)
        .map(q)
    t.same(
      await all(`tags.building = '109'`),
      range((i) => i % 3 === 0),
    )
    t.same(
      await all(`tags.building = '109' AND reported.firmware.version < '2.0'`),
      range((i) => i % 3 === 0 && i % 2 === 0 && i < 10),
      'the example of the issue',
    )
    t.same(
      await all('tags.floor = 2 OR tags.floor = 3', 4),
      range((i) => i % 4 === 2 || i % 4 === 3),
    )
    t.same(
      await all('converged = false'),
      range((i) => i % 5 === 0 && i !== 5),
      'devices whose configuration has not converged',
    )
    t.same(await all(`presence.connected = true AND id >= 'q-'`), ['q-07'])
    t.same(
      await all('NOT reported.firmware.version EXISTS', 3),
      range((i) => i % 2 === 1),
    )
    const bad = await api('GET', `/devices?where=${encodeURIComponent("tags.building = '109' AND")}`)
    t.equal(bad.statusCode, 400)
    t.equal(bad.json().error.code, 'FLEETHUB_ERR_INVALID_QUERY')
    t.match(bad.json().error.message, /column/)
    const combined = await api('GET', `/devices?status=disabled&where=${encodeURIComponent("tags.building = '109'")}`)
    t.same(combined.json().items, [], 'query-string filters and where are ANDed')
  })

  await t.test('one desired change for every device a query selects, then watch them converge', async (t) => {
    for (let i = 0; i < 7; i++) {
      await app.registry.createDevice({ id: `fl-${i}`, tags: { site: i < 5 ? 'north' : 'south' } })
    }
    const keys = await app.registry.rotateKeys('fl-0')
    const d = await twinDevice(app, 'fl-0', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    const where = encodeURIComponent("tags.site = 'north'")
    let pages = 0
    let cursor = ''
    let updated = 0
    for (let page = 0; page < 10; page++) {
      const r = await api('PATCH', `/twins/desired?where=${where}&limit=2${cursor}`, { config: { interval: 15 } })
      t.equal(r.statusCode, 200, r.body)
      const body = r.json()
      t.same(body.failed, [])
      updated += body.updated
      if (!body.nextCursor) break
      cursor = `&cursor=${body.nextCursor}`
      pages++
    }
    t.equal(updated, 5, 'every north device, two at a time')
    t.ok(pages >= 2, 'in pages')
    t.match(JSON.parse((await d.desired())?.payload.toString() ?? '{}'), { patch: { config: { interval: 15 } } })
    t.notOk('config' in (await api('GET', '/devices/fl-5/twin')).json().desired, 'the south is untouched')
    const pending = async () =>
      (await api('GET', `/devices?where=${encodeURIComponent("tags.site = 'north' AND converged = false")}`))
        .json()
        .items.map((x: { id: string }) => x.id)
    t.same(await pending(), ['fl-0', 'fl-1', 'fl-2', 'fl-3', 'fl-4'])
    await d.request('twin/reported', { patch: { config: { interval: 15 } } })
    t.same(await pending(), ['fl-1', 'fl-2', 'fl-3', 'fl-4'], 'fl-0 applied it and converged')
    const tooBig = await api('PATCH', `/twins/desired?where=${where}`, { blob: 'x'.repeat(40_000) })
    t.equal(tooBig.statusCode, 413, 'a patch no twin can take stops at once')
    t.equal((await api('PATCH', '/twins/desired', { a: 1 })).statusCode, 400, 'where is required')
    t.equal((await api('PATCH', `/twins/desired?where=${encodeURIComponent('tags.')}`, { a: 1 })).statusCode, 400)
  })

  await t.test('concurrent writers lose nothing and versions have no gaps', async (t) => {
    const keys = await createDevice(app, 'tw-6')
    const d = await twinDevice(app, 'tw-6', keys.primary)
    t.teardown(() => d.client.endAsync(true))
    const N = 150
    const fromApi = Array.from({ length: N }, (_, i) => api('PATCH', '/devices/tw-6/twin/desired', { [`k${i}`]: i }))
    // the device fires all its reports at once, then collects the answers
    for (let i = 0; i < N; i++) {
      d.client.publish('$iot/tw-6/twin/reported', JSON.stringify({ rid: `c${i}`, patch: { [`r${i}`]: i } }), { qos: 1 })
    }
    const apiAnswers = await Promise.all(fromApi)
    const deviceAnswers = []
    for (let i = 0; i < N; i++)
      deviceAnswers.push(
        JSON.parse((await d.box.next((m) => m.topic.endsWith('/twin/res'), 10_000))?.payload.toString() ?? '{}'),
      )
    t.ok(
      apiAnswers.every((r) => r.statusCode === 200),
      'every API patch was accepted',
    )
    t.ok(
      deviceAnswers.every((a) => a.status === 204),
      'every device report was accepted',
    )
    const apiVersions = apiAnswers.map((r) => Number(JSON.parse(r.body).desired.$version)).sort((a, b) => a - b)
    const devVersions = deviceAnswers.map((a) => a.version).sort((a, b) => a - b)
    t.same(
      apiVersions,
      Array.from({ length: N }, (_, i) => i + 2),
      'desired versions 2..N+1, each once',
    )
    t.same(
      devVersions,
      Array.from({ length: N }, (_, i) => i + 2),
      'reported versions 2..N+1, each once',
    )
    const twin = (await api('GET', '/devices/tw-6/twin')).json()
    t.equal(Object.keys(twin.desired).filter((k) => k.startsWith('k')).length, N, 'every desired change is there')
    t.equal(Object.keys(twin.reported).filter((k) => k.startsWith('r')).length, N, 'every reported change is there')
  })
}

t.test('twins in memory', async (t) => {
  await twinSuite(t, {})
})

t.test('twins in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('store', async (t) => twinSuite(t, { FLEETHUB_REDIS_URL: redis.url }))
  await t.test('two nodes writing one twin', async (t) => {
    const a = await startTestApp(t, {
      FLEETHUB_REDIS_URL: redis.url,
      FLEETHUB_NODE_ID: 'tw-a',
      FLEETHUB_REDIS_PREFIX: 'tn',
    })
    const b = await startTestApp(t, {
      FLEETHUB_REDIS_URL: redis.url,
      FLEETHUB_NODE_ID: 'tw-b',
      FLEETHUB_REDIS_PREFIX: 'tn',
    })
    await createDevice(a, 'x')
    const N = 100
    const all = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        (i % 2 ? a : b).http.inject({
          method: 'PATCH',
          url: '/devices/x/twin/desired',
          headers: auth,
          payload: { [`k${i}`]: i },
        }),
      ),
    )
    t.ok(
      all.every((r) => r.statusCode === 200),
      'all accepted, whichever node took them',
    )
    const versions = all.map((r) => Number(JSON.parse(r.body).desired.$version)).sort((p, q) => p - q)
    t.same(
      versions,
      Array.from({ length: N }, (_, i) => i + 2),
      'no version twice, none skipped',
    )
    const twin = (await a.http.inject({ method: 'GET', url: '/devices/x/twin', headers: auth })).json()
    t.equal(Object.keys(twin.desired).filter((k) => k.startsWith('k')).length, N)
  })
})
