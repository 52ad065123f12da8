// Open-file limits. Every generator client is a socket here and one in the broker, so the idle
// memory scenario needs more than the usual 1,024. The soft limit of this process is raised to its
// hard limit with prlimit (no privilege needed for that); children inherit it at spawn, so the
// brokers get it too.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface FdLimit {
  soft: number
  hard: number
}

export function fdLimit(pid: number | 'self' = 'self'): FdLimit | undefined {
  try {
    const m = /Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
    if (!m) return undefined
    const n = (s: string | undefined) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s))
    return { soft: n(m[1]), hard: n(m[2]) }
  } catch {
    return undefined
  }
}

/** Raises this process's soft limit to the hard one; returns the soft limit in force afterwards. */
export function raiseFdLimit(): number {
  const before = fdLimit()
  if (!before) return 1024
  if (before.soft >= before.hard) return before.soft
  try {
    const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited'
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], {
      stdio: 'pipe',
      timeout: 5000,
    })
  } catch {
    // no prlimit: keep the soft limit, the scenarios scale their client counts to it
  }
  return fdLimit()?.soft ?? before.soft
}

/** Clients a scenario may open: each costs a descriptor here, and some margin stays for the rest. */
export function clientBudget(limit: number): number {
  return Math.max(100, Math.floor(limit - 200))
}
