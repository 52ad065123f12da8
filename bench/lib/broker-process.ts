// A broker under test as a child process on the broker's CPU: its output is drained (a full pipe
// would stall it), lines that look like trouble are counted and the last ones kept, and how it
// ended is remembered. A broker that logs or dies under load is part of what a benchmark shows.
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { BROKER_CPU, onCpu } from './pinning.js'
import { hasExited, own, terminate } from './processes.js'

export interface BrokerProcessOptions {
  /** For messages and the list of owned processes, e.g. `fleethub broker`. */
  name: string
  cmd: string
  args: readonly string[]
  env?: NodeJS.ProcessEnv
  /** How long a graceful stop may take before SIGKILL. */
  stopGraceMs: number
  /** Classifies a stdout line: true when it reports a problem (stderr lines always count). */
  isProblem(line: string): boolean
}

export interface BrokerProcess {
  readonly pid: number
  readonly child: ChildProcess
  /** Problem lines so far, and the last few of them (a crash's stack trace ends up here). */
  problems(): { count: number; last: string[] }
  /** How the process ended (`code 1`, `SIGKILL`, with a note when the bench did not stop it), or undefined. */
  exitStatus(): string | undefined
  alive(): boolean
  /** Adds a listener of stdout lines; returns its removal. */
  watchLines(listener: (line: string) => void): () => void
  stop(): Promise<void>
}

const KEPT_LINES = 30

export function spawnBroker(opts: BrokerProcessOptions): BrokerProcess {
  const { cmd, args } = onCpu(BROKER_CPU, opts.cmd, opts.args)
  const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  child.on('error', () => {}) // a missing binary shows as an exit
  let stopRequested = false
  const stop = own(opts.name, child, () => {
    stopRequested = true
    return terminate(child, opts.stopGraceMs)
  })
  let count = 0
  const last: string[] = []
  const keep = (line: string) => {
    count++
    last.push(line)
    if (last.length > KEPT_LINES) last.shift()
  }
  const watchers = new Set<(line: string) => void>()
  // one reader per stream: closing a second readline on the same pipe would pause it
  createInterface({ input: child.stdout }).on('line', function onBrokerStdout(line) {
    for (const w of watchers) w(line)
    if (opts.isProblem(line)) keep(line)
  })
  createInterface({ input: child.stderr }).on('line', keep)
  return {
    pid: child.pid ?? -1,
    child,
    problems: () => ({ count, last: [...last] }),
    exitStatus() {
      if (!hasExited(child)) return undefined
      const how = child.signalCode ?? `code ${child.exitCode}`
      return stopRequested ? how : `${how}, not stopped by the bench`
    },
    alive: () => !hasExited(child),
    watchLines(listener) {
      watchers.add(listener)
      return () => watchers.delete(listener)
    },
    stop,
  }
}

/** Resolves once `ready` returns a value for a stdout line; rejects on exit or after `timeoutMs`. */
export function waitForLine<T>(
  proc: BrokerProcess,
  ready: (line: string) => T | undefined,
  timeoutMs: number,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const finish = (fn: () => void) => {
      clearTimeout(timer)
      unwatch()
      proc.child.off('exit', onExit)
      fn()
    }
    const timer = setTimeout(
      () => finish(() => reject(new Error(`not ready within ${timeoutMs} ms:\n${proc.problems().last.join('\n')}`))),
      timeoutMs,
    )
    function onExit(code: number | null, signal: string | null) {
      finish(() =>
        reject(new Error(`exited (${signal ?? code}) before it was ready:\n${proc.problems().last.join('\n')}`)),
      )
    }
    proc.child.once('exit', onExit)
    const unwatch = proc.watchLines(function lookForReady(line) {
      const value = ready(line)
      if (value !== undefined) finish(() => resolve(value))
    })
    if (hasExited(proc.child)) onExit(proc.child.exitCode, proc.child.signalCode)
  })
}

/** Parses a JSON log line, or undefined for anything else. */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}
