// Memory returns to its baseline after a burst. A connection storm or an overload leaves garbage in
// V8's old generation, which it collects only when the old generation grows further, so an idle
// broker used to keep that memory forever. When the event loop has been mostly idle for a while and
// the heap has grown since the last full collection, this runs one (a short pause, at a quiet time).
import v8 from 'node:v8'
import { runInNewContext } from 'node:vm'

export interface IdleGcOptions {
  /** How often to look. @default 2000 */
  intervalMs?: number
  /** Heap growth since the last collection that makes one worth it. @default 32 MiB */
  growthBytes?: number
  /** Event-loop utilization under which the broker counts as idle. @default 0.1 */
  idleBelow?: number
}

let gc: (() => void) | undefined

function collector(): () => void {
  if (!gc) {
    // `--expose-gc` at run time, without a command-line flag; gc() itself is then reachable from a
    // fresh context
    v8.setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  return gc
}

/** Starts the idle collector; returns its stop function. */
export function startIdleGc(opts: IdleGcOptions = {}): () => void {
  const intervalMs = opts.intervalMs ?? 2000
  const growth = opts.growthBytes ?? 32 * 1024 * 1024
  const idleBelow = opts.idleBelow ?? 0.1
  const collect = collector()
  let baseline = v8.getHeapStatistics().used_heap_size
  let last = performance.eventLoopUtilization()
  const timer = setInterval(function collectWhenIdle() {
    const now = performance.eventLoopUtilization()
    const busy = performance.eventLoopUtilization(now, last).utilization
    last = now
    const used = v8.getHeapStatistics().used_heap_size
    if (busy < idleBelow && used > baseline + growth) {
      // a full collection that also compacts everything that survived, so the emptied pages go
      // back to the system (V8 otherwise compacts only its most fragmented pages)
      v8.setFlagsFromString('--compact-on-every-full-gc')
      try {
        collect()
      } finally {
        v8.setFlagsFromString('--no-compact-on-every-full-gc')
      }
      baseline = v8.getHeapStatistics().used_heap_size
    } else if (used < baseline) {
      baseline = used
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
