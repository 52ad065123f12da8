// twin-query: `GET /devices?where=…` over a large fleet (FleetHub only). The registry is seeded with
// 100,000 devices (2,000 with --quick) with tags, a few disabled, a fifth with reported values,
// and 1 % connected (lib/seed.ts says how each store is seeded, and the seeding time is kept). Then
// each query pages through all its results with the cursor, one request at a time, `limit=1000`
// (repeated while it is quick, to time it over at least a second):
// a tag equality (an index), a status filter (an index), a reported-value comparison (a walk of the
// device set reading twins), the two combined (the index, then twins of its candidates), and
// presence (a walk reading presence). Per query: total time, pages, matches (checked against what
// was seeded) and the time of the first page.
import { type ApiClient, apiClient } from '../lib/api-client.js'
import { closeAll, connectAll } from '../lib/clients.js'
import { type CpuReader, openCpuWindow, selfCpu } from '../lib/cpu-time.js'
import { cpuColumns, medianColumn } from '../lib/report.js'
import { FLEETHUB_FEATURE, type RunContext, type Scenario } from '../lib/scenario.js'
import { type SeedDevice, type SeedResult, seedOverApi, seedRedis } from '../lib/seed.js'
import { waitQuiet } from '../lib/settle.js'
import { usingStack } from '../lib/stack.js'
import { median } from '../lib/stats.js'
import { fleetHubApi } from '../lib/target.js'
import { nowMs } from '../lib/time.js'

const DEVICES = 100_000
const QUICK_DEVICES = 2_000
/** The largest page the API gives. */
const PAGE = 1000
/** A query is paged through again until this much time was spent on it (at most MAX_REPEATS times): median. */
const SPEND_MS = 1000
const MAX_REPEATS = 10

/** The fleet, in one place: device i's id, tags, status, reported twin and whether it is online. */
function fleet(n: number): SeedDevice[] {
  return Array.from({ length: n }, (_, i) => {
    // blocks of 100 consecutive devices hold one device of every building
    const block = Math.floor(i / 100)
    return {
      id: `bench-q-${String(i + 1).padStart(6, '0')}`,
      tags: { building: `b${i % 100}`, floor: block % 10 },
      disabled: block % 20 === 11,
      reported: block % 5 === 0 ? { temp: 15 + ((block * 7 + i) % 100) / 10, fw: '1.4.2' } : undefined,
      keepKey: block % 100 === 3,
    }
  })
}

interface Query {
  name: string
  where: string
  /** Whether device `d` matches (`online`: it is connected during the queries). */
  matches(d: SeedDevice): boolean
}

const hot = (d: SeedDevice) => typeof d.reported?.temp === 'number' && d.reported.temp > 20

const QUERIES: readonly Query[] = [
  { name: 'tag', where: "tags.building = 'b7'", matches: (d) => d.tags.building === 'b7' },
  { name: 'status', where: "status = 'disabled'", matches: (d) => d.disabled },
  { name: 'reported', where: 'reported.temp > 20', matches: hot },
  {
    name: 'tag + reported',
    where: "tags.building = 'b7' AND reported.temp > 20",
    matches: (d) => d.tags.building === 'b7' && hot(d),
  },
  { name: 'presence', where: 'presence.connected = true', matches: (d) => d.keepKey },
]

interface Paging {
  totalMs: number
  firstPageMs: number
  pages: number
  /** Pages that came back with no device but a cursor (the request examined its bound and stopped). */
  emptyPages: number
  matches: number
}

/** Follows nextCursor until it is absent; throws on any answer but 200. */
async function pageThrough(client: ApiClient, where: string, maxPages: number): Promise<Paging> {
  const t0 = nowMs()
  let firstPageMs = 0
  let pages = 0
  let emptyPages = 0
  let matches = 0
  let cursor: string | undefined
  do {
    const q = new URLSearchParams({ where, limit: String(PAGE), ...(cursor ? { cursor } : {}) })
    const res = await client.request('GET', `/devices?${q}`)
    if (res.status !== 200)
      throw new Error(`GET /devices?where=${where} answered ${res.status}: ${res.body.slice(0, 200)}`)
    const page = JSON.parse(res.body) as { items: unknown[]; nextCursor?: string }
    if (pages++ === 0) firstPageMs = nowMs() - t0
    matches += page.items.length
    if (page.items.length === 0 && page.nextCursor) emptyPages++
    cursor = page.nextCursor
  } while (cursor && pages < maxPages)
  return { totalMs: nowMs() - t0, firstPageMs, pages, emptyPages, matches }
}

/** Pages through the query again and again until `spendMs` went by (at least once): medians, CPU over all. */
async function timeQuery(
  client: ApiClient,
  q: Query,
  spendMs: number,
  readers: Record<string, CpuReader>,
): Promise<{ runs: Paging[]; totalMs: number; firstPageMs: number; cpu: Record<string, number> }> {
  const window = openCpuWindow(readers)
  const startedAt = nowMs()
  const runs: Paging[] = []
  while (runs.length === 0 || (nowMs() - startedAt < spendMs && runs.length < MAX_REPEATS)) {
    runs.push(await pageThrough(client, q.where, Number.POSITIVE_INFINITY))
  }
  const cpu = window.close()
  return {
    runs,
    totalMs: median(runs.map((r) => r.totalMs)),
    firstPageMs: median(runs.map((r) => r.firstPageMs)),
    cpu,
  }
}

