// overload: what happens past saturation. 10 publishers write open loop (no end-to-end window: as
// fast as TCP takes bytes) for a few seconds, QoS 0 and then QoS 1 (each on a fresh broker), to a
// healthy subscriber that reads normally and a slow consumer on the same topics that stops reading
// its socket. Broker RSS is sampled every 250 ms before, during and after. The report says whether
// the broker survived, whether memory stayed bounded and came back, what happened to the slow
// consumer, what was dropped and why, and (QoS 1) whether every acknowledged message reached the
// healthy subscriber. A broker that crashes is a result, not an error of the bench.
import { scrapeMetrics } from '../lib/broker-metrics.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { openLoop } from '../lib/flows.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { openPubSub, type PubSub } from '../lib/pubsub.js'
import { countsColumn, listColumn, medianColumn } from '../lib/report.js'
import { rssKiB } from '../lib/rss.js'
import type { Measurement, RunContext, Scenario } from '../lib/scenario.js'
import type { Stack } from '../lib/stack.js'
import { median } from '../lib/stats.js'
import type { BrokerKind } from '../lib/target.js'
import { closedByBroker } from '../lib/tcp-state.js'
import { nowMs, sleep } from '../lib/time.js'

const PUBLISHERS = 10
const HEALTHY = 0
const SLOW = 1
const SAMPLE_MS = 250
const QUIET_MS = 1000
const BATCH = 64
/** Final RSS within this much of the baseline counts as "back" (V8 keeps some heap it grew). */
const BACK_MIB = 16
const BACK_SHARE = 0.25

interface Phases {
  baselineMs: number
  overloadMs: number
  afterMs: number
  /** After `afterMs`, how much longer the broker may take to work off its backlog (deliveries or PUBACKs still moving). */
  settleMaxMs: number
  /** How long the resumed slow consumer may read what it was sent before its figures are taken. */
  slowReadMs: number
}

function phases(quick: boolean): Phases {
  return quick
    ? { baselineMs: 300, overloadMs: 700, afterMs: 300, settleMaxMs: 500, slowReadMs: 200 }
    : { baselineMs: 1000, overloadMs: 5000, afterMs: 10_000, settleMaxMs: 30_000, slowReadMs: 2000 }
}

/** The topics, in one place: FleetHub's real model (two services read all devices' telemetry), or plain topics. */
function mapping(kind: BrokerKind) {
  return kind === 'fleethub'
    ? { topic: (id: string) => `$iot/${id}/telemetry`, filter: '$iot/+/telemetry' }
    : { topic: (id: string) => `bench/${id}/telemetry`, filter: 'bench/+/telemetry' }
}

interface Sample {
  t: number
  rssMiB: number | undefined
  healthy: number
}

/** FleetHub's own account of what it dropped and whom it cut off, from /metrics. */
async function brokerCounters(stack: Stack): Promise<Record<string, number>> {
  const api = stack.broker.api
  if (!api || !stack.broker.alive()) return {}
  const out: Record<string, number> = {}
  try {
    for (const line of (await scrapeMetrics(api.url)).split('\n')) {
      if (line.startsWith('#')) continue
      if (line.startsWith('fleethub_dropped_total') || line.includes('slow_consumer')) {
        const at = line.lastIndexOf(' ')
        out[line.slice(0, at).replace(/^fleethub_/, '')] = Number(line.slice(at + 1))
      }
    }
  } catch {
    // a broker too busy to answer /metrics is visible in the other figures
  }
  return out
}

/** Waits until neither deliveries nor PUBACKs moved for QUIET_MS; false when still moving after `maxMs`. */
async function untilQuiet(ps: PubSub, maxMs: number): Promise<boolean> {
  const progress = () => ps.tracker.deliveries + ps.publishers.reduce((n, p) => n + p.acked, 0)
  const until = nowMs() + maxMs
  let last = progress()
  let quietSince = nowMs()
  while (nowMs() < until) {
    await sleep(100)
    const now = progress()
    if (now !== last) {
      last = now
      quietSince = nowMs()
    } else if (nowMs() - quietSince >= QUIET_MS) return true
  }
  return false
}

