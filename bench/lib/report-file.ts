// The Markdown report of one invocation (bench/results/report.md) and its SVG charts: provenance,
// the issue's targets judged on ratios measured side by side, a summary, then per scenario the
// comparison (median, min–max, ratios to FleetHub, the issue's anchors, saturation notes), a chart
// and the detail table.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { issueAnchor } from './anchors.js'
import { evaluateGoals, medianOf } from './goals.js'
import type { GitInfo, MachineInfo } from './provenance.js'
import { formatNumber, markdownTable, medianCell, numbers } from './report.js'
import type { ResultRecord } from './results.js'
import type { Metric, Scenario } from './scenario.js'
import { median, spread } from './stats.js'
import { type Bar, barChartSvg, lineChartSvg, TARGET_COLORS } from './svg.js'

export interface Failure {
  scenario: string
  target: string
  run: number
  error: string
}

export interface ReportInput {
  /** Measurements repeated because other processes competed for the CPUs (kept in the raw results). */
  discarded?: number
  command: string
  startedAt: string
  wallMs: number
  git: GitInfo
  builds: string[]
  machine: MachineInfo
  versions: Record<string, string | undefined>
  scenarios: readonly Scenario[]
  /** Target labels in the order they ran. */
  targets: readonly string[]
  records: readonly ResultRecord[]
  failures: readonly Failure[]
  notes: readonly string[]
}

export interface RenderedReport {
  markdown: string
  charts: { file: string; svg: string }[]
}

/** Generator CPU at or above this is a saturated generator: the figure is then a lower bound. */
const SATURATED_PCT = 90

function commitText(git: GitInfo): string {
  if (!git.dirty) return git.commit
  return `${git.commit} + uncommitted changes${git.diff ? ` (diff ${git.diff})` : ''}`
}

function casesOf(records: readonly ResultRecord[]): string[] {
  return [...new Set(records.map((r) => r.case))]
}

function anchorCell(scenario: string, metric: Metric, target: string): string {
  const a = issueAnchor(scenario, metric.key, target)
  if (a === undefined) return '–'
  return typeof a === 'number' ? a.toLocaleString('en-US', { maximumFractionDigits: 3 }) : a
}

function ratioCell(
  records: readonly ResultRecord[],
  scenario: string,
  metric: Metric,
  kase: string,
  of: string,
  to: string,
) {
  if (of === to) return '–'
  const a = medianOf(records, scenario, of, metric.key, kase)
  const b = medianOf(records, scenario, to, metric.key, kase)
  return a === undefined || b === undefined || b === 0 ? '–' : (a / b).toFixed(2)
}

/** What a reader must know before trusting a row. */
function rowNotes(rows: readonly ResultRecord[], failures: number, isRate: boolean): string {
  const notes: string[] = []
  const gen = numbers(rows, (r) => r.cpu.generator)
  const redis = numbers(rows, (r) => r.cpu.redis)
  // a busy generator caps a rate; it does not change a memory figure
  if (!isRate) {
    // nothing to say about the generator
  } else if (gen.length > 0 && median(gen) >= SATURATED_PCT)
    notes.push(`generator saturated (${Math.round(median(gen))} % CPU): a lower bound`)
  else if (gen.length > 0 && redis.length > 0 && median(gen) + median(redis) >= 95) {
    notes.push(
      `generator core saturated (generator ${Math.round(median(gen))} % + redis ${Math.round(median(redis))} %)`,
    )
  }
  const lost = numbers(rows, (r) => r.figures.lost)
  if (lost.some((v) => v > 0)) notes.push(`lost ${lost.join('/')}`)
  const closed = numbers(rows, (r) => r.figures.closedClients)
  if (closed.some((v) => v > 0)) notes.push(`clients closed by the broker: ${closed.join('/')}`)
  const others = numbers(rows, (r) => r.cpu.others)
  if (others.length > 0 && median(others) >= 20) notes.push(`other processes used ${Math.round(median(others))} % CPU`)
  // a VM's neighbours: time the hypervisor gave to other guests slows everything down, unseen otherwise
  const steal = numbers(rows, (r) => r.cpu.steal)
  if (steal.length > 0 && median(steal) >= 10)
    notes.push(`the hypervisor took ${Math.round(median(steal))} % CPU (steal)`)
  if (failures > 0) notes.push(`${failures} run(s) failed`)
  return notes.join('; ') || '–'
}

