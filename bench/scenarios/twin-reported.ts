// twin-reported: devices reporting their state through the twin (FleetHub only). Each device, with
// its own key, publishes merge patches such as {"temp": 21.5, "seq": 7} to `$iot/{id}/twin/reported`
// in the envelope {rid, patch} (QoS 1, as the SDK does) and reads `{rid, status: 204, version}` on
// its `$iot/{id}/twin/res`. Two phases on the same connections:
//   saturated: every device keeps a few patches outstanding (closed loop): answered 204s per second;
//   half-rate: open loop at half the rate the saturated phase reached: latency of the round trip;
//   half-target: the same at 10,000/s (half the target of 20,000/s; 2,000/s with --quick).
// Every answer is matched to its request by rid: non-204 statuses, missing answers (none after the
// drain), answers to nothing, and gaps in the versions a device is given are counted.
import { selfCpu } from '../lib/cpu-time.js'
import { closeDeviceChannels, type DeviceChannel, type Envelope, openDeviceChannels } from '../lib/device-channel.js'
import { rateTicker } from '../lib/flows.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { countsColumn, cpuColumns, latencyColumns, medianColumn } from '../lib/report.js'
import { FLEETHUB_FEATURE, type Measurement, type RunContext, type Scenario } from '../lib/scenario.js'
import { waitQuiet } from '../lib/settle.js'
import { usingStack } from '../lib/stack.js'
import { countsDelta, Samples } from '../lib/stats.js'
import { fleetHubApi } from '../lib/target.js'
import { nowMs, sleep } from '../lib/time.js'
import { type MeasuredWindow, measureWindow } from '../lib/window.js'

const DEVICES = 1000
/** Half the 20,000 patches/s for 1,000 devices: the rate of the third phase. */
const HALF_TARGET = 10_000
const QUICK_DEVICES = 200
/** Patches a device keeps outstanding in the saturated phase (the broker applies one device's in order). */
const WINDOW = 4
/** Send times kept per device; the open-loop phase skips a device with this many outstanding. */
const RING = 1024
const LATENCY_CAPACITY = 2_000_000
const DRAIN_MAX_MS = 10_000
const DRAIN_QUIET_MS = 2_000
const REPORTED = 'twin/reported'

function phases(quick: boolean) {
  return quick
    ? { warmupMs: 200, measureMs: 500, pacedWarmupMs: 200, pacedMeasureMs: 500 }
    : { warmupMs: 2000, measureMs: 5000, pacedWarmupMs: 1000, pacedMeasureMs: 5000 }
}

/** What every device's answers add up to. */
class Totals {
  sent = 0
  answers = 0
  ok = 0
  /** Answers by status other than 204. */
  statuses: Record<string, number> = {}
  /** Answers whose rid matched no outstanding request of that device. */
  unexpected = 0
  /** A 204 whose version was not the device's previous one plus 1 (only this bench writes these twins). */
  versionGaps = 0
  /** Open-loop sends skipped because the device already had RING patches outstanding. */
  skipped = 0
  readonly latency = new Samples(LATENCY_CAPACITY)
}

/** One device: its patches in flight by sequence number (the rid), their send times, its last version. */
class Reporter {
  readonly channel: DeviceChannel
  private readonly totals: Totals
  seq = 0
  answered = 0
  queued = false
  private lastVersion = 0
  private readonly sentAt = new Float64Array(RING)
  private readonly waiting = new Uint8Array(RING)

  constructor(channel: DeviceChannel, totals: Totals, onAnswer: (r: Reporter) => void) {
    this.channel = channel
    this.totals = totals
    channel.onEnvelope((e, now) => {
      if (this.answer(e, now)) onAnswer(this)
    })
  }

  get outstanding(): number {
    return this.seq - this.answered
  }

  send(count: number): void {
    const payloads: string[] = []
    const at = nowMs()
    for (let i = 0; i < count; i++) {
      const seq = this.seq++
      this.sentAt[seq % RING] = at
      this.waiting[seq % RING] = 1
      const temp = (150 + (seq % 100)) / 10
      payloads.push(`{"rid":"${seq}","patch":{"temp":${temp},"seq":${seq}}}`)
    }
    this.totals.sent += count
    this.channel.publish(REPORTED, payloads)
  }

  private answer(e: Envelope, now: number): boolean {
    const t = this.totals
    const seq = typeof e.rid === 'string' ? Number(e.rid) : Number.NaN
    if (!Number.isInteger(seq) || seq < 0 || seq >= this.seq || !this.waiting[seq % RING]) {
      t.unexpected++
      return false
    }
    this.waiting[seq % RING] = 0
    this.answered++
    t.answers++
    if (e.status === 204) {
      t.ok++
      const v = e.version
      if (typeof v === 'number') {
        if (this.lastVersion > 0 && v !== this.lastVersion + 1) t.versionGaps++
        this.lastVersion = v
      }
    } else {
      const k = String(e.status)
      t.statuses[k] = (t.statuses[k] ?? 0) + 1
    }
    t.latency.add(now - (this.sentAt[seq % RING] as number))
    return true
  }
}

