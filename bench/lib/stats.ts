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

/**
 * Latency samples kept while `recording` is on (the measurement window), in a preallocated array:
 * beyond its capacity, later samples are dropped from the percentiles (not from any count).
 */
export class Samples {
  recording = false
  private readonly values: Float64Array
  private count = 0

  constructor(capacity: number) {
    this.values = new Float64Array(capacity)
  }

  add(v: number): void {
    if (this.recording && this.count < this.values.length) this.values[this.count++] = v
  }

  all(): Float64Array {
    return this.values.subarray(0, this.count)
  }

  reset(): void {
    this.count = 0
  }

  /** p50, p99 (and any others asked for) of what was recorded; NaN for none. */
  percentiles(ps: readonly number[] = [50, 99]): number[] {
    return percentilesOf(this.all(), ps)
  }

  /** The figures of a round trip as the reports name them (see report.ts latencyColumns), in ms. */
  figures(): {
    latencyP50Ms: number
    latencyP90Ms: number
    latencyP99Ms: number
    latencyMaxMs: number
    samples: number
  } {
    const [p50, p90, p99, max] = this.percentiles([50, 90, 99, 100]) as [number, number, number, number]
    return { latencyP50Ms: p50, latencyP90Ms: p90, latencyP99Ms: p99, latencyMaxMs: max, samples: this.count }
  }
}

/** Counters by key (e.g. answers by status) gained between two snapshots; keys that did not move are left out. */
export function countsDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0)
  return out
}
