// One measurement window of the request/answer scenarios: a warm-up, then a window during which
// latency samples are recorded, with the scenario's counters read at both ends and the CPU use of
// every process measured over it.
import { type LoopDelay, loopDelay, scrapeMetrics } from './broker-metrics.js'
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
  /** The broker's HTTP API: its event-loop delay over the window is measured (loopDelay). */
  metricsUrl?: string
}

export interface MeasuredWindow<T> {
  before: T
  after: T
  seconds: number
  /** CPU use over the window, percent of one core by role (see openCpuWindow). */
  cpu: Record<string, number>
  /** The broker's event-loop delay over the window, when metricsUrl was given. */
  loop?: LoopDelay
}

export async function measureWindow<T>(o: WindowOptions<T>): Promise<MeasuredWindow<T>> {
  // a scrape at the start of the warm-up too: a node's first /metrics runs cold code (57–76 ms
  // measured, against 4–14 ms warm), and the commands queued behind it landed in the window
  if (o.metricsUrl) await scrapeMetrics(o.metricsUrl)
  await sleep(o.warmupMs)
  if (o.metricsUrl) await scrapeMetrics(o.metricsUrl) // resets the event-loop histogram
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
  const loop = o.metricsUrl ? loopDelay(await scrapeMetrics(o.metricsUrl)) : undefined
  return { before, after, seconds, cpu, ...(loop ? { loop } : {}) }
}