/** Waits until every device has its answers (bounded: gives up after DRAIN_QUIET_MS without one). */
async function drainAnswers(reporters: readonly Reporter[], totals: Totals): Promise<number> {
  const startedAt = nowMs()
  let last = totals.answers
  let quietSince = nowMs()
  while (nowMs() - startedAt < DRAIN_MAX_MS) {
    if (reporters.every((r) => r.outstanding === 0)) break
    await sleep(20)
    if (totals.answers !== last) {
      last = totals.answers
      quietSince = nowMs()
    } else if (nowMs() - quietSince >= DRAIN_QUIET_MS) break
  }
  return reporters.reduce((n, r) => n + r.outstanding, 0)
}

interface PhaseCounts {
  sent: number
  answers: number
  ok: number
  unexpected: number
  versionGaps: number
  skipped: number
  statuses: Record<string, number>
}

function snapshot(t: Totals): PhaseCounts {
  const { sent, answers, ok, unexpected, versionGaps, skipped } = t
  return { sent, answers, ok, unexpected, versionGaps, skipped, statuses: { ...t.statuses } }
}

function figuresOf(w: MeasuredWindow<PhaseCounts>, latency: Samples, missing: number): Measurement['figures'] {
  const { before, after, seconds, cpu } = w
  const ok = after.ok - before.ok
  return {
    ackedPerSec: ok / seconds,
    answersPerSec: (after.answers - before.answers) / seconds,
    sentPerSec: (after.sent - before.sent) / seconds,
    ...latency.figures(),
    statuses: countsDelta(before.statuses, after.statuses),
    missing,
    unexpected: after.unexpected,
    versionGaps: after.versionGaps,
    skipped: after.skipped - before.skipped,
    brokerCpuUsPerPatch: ok > 0 ? (((cpu.broker ?? 0) / 100) * seconds * 1e6) / ok : Number.NaN,
    loopDelayP99Ms: w.loop?.p99Ms ?? Number.NaN,
  }
}

/** Keeps WINDOW patches outstanding on every device while `on`: an answer refills its device's window. */
function closedLoop(reporters: readonly Reporter[]) {
  let on = false
  let scheduled = false
  const ready: Reporter[] = []
  const pump = () => {
    scheduled = false
    for (const r of ready.splice(0)) {
      r.queued = false
      if (on && r.outstanding < WINDOW && !r.channel.client.isClosed) r.send(WINDOW - r.outstanding)
    }
  }
  const refill = (r: Reporter) => {
    if (!on || r.queued) return
    r.queued = true
    ready.push(r)
    if (!scheduled) {
      scheduled = true
      setImmediate(pump)
    }
  }
  return {
    refill,
    start() {
      on = true
      for (const r of reporters) refill(r)
    },
    stop() {
      on = false
    },
  }
}

/** Open loop at `rate` patches/s, round-robin over the devices (one skipped when RING are outstanding). */
function openLoop(reporters: readonly Reporter[], totals: Totals, rate: number) {
  let next = 0
  return rateTicker(rate, (n) => {
    for (let i = 0; i < n; i++) {
      const r = reporters[next++ % reporters.length] as Reporter
      if (r.outstanding >= RING || r.channel.client.isClosed) totals.skipped++
      else r.send(1)
    }
  })
}

