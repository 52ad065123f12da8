// CPU time of the processes in a measurement, so a saturated broker (near 100 % of its core) or a
// saturated generator (which would cap the rate it reports) is visible next to every figure.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { nowMs } from './time.js'

/** Reads a process's CPU time (user + system) in seconds, or undefined once it is gone. */
export type CpuReader = () => number | undefined

let ticksPerSecond: number | undefined

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** CPU time of another process from /proc/<pid>/stat (all its threads; Linux only). */
export function procCpu(pid: number): CpuReader {
  return function readProcStat() {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      return undefined
    }
    // the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const utime = Number(fields[11]) // field 14
    const stime = Number(fields[12]) // field 15
    return (utime + stime) / clockTicks()
  }
}

/** CPU time of this process. */
export function selfCpu(): CpuReader {
  return function readOwnUsage() {
    const u = process.cpuUsage()
    return (u.user + u.system) / 1e6
  }
}

/** Columns of the aggregate `cpu` line of /proc/stat, in order. */
const STAT_FIELDS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const
type StatField = (typeof STAT_FIELDS)[number]

/** Time the whole machine (all CPUs) spent in some /proc/stat columns, in seconds. */
function machineTime(fields: readonly StatField[]): CpuReader {
  return function readProcStatTotals() {
    let stat: string
    try {
      stat = readFileSync('/proc/stat', 'utf8')
    } catch {
      return undefined
    }
    const values = stat.slice(0, stat.indexOf('\n')).split(/\s+/).slice(1).map(Number)
    let ticks = 0
    for (const f of fields) ticks += values[STAT_FIELDS.indexOf(f)] ?? 0
    return ticks / clockTicks()
  }
}

/**
 * What the machine did besides the named processes: `tasks` is the time of all processes (user and
 * system), `irq` interrupt work (on loopback, mostly the benchmark's own network traffic), `steal`
 * time the hypervisor gave to other guests.
 */
const MACHINE_READERS: Record<string, CpuReader> = {
  tasks: machineTime(['user', 'nice', 'system']),
  irq: machineTime(['irq', 'softirq']),
  steal: machineTime(['steal']),
}

export interface CpuWindow {
  /**
   * CPU use since the window opened, in percent of one core: per named process, `others` for every
   * other process, `irq` and `steal` (see MACHINE_READERS). High `others` or `steal` means the
   * figures were taken on a busy machine.
   */
  close(): Record<string, number>
}

/** Starts measuring the CPU use of named processes, and of the machine, over a stretch of wall time. */
export function openCpuWindow(readers: Record<string, CpuReader>): CpuWindow {
  const all: Record<string, CpuReader> = { ...readers, ...MACHINE_READERS }
  const startedAt = nowMs()
  const start = Object.fromEntries(Object.entries(all).map(([name, read]) => [name, read()]))
  return {
    close() {
      const seconds = (nowMs() - startedAt) / 1000
      const out: Record<string, number> = {}
      for (const [name, read] of Object.entries(all)) {
        const before = start[name]
        const after = read()
        if (before === undefined || after === undefined || seconds <= 0) continue
        out[name] = ((after - before) / seconds) * 100
      }
      if (out.tasks !== undefined) {
        let ours = 0
        for (const name of Object.keys(readers)) ours += out[name] ?? 0
        out.others = Math.max(0, out.tasks - ours)
        delete out.tasks
      }
      return out
    },
  }
}
