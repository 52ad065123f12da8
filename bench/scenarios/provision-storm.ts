// provision-storm: N devices provision themselves at once through FleetHub's bootstrap service
// (docs/provisioning.md), at most `concurrency` between their CONNECT and their answer. Each run
// creates a group enrollment through the HTTP API; the generator derives every device's key from the
// group key as a factory would (HMAC-SHA256(groupKey, registrationId)) and signs one single-use token
// per device before the clock starts. Afterwards the registrations are read back through the API,
// paged: the figure counts only what the broker answered 200 for, and the run fails when the
// registry does not hold exactly those registrations.
import { signToken } from '../../registry/credentials.js'
import { deriveDeviceKey } from '../../registry/provisioning.js'
import { type ApiClient, apiClient } from '../lib/api-client.js'
import { sampleValue, scrapeMetrics } from '../lib/broker-metrics.js'
import { openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { ids } from '../lib/identities.js'
import type { Identity } from '../lib/packets.js'
import { type ProvisionLoadResult, runProvisionLoad, waitBrokerClosed } from '../lib/provision-load.js'
import { countsColumn, medianColumn } from '../lib/report.js'
import type { Measurement, RunContext, Scenario } from '../lib/scenario.js'
import { waitQuiet } from '../lib/settle.js'
import type { Stack } from '../lib/stack.js'
import { percentile } from '../lib/stats.js'
import { fleetHubApi } from '../lib/target.js'
import { nowMs } from '../lib/time.js'

const DEVICES = 2000
const QUICK_DEVICES = 300
const CONCURRENCY = 500
/** Registrations before the measured storm, on an enrollment of their own, so the JIT is warm. */
const WARMUP_DEVICES = 200
const QUICK_WARMUP_DEVICES = 50
const ANSWER_TIMEOUT_MS = 20_000
/** How long the broker may take to close the answered connections after the last answer. */
const CLOSE_WAIT_MS = 5000
/** Tokens are signed before the clock starts; they stay valid well past the run (at most 1 h allowed). */
const TOKEN_TTL_SEC = 600
/** The API's largest page of registrations (registry/query.ts MAX_PAGE). */
const PAGE = 1000
const ENROLLMENT = 'bench-storm'
const WARMUP_ENROLLMENT = 'bench-warmup'

/** Creates a group enrollment (default allocation: hashed over the hubs, here this node alone); its key. */
async function createGroup(api: ApiClient, id: string): Promise<string> {
  const res = await api.request('POST', '/enrollments', { id, kind: 'group' })
  if (res.status !== 201) throw new Error(`POST /enrollments ${id} answered ${res.status}: ${res.body.slice(0, 200)}`)
  const key = (JSON.parse(res.body) as { key?: unknown }).key
  if (typeof key !== 'string') throw new Error(`POST /enrollments ${id}: no key in the answer`)
  return key
}

/** What each device was flashed with, as the provisioning CONNECT carries it: one fresh token each. */
function provisioningIdentities(
  enrollmentId: string,
  groupKey: string,
  registrationIds: readonly string[],
): Identity[] {
  const nowSec = Math.floor(Date.now() / 1000)
  return registrationIds.map((id, i) => ({
    clientId: id,
    username: `$provision/${enrollmentId}`,
    // a distinct expiry per device as well: no two tokens of a run are alike
    password: signToken(id, deriveDeviceKey(groupKey, id), nowSec + TOKEN_TTL_SEC + i),
  }))
}

interface Verified {
  /** Registrations of the enrollment the API lists. */
  listed: number
  /** Of those, registrations of one of the devices answered 200, on a hub, registered once. */
  matching: number
  pages: number
}

/** Reads the enrollment's registrations through the API, every page, and matches them to the answers. */
async function verifyRegistrations(api: ApiClient, enrollmentId: string, expected: ReadonlySet<string>) {
  const v: Verified = { listed: 0, matching: 0, pages: 0 }
  const seen = new Set<string>()
  let cursor: string | undefined
  do {
    const q = `limit=${PAGE}${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`
    const res = await api.request('GET', `/enrollments/${encodeURIComponent(enrollmentId)}/registrations?${q}`)
    if (res.status !== 200) throw new Error(`GET registrations answered ${res.status}: ${res.body.slice(0, 200)}`)
    const page = JSON.parse(res.body) as {
      items: { registrationId: string; deviceId: string; enrollmentId: string; hub: string; count: number }[]
      nextCursor?: string
    }
    v.pages++
    for (const r of page.items) {
      v.listed++
      if (seen.has(r.registrationId)) continue
      seen.add(r.registrationId)
      const ok =
        expected.has(r.registrationId) &&
        r.deviceId === r.registrationId &&
        r.enrollmentId === enrollmentId &&
        typeof r.hub === 'string' &&
        r.count === 1
      if (ok) v.matching++
    }
    cursor = page.nextCursor
  } while (cursor !== undefined)
  return v
}

/** A sample of the devices the storm registered must exist on the hub (this node) and be enabled. */
async function checkDevices(api: ApiClient, deviceIds: readonly string[]): Promise<number> {
  let missing = 0
  const step = Math.max(1, Math.floor(deviceIds.length / 20))
  for (let i = 0; i < deviceIds.length; i += step) {
    const res = await api.request('GET', `/devices/${encodeURIComponent(deviceIds[i] as string)}`)
    if (res.status !== 200) missing++
  }
  return missing
}

function failuresOf(load: ProvisionLoadResult): number {
  return Object.values(load.failures).reduce((a, b) => a + b, 0)
}

function toFigures(load: ProvisionLoadResult, cpu: Record<string, number>, cpuWindowMs: number) {
  const figures: Measurement['figures'] = {
    registrationsPerSec: load.windowMs > 0 ? load.ok / (load.windowMs / 1000) : 0,
    attempted: load.ok + failuresOf(load),
    ok: load.ok,
    windowMs: load.windowMs,
    latencyP50Ms: percentile(load.latenciesMs, 50),
    latencyP99Ms: percentile(load.latenciesMs, 99),
    latencyMaxMs: percentile(load.latenciesMs, 100),
    connackP50Ms: percentile(load.connackMs, 50),
    connackP99Ms: percentile(load.connackMs, 99),
    failures: load.failures,
  }
  // broker CPU time per registration barely moves when others steal its core, unlike the rate
  if (cpu.broker !== undefined && load.ok > 0)
    figures.brokerCpuMsPerRegistration = ((cpu.broker / 100) * cpuWindowMs) / load.ok
  return figures
}

function apiOf(stack: Stack): { url: string; adminToken: string } {
  return fleetHubApi(stack.broker, 'provision-storm')
}

async function oneRun(ctx: RunContext): Promise<void> {
  const o = ctx.options
  const n = Math.min(o.devices ?? (o.quick ? QUICK_DEVICES : DEVICES), o.maxClients)
  const concurrency = o.concurrency ?? CONCURRENCY
  const warmupN = o.quick ? QUICK_WARMUP_DEVICES : WARMUP_DEVICES
  const stack = await ctx.startStack()
  const api = apiClient(apiOf(stack), 4)
  try {
    const port = stack.broker.mqttPort
    // warm-up: the same flow on an enrollment of its own, not measured
    const warmKey = await createGroup(api, WARMUP_ENROLLMENT)
    const warm = await runProvisionLoad({
      port,
      identities: provisioningIdentities(WARMUP_ENROLLMENT, warmKey, ids('w', warmupN, 5)),
      concurrency: Math.min(concurrency, 50),
      timeoutMs: ANSWER_TIMEOUT_MS,
    })
    await waitBrokerClosed(warm, CLOSE_WAIT_MS)
    if (warm.ok !== warmupN) {
      throw new Error(`warm-up: ${warm.ok} of ${warmupN} registrations answered 200 (${JSON.stringify(warm.failures)})`)
    }

    const groupKey = await createGroup(api, ENROLLMENT)
    const registrationIds = ids('p', n, 5)
    const identities = provisioningIdentities(ENROLLMENT, groupKey, registrationIds)
    const metricsUrl = apiOf(stack).url
    const answeredBefore = sampleValue(await scrapeMetrics(metricsUrl), 'fleethub_provisioning_registrations_total', {
      status: '200',
    })
    await waitQuiet(stack.brokerCpu)
    const cpuWindow = openCpuWindow({ ...stack.cpuReaders(), generator: selfCpu() })
    const t0 = nowMs()
    const load = await runProvisionLoad({
      port,
      identities,
      concurrency,
      timeoutMs: ANSWER_TIMEOUT_MS,
    })
    const cpu = cpuWindow.close()
    const cpuWindowMs = nowMs() - t0
    const figures = toFigures(load, cpu, cpuWindowMs)
    figures.leftOpenByBroker = await waitBrokerClosed(load, CLOSE_WAIT_MS)
    // read once the connections are closed: a PUBACK may follow the answer
    figures.pubacks = load.pubacks
    const settleMs = await waitQuiet(stack.brokerCpu)
    if (settleMs !== undefined) figures.settleMs = settleMs

    // check the results: what the registry holds, what the broker counted, what it left open
    const v = await verifyRegistrations(api, ENROLLMENT, new Set(load.okIds))
    const missingDevices = await checkDevices(api, load.okIds)
    const answeredAfter = sampleValue(await scrapeMetrics(metricsUrl), 'fleethub_provisioning_registrations_total', {
      status: '200',
    })
    figures.registrationsListed = v.listed
    figures.registrationsMatching = v.matching
    figures.registrationPages = v.pages
    figures.brokerCounted200 = answeredAfter - answeredBefore
    figures.sampledDevicesMissing = missingDevices
    figures.brokerLogProblems = stack.broker.problems().count
    ctx.record({ case: 'main', params: { devices: n, concurrency, warmup: warmupN }, figures, cpu })

    const failed = (figures.attempted as number) - load.ok
    ctx.progress(
      `${Math.round(figures.registrationsPerSec as number)} registrations/s, ` +
        `p50 ${(figures.latencyP50Ms as number).toFixed(1)} ms, p99 ${(figures.latencyP99Ms as number).toFixed(1)} ms, ` +
        `${failed} failed ${failed > 0 ? JSON.stringify(load.failures) : ''}; CPU % broker ${Math.round(cpu.broker ?? 0)} ` +
        `generator ${Math.round(cpu.generator ?? 0)}${cpu.redis !== undefined ? ` redis ${Math.round(cpu.redis)}` : ''}; ` +
        `${v.listed} registrations listed in ${v.pages} pages`,
    )
    if (load.pubacks < load.ok)
      ctx.progress(`warning: ${load.ok - load.pubacks} register PUBLISHes (QoS 1) answered without a PUBACK`)
    const problems: string[] = []
    if (v.listed !== load.ok || v.matching !== load.ok)
      problems.push(`${load.ok} answered 200, but the API lists ${v.listed} registrations (${v.matching} as expected)`)
    if (figures.brokerCounted200 !== load.ok)
      problems.push(`the broker counted ${figures.brokerCounted200} registrations answered 200, the devices ${load.ok}`)
    if ((figures.leftOpenByBroker as number) > 0)
      problems.push(`the broker left ${figures.leftOpenByBroker} answered connections open for ${CLOSE_WAIT_MS} ms`)
    if (missingDevices > 0) problems.push(`${missingDevices} sampled devices are not on the hub`)
    if (problems.length > 0) throw new Error(`provision-storm does not add up: ${problems.join('; ')}`)
  } catch (err) {
    throw stack.explain(err)
  } finally {
    api.close()
    await stack.stop()
  }
}

export const provisionStorm: Scenario = {
  name: 'provision-storm',
  title: 'Provision storm: 2,000 devices register through the bootstrap service (FleetHub only)',
  summary: 'FleetHub: 2,000 devices provision at once from a group key, 500 in flight (registrations/s)',
  description:
    'FleetHub only. Each run creates a group enrollment through the HTTP API (default allocation: hashed, ' +
    'over the one hub, this node). Every device derives its key from the group key ' +
    '(HMAC-SHA256(groupKey, registrationId)) and signs one single-use token before the clock starts; then ' +
    '2,000 devices (quick: 300), at most 500 (`--concurrency`) between their CONNECT and their answer: ' +
    'CONNECT with user name `$provision/{enrollment}`, on CONNACK a QoS 1 PUBLISH `{"rid":"r"}` to ' +
    '`$provision/{id}/register`, the answer read on `$provision/{id}/res` (status 200, the device id, a ' +
    'hub), and the broker closes the connection. A warm-up of 200 registrations (quick: 50) on another ' +
    'enrollment runs first, unmeasured. Figure: answers 200 ÷ time from the first CONNECT to the last ' +
    "answer; latency is CONNECT written → answer read. Afterwards the enrollment's registrations are read " +
    'back through `GET /enrollments/{id}/registrations` (every page) and must be exactly the devices ' +
    "answered 200, as must the broker's own counter; a sample of the devices must exist on the hub.",
  inAll: true,
  brokers: ['fleethub'],
  transports: ['tcp'],
  headline: [
    { key: 'registrationsPerSec', title: 'registrations/s', unit: 'registrations/s', better: 'higher', digits: 0 },
  ],
  columns: [
    medianColumn('registrations/s', (r) => r.figures.registrationsPerSec),
    medianColumn('answer p50 ms', (r) => r.figures.latencyP50Ms, 1),
    medianColumn('answer p99 ms', (r) => r.figures.latencyP99Ms, 1),
    medianColumn('CONNACK p99 ms', (r) => r.figures.connackP99Ms, 1),
    countsColumn('failures', (r) => r.figures.failures),
    medianColumn('registrations listed', (r) => r.figures.registrationsListed),
    medianColumn('broker CPU ms/registration', (r) => r.figures.brokerCpuMsPerRegistration, 2),
    medianColumn('broker CPU %', (r) => r.cpu.broker),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
    medianColumn('redis CPU %', (r) => r.cpu.redis),
    medianColumn('others CPU %', (r) => r.cpu.others),
  ],
  run: oneRun,
}