function comparison(input: ReportInput, s: Scenario, kase: string): string {
  const mine = input.records.filter((r) => r.scenario === s.name && r.case === kase)
  const targets = input.targets.filter((t) => mine.some((r) => r.target === t) || failedRuns(input, s.name, t) > 0)
  const first = s.headline[0] as Metric
  const header = [
    'target',
    ...s.headline.map((m) => `${m.title} median (min–max)`),
    'runs',
    'FleetHub memory ÷ this',
    'FleetHub redis ÷ this',
    `issue anchor (${first.title})`,
    'generator CPU %',
    'notes',
  ]
  const rows = targets.map((t) => {
    const rs = mine.filter((r) => r.target === t)
    return [
      t,
      ...s.headline.map((m) =>
        medianCell(
          numbers(rs, (r) => r.figures[m.key]),
          m.digits,
        ),
      ),
      String(rs.length),
      ratioCell(input.records, s.name, first, kase, 'fleethub/memory', t),
      ratioCell(input.records, s.name, first, kase, 'fleethub/redis', t),
      anchorCell(s.name, first, t),
      medianCell(
        numbers(rs, (r) => r.cpu.generator),
        0,
      ),
      rowNotes(rs, failedRuns(input, s.name, t), first.better === 'higher'),
    ]
  })
  return markdownTable(header, rows)
}

function failedRuns(input: ReportInput, scenario: string, target: string): number {
  return input.failures.filter((f) => f.scenario === scenario && f.target === target).length
}

function details(input: ReportInput, s: Scenario): string {
  const mine = input.records.filter((r) => r.scenario === s.name)
  const cases = casesOf(mine)
  const rows: string[][] = []
  for (const kase of cases) {
    for (const t of input.targets) {
      const rs = mine.filter((r) => r.target === t && r.case === kase)
      if (rs.length === 0) continue
      rows.push([cases.length > 1 ? `${t} · ${kase}` : t, ...s.columns.map((c) => c.cell(rs))])
    }
  }
  return rows.length > 0 ? markdownTable(['target', ...s.columns.map((c) => c.title)], rows) : ''
}

function barChart(input: ReportInput, s: Scenario, kase: string, m: Metric): string {
  const mine = input.records.filter((r) => r.scenario === s.name && r.case === kase)
  const bars: Bar[] = []
  for (const t of input.targets) {
    const v = numbers(
      mine.filter((r) => r.target === t),
      (r) => r.figures[m.key],
    )
    if (v.length === 0) continue
    const sp = spread(v)
    const a = issueAnchor(s.name, m.key, t)
    bars.push({
      label: t,
      value: sp.median,
      ...(v.length > 1 ? { min: sp.min, max: sp.max } : {}),
      ...(typeof a === 'number' ? { anchor: a } : {}),
      color: TARGET_COLORS[t] ?? '#888',
    })
  }
  const better = m.better === 'higher' ? 'higher is better' : 'lower is better'
  return barChartSvg({
    title: s.headline.length > 1 ? `${s.title}: ${m.title}` : s.title,
    unit: `${m.unit} (${better}; bar: median, whisker: min–max, red dashes: issue anchor)`,
    bars,
  })
}

function lineChart(input: ReportInput, s: Scenario, kase: string): string | undefined {
  const mine = input.records.filter((r) => r.scenario === s.name && r.case === kase && r.series?.rssMiB)
  if (mine.length === 0) return undefined
  const series = input.targets.flatMap((t) => {
    const r = mine.find((x) => x.target === t)
    return r?.series?.rssMiB
      ? [
          {
            label: t,
            color: TARGET_COLORS[t] ?? '#888',
            points: r.series.rssMiB.map(([ms, v]) => [ms / 1000, v] as [number, number]),
          },
        ]
      : []
  })
  const f = mine[0]?.figures ?? {}
  const from = typeof f.overloadFromS === 'number' ? f.overloadFromS : undefined
  const to = typeof f.overloadToS === 'number' ? f.overloadToS : undefined
  return lineChartSvg({
    title: `${s.name} ${kase}: broker RSS (first run of each target)`,
    xUnit: 's',
    yUnit: 'RSS MiB',
    series,
    ...(from !== undefined && to !== undefined ? { bands: [{ from, to, label: 'open-loop publishers' }] } : {}),
  })
}

function summary(input: ReportInput): string {
  const scenarios = input.scenarios.filter((s) => s.headline.length > 0)
  const header = ['scenario', ...input.targets, 'issue anchors: Mosquitto / Aedes memory / Aedes redis']
  const rows = scenarios.flatMap((s) => {
    const m = s.headline[0] as Metric
    return casesOf(input.records.filter((r) => r.scenario === s.name)).map((kase) => [
      `${s.name}${kase === 'main' ? '' : ` · ${kase}`} (${m.title})`,
      ...input.targets.map((t) => {
        const v = medianOf(input.records, s.name, t, m.key, kase)
        return v === undefined ? '–' : formatNumber(v, m.digits)
      }),
      ['mosquitto', 'aedes/memory', 'aedes/redis'].map((t) => anchorCell(s.name, m, t)).join(' / '),
    ])
  })
  return markdownTable(header, rows)
}

