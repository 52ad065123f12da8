// command-rtt: HTTP → device → HTTP round trips of device commands (FleetHub only). Devices connect
// with their keys, subscribe to `$iot/{id}/cmd/req` and answer every command at once, as a device
// that acknowledges then succeeds: `{rid, status: 202}` then `{rid, status: 200, body}` on
// `$iot/{id}/cmd/res`, both in one write. The generator sends `POST /devices/{id}/commands/ping`
// over keep-alive HTTP connections, round-robin over the devices, and times each request until its
// answer `200 {id, status: 200, body}`:
//   paced: a fixed 1,000 commands/s (the goal), and 250/s (a light load, the bare round trip), open
//   loop: p50/p99 of the round trip, rate achieved;
//   saturated: 64 requests in flight (closed loop): commands/s sustained.
// Topologies: the devices and the API on one node; and (Redis only) on two nodes sharing the
// redis-server: devices on node A, HTTP requests to node B, so every command and answer crosses.
import { apiClient } from '../lib/api-client.js'
import { selfCpu } from '../lib/cpu-time.js'
import { closeDeviceChannels, type DeviceChannel, openDeviceChannels } from '../lib/device-channel.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { countsColumn, cpuColumns, latencyColumns, medianColumn } from '../lib/report.js'
import { LATENCY_CAPACITY, RequestLoad } from '../lib/request-load.js'
import { FLEETHUB_FEATURE, type Measurement, type RunContext, type Scenario } from '../lib/scenario.js'
import { waitQuiet } from '../lib/settle.js'
import { type Stack, usingStack } from '../lib/stack.js'
import { countsDelta, Samples } from '../lib/stats.js'
import { fleetHubApi, type RunningBroker } from '../lib/target.js'
import { sleep } from '../lib/time.js'
import { measureWindow } from '../lib/window.js'

const DEVICES = 100
const QUICK_DEVICES = 20
/** The rate of the goal, and a light one where the broker is far from saturated (its bare round trip). */
const LIGHT_RATE = 250
const RATES = [LIGHT_RATE, 1000] as const
/** Requests in flight in the saturated case (and keep-alive connections to the API). */
const CONCURRENCY = 64
/** Far beyond any round trip here: a command that times out shows as a 504 failure, not as a stall. */
const COMMAND_TIMEOUT_MS = 10_000
/** The unmeasured closed loop before a topology's first case. */
const WARM_UP_MS = 2000
const WARM_UP_QUICK_MS = 300
const REQ = 'cmd/req'
const RES = 'cmd/res'

/** One array of latency samples for every load of the scenario (see RequestLoad). */
const latency = new Samples(LATENCY_CAPACITY)

function windows(quick: boolean) {
  return quick ? { warmupMs: 200, measureMs: 500 } : { warmupMs: 1000, measureMs: 5000 }
}

/** A device that acknowledges and answers every command it gets, in one write. */
function answerCommands(c: DeviceChannel, counts: { commands: number }): void {
  c.onEnvelope((e) => {
    if (typeof e.rid !== 'string') return
    counts.commands++
    const rid = JSON.stringify(e.rid)
    c.publish(RES, [`{"rid":${rid},"status":202}`, `{"rid":${rid},"status":200,"body":{"pong":true}}`])
  })
}

/** One request: undefined when the device's own answer came back as 200 {status: 200}. */
function commandSender(client: ReturnType<typeof apiClient>, deviceIds: readonly string[]) {
  const body = { timeoutMs: COMMAND_TIMEOUT_MS }
  return async (i: number): Promise<string | undefined> => {
    const id = deviceIds[i % deviceIds.length] as string
    const res = await client.request('POST', `/devices/${id}/commands/ping`, body)
    if (res.status !== 200) return `http-${res.status}`
    const answer = JSON.parse(res.body) as { status?: unknown }
    return answer.status === 200 ? undefined : `device-${String(answer.status)}`
  }
}

/**
 * Commands in a closed loop for a while, not measured, before a topology's first case: the first
 * commands a node handles run cold code (the JIT compiles the HTTP, command and MQTT paths as they
 * come), which otherwise lands in the first case's window.
 */
