// connect-storm: 5,000 clients CONNECT with a user name and password as fast as the broker answers
// (200 waiting for their CONNACK at any time). FleetHub: devices created through the HTTP API, each
// with its own key; Mosquitto: a password file with one user per client; vanilla Aedes: no
// authentication (as in the anchor). Each client's first CONNECT since the broker started,
// so FleetHub's credential cache is cold and every check reads the store.
import { randomBytes } from 'node:crypto'
import { type ConnectLoadResult, closeConnections, runConnectLoad } from '../lib/connect-load.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { identitiesFor, ids } from '../lib/identities.js'
import { tcpExt } from '../lib/netstat.js'
import type { Identity } from '../lib/packets.js'
import { countsColumn, medianColumn } from '../lib/report.js'
import type { Measurement, Scenario } from '../lib/scenario.js'
import { waitQuiet } from '../lib/settle.js'
import { percentile } from '../lib/stats.js'
import type { BrokerKind } from '../lib/target.js'
import { nowMs } from '../lib/time.js'

const CLIENTS = 5000
const QUICK_CLIENTS = 500
const CONCURRENCY = 200
const CONNECT_TIMEOUT_MS = 10_000
const KEEPALIVE_SEC = 600
const CLOSE_TIMEOUT_MS = 10_000

/** Credentials, in one place: devices with keys (FleetHub), password-file users (Mosquitto), none (Aedes). */
function credentials(kind: BrokerKind, clientIds: readonly string[]): Identity[] | undefined {
  if (kind === 'mosquitto') {
    return clientIds.map((clientId) => ({
      clientId,
      username: clientId,
      password: randomBytes(24).toString('base64url'),
    }))
  }
  return undefined // FleetHub: created through its API once it runs; Aedes: anonymous
}

function toFigures(
  load: ConnectLoadResult,
  cpu: Record<string, number>,
  cpuWindowMs: number,
  settleMs: number | undefined,
) {
  const failures = Object.values(load.failures).reduce((a, b) => a + b, 0)
  const figures: Measurement['figures'] = {
    connectsPerSec: load.windowMs > 0 ? load.ok / (load.windowMs / 1000) : 0,
    attempted: load.ok + failures,
    ok: load.ok,
    windowMs: load.windowMs,
    latencyP50Ms: percentile(load.latenciesMs, 50),
    latencyP99Ms: percentile(load.latenciesMs, 99),
    failures: load.failures,
    droppedAfterConnack: load.dropped,
  }
  if (cpu.broker !== undefined && load.ok > 0)
    figures.brokerCpuMsPerConnect = ((cpu.broker / 100) * cpuWindowMs) / load.ok
  if (settleMs !== undefined) figures.settleMs = settleMs
  return figures
}

export const connectStorm: Scenario = {
  name: 'connect-storm',
  title: 'Connect storm: 5,000 clients with user name and password',
  summary: '5,000 clients CONNECT with credentials, 200 at a time (connects/s)',
  description:
    '5,000 clients connect, at most 200 waiting for their CONNACK at any time; every accepted connection ' +
    'stays open until all have answered. FleetHub: each client is a device created through the HTTP API ' +
    'connecting with its own key (the first CONNECT since the broker started: the credential cache is cold ' +
    'and every check reads the store); Mosquitto: a password file (`mosquitto_passwd -U`) with one user per ' +
    'client and `allow_anonymous false`; vanilla Aedes: no authentication, as in the issue. Figure: accepted ' +
    'connections ÷ time from the first CONNECT to the last CONNACK. TCP only. "listen overflows" is the ' +
    "kernel's count of handshakes dropped because the broker's accept queue was full (Mosquitto listens with " +
    'a backlog of 100, below the 200 connections in flight): each costs its client a one-second retry.',
  inAll: true,
  brokers: ['fleethub', 'aedes', 'mosquitto'],
  transports: ['tcp'],
  headline: [{ key: 'connectsPerSec', title: 'connects/s', unit: 'connects/s', better: 'higher', digits: 0 }],
  columns: [
    medianColumn('connects/s', (r) => r.figures.connectsPerSec),
    medianColumn('CONNACK p50 ms', (r) => r.figures.latencyP50Ms, 1),
    medianColumn('CONNACK p99 ms', (r) => r.figures.latencyP99Ms, 1),
    countsColumn('failures', (r) => r.figures.failures),
    medianColumn('listen overflows', (r) => r.figures.listenOverflows),
    medianColumn('broker CPU ms/connect', (r) => r.figures.brokerCpuMsPerConnect, 2),
    medianColumn('broker CPU %', (r) => r.cpu.broker),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
    medianColumn('redis CPU %', (r) => r.cpu.redis),
    medianColumn('others CPU %', (r) => r.cpu.others),
  ],
  async run(ctx) {
    const o = ctx.options
    const n = Math.min(o.devices ?? (o.quick ? QUICK_CLIENTS : CLIENTS), o.maxClients)
    const concurrency = o.concurrency ?? CONCURRENCY
    const clientIds = ids('c', n, 5)
    const preset = credentials(ctx.target.broker, clientIds)
    const stack = await ctx.startStack(
      preset ? { users: preset.map((p) => ({ username: p.username ?? '', password: p.password ?? '' })) } : {},
    )
    try {
      const createdAt = nowMs()
      const identities = preset ?? (await identitiesFor(stack.broker).devices(clientIds))
      if (!preset && stack.broker.api) ctx.progress(`created ${n} devices in ${Math.round(nowMs() - createdAt)} ms`)
      await waitQuiet(stack.brokerCpu)
      const overflowsBefore = tcpExt('ListenOverflows')
      const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
      const t0 = nowMs()
      const load = await runConnectLoad({
        port: stack.broker.mqttPort,
        identities,
        concurrency,
        timeoutMs: CONNECT_TIMEOUT_MS,
        keepaliveSec: KEEPALIVE_SEC,
      })
      const cpu = cpuWindow.close()
      const cpuWindowMs = nowMs() - t0
      const settleMs = await waitQuiet(stack.brokerCpu)
      const figures = toFigures(load, cpu, cpuWindowMs, settleMs)
      figures.brokerLogProblems = stack.broker.problems().count
      const overflowsAfter = tcpExt('ListenOverflows')
      if (overflowsBefore !== undefined && overflowsAfter !== undefined)
        figures.listenOverflows = overflowsAfter - overflowsBefore
      ctx.record({ case: 'main', params: { clients: n, concurrency }, figures, cpu })
      const failed = (figures.attempted as number) - load.ok
      ctx.progress(
        `${Math.round(figures.connectsPerSec as number)} connects/s, ${failed} failed, ` +
          `CPU % broker ${Math.round(cpu.broker ?? 0)} generator ${Math.round(cpu.generator ?? 0)}`,
      )
      await closeConnections(load.sockets, CLOSE_TIMEOUT_MS)
    } catch (err) {
      throw stack.explain(err)
    } finally {
      await stack.stop()
    }
  },
}
