// compact-decode: device models' compact frames (docs/models.md), FleetHub only.
//   wire: payload bytes of one 10-field reading as self-describing JSON, as JSON with a registered
//         model, and as a compact frame (alone and in a batch of 100): computed, no broker.
//   decode: devices bound to a registered model by its 2-byte key send compact telemetry frames
//         (QoS 1, a window of frames in flight each) and one service reads the decoded JSON on
//         `$iot/+/telemetry/decoded`: readings decoded per second end to end, with the broker's
//         event-loop delay (p99, from its /metrics) and CPU, for each decode policy (inline, in the
//         worker pool) and frame size (1 reading, 100 readings).
import mqttPacket from 'mqtt-packet'
import { createCodec } from '../../registry/compact.js'
import { keyBytes, type Model, type ModelDefinition } from '../../registry/models.js'
import { AIR_READING, AIR_MODEL as SAMPLE_MODEL } from '../../sdk/sample-model.js'
import { loopDelay, sampleValue, scrapeMetrics } from '../lib/broker-metrics.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { request } from '../lib/http.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { type BenchClient, connectClient } from '../lib/mqtt-client.js'
import { medianColumn } from '../lib/report.js'
import type { RunContext, Scenario } from '../lib/scenario.js'
import { nowMs, sleep } from '../lib/time.js'

/** The SDK's sample air sensor (10 telemetry fields), under the bench's own id. */
export const AIR_MODEL: ModelDefinition = { ...SAMPLE_MODEL, id: 'bench.air' }
const READING = AIR_READING

const PUBLISHERS = 10
const TIMEOUT_MS = 10_000
/** rate: frames/s in all, paced every 10 ms (the goal's load); without: as fast as the window allows. */
const CASES: readonly { policy: 'inline' | 'pool'; batch: number; window: number; rate?: number }[] = [
  { policy: 'inline', batch: 1, window: 64 },
  { policy: 'pool', batch: 1, window: 64 },
  { policy: 'inline', batch: 100, window: 8 },
  { policy: 'pool', batch: 100, window: 8 },
  { policy: 'inline', batch: 100, window: 64, rate: 2000 },
]
const TICK_MS = 10

/** Payload bytes of the same reading in the three encodings. */
export function wireSizes() {
  const codec = createCodec(AIR_MODEL)
  const selfDescribing = JSON.stringify({
    model: AIR_MODEL.id,
    fields: AIR_MODEL.telemetry.map((f) => ({
      name: f.name,
      type: f.type,
      ...(f.unit ? { unit: f.unit } : {}),
      value: READING[f.name as keyof typeof READING],
    })),
  })
  const named = JSON.stringify(READING)
  const one = codec.encodeTelemetry(READING)
  const hundred = codec.encodeTelemetry(Array.from({ length: 100 }, () => READING))
  return {
    selfDescribingBytes: Buffer.byteLength(selfDescribing),
    namedJsonBytes: Buffer.byteLength(named),
    compactBytes: one.length,
    compactBatchBytesPerReading: hundred.length / 100,
    ratioSelfToCompact: Buffer.byteLength(selfDescribing) / one.length,
  }
}

function publishFrame(topic: string, payload: Buffer, messageId: number): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId, dup: false, retain: false })
}

