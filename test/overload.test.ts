// Overload without falling over (bounded): a subscriber that stops reading is cut off instead of
// holding up publishers; floods with no subscriber or with QoS 1 leave the broker running and
// every acknowledged QoS 1 message delivered.
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import t from 'tap'
import { createDevice, serviceOpts, sleep, startTestApp } from './helpers/app.js'
import { connectPacket, rawConnect } from './helpers/raw.js'

/** A raw client that publishes as fast as the socket takes it, for `ms`. */
async function flood(port: number, id: string, key: string, topic: string, qos: 0 | 1, ms: number, size = 64) {
  const sock = net.connect(port, '127.0.0.1')
  const parser = mqttPacket.parser()
  let acked = 0
  let connack: () => void = () => {}
  const connected = new Promise<void>((r) => {
    connack = r
  })
  parser.on('packet', (p) => {
    if (p.cmd === 'puback') acked++
    else if (p.cmd === 'connack') connack()
  })
  let closed = false
  sock.on('data', (d) => parser.parse(d))
  sock.on('error', () => {})
  sock.on('close', () => {
    closed = true
  })
  await new Promise((r) => sock.once('connect', r))
  sock.write(mqttPacket.generate(connectPacket(id, id, key)))
  await connected
  const payload = Buffer.alloc(size, 7)
  let sent = 0
  let messageId = 1
  const until = Date.now() + ms
  while (Date.now() < until && !closed) {
    const frames: Buffer[] = []
    for (let i = 0; i < 100; i++) {
      frames.push(
        mqttPacket.generate({
          cmd: 'publish',
          topic,
          payload,
          qos,
          retain: false,
          dup: false,
          messageId: qos ? messageId : undefined,
        }),
      )
      messageId = messageId === 65535 ? 1 : messageId + 1
      sent++
    }
    if (!sock.write(Buffer.concat(frames))) {
      await new Promise((r) => {
        sock.once('drain', r)
        sock.once('close', r)
      })
    }
    await new Promise((r) => setImmediate(r))
  }
  await sleep(500)
  sock.destroy()
  return { sent, acked }
}

/** A raw subscriber that keeps everything it gets (in `log`). */
async function subscriber(port: number, topic: string, qos: 0 | 1) {
  const raw = await rawConnect(port)
  const o = serviceOpts(`sub-${Math.random().toString(36).slice(2)}`)
  raw.send(connectPacket(o.clientId as string, o.username, o.password as string))
  await raw.next('connack')
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] } as mqttPacket.Packet)
  await raw.next('suback')
  return raw
}

t.test('a subscriber that stops reading is cut off; the others are not held up', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'flood-1')
  const healthy = await subscriber(app.ports.mqtt, '$iot/flood-1/telemetry', 0)
  // a stuck consumer: a plain socket that subscribes and then never reads again
  const stuck = net.connect(app.ports.mqtt, '127.0.0.1')
  await new Promise((r) => stuck.once('connect', r))
  const o = serviceOpts('svc-stuck')
  stuck.write(mqttPacket.generate(connectPacket(o.clientId as string, o.username, o.password as string)))
  stuck.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: '$iot/flood-1/telemetry', qos: 0 }],
    }),
  )
  await sleep(200)
  stuck.pause()
  let stuckClosed = false
  stuck.on('close', () => {
    stuckClosed = true
  })
  stuck.on('error', () => {})
  t.teardown(() => {
    stuck.destroy()
    healthy.end()
  })

  // 1 KiB messages, so the stuck socket's kernel buffers fill quickly even on a busy machine
  const { sent } = await flood(app.ports.mqtt, 'flood-1', keys.primary, '$iot/flood-1/telemetry', 0, 7000, 1024)
  const got = healthy.log.filter((p) => p.cmd === 'publish').length
  t.ok(sent > 20_000, `the publisher was not held up: ${sent} messages sent`)
  t.ok(got > sent * 0.5, `the healthy subscriber got ${got} of ${sent}`)
  // a paused socket only notices the end once it reads again
  stuck.resume()
  for (let i = 0; i < 400 && !stuckClosed; i++) await sleep(20)
  t.ok(stuckClosed, 'the stuck subscriber was cut off')
  const metrics = await app.metrics.registry.metrics()
  t.match(metrics, /fleethub_dropped_total\{reason="slow_consumer"\} [1-9]/, 'QoS 0 drops are counted')
  t.match(metrics, /fleethub_rejected_total\{reason="slow_consumer"\} 1/, 'the cut-off is counted')
})

t.test('a flood with no subscriber at all does not overflow the stack', async (t) => {
  const app = await startTestApp(t)
  const floods = []
  for (let i = 0; i < 4; i++) {
    const keys = await createDevice(app, `nobody-${i}`)
    floods.push(flood(app.ports.mqtt, `nobody-${i}`, keys.primary, `$iot/nobody-${i}/telemetry`, 0, 3000))
  }
  const results = await Promise.all(floods)
  t.ok(
    results.every((r) => r.sent > 1000),
    'every publisher got its messages out',
  )
  const h = await app.http.inject({ method: 'GET', url: '/healthz' })
  t.equal(h.statusCode, 200, 'and the broker is still healthy')
})

t.test('an open-loop QoS 1 flood: every acknowledged message reaches a reading subscriber', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'q1')
  const sub = await subscriber(app.ports.mqtt, '$iot/q1/telemetry', 1)
  // acknowledge what arrives, like a real QoS 1 subscriber
  const acker = setInterval(() => {
    for (const p of sub.log.splice(0)) {
      if (p.cmd === 'publish') {
        received++
        sub.send({ cmd: 'puback', messageId: (p as mqttPacket.IPublishPacket).messageId } as mqttPacket.Packet)
      }
    }
  }, 5)
  let received = 0
  t.teardown(() => {
    clearInterval(acker)
    sub.end()
  })
  const { acked } = await flood(app.ports.mqtt, 'q1', keys.primary, '$iot/q1/telemetry', 1, 3000)
  for (let i = 0; i < 200 && received < acked; i++) await sleep(50)
  t.ok(acked > 1000, `${acked} messages acknowledged`)
  t.ok(received >= acked, `all of them delivered (${received})`)
})