async function warmUp(api: RunningBroker, deviceIds: readonly string[], quick: boolean): Promise<void> {
  const client = apiClient(fleetHubApi(api, 'command-rtt'), CONCURRENCY)
  const load = new RequestLoad(commandSender(client, deviceIds), latency)
  try {
    load.closed(CONCURRENCY)
    await sleep(quick ? WARM_UP_QUICK_MS : WARM_UP_MS)
    load.stop()
    await load.settle()
  } finally {
    client.close()
  }
}

interface CaseSpec {
  name: string
  /** Where the HTTP requests go. */
  api: RunningBroker
  /** Requests per second (open loop); undefined: closed loop, CONCURRENCY in flight. */
  rate: number | undefined
  nodes: number
}

/**
 * The cases of one topology: each paced rate, then saturated. With --quick only the light rate: a
 * broker with cold code falls behind at 1,000/s, and draining that backlog took most of the time.
 */
function casesOf(topology: string, api: RunningBroker, nodes: number, quick: boolean): CaseSpec[] {
  const paced = (rate: number) => ({ name: `${topology} · ${rate.toLocaleString('en-US')}/s`, api, rate, nodes })
  if (quick) return [paced(LIGHT_RATE)]
  return [...RATES.map(paced), { name: `${topology} · saturated`, api, rate: undefined, nodes }]
}

async function measureCase(
  ctx: RunContext,
  stack: Stack,
  spec: CaseSpec,
  deviceIds: readonly string[],
  counts: { commands: number },
): Promise<Measurement> {
  const { warmupMs, measureMs } = windows(ctx.options.quick)
  const client = apiClient(fleetHubApi(spec.api, 'command-rtt'), CONCURRENCY)
  const load = new RequestLoad(commandSender(client, deviceIds), latency)
  try {
    await waitQuiet(stack.brokerCpu)
    if (spec.rate !== undefined) load.paced(spec.rate)
    else load.closed(CONCURRENCY)
    const w = await measureWindow({
      warmupMs,
      measureMs,
      readers: { ...stack.cpuReaders(), generator: selfCpu() },
      latency: load.latency,
      snapshot: () => ({ ...load.snapshot(), commands: counts.commands }),
      ...(stack.broker.api ? { metricsUrl: stack.broker.api.url } : {}),
    })
    load.stop()
    const unfinished = await load.settle()
    const { before, after, seconds, cpu } = w
    const ok = after.ok - before.ok
    const brokerCpuSec = (((cpu.broker ?? 0) + (cpu.broker2 ?? 0)) / 100) * seconds
    const figures: Measurement['figures'] = {
      commandsPerSec: ok / seconds,
      startedPerSec: (after.started - before.started) / seconds,
      deviceCommandsPerSec: (after.commands - before.commands) / seconds,
      ...load.latency.figures(),
      failures: countsDelta(before.failures, after.failures),
      unfinished,
      brokerCpuUsPerCommand: ok > 0 ? (brokerCpuSec * 1e6) / ok : Number.NaN,
      httpSockets: client.openSockets(),
      loopDelayP99Ms: w.loop?.p99Ms ?? Number.NaN,
    }
    const params = {
      devices: deviceIds.length,
      loop: spec.rate !== undefined ? 'paced' : 'saturated',
      nodes: spec.nodes,
      ...(spec.rate !== undefined ? { rate: spec.rate } : { concurrency: CONCURRENCY }),
      warmupMs,
      measureMs,
    }
    return { case: spec.name, params, figures, cpu }
  } finally {
    load.stop()
    client.close()
  }
}

function describe(m: Measurement): string {
  const f = m.figures as Record<string, number>
  const failed = Object.values(m.figures.failures as Record<string, number>).reduce((a, b) => a + b, 0)
  const cpu = Object.entries(m.cpu)
    .filter(([k]) => ['broker', 'broker2', 'generator', 'redis'].includes(k))
    .map(([k, v]) => `${k} ${Math.round(v)}`)
  return (
    `${Math.round(f.commandsPerSec as number)} commands/s, p50 ${(f.latencyP50Ms as number).toFixed(2)} ms, ` +
    `p99 ${(f.latencyP99Ms as number).toFixed(2)} ms, ${failed} failed; CPU % ${cpu.join(', ')}`
  )
}