async function oneRun(ctx: RunContext): Promise<void> {
  const n = ctx.options.quick ? QUICK_DEVICES : DEVICES
  const devices = fleet(n)
  // Redis is seeded before the broker starts; memory, through the running broker
  let seeding: SeedResult | undefined
  const stack = await ctx.startStack(
    ctx.target.store === 'redis'
      ? {
          async seed(url) {
            seeding = await seedRedis(url, devices)
          },
        }
      : {},
  )
  await usingStack(stack, async () => {
    const api = fleetHubApi(stack.broker, 'twin-query')
    const seed = seeding ?? (await seedOverApi(stack.broker, devices))
    const steps = Object.entries(seed.steps).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)} s`)
    ctx.progress(
      `seeded ${n} devices in ${(seed.ms / 1000).toFixed(1)} s (${Math.round(n / (seed.ms / 1000))}/s; ` +
        `${steps.join(', ')}): ${seed.method}`,
    )
    const online = devices.filter((d) => d.keepKey)
    const clients = await connectAll(
      stack.broker,
      'tcp',
      online.map((d) => ({ clientId: d.id, username: d.id, password: seed.keys.get(d.id) as string })),
    )
    const client = apiClient(api, 1)
    try {
      await waitQuiet(stack.brokerCpu)
      // the first page of each, once: the routes and the query code are compiled before timing
      for (const q of QUERIES) await pageThrough(client, q.where, 1)
      const readers = { ...stack.cpuReaders(), generator: selfCpu() }
      for (const q of QUERIES) {
        const expected = devices.filter(q.matches).length
        const t = await timeQuery(client, q, ctx.options.quick ? 0 : SPEND_MS, readers)
        const p = t.runs[0] as Paging
        const wrong = t.runs.filter((r) => r.matches !== expected).length
        const figures = {
          ...p,
          totalMs: t.totalMs,
          firstPageMs: t.firstPageMs,
          repeats: t.runs.length,
          expected,
          wrong,
          seedMs: seed.ms,
          seedSteps: seed.steps,
          online: online.length,
        }
        ctx.record({
          case: q.name,
          params: { devices: n, where: q.where, limit: PAGE, seedMethod: seed.method },
          figures,
          cpu: t.cpu,
        })
        ctx.progress(
          `${q.name} (${q.where}): ${Math.round(t.totalMs)} ms (median of ${t.runs.length}), ${p.pages} pages, ` +
            `${p.matches} matches (expected ${expected}), first page ${t.firstPageMs.toFixed(1)} ms; ` +
            `CPU % broker ${Math.round(t.cpu.broker ?? 0)}` +
            (t.cpu.redis !== undefined ? ` redis ${Math.round(t.cpu.redis)}` : ''),
        )
        if (wrong > 0) ctx.progress(`warning: ${wrong} of ${t.runs.length} pagings found another number of matches`)
      }
      if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
    } finally {
      client.close()
      await closeAll(clients)
    }
  })
}

export const twinQuery: Scenario = {
  name: 'twin-query',
  title: 'Device queries over 100,000 devices, paged to the end (FleetHub only)',
  summary: 'FleetHub: GET /devices?where= over 100,000 seeded devices, paged to the end (ms per query)',
  description:
    'FleetHub only. The registry holds 100,000 devices (2,000 with `--quick`): tags `building` (`b0`…`b99`, ' +
    '1 % of the devices each) and `floor` (a number), 5 % disabled, a fifth with a reported twin ' +
    '`{"temp": 15.0…24.9, "fw": "1.4.2"}`, and 1 % connected with their keys during the queries. Redis is ' +
    "seeded before the broker starts by the registry's own code (the Redis adapter, RegistryService and " +
    'TwinService the broker runs); memory, whose store is inside the broker, through the HTTP API (64 ' +
    'requests in flight) and MQTT (reporting devices connect, report and leave, 1,000 at a time). Each query ' +
    'then pages through all its results, one request at a time, `limit=1000`, following `nextCursor`, ' +
    'again until 1 s was spent on it (at most 10 times, once with `--quick`; the median is kept): ' +
    "`tags.building = 'b7'` (index), `status = 'disabled'` (index), `reported.temp > 20` (walks every device " +
    "and reads its twin), `tags.building = 'b7' AND reported.temp > 20` (index, then twins of its " +
    'candidates) and `presence.connected = true` (walks every device and reads its presence). Figures: ' +
    'total time, pages, matches (checked against the seeded fleet, every repeat) and the time of the first ' +
    "page. Each query's first page is requested once beforehand, so the timed runs do not include compiling " +
    'the code.',
  ...FLEETHUB_FEATURE,
  headline: [
    { key: 'totalMs', title: 'total ms', unit: 'ms', better: 'lower', digits: 0 },
    { key: 'firstPageMs', title: 'first page ms', unit: 'ms', better: 'lower', digits: 1 },
  ],
  columns: [
    medianColumn('total ms', (r) => r.figures.totalMs),
    medianColumn('first page ms', (r) => r.figures.firstPageMs, 1),
    medianColumn('repeats', (r) => r.figures.repeats),
    medianColumn('pages', (r) => r.figures.pages),
    medianColumn('empty pages', (r) => r.figures.emptyPages),
    medianColumn('matches', (r) => r.figures.matches),
    medianColumn('expected', (r) => r.figures.expected),
    medianColumn('devices', (r) => r.params.devices),
    medianColumn('seeded in s', (r) => Number(r.figures.seedMs) / 1000, 1),
    ...cpuColumns(),
  ],
  run: oneRun,
}