async function oneRun(ctx: RunContext): Promise<void> {
  const o = ctx.options
  const p = phases(o.quick)
  const devices = Math.min(o.quick ? QUICK_DEVICES : DEVICES, o.maxClients)
  await usingStack(await ctx.startStack(), async (stack) => {
    fleetHubApi(stack.broker, 'twin-reported')
    const identities = await identitiesFor(stack.broker).devices(ids('t', devices))
    const channels = await openDeviceChannels(stack.broker, identities, ['twin/res'])
    try {
      const totals = new Totals()
      const reporters: Reporter[] = []
      const loop = closedLoop(reporters)
      for (const c of channels) reporters.push(new Reporter(c, totals, loop.refill))
      const common = {
        readers: { ...stack.cpuReaders(), generator: selfCpu() },
        latency: totals.latency,
        ...(stack.broker.api ? { metricsUrl: stack.broker.api.url } : {}),
      }
      const snap = () => snapshot(totals)
      await waitQuiet(stack.brokerCpu)

      loop.start()
      const sat = await measureWindow({ ...common, warmupMs: p.warmupMs, measureMs: p.measureMs, snapshot: snap })
      loop.stop()
      const saturated = figuresOf(sat, totals.latency, await drainAnswers(reporters, totals))
      const params = { devices, qos: 1, window: WINDOW, warmupMs: p.warmupMs, measureMs: p.measureMs }
      ctx.record({ case: 'saturated', params, figures: saturated, cpu: sat.cpu })
      ctx.progress(`saturated: ${describe(saturated, sat.cpu)}`)

      /** Open loop at `rate` for a paced phase: the latency of the round trip at that load. */
      const paced = async (kase: string, rate: number) => {
        const ticker = openLoop(reporters, totals, rate)
        ticker.start()
        const w = await measureWindow({
          ...common,
          warmupMs: p.pacedWarmupMs,
          measureMs: p.pacedMeasureMs,
          snapshot: snap,
        })
        ticker.stop()
        const figures = { rate, ...figuresOf(w, totals.latency, await drainAnswers(reporters, totals)) }
        ctx.record({
          case: kase,
          params: { devices, qos: 1, rate, warmupMs: p.pacedWarmupMs, measureMs: p.pacedMeasureMs },
          figures: { ...figures, closedClients: channels.filter((c) => c.client.isClosed).length },
          cpu: w.cpu,
        })
        ctx.progress(`${kase} (${rate}/s): ${describe(figures, w.cpu)}`)
      }
      await paced('half-rate', Math.max(1, Math.round((saturated.ackedPerSec as number) / 2)))
      // the latency target is set at half its throughput target: 10,000/s for 1,000 devices
      await paced('half-target', Math.round((HALF_TARGET * devices) / DEVICES))
      const malformed = channels.reduce((n, c) => n + c.malformed, 0)
      if (malformed > 0) ctx.progress(`warning: ${malformed} answers were not JSON objects`)
      if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
    } finally {
      await closeDeviceChannels(channels)
    }
  })
}

function describe(f: Measurement['figures'], cpu: Record<string, number>): string {
  const n = f as Record<string, number>
  const bad = Object.values(f.statuses as Record<string, number>).reduce((a, b) => a + b, 0)
  return (
    `${Math.round(n.ackedPerSec as number)} acked/s, p50 ${(n.latencyP50Ms as number).toFixed(2)} ms, ` +
    `p99 ${(n.latencyP99Ms as number).toFixed(2)} ms, non-204 ${bad}, missing ${n.missing}; ` +
    `CPU % broker ${Math.round(cpu.broker ?? 0)} generator ${Math.round(cpu.generator ?? 0)}` +
    (cpu.redis !== undefined ? ` redis ${Math.round(cpu.redis)}` : '')
  )
}

export const twinReported: Scenario = {
  name: 'twin-reported',
  title: 'Twin reported patches: 1,000 devices, saturated, at half that rate and at 10,000/s (FleetHub only)',
  summary:
    'FleetHub: 1,000 devices report twin patches; acked patches/s, then p50/p99 at half that rate and at 10,000/s',
  description:
    'FleetHub only. 1,000 devices (200 with `--quick`), created through the HTTP API, connect with their keys, ' +
    'subscribe to `$iot/{id}/twin/res` and publish merge patches such as `{"temp": 21.5, "seq": 7}` to ' +
    '`$iot/{id}/twin/reported` in the envelope `{rid, patch}`, QoS 1 both ways as the SDK does. ' +
    '**saturated**: each device keeps 4 patches outstanding (closed loop); figure: answers with status 204 ' +
    'per second over 5 s after a 2 s warm-up. **half-rate**: open loop at half the rate the saturated phase ' +
    'reached (same run), round-robin over the devices; figure: p50/p99 of the round trip (write → 204 read) ' +
    "over 5 s after 1 s. **half-target**: the same at 10,000/s, half the issue's 20,000/s target (2,000/s " +
    'with `--quick`) (with `--quick`, each phase 0.5 s after 0.2 s). Each phase then drains: answers ' +
    'still missing, non-204 statuses, answers matching no request and gaps in the versions a device is ' +
    'given are counted (all must be 0).',
  ...FLEETHUB_FEATURE,
  headline: [
    { key: 'ackedPerSec', title: 'acked patches/s', unit: 'patches/s', better: 'higher', digits: 0 },
    { key: 'latencyP99Ms', title: 'p99 ms', unit: 'ms', better: 'lower', digits: 2 },
  ],
  columns: [
    medianColumn('acked/s', (r) => r.figures.ackedPerSec),
    medianColumn('rate asked /s', (r) => r.figures.rate),
    ...latencyColumns(),
    countsColumn('non-204', (r) => r.figures.statuses),
    medianColumn('missing', (r) => r.figures.missing),
    medianColumn('unmatched', (r) => r.figures.unexpected),
    medianColumn('version gaps', (r) => r.figures.versionGaps),
    medianColumn('broker µs/patch', (r) => r.figures.brokerCpuUsPerPatch, 1),
    medianColumn('event-loop delay p99 ms', (r) => r.figures.loopDelayP99Ms, 1),
    ...cpuColumns(),
  ],
  run: oneRun,
}
