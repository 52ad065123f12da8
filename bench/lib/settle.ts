// Waiting for quiet before and after a measurement. Work a phase triggers may outlive its last
// answer (the broker writes presence and publishes events after CONNACK), and the next phase must
// not start on top of that backlog; how long it took is itself a figure. On a shared machine, other
// people's processes are waited out too, within a bound.
import { type CpuReader, openCpuWindow } from './cpu-time.js'
import { nowMs, sleep } from './time.js'

export interface QuietOptions {
  /** CPU use, in percent of one core, below which a slice counts as quiet. */
  belowPct: number
  /** Length of one measured slice (the clock-tick resolution of /proc is 10 ms). */
  sliceMs: number
  timeoutMs: number
}

export const QUIET: QuietOptions = { belowPct: 10, sliceMs: 200, timeoutMs: 30_000 }

/**
 * Waits for a slice of time in which the process used less than `belowPct` of a core. Returns how
 * long the busy time before that quiet slice lasted, in ms, or undefined when it never went quiet.
 */
export async function waitQuiet(read: CpuReader, opts: QuietOptions = QUIET): Promise<number | undefined> {
  const startedAt = nowMs()
  let before = read()
  let sliceStart = startedAt
  while (nowMs() - startedAt < opts.timeoutMs) {
    await sleep(opts.sliceMs)
    const after = read()
    const now = nowMs()
    if (before === undefined || after === undefined) return undefined
    const pct = ((after - before) / ((now - sliceStart) / 1000)) * 100
    if (pct < opts.belowPct) return sliceStart - startedAt
    before = after
    sliceStart = now
  }
  return undefined
}

export interface MachineQuiet {
  /** True when a quiet slice was found before the time-out. */
  quiet: boolean
  waitedMs: number
  /** CPU use of other processes in the last slice, in percent of one core. */
  othersPct: number
}

/**
 * On a shared machine, waits (bounded) for a slice of time in which processes other than `ours` use less
 * than `belowPct` of a core, so a phase does not start in the middle of someone else's build.
 */
export async function waitMachineQuiet(
  ours: Record<string, CpuReader>,
  belowPct = 20,
  timeoutMs = 30_000,
  sliceMs = 1000,
): Promise<MachineQuiet> {
  const startedAt = nowMs()
  let othersPct = Number.NaN
  while (nowMs() - startedAt < timeoutMs) {
    const window = openCpuWindow(ours)
    await sleep(sliceMs)
    othersPct = window.close().others ?? 0
    if (othersPct < belowPct) return { quiet: true, waitedMs: nowMs() - startedAt, othersPct }
  }
  return { quiet: false, waitedMs: nowMs() - startedAt, othersPct }
}
