// Bad input gets a clear answer and loses nothing: malformed, oversized or invalid packets close
// only the offending connection, are counted by reason, and never crash or stall the broker.
import net from 'node:net'
import t from 'tap'
import WebSocket from 'ws'
import type { Plugin } from '../broker/plugin-host.js'
import type { OtaService } from '../plugins/ota/service.js'
import { connect, createDevice, deviceOpts, inbox, mqttUrl, serviceOpts, sleep, startTestApp } from './helpers/app.js'
import {
  connectPacket,
  type RawClient,
  rawConnect,
  rawConnectBytes,
  rawPublishBytes,
  remainingLength,
} from './helpers/raw.js'

/** A test plugin whose hooks fail on purpose. */
const faulty: Plugin = {
  name: 'faulty',
  dependencies: ['ota'],
  register({ host }) {
    host.addHook('authorizePublish', (_s, topic) => {
      if (topic.startsWith('boom/')) throw new Error('hook failure')
      return 'defer'
    })
    host.addHook('sessionReady', (s) => {
      if (s.clientId === 'throws-on-ready') throw new Error('ready failure')
    })
    // every uplink kind has its owner now: make the OTA status handler fail instead
    const ota = host.use<OtaService>('ota')
    ota.onStatus = async () => {
      throw new Error('handler failure')
    }
  },
}

t.test('bad MQTT input', async (t) => {
  const app = await startTestApp(t, { FLEETHUB_MAX_PACKET_SIZE: '4096' }, { plugins: [faulty] })
  const url = mqttUrl(app)
  const keys = await createDevice(app, 'good')
  const badKeys = await createDevice(app, 'bad')
  const good = await connect(url, deviceOpts('good', keys.primary))
  const svc = await connect(url, serviceOpts('svc-bad'))
  t.teardown(() => Promise.all([good, svc].map((c) => c.endAsync(true))))
  const seen = inbox(svc)
  await svc.subscribeAsync('$iot/+/telemetry')

  const authed = async (): Promise<RawClient> => {
    const raw = await rawConnect(app.ports.mqtt)
    raw.send(connectPacket('bad', 'bad', badKeys.primary))
    const ack = (await raw.next('connack')) as { returnCode?: number } | undefined
    if (ack?.returnCode !== 0) throw new Error(`CONNECT refused: ${ack?.returnCode}`)
    return raw
  }
  const fresh = () => rawConnect(app.ports.mqtt)

  const cases: [string, () => Promise<RawClient>, Buffer][] = [
    ['a PUBLISH over the packet size limit', authed, rawPublishBytes('$iot/bad/telemetry', Buffer.alloc(8000))],
    [
      'a header announcing 200 MB (nothing buffered)',
      authed,
      Buffer.concat([Buffer.from([0x30]), remainingLength(200_000_000), Buffer.alloc(100)]),
    ],
    [
      'an oversized CONNECT',
      fresh,
      rawConnectBytes({ clientId: 'bad', username: 'bad', password: 'x'.repeat(6000), clean: true }),
    ],
    ['a topic that is not UTF-8', authed, rawPublishBytes(Buffer.from([0x24, 0x69, 0xc3, 0x28]), 'x')],
    ['a topic with U+0000', authed, rawPublishBytes(Buffer.from('$iot/bad/\u0000'), 'x')],
    ['a client id that is not UTF-8', fresh, rawConnectBytes({ clientId: Buffer.from([0xff, 0xfe]), clean: true })],
    ['a wildcard in a PUBLISH topic', authed, rawPublishBytes('$iot/bad/+', 'x')],
    ['QoS 3', authed, rawPublishBytes('$iot/bad/telemetry', 'x', 0x36)],
    ['garbage instead of CONNECT', fresh, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['PUBLISH before CONNECT', fresh, rawPublishBytes('$iot/bad/telemetry', 'x')],
    [
      'a second CONNECT',
      authed,
      rawConnectBytes({ clientId: 'bad', username: 'bad', password: badKeys.primary, clean: true }),
    ],
  ]
  for (const [name, open, bytes] of cases) {
    const raw = await open()
    raw.sendBytes(bytes)
    t.ok(await raw.closedWithin(2000), `${name}: the connection is closed`)
    raw.end()
  }

  const anonymous = await fresh()
  anonymous.sendBytes(rawConnectBytes({ clientId: '', clean: true }))
  t.equal(
    ((await anonymous.next('connack')) as { returnCode?: number })?.returnCode,
    2,
    'an empty client id without a user name → 2',
  )
  anonymous.end()

  const metrics = await app.metrics.registry.getSingleMetricAsString('fleethub_rejected_total')
  t.match(metrics, /reason="packet_too_large"\} 3/, 'oversized packets are counted')
  t.match(metrics, /reason="invalid_utf8"\} 3/, 'invalid strings are counted')
  t.match(metrics, /reason="malformed_packet"\} [1-9]/, 'malformed packets are counted')

  await t.test('failing hooks and handlers never take the broker down', async (t) => {
    await good.publishAsync('boom/x', 'x', { qos: 1 })
    t.ok(good.connected, 'a throwing authorization hook counts as deny')
    await good.publishAsync('$iot/good/ota/status', '{}', { qos: 1 })
    await sleep(100)
    t.ok(good.connected, 'a failing uplink handler is counted, not fatal')
    t.match(await app.metrics.registry.getSingleMetricAsString('fleethub_rejected_total'), /reason="handler_error"\} 1/)
    await createDevice(app, 'throws-on-ready')
    const k = (await app.registry.rotateKeys('throws-on-ready')).primary
    const c = await connect(url, deviceOpts('throws-on-ready', k))
    await sleep(100)
    t.ok(c.connected, 'a throwing session hook is logged, not fatal')
    await c.endAsync()
  })

  await t.test('everyone else carried on', async (t) => {
    t.ok(good.connected)
    await good.publishAsync('$iot/good/telemetry', 'still here', { qos: 1 })
    const m = await seen.next((x) => x.payload.toString() === 'still here')
    t.ok(m, 'the well-behaved device still reaches services')
  })
})

