// connect-rate: how fast the broker accepts devices that CONNECT with their keys.
// Each run starts a fresh store and broker, creates the devices through the HTTP API, then measures
// two phases over the same devices:
//   cold: the first CONNECT of every device since the broker started: each one misses the
//         credential cache and reads the device from the store (and the broker's code is not yet
//         optimised by the JIT: this is what a restart followed by a reconnect storm looks like);
//   warm: all disconnected, then all again: the credentials come from the cache.
// Connections stay open until their phase ends, as a fleet's would, then are closed, and the next
// phase waits for the broker to see them gone and go quiet.
import { authCacheCounts, type CacheCounts, waitForNoDeviceSessions } from '../lib/broker-metrics.js'
import { type ConnectLoadResult, closeConnections, runConnectLoad } from '../lib/connect-load.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { benchDeviceIds, createDevices } from '../lib/devices.js'
import type { Identity } from '../lib/packets.js'
import { countsColumn, medianColumn } from '../lib/report.js'
import type { Measurement, RunContext, Scenario } from '../lib/scenario.js'
import { waitMachineQuiet, waitQuiet } from '../lib/settle.js'
import type { Stack } from '../lib/stack.js'
import { percentile } from '../lib/stats.js'
import { fleetHubApi } from '../lib/target.js'
import { nowMs, sleep } from '../lib/time.js'

type Phase = 'cold' | 'warm'
const PHASES: readonly Phase[] = ['cold', 'warm']

const DEVICES = 2000
const CONCURRENCY = 200
/** HTTP creations in flight: enough to keep the API busy, few enough not to queue for long. */
const CREATE_PARALLEL = 32
const CONNECT_TIMEOUT_MS = 10_000
/** No PINGREQ falls due during a phase, so keep-alive traffic stays out of the figures. */
const KEEPALIVE_SEC = 600
const CLOSE_TIMEOUT_MS = 10_000
const GONE_TIMEOUT_MS = 30_000
/** A moment between phases, after the broker went quiet, for stray timers and GC. */
const PAUSE_MS = 1000

interface PhaseOutcome {
  load: ConnectLoadResult
  /** CPU use over the phase, percent of one core, by role (see openCpuWindow). */
  cpu: Record<string, number>
  cpuWindowMs: number
  /** How long the broker stayed busy after the last CONNACK (undefined: it never went quiet). */
  settleMs: number | undefined
  authCache: CacheCounts
  /** Accepted connections the broker closed before the phase ended: they must stay open. */
  dropped: number
}

function cacheDelta(before: CacheCounts, after: CacheCounts): CacheCounts {
  return { hit: after.hit - before.hit, miss: after.miss - before.miss }
}

/** Waits out other people's load (bounded), then opens a connection per device and measures. */
async function connectPhase(
  ctx: RunContext,
  stack: Stack,
  identities: readonly Identity[],
  label: string,
): Promise<PhaseOutcome> {
  const api = apiOf(stack)
  const ours = { ...stack.cpuReaders(), generator: selfCpu() }
  const machine = await waitMachineQuiet(ours)
  if (!machine.quiet) {
    ctx.progress(
      `${label}: other processes still use ${Math.round(machine.othersPct)} % of a core after ` +
        `${Math.round(machine.waitedMs / 1000)} s; measuring anyway (see the "others CPU %" column)`,
    )
  }
  const cacheBefore = await authCacheCounts(api.url)
  const cpuWindow = openCpuWindow(ours)
  const cpuStartedAt = nowMs()
  const load = await runConnectLoad({
    port: stack.broker.mqttPort,
    identities,
    concurrency: ctx.options.concurrency ?? CONCURRENCY,
    timeoutMs: CONNECT_TIMEOUT_MS,
    keepaliveSec: KEEPALIVE_SEC,
  })
  const cpu = cpuWindow.close()
  const cpuWindowMs = nowMs() - cpuStartedAt
  // work the CONNECTs started (presence writes, connected events) may still be running
  const settleMs = await waitQuiet(stack.brokerCpu)
  const authCache = cacheDelta(cacheBefore, await authCacheCounts(api.url))
  return { load, cpu, cpuWindowMs, settleMs, authCache, dropped: load.dropped }
}

/** Closes the phase's connections and waits until the broker has let go of every session. */
async function endPhase(stack: Stack, o: PhaseOutcome): Promise<void> {
  await closeConnections(o.load.sockets, CLOSE_TIMEOUT_MS)
  if (!(await waitForNoDeviceSessions(apiOf(stack).url, GONE_TIMEOUT_MS))) {
    throw new Error(`the broker still reports device sessions ${GONE_TIMEOUT_MS} ms after they were closed`)
  }
  await waitQuiet(stack.brokerCpu)
  await sleep(PAUSE_MS)
}

function toMeasurement(
  phase: Phase,
  o: PhaseOutcome,
  brokerLogProblems: number,
  params: Measurement['params'],
): Measurement {
  const { load, cpu } = o
  const figures: Measurement['figures'] = {
    connectsPerSec: load.windowMs > 0 ? load.ok / (load.windowMs / 1000) : 0,
    attempted: load.ok + Object.values(load.failures).reduce((a, b) => a + b, 0),
    ok: load.ok,
    windowMs: load.windowMs,
    latencyP50Ms: percentile(load.latenciesMs, 50),
    latencyP99Ms: percentile(load.latenciesMs, 99),
    latencyMaxMs: percentile(load.latenciesMs, 100),
    failures: load.failures,
    authCache: { ...o.authCache },
    droppedAfterConnack: o.dropped,
    brokerLogProblems,
  }
  // CPU time per accepted CONNECT barely moves when other processes steal the broker's core, unlike
  // the rate: on a shared machine it is the figure to compare
  if (cpu.broker !== undefined && load.ok > 0)
    figures.brokerCpuMsPerConnect = ((cpu.broker / 100) * o.cpuWindowMs) / load.ok
  if (o.settleMs !== undefined) figures.settleMs = o.settleMs
  return { case: phase, params, figures, cpu }
}

