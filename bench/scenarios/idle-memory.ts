// idle-memory: what one idle connection costs the broker in resident memory. RSS (VmRSS) with N
// idle clients connected, minus RSS before they connected, divided by N, each read once RSS has held
// still. On FleetHub the clients are devices with keys, created before the baseline is taken, so
// registry records are not counted as connection cost.
import { closeConnections, runConnectLoad } from '../lib/connect-load.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { countsColumn, medianColumn } from '../lib/report.js'
import { waitRssStable } from '../lib/rss.js'
import type { Scenario } from '../lib/scenario.js'
import { waitQuiet } from '../lib/settle.js'
import { nowMs } from '../lib/time.js'

const CLIENTS = 10_000
const QUICK_CLIENTS = 1_000
const CONCURRENCY = 200
const CONNECT_TIMEOUT_MS = 15_000
/** No PINGREQ falls due while the clients sit idle. */
const KEEPALIVE_SEC = 600
const STABLE_MS = 2_000
const QUICK_STABLE_MS = 500
const STABLE_TIMEOUT_MS = 30_000
const CLOSE_TIMEOUT_MS = 15_000

export const idleMemory: Scenario = {
  name: 'idle-memory',
  title: 'Memory per idle connection (10,000 clients)',
  summary: 'broker RSS per idle connection, 10,000 clients (KiB)',
  description:
    'The broker starts (on FleetHub the devices are created through the HTTP API first); once its RSS ' +
    '(`VmRSS` in `/proc/<pid>/status`) has stayed within 256 KiB for 2 s, that is the baseline. Then ' +
    '10,000 clients connect (200 CONNECTs in flight; devices with keys on FleetHub, anonymous elsewhere) ' +
    'and stay idle (keep-alive 600 s); once RSS holds still again for 2 s, (RSS − baseline) ÷ connected ' +
    'clients is the figure, in KiB. TCP only.',
  inAll: true,
  brokers: ['fleethub', 'aedes', 'mosquitto'],
  transports: ['tcp'],
  headline: [
    { key: 'kibPerConnection', title: 'KiB/connection', unit: 'KiB per idle connection', better: 'lower', digits: 2 },
  ],
  columns: [
    medianColumn('KiB/connection', (r) => r.figures.kibPerConnection, 2),
    medianColumn('baseline MiB', (r) => r.figures.baselineMiB, 1),
    medianColumn('loaded MiB', (r) => r.figures.loadedMiB, 1),
    medianColumn('connected', (r) => r.figures.connected),
    countsColumn('failures', (r) => r.figures.failures),
    medianColumn('connects/s', (r) => r.figures.connectsPerSec),
    medianColumn('settle s', (r) => r.figures.settleSec, 1),
  ],
  async run(ctx) {
    const o = ctx.options
    const n = Math.min(o.devices ?? (o.quick ? QUICK_CLIENTS : CLIENTS), o.maxClients)
    const stableMs = o.quick ? QUICK_STABLE_MS : STABLE_MS
    const stack = await ctx.startStack()
    try {
      const { broker } = stack
      const createdAt = nowMs()
      const identities = await identitiesFor(broker).devices(ids('m', n, 5))
      if (broker.api) ctx.progress(`created ${n} devices in ${Math.round(nowMs() - createdAt)} ms`)
      await waitQuiet(stack.brokerCpu)
      const baseline = await waitRssStable(broker.pid, stableMs, STABLE_TIMEOUT_MS)
      const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
      const load = await runConnectLoad({
        port: broker.mqttPort,
        identities,
        concurrency: o.concurrency ?? CONCURRENCY,
        timeoutMs: CONNECT_TIMEOUT_MS,
        keepaliveSec: KEEPALIVE_SEC,
      })
      const cpu = cpuWindow.close()
      const settledAt = nowMs()
      await waitQuiet(stack.brokerCpu)
      const loaded = await waitRssStable(broker.pid, stableMs, STABLE_TIMEOUT_MS)
      const connected = load.ok - load.dropped
      const figures = {
        kibPerConnection: connected > 0 ? (loaded.kib - baseline.kib) / connected : Number.NaN,
        baselineMiB: baseline.kib / 1024,
        loadedMiB: loaded.kib / 1024,
        connected,
        failures: load.failures,
        connectsPerSec: load.windowMs > 0 ? load.ok / (load.windowMs / 1000) : 0,
        settleSec: (nowMs() - settledAt) / 1000,
        rssStable: baseline.stable && loaded.stable,
        brokerLogProblems: broker.problems().count,
      }
      ctx.record({ case: 'main', params: { clients: n, stableMs }, figures, cpu })
      ctx.progress(
        `${figures.kibPerConnection.toFixed(2)} KiB per connection (${connected} connected, RSS ` +
          `${figures.baselineMiB.toFixed(1)} → ${figures.loadedMiB.toFixed(1)} MiB${figures.rssStable ? '' : ', RSS never held still'})`,
      )
      await closeConnections(load.sockets, CLOSE_TIMEOUT_MS)
    } catch (err) {
      throw stack.explain(err)
    } finally {
      await stack.stop()
    }
  },
}