t.test('bad WebSocket input', async (t) => {
  const app = await startTestApp(t, { FLEETHUB_MAX_PACKET_SIZE: '4096' })
  const wsUrl = `ws://127.0.0.1:${app.ports.ws}/mqtt`

  await t.test('a message over the size limit closes the socket', async (t) => {
    const ws = new WebSocket(wsUrl, 'mqtt')
    await new Promise((r) => ws.once('open', r))
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)))
    ws.send(Buffer.alloc(20_000))
    t.equal(await closed, 1009, 'closed with 1009 (message too big)')
  })

  // the pattern of CVE-2024-37890, which crashed the ws 3 that websocket-stream bundles
  await t.test('an upgrade request with 2,000 headers does not crash the server', async (t) => {
    const headers = Array.from({ length: 2000 }, (_, i) => `x-h${i}: v`).join('\r\n')
    const answer = await new Promise<string>((resolve) => {
      const s = net.connect(app.ports.ws, '127.0.0.1', () => {
        s.write(
          `GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${headers}\r\n\r\n`,
        )
      })
      let got = ''
      s.on('data', (d) => {
        got += d.toString()
        s.destroy()
      })
      s.on('close', () => resolve(got))
      s.on('error', () => resolve(got))
    })
    t.match(answer, /^HTTP\/1\.1 (101|4\d\d)/, 'an orderly answer')
    const keys = await createDevice(app, 'ws-ok')
    const c = await connect(wsUrl, deviceOpts('ws-ok', keys.primary))
    t.ok(c.connected, 'and devices still connect')
    await c.endAsync()
  })

  await t.test('a path other than /mqtt is not a broker', async (t) => {
    const ws = new WebSocket(`ws://127.0.0.1:${app.ports.ws}/other`, 'mqtt')
    const err = await new Promise<Error>((r) => ws.once('error', r))
    t.match(err.message, /400|Unexpected server response/)
  })
})