function describe(m: Measurement): string {
  const f = m.figures as Record<string, number>
  const c = m.cpu
  const failed = f.attempted - f.ok
  const cpu = Object.entries({ broker: c.broker, generator: c.generator, redis: c.redis, others: c.others })
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k} ${Math.round(v as number)}`)
  return (
    `${Math.round(f.connectsPerSec)} connects/s, p50 ${f.latencyP50Ms.toFixed(1)} ms, p99 ${f.latencyP99Ms.toFixed(1)} ms, ` +
    `${failed} failed; CPU % ${cpu.join(', ')}`
  )
}

/** A phase whose cache counters disagree with its name measured something else: say so. */
function checkCache(phase: Phase, devices: number, c: CacheCounts): string | undefined {
  const expected = phase === 'cold' ? c.miss === devices && c.hit === 0 : c.hit === devices && c.miss === 0
  return expected
    ? undefined
    : `credential cache ${c.hit} hits and ${c.miss} misses, not all ${phase === 'cold' ? 'misses' : 'hits'}`
}

/** connect-rate reads FleetHub's /metrics: it runs on FleetHub only. */
function apiOf(stack: Stack): { url: string; adminToken: string } {
  return fleetHubApi(stack.broker, 'connect-rate')
}

async function oneRun(ctx: RunContext): Promise<void> {
  const run = ctx.run
  const stack = await ctx.startStack()
  try {
    const { broker } = stack
    const api = apiOf(stack)
    const devices = Math.min(ctx.options.devices ?? DEVICES, ctx.options.maxClients)
    const concurrency = ctx.options.concurrency ?? CONCURRENCY
    const ids = benchDeviceIds(devices)
    const created = await createDevices(api.url, api.adminToken, ids, CREATE_PARALLEL)
    const identities = created.devices.map((d) => ({ clientId: d.id, username: d.id, password: d.key }))
    ctx.progress(
      `run ${run}: created ${ids.length} devices in ${Math.round(created.ms)} ms ` +
        `(${Math.round(ids.length / (created.ms / 1000))}/s)`,
    )
    await waitQuiet(stack.brokerCpu)
    await sleep(PAUSE_MS)
    for (const phase of PHASES) {
      const label = phase
      const outcome = await connectPhase(ctx, stack, identities, label)
      const m = toMeasurement(phase, outcome, broker.problems().count, { devices, concurrency })
      ctx.record(m)
      ctx.progress(`${label}: ${describe(m)}`)
      const cacheProblem = checkCache(phase, ids.length, outcome.authCache)
      if (cacheProblem) ctx.progress(`${label}: warning: ${cacheProblem}`)
      if (outcome.dropped > 0)
        ctx.progress(`${label}: warning: the broker closed ${outcome.dropped} accepted connections`)
      await endPhase(stack, outcome)
    }
    const problems = broker.problems()
    if (problems.count > 0) {
      ctx.progress(`run ${run}: the broker logged ${problems.count} warnings or errors, the last ones:`)
      for (const line of problems.last) ctx.progress(`  ${line}`)
    }
  } catch (err) {
    throw stack.explain(err)
  } finally {
    await stack.stop()
  }
}

export const connectRate: Scenario = {
  name: 'connect-rate',
  title: 'Connect rate of devices with keys, cold and warm credential cache (FleetHub only)',
  summary: 'FleetHub: CONNECTs/s of 2,000 devices with keys, cold (cache empty) and warm',
  description:
    'FleetHub only. Each run creates 2,000 devices through the HTTP API, then measures two phases over the ' +
    'same devices (200 CONNECTs in flight): **cold**, the first CONNECT of every device since the broker ' +
    'started (every one misses the credential cache and reads the store; the JIT is cold too), and **warm**, ' +
    'everyone disconnected and connected again (credentials from the cache). The cache counters on /metrics ' +
    'must show all misses, then all hits. See bench/README.md.',
  inAll: false,
  brokers: ['fleethub'],
  transports: ['tcp'],
  headline: [{ key: 'connectsPerSec', title: 'connects/s', unit: 'connects/s', better: 'higher', digits: 0 }],
  columns: [
    medianColumn('connects/s', (r) => r.figures.connectsPerSec as number),
    medianColumn('CONNACK p50 ms', (r) => r.figures.latencyP50Ms as number, 1),
    medianColumn('CONNACK p99 ms', (r) => r.figures.latencyP99Ms as number, 1),
    countsColumn('failures', (r) => r.figures.failures as Record<string, number>),
    medianColumn('broker CPU ms/connect', (r) => r.figures.brokerCpuMsPerConnect as number, 2),
    medianColumn('broker CPU %', (r) => r.cpu.broker),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
    medianColumn('redis CPU %', (r) => r.cpu.redis),
    medianColumn('others CPU %', (r) => r.cpu.others),
  ],
  run: oneRun,
}
