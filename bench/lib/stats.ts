// Summary statistics. Percentiles use the nearest-rank method: every reported value is one that was
// actually measured, never an interpolation between two.

/** The p-th percentile (0-100) by nearest rank; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number
}

/** The middle value (mean of the two middle ones for an even count); NaN for no values. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export interface Spread {
  median: number
  min: number
  max: number
}

export function spread(values: readonly number[]): Spread {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
}

/** Several nearest-rank percentiles of many samples (one sort of a typed copy). */
export function percentilesOf(samples: Float64Array, ps: readonly number[]): number[] {
  if (samples.length === 0) return ps.map(() => Number.NaN)
  const sorted = Float64Array.from(samples).sort()
  return ps.map((p) => {
    const rank = Math.ceil((p / 100) * sorted.length)
    return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number
  })
}
