// The SDK against a real broker on real sockets: device auth (key, token, token refresh on
// reconnect), telemetry to a service, a gateway publishing for its child, downlink subscriptions.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connectDevice, type DeviceClient, type DownlinkMessage } from '../sdk/index.js'
import { connectService, type ServiceClient } from '../sdk/service.js'
import { ADMIN_TOKEN, connackOf, createDevice, deviceOpts, mqttUrl, sleep, startTestApp, wsUrl } from './helpers/app.js'

interface Closer {
  teardown(fn: () => unknown): void
}

/** A queue fed by handlers; `next` waits (bounded) for the next item. */
function collector<T>() {
  const items: T[] = []
  const waiters: (() => void)[] = []
  return {
    items,
    push(item: T) {
      items.push(item)
      for (const w of waiters.splice(0)) w()
    },
    next(what: string, ms = 3000): Promise<T> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)
        const take = () => {
          if (items.length === 0) return void waiters.push(take)
          clearTimeout(timer)
          resolve(items.shift() as T)
        }
        take()
      })
    },
  }
}

function closeDevice(t: Closer, d: DeviceClient): DeviceClient {
  t.teardown(() => d.end(true))
  return d
}

function closeService(t: Closer, s: ServiceClient): ServiceClient {
  t.teardown(() => s.end(true))
  return s
}

/** Resolves on the client's next CONNACK, or rejects after `ms`. */
function connectedAgain(d: DeviceClient, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reconnect within ${ms} ms`)), ms)
    d.mqtt.once('connect', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

const expiryOf = (token: string) => Number(token.split('.')[1])

t.test('key auth over TCP and WebSocket', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-key')
  for (const [transport, url] of [
    ['tcp', mqttUrl(app)],
    ['ws', wsUrl(app)],
  ] as const) {
    const dev = closeDevice(t, await connectDevice({ url, deviceId: 'dev-key', key: keys.primary, auth: 'key' }))
    t.equal(dev.auth, 'key', `${transport}: key auth`)
    t.equal(dev.mqtt.options.password, keys.primary, `${transport}: the password is the key`)
    t.equal(dev.mqtt.options.protocolVersion, 4, `${transport}: MQTT 3.1.1`)
    t.equal(app.broker.localSession('dev-key')?.transport, transport, `${transport}: the broker holds the session`)
    await dev.end()
  }
  const wrong = await connectDevice({
    url: mqttUrl(app),
    deviceId: 'dev-key',
    key: keys.primary.slice(0, -2) + (keys.primary.endsWith('AA') ? 'BA' : 'AA'),
    auth: 'key',
  }).then(
    () => 'connected',
    (err: { code?: number }) => err.code,
  )
  t.equal(wrong, 4, 'a wrong key is refused with CONNACK 4, reported by connectDevice')
  await t.rejects(
    connectDevice({ url: mqttUrl(app), deviceId: 'dev-key', key: 'not-a-key' }),
    TypeError,
    'a malformed key fails before connecting',
  )
})

const hasOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0

/** A self-signed certificate for 127.0.0.1 (made with the openssl binary). */
function selfSignedCert(t: Closer): { cert: string; key: string; pem: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'fleethub-sdk-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1']
  args.push('-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert)
  execFileSync('openssl', args, { stdio: 'ignore' })
  return { cert, key, pem: readFileSync(cert) }
}

t.test('key auth by default over TLS and WSS', { skip: hasOpenssl ? false : 'no openssl binary' }, async (t) => {
  const tls = selfSignedCert(t)
  const app = await startTestApp(t, { FLEETHUB_TLS_CERT: tls.cert, FLEETHUB_TLS_KEY: tls.key })
  const keys = await createDevice(app, 'dev-tls')
  for (const [transport, url] of [
    ['tls', `mqtts://127.0.0.1:${app.ports.mqtts}`],
    ['wss', `wss://127.0.0.1:${app.ports.wss}/mqtt`],
  ] as const) {
    const dev = closeDevice(
      t,
      await connectDevice({ url, deviceId: 'dev-tls', key: keys.primary, mqtt: { ca: tls.pem } }),
    )
    t.equal(dev.auth, 'key', `${transport}: the key is the default on a TLS link`)
    t.equal(app.broker.localSession('dev-tls')?.transport, transport, `${transport}: the broker holds the session`)
    await dev.end()
  }
})