function crashLine(stack: Stack): string | undefined {
  const last = stack.broker.problems().last
  return last.find((l) => /RangeError|Error:|FATAL|heap out of memory/i.test(l)) ?? last[0]
}

/** Longest stretch (ms) in which the healthy subscriber got nothing although messages were outstanding. */
function longestStall(samples: readonly Sample[], outstanding: (s: Sample) => boolean): number {
  let longest = 0
  let since: number | undefined
  for (let i = 1; i < samples.length; i++) {
    const s = samples[i] as Sample
    const prev = samples[i - 1] as Sample
    if (s.healthy === prev.healthy && outstanding(s)) {
      since ??= prev.t
      longest = Math.max(longest, s.t - since)
    } else since = undefined
  }
  return longest
}

async function overloadCase(ctx: RunContext, qos: 0 | 1): Promise<void> {
  const p = phases(ctx.options.quick)
  const stack = await ctx.startStack()
  let ps: PubSub | undefined
  try {
    const { broker } = stack
    const who = identitiesFor(broker)
    const m = mapping(broker.kind)
    const devices = await who.devices(ids('p', PUBLISHERS))
    ps = await openPubSub(
      broker,
      {
        publishers: devices.map((identity) => ({ identity, topic: m.topic(identity.clientId) })),
        subscribers: [
          { identity: who.service('bench-svc-0001'), filters: [m.filter] },
          { identity: who.service('bench-svc-0002'), filters: [m.filter] },
        ],
        routesOf: () => devices.map((_, i) => i),
        fanout: 2,
      },
      { transport: ctx.options.transport, qos, latencyCapacity: 0, keepAckedSeqs: qos > 0 },
    )
    const slow = ps.subscribers[SLOW]
    const slowPort = slow?.wire.localPort() ?? 0
    const brokerPort = ctx.options.transport === 'tcp' ? broker.mqttPort : (broker.wsPort ?? 0)
    slow?.wire.pause()

    const tracker = ps.tracker
    const origin = nowMs()
    const samples: Sample[] = []
    let slowCutAt: number | undefined
    const sample = () => {
      const kib = rssKiB(broker.pid)
      const t = nowMs() - origin
      // the kernel table is read only until the cut is seen: it can be long on a busy machine
      if (slowCutAt === undefined && slowPort > 0 && closedByBroker(slowPort, brokerPort)) slowCutAt = t
      samples.push({
        t,
        rssMiB: kib === undefined ? undefined : kib / 1024,
        healthy: tracker.bySubscriber[HEALTHY] ?? 0,
      })
    }
    sample()
    const timer = setInterval(sample, SAMPLE_MS)
    let overloadFrom = 0
    let overloadTo = 0
    let unsentAtStop = 0
    let settled = false
    let cpu: Record<string, number> = {}
    try {
      await sleep(p.baselineMs)
      const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
      const flow = openLoop({ publishers: ps.publishers, batch: BATCH })
      overloadFrom = nowMs() - origin
      flow.start()
      await sleep(p.overloadMs)
      flow.stop()
      overloadTo = nowMs() - origin
      cpu = cpuWindow.close()
      unsentAtStop = ps.publishers.reduce((n, pub) => n + Math.ceil(pub.client.wire.pending() / pub.layout.size), 0)
      await sleep(p.afterMs)
      // a broker may still be working off its backlog: wait (bounded) until nothing moves for a second
      settled = await untilQuiet(ps, p.settleMaxMs)
    } finally {
      clearInterval(timer)
    }
    sample()

    // the slow consumer reads again: what did the broker keep for it, and is it still connected?
    const slowBefore = tracker.bySubscriber[SLOW] ?? 0
    slow?.wire.resume()
    const readUntil = nowMs() + p.slowReadMs
    while (nowMs() < readUntil && slow && !slow.isClosed) {
      const seen = tracker.bySubscriber[SLOW]
      await sleep(100)
      if (tracker.bySubscriber[SLOW] === seen) break
    }
    const slowCutOff = slowCutAt !== undefined || slow?.closedWhy !== undefined

    const published = ps.sent()
    let healthyDistinct = 0
    let slowDistinct = 0
    for (let i = 0; i < PUBLISHERS; i++) {
      healthyDistinct += tracker.distinct(HEALTHY, i)
      slowDistinct += tracker.distinct(SLOW, i)
    }
    let acked = 0
    let ackedMissing = 0
    for (const pub of ps.publishers) {
      acked += pub.acked
      for (const seq of pub.ackedSeqs ?? []) if (!tracker.received(HEALTHY, pub.index, seq)) ackedMissing++
    }
    const rss = samples.filter((s) => s.rssMiB !== undefined)
    const baseline = median(rss.filter((s) => s.t < overloadFrom).map((s) => s.rssMiB as number))
    const endedAt = samples[samples.length - 1]?.t ?? 0
    const tail = rss.filter((s) => s.t >= endedAt - 1000).map((s) => s.rssMiB as number)
    const finalMiB = tail.length > 0 ? median(tail) : Number.NaN
    const peakMiB = Math.max(...rss.map((s) => s.rssMiB as number))
    const survived = broker.alive()
    const counters = await brokerCounters(stack)
    const figures: Measurement['figures'] = {
      survived,
      baselineMiB: baseline,
      peakMiB,
      finalMiB,
      backToBaseline: survived && finalMiB - baseline <= Math.max(BACK_MIB, BACK_SHARE * baseline),
      published,
      publishedPerSec: published / ((overloadTo - overloadFrom) / 1000),
      unsentAtStop,
      deliveredHealthy: healthyDistinct,
      // what the broker took on: every message at QoS 0, the acknowledged ones at QoS 1 (the rest
      // are still the publishers' to resend)
      lostHealthy: (qos > 0 ? acked : published) - healthyDistinct,
      duplicatesHealthy: tracker.duplicates,
      healthyLongestStallMs: longestStall(
        samples.filter((s) => s.t >= overloadFrom),
        (s) => s.healthy < published,
      ),
      deliveredSlow: slowDistinct,
      slowReadAfterResume: (tracker.bySubscriber[SLOW] ?? 0) - slowBefore,
      droppedForSlow: (qos > 0 ? acked : published) - slowDistinct,
      slowCutOff,
      slowHandled: slowCutOff || slowDistinct < published,
      settled,
      observedS: (endedAt - overloadTo) / 1000,
      overloadFromS: overloadFrom / 1000,
      overloadToS: overloadTo / 1000,
      brokerLogProblems: broker.problems().count,
    }
    if (slowCutAt !== undefined) figures.slowCutAtS = (slowCutAt - overloadFrom) / 1000
    if (qos > 0) {
      figures.acked = acked
      figures.ackedMissing = ackedMissing
    }
    if (!survived) {
      figures.exit = broker.exitStatus() ?? 'exited'
      figures.crash = crashLine(stack) ?? ''
    }
    if (Object.keys(counters).length > 0) figures.brokerCounters = counters
    ctx.record({
      case: `qos${qos}`,
      params: { transport: ctx.options.transport, qos, publishers: PUBLISHERS, batch: BATCH, ...p },
      figures,
      cpu,
      series: {
        rssMiB: rss.map((s) => [s.t, s.rssMiB as number]),
        healthyDelivered: samples.map((s) => [s.t, s.healthy]),
      },
    })
    ctx.progress(
      `qos${qos}: ${survived ? 'survived' : `DIED (${figures.exit}: ${figures.crash})`}; RSS ${baseline.toFixed(0)} → ` +
        `peak ${peakMiB.toFixed(0)} → ${finalMiB.toFixed(0)} MiB; published ${published}, healthy got ${healthyDistinct}, ` +
        `slow consumer ${slowCutOff ? 'cut off' : `got ${slowDistinct}`}` +
        (settled ? '' : `; still busy ${Math.round(endedAt - overloadTo) / 1000} s after the publishers stopped`) +
        (qos > 0 ? `; acked ${acked}, acked but missing ${ackedMissing}` : ''),
    )
  } catch (err) {
    throw stack.explain(err)
  } finally {
    // no goodbye: publishers may still hold megabytes of unsent output
    ps?.destroy()
    await stack.stop()
  }
}