async function api(url: string, token: string, method: string, path: string, body?: unknown) {
  const r = await request(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
    timeoutMs: TIMEOUT_MS,
  })
  const text = await r.text()
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 200)}`)
  return JSON.parse(text)
}

async function measureCase(ctx: RunContext, c: (typeof CASES)[number]) {
  const o = ctx.options
  const warmupMs = o.quick ? 300 : 2000
  const measureMs = o.quick ? 600 : 5000
  const stack = await ctx.startStack({ env: { FLEETHUB_DECODE_POLICY: c.policy, FLEETHUB_DECODE_THREADS: '1' } })
  try {
    const brokerApi = stack.broker.api
    if (!brokerApi) throw new Error('compact-decode needs FleetHub')
    const model = (await api(brokerApi.url, brokerApi.adminToken, 'POST', '/models', AIR_MODEL)) as Model
    const codec = createCodec(model)
    const frame = codec.encodeTelemetry(c.batch === 1 ? READING : Array.from({ length: c.batch }, () => READING))
    const who = identitiesFor(stack.broker)
    const devices = await who.devices(ids('c', PUBLISHERS))
    const port = stack.broker.mqttPort
    const clients: BenchClient[] = []
    try {
      // the service reading the decoded stream: counts messages (each one a frame's readings)
      const svc = await connectClient({
        transport: 'tcp',
        port,
        identity: who.service('bench-svc-compact'),
        timeoutMs: TIMEOUT_MS,
      })
      clients.push(svc)
      let decoded = 0
      let firstJson = ''
      svc.handlers.message = (buf, at, end) => {
        decoded++
        if (!firstJson) firstJson = buf.toString('utf8', at, end)
      }
      await svc.subscribe(['$iot/+/telemetry/decoded'], 0, TIMEOUT_MS)

      let sent = 0
      let running = true
      const pubs = await Promise.all(
        devices.map(async (identity) => {
          const client = await connectClient({ transport: 'tcp', port, identity, timeoutMs: TIMEOUT_MS })
          clients.push(client)
          const topic = `$iot/${identity.clientId}/telemetry`
          client.wire.write(publishFrame(`$iot/${identity.clientId}/model`, keyBytes(model.key), 1))
          let nextId = 2
          let inFlight = 0
          let allowance = Number.POSITIVE_INFINITY
          const send = () => {
            while (running && inFlight < c.window && allowance >= 1) {
              allowance--
              inFlight++
              sent++
              client.wire.write(publishFrame(topic, frame, nextId))
              nextId = nextId === 65_000 ? 2 : nextId + 1
            }
          }
          client.handlers.puback = (id) => {
            if (id === 1) return // the binding
            inFlight--
            send()
          }
          return {
            send,
            tick(frames: number) {
              allowance = Math.min(allowance === Number.POSITIVE_INFINITY ? 0 : allowance, c.window) + frames
              send()
            },
          }
        }),
      )
      // the bindings are stored before the first frame is read (one connection, in order), but
      // give them a moment to be seen by every cache
      await sleep(200)
      let ticker: NodeJS.Timeout | undefined
      if (c.rate === undefined) for (const p of pubs) p.send()
      else {
        // frames are due by the clock, not per tick (timers fire late, and a late tick would lower the rate)
        const start = nowMs()
        let credited = 0
        ticker = setInterval(() => {
          const due = ((nowMs() - start) / 1000) * (c.rate as number)
          const share = (due - credited) / PUBLISHERS
          credited = due
          for (const p of pubs) p.tick(share)
        }, TICK_MS)
      }
      await sleep(warmupMs)
      await scrapeMetrics(brokerApi.url) // resets the event-loop delay histogram
      const d0 = decoded
      const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
      const t0 = nowMs()
      await sleep(measureMs)
      const seconds = (nowMs() - t0) / 1000
      const cpu = cpuWindow.close()
      const frames = decoded - d0
      const metrics = await scrapeMetrics(brokerApi.url)
      running = false
      if (ticker) clearInterval(ticker)
      const loop = loopDelay(metrics)
      const loopP99Ms = loop.p99Ms
      const errors = sampleValue(metrics, 'fleethub_decode_errors_total', {
        model: `${model.id}@${model.version}`,
        reason: 'invalid',
      })
      const pooled = sampleValue(metrics, 'fleethub_frames_decoded_total', {
        kind: 'telemetry',
        where: 'pool',
        result: 'ok',
      })
      const checked = JSON.parse(firstJson || '{}') as { readings?: { data?: { co2?: number } }[] }
      if (checked.readings?.length !== c.batch || checked.readings[0]?.data?.co2 !== READING.co2) {
        throw new Error(`the decoded stream is not what was sent: ${firstJson.slice(0, 200)}`)
      }
      if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
      const figures = {
        readingsPerSec: (frames * c.batch) / seconds,
        framesPerSec: frames / seconds,
        eventLoopP99Ms: loopP99Ms,
        eventLoopLagP99RawMs: loop.rawP99Ms,
        eventLoopLagMaxRawMs: loop.rawMaxMs,
        decodeErrors: Number.isNaN(errors) ? 0 : errors,
        decodedInPool: Number.isNaN(pooled) ? 0 : pooled,
        framesSent: sent,
        ...wireSizes(),
      }
      ctx.record({
        case: `${c.policy}-batch${c.batch}${c.rate ? `-at${c.rate}` : ''}`,
        params: {
          policy: c.policy,
          batch: c.batch,
          window: c.window,
          rate: c.rate ?? 'max',
          publishers: PUBLISHERS,
          warmupMs,
          measureMs,
        },
        figures,
        cpu,
      })
      ctx.progress(
        `${c.policy}, ${c.batch} per frame${c.rate ? ` at ${c.rate} frames/s` : ''}: ${Math.round(figures.readingsPerSec)} readings/s, event-loop delay p99 ${loopP99Ms.toFixed(1)} ms`,
      )
    } finally {
      for (const cl of clients) cl.destroy()
    }
  } catch (err) {
    throw stack.explain(err)
  } finally {
    await stack.stop()
  }
}

export const compactDecode: Scenario = {
  name: 'compact-decode',
  title: 'Compact frames: wire size and decode throughput',
  summary: 'compact telemetry of a 10-field model: bytes per reading, readings decoded/s inline and in the pool',
  description:
    'Wire: payload bytes of one 10-field reading (bench.air) as self-describing JSON (name, type, unit and ' +
    'value per field), as JSON with a registered model (names and values) and as a compact frame. Decode: ' +
    `${PUBLISHERS} devices bound by their model's 2-byte key send compact telemetry frames (1 or 100 readings ` +
    'each) at QoS 1 with a window of frames in flight; one service reads `$iot/+/telemetry/decoded`. Figures: ' +
    "readings decoded per second end to end and the broker event-loop delay p99 (prom-client's histogram over " +
    'the measured window, less its 10 ms sampling interval, which it includes), for FLEETHUB_DECODE_POLICY=inline and =pool (one worker thread), as fast as the ' +
    'windows allow, and inline at a paced 2,000 frames of 100 readings per second (the goal: 200,000 ' +
    'readings/s with an event-loop p99 under 20 ms).',
  inAll: true,
  brokers: ['fleethub'],
  transports: ['tcp'],
  headline: [{ key: 'readingsPerSec', title: 'readings/s', unit: 'readings/s', better: 'higher', digits: 0 }],
  columns: [
    medianColumn('readings/s', (r) => r.figures.readingsPerSec),
    medianColumn('frames/s', (r) => r.figures.framesPerSec),
    medianColumn('event-loop delay p99 ms', (r) => r.figures.eventLoopP99Ms, 1),
    medianColumn('prom-client lag p99 ms', (r) => r.figures.eventLoopLagP99RawMs, 1),
    medianColumn('decoded in pool', (r) => r.figures.decodedInPool),
    medianColumn('decode errors', (r) => r.figures.decodeErrors),
    medianColumn('self-describing B', (r) => r.figures.selfDescribingBytes),
    medianColumn('named JSON B', (r) => r.figures.namedJsonBytes),
    medianColumn('compact B', (r) => r.figures.compactBytes),
    medianColumn('compact B/reading ×100', (r) => r.figures.compactBatchBytesPerReading, 1),
    medianColumn('broker CPU %', (r) => r.cpu.broker),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
  ],
  async run(ctx) {
    // --quick: the batched cases only (one short run each keeps the whole suite within 3 minutes)
    for (const c of CASES) if (!ctx.options.quick || (c.batch > 1 && c.rate === undefined)) await measureCase(ctx, c)
  },
}
