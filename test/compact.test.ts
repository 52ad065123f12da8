// Model definitions, compact frames and the decoder, without a broker: definitions refused with a
// reason, frames round-tripping (single, batch, timestamps, scales, patches with deletes), bad
// frames refused (truncated, other versions and flags, inline record definitions that must not
// change how later frames decode, unknown fields, wrong types, out of range), and the decoder
// giving the same answers inline and in worker threads, in order, with a bounded queue.
import { Packr } from 'msgpackr'
import pino from 'pino'
import t from 'tap'
import { createMetrics } from '../broker/metrics.js'
import { createDecoder } from '../plugins/models/decoder.js'
import { createCodec, FrameError, isCompactFrame } from '../registry/compact.js'
import { keyBytes, MAX_SELF_MODEL_BYTES, parseModelRef, validateDefinition } from '../registry/models.js'
import { AIR_MODEL, AIR_READING } from '../sdk/sample-model.js'

const sensor = AIR_MODEL
const reading = AIR_READING

t.test('definitions: checked, with reasons', async (t) => {
  const def = validateDefinition(sensor)
  t.equal(def.telemetry.length, 10)
  t.same(def.commands[0], sensor.commands[0])
  const bad: [unknown, RegExp][] = [
    [null, /object/],
    [{ ...sensor, id: 'a/b' }, /id must match/],
    [{ ...sensor, version: 0 }, /version/],
    [{ ...sensor, extra: 1 }, /unknown key extra/],
    [{ ...sensor, telemetry: [{ name: '1x', type: 'number' }] }, /name must match/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'float' }] }, /type is one of/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'string', minimum: 1 }] }, /minimum is for numbers/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'integer', scale: 0.1 }] }, /scale is for numbers/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'number', scale: 0 }] }, /positive/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'number', writable: true }] }, /writable is for properties/],
    [{ ...sensor, telemetry: [{ name: 'x', type: 'number', minimum: 2, maximum: 1 }] }, /minimum is above maximum/],
    [
      {
        ...sensor,
        telemetry: [
          { name: 'x', type: 'number' },
          { name: 'x', type: 'integer' },
        ],
      },
      /appears twice/,
    ],
    [{ ...sensor, telemetry: Array.from({ length: 65 }, (_, i) => ({ name: `f${i}`, type: 'number' })) }, /at most 64/],
    [{ id: 'x', version: 1 }, /at least one property or telemetry field/],
    [{ ...sensor, description: 'x'.repeat(20_000) }, /at most 16384 bytes/],
  ]
  for (const [input, why] of bad) {
    t.throws(() => validateDefinition(input, MAX_SELF_MODEL_BYTES), why, String(why))
  }
  t.same(parseModelRef('acme.air'), { id: 'acme.air' })
  t.same(parseModelRef('acme.air@3'), { id: 'acme.air', version: 3 })
  t.equal(parseModelRef('acme.air@0'), undefined)
  t.equal(parseModelRef('a/b'), undefined)
  t.same([...keyBytes(0x1234)], [0x12, 0x34], 'keys travel big-endian')
})

t.test('compact frames round-trip, with names left out', async (t) => {
  const codec = createCodec(validateDefinition(sensor))
  const frame = codec.encodeTelemetry(reading)
  t.ok(isCompactFrame(frame))
  t.equal(frame[0], 0xe8, 'version 1, no flags')
  t.equal(frame[1], 0x40, "the telemetry record: one byte for the model's field list")
  t.notOk(frame.includes(Buffer.from('temperature')), 'no field name travels')
  t.ok(frame.length * 4 < Buffer.byteLength(JSON.stringify(reading)), `${frame.length} bytes`)
  t.same(codec.decodeTelemetry(frame, 1234), [{ ts: 1234, data: reading }], 'stamped with the receive time')

  const partial = codec.encodeTelemetry({ co2: 500 })
  t.same(codec.decodeTelemetry(partial, 1), [{ ts: 1, data: { co2: 500 } }], 'absent fields stay absent')

  const batch = codec.encodeTelemetry([reading, { ...reading, co2: 700 }], {
    ts: [1_764_000_000_000, 1_764_000_000_500],
  })
  t.equal(batch[0], 0xeb, 'BATCH and TIMESTAMP')
  t.same(codec.decodeTelemetry(batch, 1), [
    { ts: 1_764_000_000_000, data: reading },
    { ts: 1_764_000_000_500, data: { ...reading, co2: 700 } },
  ])
  const untimed = codec.encodeTelemetry([reading, reading])
  t.equal(codec.decodeTelemetry(untimed, 9).length, 2)

  const patch = codec.encodeReported({ firmware: '2.1.0', interval: null }, { rid: 'r-1' })
  t.equal(patch[0], 0xec, 'RID')
  t.same(codec.decodeReported(patch), { rid: 'r-1', patch: { firmware: '2.1.0', interval: null } }, 'null deletes')
  t.same(codec.decodeReported(codec.encodeReported({ interval: 60 })), { patch: { interval: 60 } })

  t.throws(() => codec.encodeTelemetry({ nope: 1 }), FrameError, 'the encoder refuses unknown fields')
  t.throws(() => codec.encodeTelemetry({ temperature: 300 }), /at most 125/, 'and values out of range')
})

