// Resident memory of a process from /proc/<pid>/status (VmRSS): what the operating system actually
// gives the broker, whatever its allocator or garbage collector believes.
import { readFileSync } from 'node:fs'
import { nowMs, sleep } from './time.js'

/** VmRSS in KiB, or undefined once the process is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

export interface StableRss {
  kib: number
  /** False when it was still moving at the time-out (the value is then the last one read). */
  stable: boolean
  waitedMs: number
}

const SAMPLE_MS = 250

/**
 * Waits until RSS stays within `toleranceKiB` for `stableMs` (bounded by `timeoutMs`) and returns
 * the median of that stable stretch.
 */
export async function waitRssStable(
  pid: number,
  stableMs: number,
  timeoutMs: number,
  toleranceKiB = 256,
): Promise<StableRss> {
  const startedAt = nowMs()
  const window: number[] = []
  const needed = Math.max(2, Math.ceil(stableMs / SAMPLE_MS) + 1)
  let last = 0
  while (nowMs() - startedAt < timeoutMs) {
    const v = rssKiB(pid)
    if (v === undefined) throw new Error(`process ${pid} is gone`)
    last = v
    window.push(v)
    if (window.length > needed) window.shift()
    if (window.length === needed && Math.max(...window) - Math.min(...window) <= toleranceKiB) {
      const sorted = [...window].sort((a, b) => a - b)
      return { kib: sorted[sorted.length >> 1] as number, stable: true, waitedMs: nowMs() - startedAt }
    }
    await sleep(SAMPLE_MS)
  }
  return { kib: last, stable: false, waitedMs: nowMs() - startedAt }
}

export interface RssSampler {
  /** [ms since start, MiB] every `everyMs`; a process that is gone stops the samples. */
  readonly points: [number, number][]
  stop(): void
}

export function sampleRss(pid: number, everyMs: number, origin: number): RssSampler {
  const points: [number, number][] = []
  const take = () => {
    const v = rssKiB(pid)
    if (v !== undefined) points.push([nowMs() - origin, v / 1024])
  }
  take()
  const timer = setInterval(take, everyMs)
  return {
    points,
    stop: () => clearInterval(timer),
  }
}