t.test('token auth over TCP and WebSocket', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-tok')
  for (const [transport, url] of [
    ['tcp', mqttUrl(app)],
    ['ws', wsUrl(app)],
  ] as const) {
    const before = Date.now() / 1000
    const dev = closeDevice(t, await connectDevice({ url, deviceId: 'dev-tok', key: keys.secondary, tokenTtlSec: 120 }))
    const after = Date.now() / 1000
    t.equal(dev.auth, 'token', `${transport}: a link without TLS signs a token by default`)
    const token = String(dev.mqtt.options.password)
    t.match(token, /^v1\.\d+\.[A-Za-z0-9_-]{43}$/, `${transport}: the password is a signed token`)
    t.ok(
      expiryOf(token) >= before + 120 && expiryOf(token) <= Math.ceil(after) + 120,
      `${transport}: valid for at least tokenTtlSec from its signing`,
    )
    t.equal(app.broker.localSession('dev-tok')?.transport, transport, `${transport}: the broker holds the session`)
    await dev.end()
  }
})

t.test('a fresh token is signed for each reconnect', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-re')
  const dev = closeDevice(
    t,
    await connectDevice({
      url: mqttUrl(app),
      deviceId: 'dev-re',
      key: keys.primary,
      auth: 'token',
      tokenTtlSec: 1,
      reconnectPeriodMs: 100,
    }),
  )
  const first = String(dev.mqtt.options.password)
  const firstSession = app.broker.localSession('dev-re')?.id
  t.ok(firstSession, 'connected')
  // wait until the broker would refuse the first token, so only a fresh one gets back in
  while (Math.floor(Date.now() / 1000) < expiryOf(first)) await sleep(50)

  const reconnected = connectedAgain(dev, 5000)
  t.ok(app.broker.disconnectLocal('dev-re', 'test'), 'the broker closes the connection')
  await reconnected
  const second = String(dev.mqtt.options.password)
  t.not(second, first, 'the reconnect carried another token')
  t.ok(expiryOf(second) > expiryOf(first), 'with a later expiry')
  const secondSession = app.broker.localSession('dev-re')?.id
  t.ok(secondSession && secondSession !== firstSession, 'the broker accepted it as a new session')
  t.equal(await connackOf(mqttUrl(app), deviceOpts('dev-re', first)), 4, 'while the first token is refused by now')
})

t.test('telemetry reaches a service', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-tel')
  const errors: Error[] = []
  const svc = closeService(
    t,
    await connectService({ url: mqttUrl(app), name: 'test', token: ADMIN_TOKEN, onError: (e) => errors.push(e) }),
  )
  t.match(svc.mqtt.options.clientId, /^service:test:/, 'a client id no device can have')

  const events = collector<[string, string, unknown]>()
  await svc.onEvents('#', (id, kind, event) => events.push([id, kind, event]))
  await svc.onTelemetry(function brokenHandler() {
    throw new Error('a broken handler')
  })
  const telemetry = collector<[string, unknown, Buffer]>()
  await svc.onTelemetry((id, value, raw) => telemetry.push([id, value, raw]))

  const dev = closeDevice(t, await connectDevice({ url: wsUrl(app), deviceId: 'dev-tel', key: keys.primary }))
  const [eventDevice, kind, event] = await events.next('connected event')
  t.same([eventDevice, kind], ['dev-tel', 'connected'], 'the service sees the device connect')
  t.match(event, { deviceId: 'dev-tel', online: true }, 'with the decoded event')

  await dev.publishTelemetry({ temp: 21.5, ok: true }, { qos: 1 })
  const [id, value, raw] = await telemetry.next('JSON telemetry')
  t.equal(id, 'dev-tel', 'from the device')
  t.same(value, { temp: 21.5, ok: true }, 'decoded')
  t.equal(raw.toString(), '{"temp":21.5,"ok":true}', 'with the raw payload')

  await dev.publishRaw('telemetry', Buffer.from([0xff, 0x00, 0x7b]), { qos: 1 })
  const [, binValue, binRaw] = await telemetry.next('binary telemetry')
  t.equal(binValue, undefined, 'a payload that is not JSON decodes to undefined')
  t.same([...binRaw], [0xff, 0x00, 0x7b], 'and arrives as it is')
  t.ok(errors.length >= 2 && errors.every((e) => e.message === 'a broken handler'), 'a throwing handler is reported')
  t.ok(svc.mqtt.connected, 'and breaks nothing')

  await t.rejects(dev.publishRaw('twin/res' as never, '{}'), TypeError, 'a downlink kind is no uplink')
  await t.rejects(dev.publishTelemetry(undefined), TypeError, 'undefined has no JSON form')
})

