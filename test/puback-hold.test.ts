// A device's QoS 1 request to a handler: its PUBACK waits for the answer, so both leave in one
// write (broker/mqtt/hooks.ts, holdForAnswer); a handler that never finishes holds it back for a
// few event-loop turns only. Raw sockets, to see what arrives in one read.
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import t, { type Test } from 'tap'
import type { App } from '../broker/app.js'
import type { Plugin } from '../broker/plugin-host.js'
import { createDevice, sleep, startTestApp, waitFor } from './helpers/app.js'
import { connectPacket } from './helpers/raw.js'
import { startRedis } from './helpers/redis.js'

/** A raw device connection that keeps the packets of each socket read together. */
async function rawDevice(port: number, id: string, key: string) {
  const sock = net.connect(port, '127.0.0.1')
  const reads: string[][] = []
  sock.on('data', (chunk: Buffer) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const cmds: string[] = []
    parser.on('packet', (p: Packet) => cmds.push(p.cmd === 'publish' ? `publish:${p.topic}` : p.cmd))
    parser.parse(chunk)
    reads.push(cmds)
  })
  await new Promise((r) => sock.once('connect', r))
  sock.write(mqttPacket.generate(connectPacket(id, id, key)))
  await waitFor('CONNACK', () => reads.flat().includes('connack'))
  sock.write(
    mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$iot/${id}/twin/res`, qos: 1 }] }),
  )
  await waitFor('SUBACK', () => reads.flat().includes('suback'))
  reads.length = 0
  return {
    reads,
    report(messageId: number, patch: object) {
      sock.write(
        mqttPacket.generate({
          cmd: 'publish',
          topic: `$iot/${id}/twin/reported`,
          payload: Buffer.from(JSON.stringify({ rid: `r${messageId}`, patch })),
          qos: 1,
          messageId,
          retain: false,
          dup: false,
        }),
      )
    },
    end() {
      sock.destroy()
    },
  }
}

/** A device sends five reports, one at a time: each read it gets holds the PUBACK and the answer. */
async function fiveReportsAnsweredWithTheirPuback(t: Test, app: App, id: string) {
  const keys = await createDevice(app, id)
  const d = await rawDevice(app.ports.mqtt, id, keys.primary)
  t.teardown(() => d.end())
  const answer = `publish:$iot/${id}/twin/res`
  for (let i = 1; i <= 5; i++) {
    d.reads.length = 0
    d.report(100 + i, { i })
    await waitFor('the answer', () => d.reads.flat().includes(answer))
    t.same(d.reads, [['puback', answer]], `report ${i}: PUBACK and answer together`)
  }
}

t.test('the PUBACK of a twin report and its answer arrive in one read (a store that takes 5 ms)', async (t) => {
  const slow: Plugin = {
    name: 'slow-store',
    register({ registry }) {
      const twins = registry.store.twins
      const casSide = twins.casSide.bind(twins)
      twins.casSide = async (...args: Parameters<typeof casSide>) => {
        await sleep(5)
        return casSide(...args)
      }
    },
  }
  const app = await startTestApp(t, {}, { plugins: [slow] })
  await fiveReportsAnsweredWithTheirPuback(t, app, 'held')
})

t.test('a handler that does not finish holds its PUBACK back for HOLD_MS at most', async (t) => {
  let hang = false
  const hung: (() => void)[] = []
  const hanging: Plugin = {
    name: 'hanging-store',
    register({ registry }) {
      const twins = registry.store.twins
      const casSide = twins.casSide.bind(twins)
      twins.casSide = (...args: Parameters<typeof casSide>) =>
        hang ? new Promise((resolve) => hung.push(() => resolve(casSide(...args)))) : casSide(...args)
    },
  }
  const app = await startTestApp(t, {}, { plugins: [hanging] })
  const keys = await createDevice(app, 'stuck')
  const d = await rawDevice(app.ports.mqtt, 'stuck', keys.primary)
  t.teardown(() => d.end())
  hang = true
  const sent = Date.now()
  d.report(7, { a: 1 })
  await waitFor('the PUBACK', () => d.reads.flat().includes('puback'), 1000)
  t.ok(Date.now() - sent < 500, 'in time')
  await sleep(100)
  t.same(d.reads.flat(), ['puback'], 'the PUBACK, and no answer while the store hangs')
  hang = false
  for (const go of hung.splice(0)) go()
  await waitFor('the answer', () => d.reads.flat().includes('publish:$iot/stuck/twin/res'))
  t.pass('answered once the store is back')
})

t.test('with Redis, PUBACK and answer leave together too', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const app = await startTestApp(t, { FLEETHUB_REDIS_URL: redis.url })
  await fiveReportsAnsweredWithTheirPuback(t, app, 'heldr')
})