function goals(input: ReportInput): string {
  const ran = new Set(input.scenarios.map((s) => s.name))
  const rows = evaluateGoals(input.records)
    .filter((g) => ran.has(g.scenario))
    .map((g) => [g.goal, g.measured, g.met === undefined ? '–' : g.met ? 'met' : '**not met**'])
  return markdownTable(['target (from the issue)', 'measured (medians)', ''], rows)
}

export function renderReport(input: ReportInput): RenderedReport {
  const m = input.machine
  const charts: RenderedReport['charts'] = []
  const parts: string[] = [
    '# FleetHub benchmark report',
    '',
    `- command: \`${input.command}\``,
    `- started ${input.startedAt}, wall time ${Math.round(input.wallMs / 1000)} s`,
    `- commit ${commitText(input.git)}; FleetHub build ${input.builds.join(', ') || '–'}`,
    `- machine: ${m.cpuModel} × ${m.cores}, ${m.memoryGiB} GiB, ${m.os}, node ${m.node}; ` +
      (m.pinned ? 'broker pinned to CPU 0, generator and redis-server to CPU 1' : 'not pinned (no taskset or one CPU)'),
    `- versions: ${Object.entries(input.versions)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `- each cell: median over the runs (min–max); ratios are of medians measured in this invocation, runs interleaved across brokers`,
    ...(input.discarded
      ? [
          `- ${input.discarded} measurements were repeated because other processes used more than 25 % of a core meanwhile; ` +
            'the least disturbed attempt is shown, the "others CPU %" columns say how quiet it was',
        ]
      : []),
    ...(input.builds.length > 1
      ? [
          `- dist/ was rebuilt ${input.builds.length - 1} times during the invocation (a shared checkout): the FleetHub ` +
            'figures span those builds; each raw result names its build',
        ]
      : []),
    ...input.notes.map((n) => `- note: ${n}`),
    '',
  ]
  const goalTable = goals(input)
  if (goalTable.includes('\n| ') && goalTable.split('\n').length > 2) parts.push('## Targets', '', goalTable, '')
  if (input.scenarios.some((s) => s.headline.length > 0)) parts.push('## Summary', '', summary(input), '')
  for (const s of input.scenarios) {
    const mine = input.records.filter((r) => r.scenario === s.name)
    parts.push(`## ${s.title}`, '', s.description, '')
    for (const kase of casesOf(mine)) {
      // case names may hold spaces, `·` or `/` (`one node · 1,000/s`): file names get letters, digits, - and .
      const suffix = casesOf(mine).length > 1 || kase !== 'main' ? `-${kase.replace(/[^A-Za-z0-9.]+/g, '-')}` : ''
      if (s.headline.length > 0) {
        if (kase !== 'main') parts.push(`### ${kase}`, '')
        parts.push(comparison(input, s, kase), '')
        s.headline.forEach((m, i) => {
          const file = `charts/${s.name}${suffix}${i > 0 ? `-${m.key}` : ''}.svg`
          charts.push({ file, svg: barChart(input, s, kase, m) })
          parts.push(`![${s.title}${suffix ? `, ${kase}` : ''}, ${m.title}](${file})`, '')
        })
      } else {
        const svg = lineChart(input, s, kase)
        if (svg) {
          const file = `charts/${s.name}${suffix}.svg`
          charts.push({ file, svg })
          parts.push(`![${s.title}, ${kase}](${file})`, '')
        }
      }
    }
    const table = details(input, s)
    if (table) parts.push('Details:', '', table, '')
    const failed = input.failures.filter((f) => f.scenario === s.name)
    for (const f of failed) parts.push(`- **failed**: ${f.target} run ${f.run}: ${f.error.split('\n')[0]}`)
    if (failed.length > 0) parts.push('')
  }
  return { markdown: `${parts.join('\n')}\n`, charts }
}

/** Writes report.md and its charts into `dir`; returns the report's path. */
export function writeReport(rendered: RenderedReport, dir: string): string {
  const charts = path.join(dir, 'charts')
  mkdirSync(charts, { recursive: true })
  // the charts of an earlier report must not pass for this one's
  for (const f of readdirSync(charts)) if (f.endsWith('.svg')) rmSync(path.join(charts, f))
  for (const c of rendered.charts) writeFileSync(path.join(dir, c.file), c.svg)
  const file = path.join(dir, 'report.md')
  writeFileSync(file, rendered.markdown)
  return file
}
