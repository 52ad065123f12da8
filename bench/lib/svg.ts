// A small hand-written SVG chart generator (no dependencies): horizontal bar charts with min–max
// whiskers and an optional anchor mark per bar, and line charts for time series. Plain SVG 1.1 with
// inline styles, so the files render on GitHub and in any browser.

export interface Bar {
  label: string
  value: number
  min?: number
  max?: number
  /** A reference value drawn as a dashed tick on the bar's row (the anchor). */
  anchor?: number
  color: string
}

export interface BarChart {
  title: string
  unit: string
  bars: readonly Bar[]
  note?: string
}

export interface Series {
  label: string
  color: string
  points: readonly [number, number][]
}

export interface LineChart {
  title: string
  xUnit: string
  yUnit: string
  series: readonly Series[]
  /** Shaded stretches of the x axis, e.g. the overload phase. */
  bands?: readonly { from: number; to: number; label: string }[]
}

const FONT = 'font-family="Helvetica,Arial,sans-serif"'
const WIDTH = 760

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** The root element with a title (screen readers, and the tooltip of the whole image) and a white background. */
function open(title: string, height: number): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img">`,
    `<title>${esc(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
  ]
}

/** A round axis maximum and tick step above `max`. */
function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 }
  const raw = max / ticks
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag
  return { top: Math.ceil(max / step) * step, step }
}

function tickLabel(v: number): string {
  if (v >= 1_000_000) return `${+(v / 1_000_000).toFixed(2)}M`
  if (v >= 10_000) return `${+(v / 1000).toFixed(1)}k`
  return `${+v.toFixed(3)}`
}

function valueLabel(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : `${+v.toPrecision(3)}`
}

export function barChartSvg(chart: BarChart): string {
  const left = 170
  const right = 90
  const top = 44
  const row = 26
  const plotW = WIDTH - left - right
  const height = top + chart.bars.length * row + 46 + (chart.note ? 16 : 0)
  const max = Math.max(...chart.bars.flatMap((b) => [b.value, b.max ?? 0, b.anchor ?? 0]), 0)
  const { top: axisTop, step } = niceScale(max)
  const x = (v: number) => left + (Math.max(0, v) / axisTop) * plotW
  const out: string[] = [
    ...open(chart.title, height),
    `<text x="${left}" y="22" ${FONT} font-size="15" font-weight="bold">${esc(chart.title)}</text>`,
  ]
  const plotBottom = top + chart.bars.length * row
  for (let v = 0; v <= axisTop + step / 2; v += step) {
    out.push(
      `<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${plotBottom}" stroke="#e4e4e4"/>`,
      `<text x="${x(v)}" y="${plotBottom + 16}" ${FONT} font-size="11" text-anchor="middle" fill="#555">${tickLabel(v)}</text>`,
    )
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${plotBottom + 34}" ${FONT} font-size="12" text-anchor="middle">${esc(chart.unit)}</text>`,
  )
  chart.bars.forEach((b, i) => {
    const y = top + i * row
    const mid = y + row / 2
    out.push(
      `<text x="${left - 8}" y="${mid + 4}" ${FONT} font-size="12" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${left}" y="${y + 4}" width="${Math.max(0, x(b.value) - left)}" height="${row - 8}" fill="${b.color}"/>`,
    )
    if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
      out.push(
        `<line x1="${x(b.min)}" y1="${mid}" x2="${x(b.max)}" y2="${mid}" stroke="#222" stroke-width="1.2"/>`,
        `<line x1="${x(b.min)}" y1="${mid - 5}" x2="${x(b.min)}" y2="${mid + 5}" stroke="#222" stroke-width="1.2"/>`,
        `<line x1="${x(b.max)}" y1="${mid - 5}" x2="${x(b.max)}" y2="${mid + 5}" stroke="#222" stroke-width="1.2"/>`,
      )
    }
    if (b.anchor !== undefined) {
      out.push(
        `<line x1="${x(b.anchor)}" y1="${y + 1}" x2="${x(b.anchor)}" y2="${y + row - 1}" stroke="#c00" stroke-width="2" stroke-dasharray="3,2"/>`,
      )
    }
    const labelX = Math.max(x(b.value), b.max !== undefined ? x(b.max) : 0) + 6
    out.push(`<text x="${labelX}" y="${mid + 4}" ${FONT} font-size="11" fill="#222">${valueLabel(b.value)}</text>`)
  })
  if (chart.note) {
    out.push(`<text x="${left}" y="${height - 8}" ${FONT} font-size="11" fill="#555">${esc(chart.note)}</text>`)
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

export function lineChartSvg(chart: LineChart): string {
  const left = 70
  const right = 180
  const top = 44
  const plotH = 260
  const plotW = WIDTH - left - right
  const height = top + plotH + 50
  const all = chart.series.flatMap((s) => s.points)
  const xMax = Math.max(...all.map((p) => p[0]), 1)
  const y = niceScale(Math.max(...all.map((p) => p[1]), 1))
  const xs = niceScale(xMax, 8)
  const px = (v: number) => left + (v / xs.top) * plotW
  const py = (v: number) => top + plotH - (v / y.top) * plotH
  const out: string[] = [
    ...open(chart.title, height),
    `<text x="${left}" y="22" ${FONT} font-size="15" font-weight="bold">${esc(chart.title)}</text>`,
  ]
  for (const b of chart.bands ?? []) {
    out.push(
      `<rect x="${px(b.from)}" y="${top}" width="${Math.max(0, px(b.to) - px(b.from))}" height="${plotH}" fill="#fbeaea"/>`,
      `<text x="${px(b.from) + 4}" y="${top + 14}" ${FONT} font-size="11" fill="#a33">${esc(b.label)}</text>`,
    )
  }
  for (let v = 0; v <= y.top + y.step / 2; v += y.step) {
    out.push(
      `<line x1="${left}" y1="${py(v)}" x2="${left + plotW}" y2="${py(v)}" stroke="#e4e4e4"/>`,
      `<text x="${left - 6}" y="${py(v) + 4}" ${FONT} font-size="11" text-anchor="end" fill="#555">${tickLabel(v)}</text>`,
    )
  }
  for (let v = 0; v <= xs.top + xs.step / 2; v += xs.step) {
    out.push(
      `<text x="${px(v)}" y="${top + plotH + 16}" ${FONT} font-size="11" text-anchor="middle" fill="#555">${tickLabel(v)}</text>`,
    )
  }
  out.push(
    `<text x="${left + plotW / 2}" y="${top + plotH + 36}" ${FONT} font-size="12" text-anchor="middle">${esc(chart.xUnit)}</text>`,
    `<text x="14" y="${top + plotH / 2}" ${FONT} font-size="12" text-anchor="middle" transform="rotate(-90 14 ${top + plotH / 2})">${esc(chart.yUnit)}</text>`,
  )
  chart.series.forEach((s, i) => {
    if (s.points.length > 0) {
      const d = s.points.map(([t, v], k) => `${k === 0 ? 'M' : 'L'}${px(t).toFixed(1)},${py(v).toFixed(1)}`).join(' ')
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`)
    }
    const ly = top + 10 + i * 18
    out.push(
      `<line x1="${left + plotW + 14}" y1="${ly}" x2="${left + plotW + 34}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`,
      `<text x="${left + plotW + 40}" y="${ly + 4}" ${FONT} font-size="12">${esc(s.label)}</text>`,
    )
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

/** One color per target, the same in every chart. */
export const TARGET_COLORS: Record<string, string> = {
  'fleethub/memory': '#1f5fa8',
  'fleethub/redis': '#6fa8dc',
  'aedes/memory': '#e07b00',
  'aedes/redis': '#f6b26b',
  mosquitto: '#38a169',
}
