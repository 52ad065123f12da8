// Session edge cases of Aedes that FleetHub guards against.
import { PassThrough, pipeline, Readable } from 'node:stream'
import { pipeline as pipelinePromise } from 'node:stream/promises'
import { promisify } from 'node:util'
import type { Packet } from 'mqtt-packet'
import t from 'tap'
import { tuneSessions } from '../broker/mqtt/persistence.js'
import type { Plugin } from '../broker/plugin-host.js'
import { ADMIN_TOKEN, connect, createDevice, deviceOpts, mqttUrl, startTestApp } from './helpers/app.js'
import { connectPacket, rawConnect } from './helpers/raw.js'

t.test(
  'CONNACK is the first packet, even when a message arrives while a session is restored [MQTT-3.2.0-1]',
  async (t) => {
    // A gateway's persistent session holds a subscription of its own and one of its child's. When it
    // comes back, the child's is authorized with a registry look-up; this plugin publishes on the
    // gateway's own (already live) subscription during that look-up: the moment where Aedes would
    // write the message before the CONNACK.
    let armed = false
    const racer: Plugin = {
      name: 'racer',
      register({ registry, broker }) {
        const getRecord = registry.getRecord
        registry.getRecord = async function slowLookup(id) {
          if (armed && id === 'kid') {
            armed = false
            await broker.publish('$iot/gw/cmd/req', 'early', { qos: 1 })
          }
          return getRecord(id)
        }
      },
    }
    const app = await startTestApp(t, {}, { plugins: [racer] })
    const keys = await createDevice(app, 'gw')
    await createDevice(app, 'kid', { parentId: 'gw' })
    const first = await connect(mqttUrl(app), { ...deviceOpts('gw', keys.primary), clean: false })
    await first.subscribeAsync(['$iot/gw/cmd/req', '$iot/kid/cmd/req'], { qos: 1 })
    await first.endAsync()

    armed = true
    const raw = await rawConnect(app.ports.mqtt)
    raw.send(connectPacket('gw', 'gw', keys.primary, false))
    const publish = (await raw.next('publish')) as { payload?: Buffer } | undefined
    t.equal(publish?.payload?.toString(), 'early', 'the message arrives')
    t.equal(armed, false, 'it was published during the restore')
    t.same(
      raw.log.map((p) => p.cmd),
      ['connack', 'publish'],
      'after the CONNACK',
    )
    raw.end()
  },
)

t.test("a clean session's empty queue skips the stream pipeline; everything else goes through it", async (t) => {
  const persistence = tuneSessions({
    outgoingStream: () => Readable.from(['stored']),
    outgoingClearMessageId: async () => undefined,
    incomingStorePacket: async () => undefined,
  })
  const empty = persistence.outgoingStream({ id: 'c', clean: true })
  const sink = new PassThrough({ objectMode: true })
  let called = 0
  const returned = pipeline(empty, sink, (err) => {
    t.equal(err, undefined)
    called++
  })
  t.equal(returned, sink, 'returns the last stream, as pipeline does')
  t.equal(called, 0, 'calls back asynchronously')
  await new Promise((r) => process.nextTick(r))
  t.equal(called, 1)
  t.equal(sink.writableEnded, false, 'and touches nothing')

  const got: unknown[] = []
  const kept = new PassThrough({ objectMode: true })
  kept.on('data', (d) => got.push(d))
  await new Promise<void>((resolve, reject) =>
    pipeline(persistence.outgoingStream({ id: 'p', clean: false }), kept, (err) => (err ? reject(err) : resolve())),
  )
  t.same(got, ['stored'], "a persistent session's queue is drained as before")
  await promisify(pipeline)(Readable.from(['a']), new PassThrough())
  await pipelinePromise(Readable.from(['b']), new PassThrough())
  t.pass('promisified pipelines still work')
  t.equal(pipeline.name, 'pipeline')
  // persistent sessions' queues end to end: cluster.test.ts (Redis), sdk-commands.test.ts (memory)
})

for (const clean of [true, false]) {
  t.test(
    `a QoS 1 message overtaken by a QoS 0 one is still delivered (moscajs/aedes#994), clean session: ${clean}`,
    async (t) => {
      const app = await startTestApp(t)
      const raw = await rawConnect(app.ports.mqtt)
      t.teardown(() => raw.end())
      raw.send(connectPacket('watcher', 'service:test', ADMIN_TOKEN, clean))
      t.ok(await raw.next('connack'))
      raw.send({
        cmd: 'subscribe',
        messageId: 1,
        subscriptions: [
          { topic: '$iot/d1/events/#', qos: 1 },
          { topic: '$iot/d2/events/x', qos: 0 },
          { topic: '$iot/d2/events/#', qos: 1 },
        ],
      } as Packet)
      t.same(((await raw.next('suback')) as { granted?: number[] } | undefined)?.granted, [1, 0, 1])

      // published in one tick: "b" (QoS 0) reaches the bus before "a", which waits for the offline
      // queue; Aedes then took "a" for a repeat of "b" and dropped it
      const sent = ['a', 'b', 'c', 'd'].map((p, i) =>
        app.broker.publish('$iot/d1/events/x', p, { qos: i === 1 ? 0 : 1 }),
      )
      await Promise.all(sent)
      const got: { payload: string; qos: number; messageId?: number }[] = []
      for (let i = 0; i < 4; i++) {
        const p = (await raw.next('publish')) as { payload: Buffer; qos: number; messageId?: number } | undefined
        if (!p) break
        got.push({
          payload: p.payload.toString(),
          qos: p.qos,
          ...(p.qos > 0 ? { messageId: p.messageId as number } : {}),
        })
      }
      t.same(got.map((g) => `${g.payload}${g.qos}`).sort(), ['a1', 'b0', 'c1', 'd1'], 'every message, each at its QoS')
      const qos1 = got.filter((g) => g.qos === 1)
      t.same(
        qos1.map((g) => g.payload),
        ['a', 'c', 'd'],
        'QoS 1 messages in the order published',
      )
      const ids = qos1.map((g) => g.messageId as number)
      t.equal(new Set(ids).size, 3, 'each with its own packet identifier')
      t.ok(
        ids.every((id) => id >= 1 && id <= 65535),
        'within 1..65535',
      )
      for (const id of ids) raw.send({ cmd: 'puback', messageId: id } as Packet)

      // a QoS 0 subscription to exactly the topic makes a QoS 1 message arrive once, at QoS 0 (as Aedes)
      await app.broker.publish('$iot/d2/events/x', 'e', { qos: 1 })
      const e = (await raw.next('publish')) as { payload: Buffer; qos: number } | undefined
      t.same([e?.payload.toString(), e?.qos], ['e', 0])
      t.equal(await raw.next('publish', 300), undefined, 'and only once')
      // the other filter alone: QoS 1
      await app.broker.publish('$iot/d2/events/y', 'f', { qos: 1 })
      const f = (await raw.next('publish')) as { payload: Buffer; qos: number } | undefined
      t.same([f?.payload.toString(), f?.qos], ['f', 1])
      t.equal(await raw.closedWithin(200), false, 'the connection stays up after its PUBACKs')
    },
  )
}