const yesNo = (v: unknown) => (v === true ? 'yes' : v === false ? 'no' : undefined)

export const overload: Scenario = {
  name: 'overload',
  title: 'Overload: open-loop publishers and a slow consumer',
  summary: 'open-loop QoS 0 and QoS 1 publishers + a consumer that stops reading: survival, memory, drops',
  description:
    '10 devices publish open loop (no end-to-end window: a batch of 64 messages per publisher whenever ' +
    'its socket takes more; at QoS 1 only the 16-bit packet-id space bounds what is unacknowledged) for 5 s, ' +
    'to two subscribers of all their telemetry: a healthy one that reads normally, and a slow consumer that ' +
    'stops reading its socket right after subscribing. QoS 0 and QoS 1 each on a fresh broker. Broker RSS is ' +
    'sampled every 250 ms for 1 s before, during, and at least 10 s after the publishers stop, until neither ' +
    'deliveries nor PUBACKs have moved for 1 s (at most 30 s more: a broker may still be working off its ' +
    'backlog). Then the slow consumer reads again for up to 2 s. Reported: whether the broker survived (and how it died), baseline / peak / final RSS ("back" = ' +
    `final within ${BACK_MIB} MiB or ${BACK_SHARE * 100} % of the baseline), messages published, acknowledged ` +
    '(QoS 1), delivered to each subscriber and missing (of those published at QoS 0, of those acknowledged ' +
    'at QoS 1: what the broker took on and did not deliver), whether the broker cut the slow consumer off (its ' +
    'connection seen closed in /proc/net/tcp) or dropped messages for it, the longest time the healthy ' +
    "subscriber got nothing while messages were outstanding, FleetHub's own drop counters, and at QoS 1 " +
    'how many PUBACKed messages never reached the healthy subscriber (must be 0; only final when the backlog ' +
    'was worked off). With `--quick` the phases are 0.3 s, 0.7 s and 0.3 s + at most 0.5 s: too short for a broker ' +
    'that gives a slow consumer seconds of grace, so quick figures are a smoke test only.',
  inAll: true,
  brokers: ['fleethub', 'aedes', 'mosquitto'],
  transports: ['tcp', 'ws'],
  headline: [],
  columns: [
    listColumn('survived', (r) =>
      r.figures.survived === true ? 'yes' : `**no**: ${r.figures.exit} ${r.figures.crash ?? ''}`,
    ),
    medianColumn('RSS baseline MiB', (r) => r.figures.baselineMiB),
    medianColumn('peak MiB', (r) => r.figures.peakMiB),
    medianColumn('final MiB', (r) => r.figures.finalMiB),
    listColumn('back', (r) => yesNo(r.figures.backToBaseline)),
    listColumn('backlog done', (r) =>
      r.figures.settled === true
        ? `yes, ${Number(r.figures.observedS).toFixed(0)} s`
        : `no, still busy after ${Number(r.figures.observedS).toFixed(0)} s`,
    ),
    medianColumn('published', (r) => r.figures.published),
    medianColumn('acked', (r) => r.figures.acked),
    medianColumn('healthy got', (r) => r.figures.deliveredHealthy),
    medianColumn('healthy missing', (r) => r.figures.lostHealthy),
    medianColumn('healthy longest stall s', (r) => Number(r.figures.healthyLongestStallMs) / 1000, 1),
    listColumn('slow consumer', (r) =>
      r.figures.slowCutOff === true
        ? `cut off${typeof r.figures.slowCutAtS === 'number' ? ` at ${r.figures.slowCutAtS.toFixed(1)} s` : ''}`
        : `kept, got ${r.figures.deliveredSlow}`,
    ),
    medianColumn('slow missing', (r) => r.figures.droppedForSlow),
    countsColumn('broker counters', (r) => r.figures.brokerCounters),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
  ],
  async run(ctx) {
    // QoS 1 runs even when QoS 0 failed: they are separate findings
    const errors: string[] = []
    for (const qos of [0, 1] as const) {
      await overloadCase(ctx, qos).catch((err: unknown) => errors.push(`qos${qos}: ${(err as Error).message}`))
    }
    if (errors.length > 0) throw new Error(errors.join('\n'))
  },
}
