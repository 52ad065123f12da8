// The guarded MQTT parser (broker/mqtt/guard.ts) between packets: it holds one shared empty packet
// rather than a fresh one per connection, and parses as before however the bytes are split.
import mqttPacket from 'mqtt-packet'
import t, { type Test } from 'tap'
import { guardParser } from '../broker/mqtt/guard.js'

interface Parsed {
  cmd: string
  topic?: string
  payload?: Buffer
  qos?: number
  messageId?: number
}

function guarded() {
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  guardParser(parser, 1 << 20)
  const got: Parsed[] = []
  const errors: Error[] = []
  parser.on('packet', (p) => got.push(p as unknown as Parsed))
  parser.on('error', (e: Error) => errors.push(e))
  return { parser: parser as unknown as { packet: Record<string, unknown>; parse(b: Buffer): number }, got, errors }
}

const publish = (i: number) =>
  mqttPacket.generate({
    cmd: 'publish',
    topic: `$iot/dev-${i}/twin/reported`,
    payload: Buffer.from(JSON.stringify({ rid: String(i), patch: { temp: 20 + i / 10 } })),
    qos: 1,
    messageId: i + 1,
    retain: false,
    dup: false,
  })
const puback = (i: number) => mqttPacket.generate({ cmd: 'puback', messageId: i + 1 })

function check(t: Test, got: Parsed[], n: number) {
  t.equal(got.length, 2 * n, 'every packet came out')
  for (let i = 0; i < n; i++) {
    const p = got[2 * i] as Parsed
    const a = got[2 * i + 1] as Parsed
    t.same(
      [p.cmd, p.topic, p.qos, p.messageId, p.payload?.toString()],
      [
        'publish',
        `$iot/dev-${i}/twin/reported`,
        1,
        i + 1,
        JSON.stringify({ rid: String(i), patch: { temp: 20 + i / 10 } }),
      ],
    )
    t.same([a.cmd, a.messageId], ['puback', i + 1])
  }
}

t.test('packets split at every byte come out whole, and each one is a new object', async (t) => {
  const { parser, got, errors } = guarded()
  const n = 6
  const bytes = Buffer.concat(Array.from({ length: n }, (_, i) => [publish(i), puback(i)]).flat())
  for (let i = 0; i < bytes.length; i++) parser.parse(bytes.subarray(i, i + 1))
  check(t, got, n)
  t.equal(new Set(got).size, got.length, 'no packet object was reused')
  t.same(errors, [])
})

t.test('between packets every parser holds the same empty packet, which nothing writes', async (t) => {
  const a = guarded()
  const b = guarded()
  const idle = a.parser.packet
  t.equal(b.parser.packet, idle, 'two new parsers share it')
  a.parser.parse(Buffer.concat([publish(0), puback(0)]))
  b.parser.parse(publish(1))
  t.equal(a.parser.packet, idle, 'after whole packets, back to the shared one')
  t.equal(b.parser.packet, idle)
  // half a packet: the parser keeps a packet of its own until the rest arrives
  const next = publish(2)
  a.parser.parse(next.subarray(0, 5))
  t.not(a.parser.packet, idle, 'a packet in progress is the parser’s own')
  t.equal(b.parser.packet, idle)
  a.parser.parse(next.subarray(5))
  t.equal(a.parser.packet, idle)
  t.same(
    [idle.cmd, idle.length, idle.topic, idle.payload, idle.qos],
    [null, -1, null, null, 0],
    'the shared packet is still empty',
  )
  t.same(
    a.got.map((p) => p.topic ?? p.cmd),
    ['$iot/dev-0/twin/reported', 'puback', '$iot/dev-2/twin/reported'],
  )
})

t.test('a packet refused on one connection leaves the shared packet empty for the others', async (t) => {
  const a = guarded()
  const b = guarded()
  const idle = b.parser.packet
  // a topic that is not well-formed UTF-8 is refused by the guard (the connection is then closed)
  const bad = publish(0)
  bad[bad.indexOf(Buffer.from('$iot')) + 1] = 0xff
  a.parser.parse(bad)
  t.equal(a.errors.length, 1, 'refused')
  t.not(a.parser.packet, idle, 'the refused packet was its own')
  t.same([idle.cmd, idle.length, idle.topic], [null, -1, null])
  b.parser.parse(Buffer.concat([publish(1), puback(1)]))
  t.same(
    b.got.map((p) => [p.cmd, p.topic, p.messageId]),
    [
      ['publish', '$iot/dev-1/twin/reported', 2],
      ['puback', null, 2],
    ],
    'the other connection parses on',
  )
})
