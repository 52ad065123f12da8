// latency: end-to-end latency at a fixed, moderate load: 10 publishers → 1 subscriber, 5,000 msg/s
// in total, QoS 0. Publish time is stamped in each payload at write; the subscriber (same process,
// same clock) computes the difference when the chunk holding the message is read.
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { paced } from '../lib/flows.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { drain, openPubSub, waitFirstDelivery } from '../lib/pubsub.js'
import { medianColumn } from '../lib/report.js'
import type { Scenario } from '../lib/scenario.js'
import { percentilesOf } from '../lib/stats.js'
import type { BrokerKind } from '../lib/target.js'
import { nowMs, sleep } from '../lib/time.js'

const PUBLISHERS = 10
const RATE = 5000
const FIRST_DELIVERY_MS = 5000

/** The topics, in one place: as in fan-in, FleetHub's real model or plain topics of the same shape. */
function mapping(kind: BrokerKind) {
  return kind === 'fleethub'
    ? { topic: (id: string) => `$iot/${id}/telemetry`, filter: '$iot/+/telemetry' }
    : { topic: (id: string) => `bench/${id}/telemetry`, filter: 'bench/+/telemetry' }
}

export const latency: Scenario = {
  name: 'latency',
  title: 'Latency at 5,000 msg/s, QoS 0',
  summary: 'publish → delivery latency p50/p99 at a fixed 5,000 msg/s, 10 → 1, QoS 0 (ms)',
  description:
    '10 devices publish 500 msg/s each (5,000 msg/s in total, paced every millisecond whatever the broker ' +
    'does), 64-byte payloads, QoS 0, to one wildcard subscriber (the fan-in topics). Each payload carries ' +
    'its send time; the subscriber in the same process subtracts it on arrival. Figures: p50 and p99 over ' +
    'the measurement window (after the warm-up).',
  inAll: true,
  brokers: ['fleethub', 'aedes', 'mosquitto'],
  transports: ['tcp', 'ws'],
  headline: [
    { key: 'latencyP50Ms', title: 'p50 ms', unit: 'ms', better: 'lower', digits: 3 },
    { key: 'latencyP99Ms', title: 'p99 ms', unit: 'ms', better: 'lower', digits: 3 },
  ],
  columns: [
    medianColumn('p50 ms', (r) => r.figures.latencyP50Ms, 3),
    medianColumn('p90 ms', (r) => r.figures.latencyP90Ms, 3),
    medianColumn('p99 ms', (r) => r.figures.latencyP99Ms, 3),
    medianColumn('p99.9 ms', (r) => r.figures.latencyP999Ms, 3),
    medianColumn('max ms', (r) => r.figures.latencyMaxMs, 2),
    medianColumn('msg/s received', (r) => r.figures.deliveriesPerSec),
    medianColumn('lost', (r) => r.figures.lost),
    medianColumn('broker CPU %', (r) => r.cpu.broker),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
    medianColumn('redis CPU %', (r) => r.cpu.redis),
  ],
  async run(ctx) {
    const o = ctx.options
    const warmupMs = o.quick ? 300 : 2000
    const measureMs = o.quick ? 800 : 5000
    const stack = await ctx.startStack()
    try {
      const who = identitiesFor(stack.broker)
      const m = mapping(stack.broker.kind)
      const devices = await who.devices(ids('p', PUBLISHERS))
      const ps = await openPubSub(
        stack.broker,
        {
          publishers: devices.map((identity) => ({ identity, topic: m.topic(identity.clientId) })),
          subscribers: [{ identity: who.service('bench-svc-0001'), filters: [m.filter] }],
          routesOf: () => devices.map((_, i) => i),
          fanout: 1,
        },
        { transport: o.transport, qos: 0, latencyCapacity: Math.ceil((RATE * measureMs) / 1000) * 2 },
      )
      try {
        const flow = paced({ publishers: ps.publishers, rate: RATE })
        flow.start()
        const firstDeliveryMs = await waitFirstDelivery(ps.tracker, FIRST_DELIVERY_MS)
        if (firstDeliveryMs === undefined) {
          flow.stop()
          throw new Error(`no message reached the subscriber within ${FIRST_DELIVERY_MS} ms (${ps.sent()} sent)`)
        }
        await sleep(warmupMs)
        const d0 = ps.tracker.deliveries
        const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
        const t0 = nowMs()
        ps.tracker.recording = true
        await sleep(measureMs)
        ps.tracker.recording = false
        const seconds = (nowMs() - t0) / 1000
        const cpu = cpuWindow.close()
        const delivered = ps.tracker.deliveries - d0
        flow.stop()
        await drain(ps.tracker)
        const [p50, p90, p99, p999, max] = percentilesOf(ps.tracker.latencySamples(), [50, 90, 99, 99.9, 100])
        const figures = {
          latencyP50Ms: p50 as number,
          latencyP90Ms: p90 as number,
          latencyP99Ms: p99 as number,
          latencyP999Ms: p999 as number,
          latencyMaxMs: max as number,
          samples: ps.tracker.latencySamples().length,
          deliveriesPerSec: delivered / seconds,
          lost: ps.lost(),
          duplicates: ps.tracker.duplicates,
          closedClients: ps.closedClients(),
          firstDeliveryMs,
          brokerLogProblems: stack.broker.problems().count,
        }
        if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
        ctx.record({
          case: 'main',
          params: { transport: o.transport, publishers: PUBLISHERS, rate: RATE, warmupMs, measureMs, payloadBytes: 64 },
          figures,
          cpu,
        })
        ctx.progress(
          `p50 ${figures.latencyP50Ms.toFixed(3)} ms, p99 ${figures.latencyP99Ms.toFixed(3)} ms at ` +
            `${Math.round(figures.deliveriesPerSec)} msg/s, lost ${figures.lost}`,
        )
      } finally {
        await ps.close()
      }
    } catch (err) {
      throw stack.explain(err)
    } finally {
      await stack.stop()
    }
  },
}
