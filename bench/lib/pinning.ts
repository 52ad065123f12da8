// CPU pinning with taskset: the broker gets CPU 0 to itself, the load generator (this process) and
// helpers such as redis-server share CPU 1. Without pinning, the scheduler moves the broker and the
// generator across cores between runs and the figures wander. On a machine with one CPU or without
// taskset, nothing is pinned and the records say so.
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

export const BROKER_CPU = 0
export const GENERATOR_CPU = 1

let available: boolean | undefined

/** True when taskset exists and there are at least two CPUs to separate broker and generator. */
export function canPin(): boolean {
  if (available === undefined) {
    available = availableParallelism() >= 2 && commandWorks('taskset', ['-p', String(process.pid)])
  }
  return available
}

function commandWorks(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 5000 })
    return true
  } catch {
    return false
  }
}

/** The command line that runs `cmd` on one CPU (taskset execs it, so the pid stays the same). */
export function onCpu(cpu: number, cmd: string, args: readonly string[]): { cmd: string; args: string[] } {
  return canPin() ? { cmd: 'taskset', args: ['-c', String(cpu), cmd, ...args] } : { cmd, args: [...args] }
}

/** Pins this process, all of its threads (libuv pool, GC helpers) included, to one CPU. */
export function pinSelf(cpu: number): boolean {
  if (!canPin()) return false
  return commandWorks('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)])
}