t.test('bad frames are refused and change nothing for the next one', async (t) => {
  const plain = new Packr({ useRecords: false })
  const codec = createCodec(validateDefinition(sensor))
  const good = codec.encodeTelemetry(reading)
  const evil = new Packr({ useRecords: true }).pack({ humidity: 1, temperature: 2 }) // brings its own names
  const cases: [string, Buffer, RegExp][] = [
    ['truncated', good.subarray(0, 6), /truncated or malformed/],
    ['empty body', Buffer.of(0xe8), /truncated or malformed|a telemetry frame is/],
    ['version 2', Buffer.concat([Buffer.of(0xf0), good.subarray(1)]), /version 2 is not supported/],
    ['version 0', Buffer.concat([Buffer.of(0xe0), good.subarray(1)]), /version 0 is not supported/],
    ['a rid on telemetry', Buffer.concat([Buffer.of(0xec), good.subarray(1)]), /carry no request id/],
    ['an inline record definition', Buffer.concat([Buffer.of(0xe8), evil]), /defines its own field names/],
    [
      'the properties record',
      Buffer.concat([Buffer.of(0xe8), codec.encodeReported({ interval: 5 }).subarray(1)]),
      /firmware is not a field/,
    ],
    [
      'a plain map with a wrong type',
      Buffer.concat([Buffer.of(0xe8), plain.pack({ co2: 'high' })]),
      /co2: a finite number/,
    ],
    [
      'a scaled field as a float',
      Buffer.concat([Buffer.of(0xe8), plain.pack({ temperature: 21.5 })]),
      /scaled whole number/,
    ],
    [
      'an enum value outside the model',
      Buffer.concat([Buffer.of(0xe8), plain.pack({ door: 'ajar' })]),
      /one of the model/,
    ],
    ['a null reading', Buffer.concat([Buffer.of(0xe8), plain.pack({ co2: null })]), /co2 is null/],
    ['a scalar', Buffer.concat([Buffer.of(0xe8), plain.pack(5)]), /a record/],
    ['an empty batch', Buffer.concat([Buffer.of(0xe9), plain.pack([])]), /non-empty array/],
    ['trailing values', Buffer.concat([good, plain.pack(1)]), /a telemetry frame is/],
  ]
  for (const [what, frame, why] of cases) t.throws(() => codec.decodeTelemetry(frame, 1), why, what)
  t.same(codec.decodeTelemetry(good, 1), [{ ts: 1, data: reading }], 'the good frame still decodes the same')
  t.throws(() => codec.decodeReported(Buffer.concat([Buffer.of(0xe9), good.subarray(1)])), /no BATCH/)
  const longRid = Buffer.concat([Buffer.of(0xec), plain.pack('r'.repeat(65)), codec.encodeReported({}).subarray(1)])
  t.throws(() => codec.decodeReported(longRid), /1-64 characters/)
  t.notOk(isCompactFrame(Buffer.from('{"a":1}')), 'JSON is not a frame')
  t.notOk(isCompactFrame(plain.pack({ rid: 'x' })), 'nor a MessagePack envelope')
})

t.test('the decoder: inline and pool agree, in order, bounded', async (t) => {
  const model = validateDefinition(sensor)
  const codec = createCodec(model)
  const log = pino({ level: 'silent' })
  const frames = Array.from({ length: 300 }, (_, i) =>
    i % 50 === 7 ? Buffer.of(0xe8, 0x40) : codec.encodeTelemetry({ ...reading, co2: i }),
  )
  for (const policy of ['inline', 'pool'] as const) {
    const metrics = createMetrics()
    const decoder = createDecoder({ policy, threads: 1, maxQueued: 64, batchFrames: 16 }, log, metrics)
    t.teardown(() => decoder.close())
    const results = await Promise.all(frames.map((f, i) => decoder.decode(9, model, 'telemetry', f, i)))
    const ok = results.filter((r) => r.ok)
    t.equal(ok.length, 294, `${policy}: every good frame decoded`)
    t.equal(results.length - ok.length, 6, `${policy}: the truncated ones refused`)
    const co2 = ok.map((r) => ('json' in r ? JSON.parse(r.json).readings[0].data.co2 : -1))
    t.same(
      co2,
      frames.map((_, i) => i).filter((i) => i % 50 !== 7),
      `${policy}: in the order they came`,
    )
    t.match(JSON.parse((ok[0] as { json: string }).json), { model: 'acme.air', version: 1, readings: [{ ts: 0 }] })
    const text = await metrics.registry.getSingleMetricAsString('fleethub_frames_decoded_total')
    t.match(text, new RegExp(`where="${policy}",result="ok"\\} 294`))
    if (policy === 'pool') {
      const waited = await metrics.registry.getSingleMetricAsString('fleethub_decode_backpressure_total')
      t.match(waited, /total [1-9]/, 'past 64 in flight, frames waited')
    }
    const reported = await decoder.decode(9, model, 'reported', codec.encodeReported({ interval: 9 }, { rid: 'x' }), 0)
    t.same(reported, { ok: true, readings: 0, rid: 'x', patch: { interval: 9 } })
  }
})
