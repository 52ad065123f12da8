// Monotonic time for measurements (wall-clock time jumps would corrupt rates) and plain waiting.
import { performance } from 'node:perf_hooks'

/** Milliseconds on a monotonic clock, with sub-millisecond resolution. */
export function nowMs(): number {
  return performance.now()
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
