// The admission gate (broker/mqtt/admission.ts): past its limit of packets in progress, connections
// wait to be read, in order, and are read as packets finish; a connection counts for a bounded
// number of its packets; a node where nothing finishes opens the gate; a closed connection gives
// its share back. Real Aedes, real sockets, real mqtt.js clients; then the gate in a whole node.
import { once } from 'node:events'
import net from 'node:net'
import { Aedes, type AedesPublishPacket, type Client } from 'aedes'
import type { MqttClient } from 'mqtt'
import t from 'tap'
import { createAdmission } from '../broker/mqtt/admission.js'
import {
  ADMIN_TOKEN,
  connect,
  createDevice,
  deviceOpts,
  mqttUrl,
  sleep,
  startTestApp,
  type Teardown,
  waitFor,
} from './helpers/app.js'

/** An Aedes broker behind a gate, whose publishes to `hold/…` stay in progress until released. */
async function gatedBroker(t: Teardown, opts: Parameters<typeof createAdmission>[0]) {
  const held: (() => void)[] = []
  const aedes = await Aedes.createBroker({
    published(packet: AedesPublishPacket, client: Client | null, cb: (err?: Error | null) => void) {
      if (client && packet.topic.startsWith('hold/')) held.push(() => cb())
      else cb()
    },
  } as ConstructorParameters<typeof Aedes>[0])
  const gate = createAdmission(opts)
  const server = net.createServer((socket) => gate.admit(aedes.handle(socket)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const clients: MqttClient[] = []
  t.teardown(async () => {
    for (const c of clients) c.end(true)
    for (const r of held.splice(0)) r()
    await new Promise<void>((r) => server.close(() => r()))
    await new Promise<void>((r) => aedes.close(() => r()))
  })
  return {
    gate,
    held,
    async client(id: string) {
      const c = await connect(url, { clientId: id, reconnectPeriod: 0 })
      clients.push(c)
      return c
    },
    /** Releases the oldest held publishes. */
    release(n: number) {
      for (const r of held.splice(0, n)) r()
    },
  }
}

/** Resolves with true once `c` has its PUBACK, or false after `ms`. */
function acked(c: MqttClient, topic: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    c.publish(topic, 'x', { qos: 1 }, (err) => {
      clearTimeout(timer)
      resolve(!err)
    })
  })
}

t.test('past the limit a connection waits to be read, and is read as packets finish', async (t) => {
  const b = await gatedBroker(t, { limit: 4, perConnection: 2, stuckMs: 60_000 })
  const holders = await Promise.all(['h0', 'h1', 'h2', 'h3'].map((id) => b.client(id)))
  const late = await b.client('late')
  for (const c of holders) c.publish('hold/x', 'x', { qos: 1 })
  await waitFor('four publishes held', () => b.held.length === 4)
  t.equal(b.gate.inFlight, 4)

  const lateAcked = acked(late, 'free/y', 5000)
  await waitFor('the late connection waiting', () => b.gate.waiting === 1)
  await sleep(100)
  t.equal(b.held.length, 4, 'its publish is not read while the node is full')
  t.equal(b.gate.waits, 1)

  b.release(1)
  t.equal(await lateAcked, true, 'read, handled and acknowledged once one packet finished')
  await waitFor('nothing waiting', () => b.gate.waiting === 0)
  b.release(3)
  await waitFor('nothing in flight', () => b.gate.inFlight === 0)
  t.equal(b.gate.unstuck, 0, 'the watchdog was not needed')
})

t.test('a connection counts for at most perConnection packets; closing gives its share back', async (t) => {
  const b = await gatedBroker(t, { limit: 4, perConnection: 2, stuckMs: 60_000 })
  const burst = await b.client('burst')
  const other = await b.client('other')
  for (let i = 0; i < 6; i++) burst.publish('hold/x', String(i), { qos: 1 })
  await waitFor('the burst held', () => b.held.length === 6)
  t.equal(b.gate.inFlight, 2, 'six packets in progress count as two')
  t.equal(await acked(other, 'free/y', 2000), true, 'another connection is still read')

  burst.end(true)
  await waitFor('the burst connection gone', () => b.gate.inFlight === 0)
  t.pass('its packets in progress no longer count')
})

t.test('when nothing finishes for stuckMs, every waiting connection is read', async (t) => {
  const b = await gatedBroker(t, { limit: 2, perConnection: 2, stuckMs: 100 })
  const holders = await Promise.all(['s0', 's1'].map((id) => b.client(id)))
  for (const c of holders) c.publish('hold/x', 'x', { qos: 1 })
  await waitFor('two held', () => b.held.length === 2)
  const waiting = await Promise.all(['w0', 'w1', 'w2'].map((id) => b.client(id)))
  const started = Date.now()
  const results = await Promise.all(waiting.map((c) => acked(c, 'free/y', 5000)))
  t.same(results, [true, true, true], 'all read and acknowledged, the held ones still held')
  t.ok(Date.now() - started >= 80, 'after the watchdog, not before')
  t.ok(b.gate.unstuck >= 1, 'counted (their CONNECTs waited too)')
  t.equal(b.held.length, 2)
})

t.test('in a node: FLEETHUB_MAX_IN_FLIGHT, every request answered, the gate on /metrics', async (t) => {
  const app = await startTestApp(t, { FLEETHUB_MAX_IN_FLIGHT: '16' })
  t.equal(app.config.maxInFlight, 16)
  const n = 40
  const devices = await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const keys = await createDevice(app, `adm${i}`)
      const c = await connect(mqttUrl(app), deviceOpts(`adm${i}`, keys.primary))
      t.teardown(() => c.endAsync())
      await c.subscribeAsync(`$iot/adm${i}/twin/res`, { qos: 1 })
      return c
    }),
  )
  const answers = devices.map(
    (c) =>
      new Promise<{ status: number; version: number }>((resolve) =>
        c.on('message', (_topic, payload) => resolve(JSON.parse(payload.toString()))),
      ),
  )
  // ten patches from each device at once: 400 requests against 16 in flight
  devices.forEach((c, i) => {
    for (let k = 0; k < 10; k++)
      c.publish(`$iot/adm${i}/twin/reported`, JSON.stringify({ rid: `r${k}`, patch: { k } }), { qos: 1 })
  })
  const first = await Promise.all(answers)
  t.ok(
    first.every((a) => a.status === 204),
    'every device answered',
  )
  const versions = await waitFor('every patch applied', async () => {
    const all = await Promise.all(
      devices.map(async (_, i) => {
        const r = await app.http.inject({
          method: 'GET',
          url: `/devices/adm${i}/twin`,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
        return (r.json() as { reported: { $version: number } }).reported.$version
      }),
    )
    return all.every((v) => v === 11) ? all : undefined
  })
  t.equal(versions.length, n, 'ten versions on every twin')
  const metrics = (await app.http.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /^fleethub_inbound_in_flight 0$/m)
  t.match(metrics, /^fleethub_connections_waiting 0$/m)
  t.match(metrics, /^fleethub_admission_waits_total [1-9]\d*$/m, 'connections waited')
  t.match(metrics, /^fleethub_admission_unstuck_total \d+$/m)
})
