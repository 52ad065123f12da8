// One measurement window of the request/answer scenarios: a warm-up, then a window during which
// latency samples are recorded, with the scenario's counters read at both ends and the CPU use of
// every process measured over it.
import { type CpuReader, openCpuWindow } from './cpu-time.js'
import type { Samples } from './stats.js'
import { nowMs, sleep } from './time.js'

export interface WindowOptions<T> {
  warmupMs: number
  measureMs: number
  readers: Record<string, CpuReader>
  /** Cleared when the window opens, recording only during it. */
  latency: Samples
  /** The scenario's counters, read when the window opens and when it closes. */
  snapshot(): T
}

export interface MeasuredWindow<T> {
  before: T
  after: T
  seconds: number
  /** CPU use over the window, percent of one core by role (see openCpuWindow). */
  cpu: Record<string, number>
}

export async function measureWindow<T>(o: WindowOptions<T>): Promise<MeasuredWindow<T>> {
  await sleep(o.warmupMs)
  o.latency.reset()
  o.latency.recording = true
  const before = o.snapshot()
  const cpuWindow = openCpuWindow(o.readers)
  const startedAt = nowMs()
  await sleep(o.measureMs)
  const cpu = cpuWindow.close()
  const seconds = (nowMs() - startedAt) / 1000
  const after = o.snapshot()
  o.latency.recording = false
  return { before, after, seconds, cpu }
}
