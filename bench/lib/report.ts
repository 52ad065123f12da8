// The Markdown summary printed after a scenario: one row per case, each cell the median over the
// runs with the min-max range behind it, so run-to-run noise is visible next to every figure.
import type { ResultRecord } from './results.js'
import { spread } from './stats.js'

export interface Column {
  title: string
  cell(records: readonly ResultRecord[]): string
}

function formatNumber(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** A column of one number per record: `median (min–max)` over the runs, or the value for one run. */
export function medianColumn(title: string, pick: (r: ResultRecord) => number | undefined, digits = 0): Column {
  return {
    title,
    cell(records) {
      const values = records.map(pick).filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
      if (values.length === 0) return '–'
      const s = spread(values)
      const mid = formatNumber(s.median, digits)
      return values.length === 1 ? mid : `${mid} (${formatNumber(s.min, digits)}–${formatNumber(s.max, digits)})`
    },
  }
}

/** A column of counters per record (such as failures by cause), summed over the runs. */
export function countsColumn(title: string, pick: (r: ResultRecord) => Record<string, number> | undefined): Column {
  return {
    title,
    cell(records) {
      const sums: Record<string, number> = {}
      for (const r of records) for (const [k, v] of Object.entries(pick(r) ?? {})) sums[k] = (sums[k] ?? 0) + v
      const parts = Object.entries(sums).map(([k, v]) => `${k}: ${v}`)
      return parts.length === 0 ? '0' : parts.join(', ')
    },
  }
}

/** Groups records by case, in order of first appearance, and renders the table. */
export function markdownTable(records: readonly ResultRecord[], columns: readonly Column[]): string {
  const cases = [...new Set(records.map((r) => r.case))]
  const header = ['case', ...columns.map((c) => c.title)]
  const rows = cases.map((name) => {
    const mine = records.filter((r) => r.case === name)
    return [name, ...columns.map((c) => c.cell(mine))]
  })
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}
