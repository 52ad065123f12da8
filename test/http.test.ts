// The HTTP API: status codes and bodies of every device route, auth, errors, health, metrics, docs.
import t from 'tap'
import { ADMIN_TOKEN, connackOf, connect, deviceOpts, mqttUrl, startTestApp, waitFor } from './helpers/app.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }

t.test('HTTP API', async (t) => {
  const app = await startTestApp(t)
  const req = (method: string, url: string, payload?: unknown, headers: Record<string, string> = auth) =>
    app.http.inject({
      method: method as 'GET',
      url,
      headers,
      ...(payload !== undefined ? { payload: payload as object } : {}),
    })

  await t.test('create', async (t) => {
    const res = await req('POST', '/devices', { id: 'h-1', tags: { building: '109', floor: 2 } })
    t.equal(res.statusCode, 201)
    const body = res.json()
    t.match(body.device, { id: 'h-1', status: 'enabled', tags: { building: '109', floor: 2 } })
    t.match(body.keys.primary, /^[A-Za-z0-9_-]{43}$/, 'a key is 32 bytes in base64url')
    t.not(body.keys.primary, body.keys.secondary)
    t.notOk('verifiers' in body.device, 'no key material in the device')
    t.equal(res.headers.location, '/devices/h-1')
    t.equal(await connackOf(mqttUrl(app), deviceOpts('h-1', body.keys.primary)), 0, 'the key works at CONNECT')

    t.equal((await req('POST', '/devices', { id: 'h-1' })).statusCode, 409, 'duplicate id')
    t.equal((await req('POST', '/devices', { id: 'h-1' })).json().error.code, 'FLEETHUB_ERR_DEVICE_EXISTS')
    for (const id of ['bad/id', '', 'x'.repeat(129), 'a+b', 'a#', 'service:x', 'é']) {
      const r = await req('POST', '/devices', { id })
      t.equal(r.statusCode, 400, `id ${JSON.stringify(id.slice(0, 20))} → 400`)
      t.equal(r.json().error.code, 'FLEETHUB_ERR_INVALID_DEVICE_ID')
    }
    t.equal((await req('POST', '/devices', { id: 'ok-id', extra: 1 })).statusCode, 400, 'unknown fields')
    t.equal((await req('POST', '/devices', { id: 'ok-id', tags: { 'bad key': 'x' } })).statusCode, 400, 'bad tag key')
    t.equal((await req('POST', '/devices', { id: 'ok-id', tags: { k: { nested: 1 } } })).statusCode, 400, 'nested tag')
    const orphan = await req('POST', '/devices', { id: 'child', parentId: 'nobody' })
    t.equal(orphan.statusCode, 400)
    t.equal(orphan.json().error.code, 'FLEETHUB_ERR_PARENT_NOT_FOUND')
    t.equal((await req('POST', '/devices', { id: 'child', parentId: 'h-1' })).statusCode, 201, 'a child of h-1')
  })

  await t.test('get', async (t) => {
    const res = await req('GET', '/devices/h-1')
    t.equal(res.statusCode, 200)
    t.match(res.json(), { id: 'h-1', presence: { connected: false } })
    t.notMatch(res.body, /verifier|primary|secondary/)
    const missing = await req('GET', '/devices/nope')
    t.equal(missing.statusCode, 404)
    t.same(missing.json(), { error: { code: 'FLEETHUB_ERR_DEVICE_NOT_FOUND', message: 'device nope does not exist' } })
  })

  await t.test('list, filter and page', async (t) => {
    for (let i = 0; i < 25; i++) {
      await req('POST', '/devices', { id: `l-${String(i).padStart(2, '0')}`, tags: { zone: i % 2 ? 'odd' : 'even' } })
    }
    await req('PATCH', '/devices/l-03', { status: 'disabled' })
    const ids: string[] = []
    let cursor: string | undefined
    for (let pages = 0; pages < 20; pages++) {
      const r = await req('GET', `/devices?tag.zone=odd&limit=4${cursor ? `&cursor=${cursor}` : ''}`)
      t.equal(r.statusCode, 200)
      const body = r.json()
      ids.push(...body.items.map((d: { id: string }) => d.id))
      cursor = body.nextCursor
      if (!cursor) break
    }
    t.same(
      ids,
      Array.from({ length: 12 }, (_, i) => `l-${String(i * 2 + 1).padStart(2, '0')}`),
      'every odd device once, in order',
    )
    const disabled = (await req('GET', '/devices?status=disabled')).json()
    t.same(
      disabled.items.map((d: { id: string }) => d.id),
      ['l-03'],
    )
    t.same(
      (await req('GET', '/devices?parentId=h-1')).json().items.map((d: { id: string }) => d.id),
      ['child'],
    )
    t.equal((await req('GET', '/devices?limit=0')).statusCode, 400)
    t.equal((await req('GET', '/devices?limit=1001')).statusCode, 400)
    t.equal((await req('GET', '/devices?status=sleepy')).statusCode, 400)
    const bad = await req('GET', '/devices?cursor=bm90IGFuIGlkIQ')
    t.equal(bad.statusCode, 400)
    t.equal(bad.json().error.code, 'FLEETHUB_ERR_INVALID_CURSOR')
  })

  await t.test('patch', async (t) => {
    const r = await req('PATCH', '/devices/h-1', { tags: { floor: null, room: 'a' } })
    t.equal(r.statusCode, 200)
    t.same(r.json().tags, { building: '109', room: 'a' }, 'a merge patch: null deletes')
    t.equal((await req('PATCH', '/devices/h-1', { status: 'disabled' })).json().status, 'disabled')
    t.equal((await req('PATCH', '/devices/h-1', { status: 'enabled' })).json().status, 'enabled')
    t.equal((await req('PATCH', '/devices/h-1', {})).statusCode, 400, 'an empty patch')
    t.equal((await req('PATCH', '/devices/h-1', { status: 'gone' })).statusCode, 400)
    t.equal((await req('PATCH', '/devices/h-1', { id: 'other' })).statusCode, 400, 'the id cannot change')
    t.equal((await req('PATCH', '/devices/nope', { status: 'enabled' })).statusCode, 404)
  })

  await t.test('rotate keys', async (t) => {
    const before = (await req('POST', '/devices', { id: 'rot' })).json().keys
    const r = await req('POST', '/devices/rot/keys/rotate')
    t.equal(r.statusCode, 200)
    const after = r.json().keys
    t.not(after.primary, before.primary)
    t.equal(await connackOf(mqttUrl(app), deviceOpts('rot', before.primary)), 4, 'the old key stops working')
    t.equal(await connackOf(mqttUrl(app), deviceOpts('rot', after.secondary)), 0, 'the new one works')
    const withType = await app.http.inject({
      method: 'POST',
      url: '/devices/rot/keys/rotate',
      headers: { ...auth, 'content-type': 'application/json' },
    })
    t.equal(withType.statusCode, 200, 'an empty JSON body is no body')
    t.equal((await req('POST', '/devices/nope/keys/rotate')).statusCode, 404)
  })

  await t.test('delete', async (t) => {
    t.equal((await req('DELETE', '/devices/rot')).statusCode, 204)
    t.equal((await req('DELETE', '/devices/rot')).statusCode, 404)
    t.equal((await req('GET', '/devices/rot')).statusCode, 404)
  })

  await t.test('bearer token', async (t) => {
    for (const [name, headers] of [
      ['none', {}],
      ['wrong', { authorization: 'Bearer nope' }],
      ['not bearer', { authorization: `Basic ${ADMIN_TOKEN}` }],
    ] as const) {
      const r = await req('GET', '/devices', undefined, headers as Record<string, string>)
      t.equal(r.statusCode, 401, `${name} → 401`)
      t.equal(r.json().error.code, 'FLEETHUB_ERR_UNAUTHORIZED')
      t.equal(r.headers['www-authenticate'], 'Bearer')
    }
  })

  await t.test('malformed requests', async (t) => {
    const raw = (payload: string, type = 'application/json') =>
      app.http.inject({ method: 'POST', url: '/devices', headers: { ...auth, 'content-type': type }, payload })
    const broken = await raw('{"id":')
    t.equal(broken.statusCode, 400)
    t.equal(broken.json().error.code, 'FLEETHUB_ERR_BAD_REQUEST')
    t.equal((await raw('{"__proto__":{"x":1},"id":"p"}')).statusCode, 400, 'prototype poisoning is refused')
    t.equal((await raw('id=x', 'application/x-www-form-urlencoded')).statusCode, 415)
    t.equal((await raw(JSON.stringify({ id: 'big', tags: { a: 'x'.repeat(300_000) } }))).statusCode, 413)
    const nowhere = await req('GET', '/nowhere')
    t.equal(nowhere.statusCode, 404)
    t.equal(nowhere.json().error.code, 'FLEETHUB_ERR_ROUTE_NOT_FOUND')
  })

  await t.test('health, metrics and docs are public', async (t) => {
    const h = await app.http.inject({ method: 'GET', url: '/healthz' })
    t.equal(h.statusCode, 200)
    t.same(h.json(), { ok: true, checks: { mqtt: true, http: true } })
    const m = await app.http.inject({ method: 'GET', url: '/metrics' })
    t.equal(m.statusCode, 200)
    for (const name of [
      'fleethub_connections',
      'fleethub_messages_in_total',
      'fleethub_messages_out_total',
      'fleethub_auth_failures_total',
      'fleethub_http_requests_total',
    ]) {
      t.match(m.body, new RegExp(`# TYPE ${name} `), name)
    }
    t.match(m.body, /fleethub_auth_failures_total\{reason="bad_credentials"\} [1-9]/)
    t.match(m.body, /fleethub_http_requests_total\{method="POST",route="\/devices",status="201"\}/)

    // the session gauge and CONNECT counters, kept in plain numbers and read at scrape time
    const scrape = async (name: string) => {
      const body = (await app.http.inject({ method: 'GET', url: '/metrics' })).body
      return Number(body.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1] ?? 0)
    }
    const before = {
      open: await scrape('fleethub_connections\\{kind="device"\\}'),
      connects: await scrape('fleethub_connects_total\\{kind="device"\\}'),
      misses: await scrape('fleethub_auth_cache_total\\{result="miss"\\}'),
    }
    const keys = (await req('POST', '/devices', { id: 'metered' })).json().keys
    const c = await connect(mqttUrl(app), deviceOpts('metered', keys.primary))
    // clientReady follows the CONNACK
    await waitFor(
      'the session counted',
      async () => (await scrape('fleethub_connections\\{kind="device"\\}')) === before.open + 1,
    )
    t.equal(await scrape('fleethub_connects_total\\{kind="device"\\}'), before.connects + 1, 'one more CONNECT')
    t.equal(await scrape('fleethub_auth_cache_total\\{result="miss"\\}'), before.misses + 1, 'its key was looked up')
    await c.endAsync()
    await waitFor(
      'the session gone',
      async () => (await scrape('fleethub_connections\\{kind="device"\\}')) === before.open,
    )
    t.equal(await scrape('fleethub_connects_total\\{kind="device"\\}'), before.connects + 1, 'a counter stays')
    const spec = await app.http.inject({ method: 'GET', url: '/docs/json' })
    t.equal(spec.statusCode, 200)
    const doc = spec.json()
    t.match(doc.openapi, /^3\./)
    for (const path of ['/devices', '/devices/{id}', '/devices/{id}/keys/rotate'])
      t.ok(doc.paths[path], `documents ${path}`)
    t.equal((await app.http.inject({ method: 'GET', url: '/docs' })).statusCode < 400, true, 'the docs page answers')
  })
})