t.test('a gateway publishes telemetry for its child', async (t) => {
  const app = await startTestApp(t)
  const gwKeys = await createDevice(app, 'gw-1')
  await createDevice(app, 'child-1', { parentId: 'gw-1' })
  await createDevice(app, 'stranger')
  const svc = closeService(t, await connectService({ url: mqttUrl(app), name: 'test', token: ADMIN_TOKEN }))
  const telemetry = collector<[string, unknown]>()
  await svc.onTelemetry((id, value) => telemetry.push([id, value]))

  const gw = closeDevice(t, await connectDevice({ url: mqttUrl(app), deviceId: 'gw-1', key: gwKeys.primary }))
  const child = gw.forChild('child-1')
  t.equal(child.deviceId, 'child-1', 'a channel for the child')
  await gw.forChild('stranger').publishTelemetry({ n: 0 }, { qos: 1 })
  await child.publishTelemetry({ n: 1 }, { qos: 1 })
  t.same(
    await telemetry.next('child telemetry'),
    ['child-1', { n: 1 }],
    "the service gets the child's telemetry under the child's id, and nothing for a device that is not its child",
  )
  t.same(await child.subscribeDownlink(['cmd/req']), { granted: ['cmd/req'], refused: [] }, 'and its downlinks')
  t.throws(() => gw.forChild('a/b'), TypeError, 'a child id must be one topic level')
})

t.test('downlink subscriptions: refusals reported, grants kept across a reconnect', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-dl')
  await createDevice(app, 'other')
  const dev = closeDevice(
    t,
    await connectDevice({ url: mqttUrl(app), deviceId: 'dev-dl', key: keys.primary, reconnectPeriodMs: 100 }),
  )

  t.same(
    await dev.forChild('other').subscribeDownlink(['twin/desired', 'cmd/req']),
    { granted: [], refused: ['twin/desired', 'cmd/req'] },
    "another device's downlinks are refused and reported",
  )
  t.same(
    await dev.subscribeDownlink(),
    { granted: ['twin/res', 'twin/desired', 'cmd/req', 'ota/notify'], refused: [] },
    'its own downlinks are granted',
  )
  t.ok(dev.mqtt.connected, 'a refusal keeps the connection')
  await t.rejects(dev.subscribeDownlink(['telemetry' as never]), TypeError, 'an uplink kind is no downlink')

  const commands = collector<DownlinkMessage>()
  dev.onDownlink('cmd/req', (m) => commands.push(m))

  await app.broker.publish('$iot/dev-dl/cmd/req', '{"rid":"1","name":"reboot"}', { qos: 1 })
  const first = await commands.next('command before the reconnect')
  t.match(first, { deviceId: 'dev-dl', kind: 'cmd/req', topic: '$iot/dev-dl/cmd/req' }, 'dispatched by topic')
  t.equal(first.payload.toString(), '{"rid":"1","name":"reboot"}', 'with its payload')

  // mqtt.js resubscribes right after the CONNACK; the message goes out once the SUBACK is back
  const resubscribed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no SUBACK after the reconnect within 5000 ms')), 5000)
    dev.mqtt.on('packetreceive', function subackAfterReconnect(packet) {
      if (packet.cmd !== 'suback') return
      clearTimeout(timer)
      dev.mqtt.off('packetreceive', subackAfterReconnect)
      resolve()
    })
  })
  t.ok(app.broker.disconnectLocal('dev-dl', 'test'), 'the broker closes the connection')
  await resubscribed
  await app.broker.publish('$iot/dev-dl/cmd/req', '{"rid":"2","name":"reboot"}', { qos: 1 })
  const second = await commands.next('command after the reconnect')
  t.equal(second.payload.toString(), '{"rid":"2","name":"reboot"}', 'granted downlinks are resubscribed')
})
