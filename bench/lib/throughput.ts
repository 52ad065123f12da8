// The closed-loop measurement shared by fan-in, pairs and fan-out: each publisher keeps a window of
// messages in flight, the bench warms up, then counts deliveries at the subscribers over a fixed
// window. Afterwards the publishers stop, the last messages drain, and every route is checked for
// loss, duplicates and reordering.
import { openCpuWindow, selfCpu } from './cpu-time.js'
import { closedLoop } from './flows.js'
import { drain, openPubSub, type PubSubPlan, waitFirstDelivery } from './pubsub.js'
import { rssKiB } from './rss.js'
import type { Measurement } from './scenario.js'
import type { Stack } from './stack.js'
import { percentilesOf } from './stats.js'
import type { Transport } from './target.js'
import { nowMs, sleep } from './time.js'

export interface ThroughputOptions {
  transport: Transport
  qos: 0 | 1
  /** Messages in flight per publisher. */
  window: number
  warmupMs: number
  measureMs: number
}

const LATENCY_CAPACITY = 1_000_000
const FIRST_DELIVERY_MS = 5000
/**
 * Clients read at most every 2 ms (lib/wire.ts): reading each message on its own made the generator
 * the limit against Mosquitto. Latency under load therefore includes up to 2 ms of the bench's own;
 * the latency scenario does not pace.
 */
export const PACE_READS_MS = 2

/** Warm-up and measurement windows of the throughput scenarios. */
export function windows(quick: boolean): { warmupMs: number; measureMs: number } {
  return quick ? { warmupMs: 300, measureMs: 800 } : { warmupMs: 2000, measureMs: 5000 }
}

export async function runThroughput(stack: Stack, plan: PubSubPlan, opts: ThroughputOptions): Promise<Measurement> {
  const { broker } = stack
  const ps = await openPubSub(broker, plan, {
    transport: opts.transport,
    qos: opts.qos,
    latencyCapacity: LATENCY_CAPACITY,
    paceReadsMs: PACE_READS_MS,
  })
  try {
    const { tracker, publishers } = ps
    const flow = closedLoop({ publishers, tracker, fanout: plan.fanout, window: opts.window })
    flow.start()
    const firstDeliveryMs = await waitFirstDelivery(tracker, FIRST_DELIVERY_MS)
    if (firstDeliveryMs === undefined) {
      flow.stop()
      throw new Error(`no message reached a subscriber within ${FIRST_DELIVERY_MS} ms (topics or ACLs?)`)
    }
    await sleep(opts.warmupMs)
    const d0 = tracker.deliveries
    const s0 = ps.sent()
    const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
    const t0 = nowMs()
    tracker.recording = true
    await sleep(opts.measureMs)
    tracker.recording = false
    const seconds = (nowMs() - t0) / 1000
    const cpu = cpuWindow.close()
    const delivered = tracker.deliveries - d0
    const published = ps.sent() - s0
    flow.stop()
    const drainMs = await drain(tracker)

    const [p50, p99] = percentilesOf(tracker.latencySamples(), [50, 99])
    const brokerCpuSec = ((cpu.broker ?? 0) / 100) * seconds
    const figures: Measurement['figures'] = {
      deliveriesPerSec: delivered / seconds,
      publishesPerSec: published / seconds,
      sent: ps.sent(),
      lost: ps.lost(),
      duplicates: tracker.duplicates,
      outOfOrder: tracker.outOfOrder,
      foreign: tracker.foreign,
      stalls: flow.stalls,
      closedClients: ps.closedClients(),
      latencyP50Ms: p50 as number,
      latencyP99Ms: p99 as number,
      brokerCpuUsPerDelivery: delivered > 0 ? (brokerCpuSec * 1e6) / delivered : Number.NaN,
      brokerRssMiB: (rssKiB(broker.pid) ?? Number.NaN) / 1024,
      drainMs,
      firstDeliveryMs,
      brokerLogProblems: broker.problems().count,
    }
    if (opts.qos > 0) figures.unacked = publishers.reduce((n, p) => n + p.unacked, 0)
    return {
      case: 'main',
      params: {
        transport: opts.transport,
        qos: opts.qos,
        publishers: plan.publishers.length,
        subscribers: plan.subscribers.length,
        window: opts.window,
        warmupMs: opts.warmupMs,
        measureMs: opts.measureMs,
        payloadBytes: 64,
        paceReadsMs: PACE_READS_MS,
      },
      figures,
      cpu,
    }
  } finally {
    await ps.close()
  }
}
