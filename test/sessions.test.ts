// Session edge cases of Aedes that FleetHub guards against.
import { PassThrough, pipeline, Readable } from 'node:stream'
import { pipeline as pipelinePromise } from 'node:stream/promises'
import { promisify } from 'node:util'
import t from 'tap'
import { tuneSessions } from '../broker/mqtt/persistence.js'
import type { Plugin } from '../broker/plugin-host.js'
import { connect, createDevice, deviceOpts, mqttUrl, startTestApp } from './helpers/app.js'
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
