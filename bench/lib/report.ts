// Markdown table pieces: columns that summarise the runs of one target as `median (min–max)`, so
// run-to-run noise is visible next to every figure.
import type { ResultRecord } from './results.js'
import { spread } from './stats.js'

export interface Column {
  title: string
  cell(records: readonly ResultRecord[]): string
}

export function formatNumber(n: number, digits: number): string {
  if (!Number.isFinite(n)) return '–'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function numbers(records: readonly ResultRecord[], pick: (r: ResultRecord) => unknown): number[] {
  return records.map(pick).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
}

/** `median (min–max)` over the runs, or the value for one run; `–` for none. */
export function medianCell(values: readonly number[], digits: number): string {
  if (values.length === 0) return '–'
  const s = spread(values)
  const mid = formatNumber(s.median, digits)
  return values.length === 1 || s.min === s.max
    ? mid
    : `${mid} (${formatNumber(s.min, digits)}–${formatNumber(s.max, digits)})`
}

export function medianColumn(title: string, pick: (r: ResultRecord) => unknown, digits = 0): Column {
  return { title, cell: (records) => medianCell(numbers(records, pick), digits) }
}

/** p50, p90, p99 and max of a round trip (figures latencyP50Ms, latencyP90Ms, latencyP99Ms, latencyMaxMs). */
export function latencyColumns(): Column[] {
  return [
    medianColumn('p50 ms', (r) => r.figures.latencyP50Ms, 2),
    medianColumn('p90 ms', (r) => r.figures.latencyP90Ms, 2),
    medianColumn('p99 ms', (r) => r.figures.latencyP99Ms, 2),
    medianColumn('max ms', (r) => r.figures.latencyMaxMs, 1),
  ]
}

/** CPU use by role over the measurement; `brokers` titles the broker's column(s) (a cluster has several). */
export function cpuColumns(brokers: Record<string, string> = { broker: 'broker CPU %' }): Column[] {
  return [
    ...Object.entries(brokers).map(([role, title]) => medianColumn(title, (r) => r.cpu[role])),
    medianColumn('generator CPU %', (r) => r.cpu.generator),
    medianColumn('redis CPU %', (r) => r.cpu.redis),
    medianColumn('others CPU %', (r) => r.cpu.others),
  ]
}

/** Counters per record (such as failures by cause), summed over the runs. */
export function countsColumn(title: string, pick: (r: ResultRecord) => unknown): Column {
  return {
    title,
    cell(records) {
      const sums: Record<string, number> = {}
      for (const r of records) {
        const counts = pick(r)
        if (!counts || typeof counts !== 'object') continue
        for (const [k, v] of Object.entries(counts as Record<string, number>)) sums[k] = (sums[k] ?? 0) + v
      }
      const parts = Object.entries(sums).map(([k, v]) => `${k}: ${v}`)
      return parts.length === 0 ? '0' : parts.join(', ')
    },
  }
}

/** A value per run, joined: for things that are not numbers (yes/no, a reason). */
export function listColumn(title: string, pick: (r: ResultRecord) => unknown): Column {
  return {
    title,
    cell(records) {
      const values = records.map(pick).filter((v) => v !== undefined && v !== '')
      if (values.length === 0) return '–'
      const distinct = [...new Set(values.map(String))]
      return distinct.length === 1 ? (distinct[0] as string) : values.map(String).join(' / ')
    },
  }
}

/** A Markdown table; `|` inside cells is escaped. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
  const line = (cells: readonly string[]) => `| ${cells.map(esc).join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}