async function oneRun(ctx: RunContext): Promise<void> {
  const devices = Math.min(ctx.options.quick ? QUICK_DEVICES : DEVICES, ctx.options.maxClients)
  await usingStack(await ctx.startStack(), async (stack) => {
    fleetHubApi(stack.broker, 'command-rtt')
    const identities = await identitiesFor(stack.broker).devices(ids('c', devices))
    const deviceIds = identities.map((d) => d.clientId)
    const channels = await openDeviceChannels(stack.broker, identities, [REQ])
    try {
      const counts = { commands: 0 }
      for (const c of channels) answerCommands(c, counts)
      const run = async (cases: CaseSpec[]) => {
        await warmUp(cases[0]?.api as RunningBroker, deviceIds, ctx.options.quick)
        for (const spec of cases) {
          const m = await measureCase(ctx, stack, spec, deviceIds, counts)
          ctx.record(m)
          ctx.progress(`${spec.name}: ${describe(m)}`)
        }
      }
      await run(casesOf('one node', stack.broker, 1, ctx.options.quick))
      // then a second node on the same redis-server (only now: while it lives, node A forwards its
      // messages to Redis): the devices stay on node A, the requests go to node B
      if (stack.redis) await run(casesOf('two nodes', await stack.addNode(), 2, ctx.options.quick))
      const closed = channels.filter((c) => c.client.isClosed).length
      if (closed > 0) throw new Error(`the broker closed ${closed} device connections`)
      if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
    } finally {
      await closeDeviceChannels(channels)
    }
  })
}

export const commandRtt: Scenario = {
  name: 'command-rtt',
  title: 'Command round trips HTTP → device → HTTP: 250/s, 1,000/s and saturated, one and two nodes (FleetHub only)',
  summary: 'FleetHub: POST /devices/{id}/commands to 100 answering devices; p50/p99 at 250 and 1,000/s, commands/s',
  description:
    'FleetHub only. 100 devices (20 with `--quick`), created through the HTTP API, connect with their keys, ' +
    'subscribe to `$iot/{id}/cmd/req` (QoS 1) and answer every command at once: `{rid, status: 202}` then ' +
    '`{rid, status: 200, body}` on `$iot/{id}/cmd/res`, QoS 1, in one write. The generator sends ' +
    '`POST /devices/{id}/commands/ping` (`{"timeoutMs": 10000}`) round-robin over the devices through node\'s ' +
    'http Agent with keep-alive (up to 64 connections), and times each request until its `200` with the ' +
    "device's status 200. **1,000/s** (the goal's rate) and **250/s** (a light load: the bare round trip): " +
    'a fixed rate (open loop); figures: p50/p99 of the round trip and the rate of successful commands, over ' +
    '5 s after 1 s (with `--quick`: the 250/s case only, 0.5 s after 0.2 s); before the first case of each ' +
    'topology, 2 s of commands in a closed loop warm the code up, unmeasured. **saturated**: 64 requests in flight ' +
    '(closed loop); figure: commands/s. **one node**: devices and API on the same node; **two nodes** (Redis ' +
    'only): a second FleetHub node on the same redis-server (and the same CPU 0), devices on node A, HTTP to ' +
    'node B.',
  ...FLEETHUB_FEATURE,
  headline: [
    { key: 'latencyP99Ms', title: 'p99 ms', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'commandsPerSec', title: 'commands/s', unit: 'commands/s', better: 'higher', digits: 0 },
  ],
  columns: [
    medianColumn('commands/s', (r) => r.figures.commandsPerSec),
    ...latencyColumns(),
    countsColumn('failures', (r) => r.figures.failures),
    medianColumn('broker µs/command', (r) => r.figures.brokerCpuUsPerCommand),
    medianColumn('node A event-loop delay p99 ms', (r) => r.figures.loopDelayP99Ms, 1),
    ...cpuColumns({ broker: 'node A CPU %', broker2: 'node B CPU %' }),
  ],
  run: oneRun,
}
