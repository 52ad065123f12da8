// Every process the bench starts is owned here, so it is stopped after a run, on an error and on
// Ctrl-C alike: a broker or redis-server left behind would skew the next measurement (and hold its
// CPU). Stopping is SIGTERM, a bounded wait, then SIGKILL.
import type { ChildProcess } from 'node:child_process'

interface Owned {
  name: string
  child: ChildProcess
  stop: () => Promise<void>
}

const owned = new Set<Owned>()

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** Resolves true when the child exits within `ms`, false otherwise. */
export function exitedWithin(child: ChildProcess, ms: number): Promise<boolean> {
  if (hasExited(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit)
      resolve(false)
    }, ms)
    function onExit() {
      clearTimeout(timer)
      resolve(true)
    }
    child.once('exit', onExit)
  })
}

/** SIGTERM, then SIGKILL if the child is still there after `graceMs`. */
export async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (hasExited(child)) return
  child.kill('SIGTERM')
  if (await exitedWithin(child, graceMs)) return
  child.kill('SIGKILL')
  await exitedWithin(child, 5000)
}

/**
 * Registers a child for stopping; `stop` is its graceful stop (it may also clean up files).
 * Returns the stop function, which also forgets the child and is safe to call twice.
 */
export function own(name: string, child: ChildProcess, stop: () => Promise<void>): () => Promise<void> {
  let stopping: Promise<void> | undefined
  const entry: Owned = {
    name,
    child,
    stop: () => {
      stopping ??= stop().finally(() => owned.delete(entry))
      return stopping
    },
  }
  owned.add(entry)
  return entry.stop
}

/** Stops every owned process, newest first (the broker before the store it uses). */
export async function stopAll(): Promise<void> {
  for (const entry of [...owned].reverse()) {
    await entry.stop().catch((err: unknown) => {
      process.stderr.write(`bench: could not stop ${entry.name}: ${(err as Error).message}\n`)
    })
  }
}

/** Last resort at process exit, where only synchronous work runs: kill whatever is left. */
function killLeftovers(): void {
  for (const entry of owned) if (!hasExited(entry.child)) entry.child.kill('SIGKILL')
}

/** Ctrl-C and SIGTERM stop the owned processes before the bench exits. */
export function stopOnSignals(): void {
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return // a second Ctrl-C while stopping: the exit hook still kills the rest
    interrupted = true
    process.stderr.write(`\nbench: ${signal}, stopping the processes it started\n`)
    stopAll().finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('exit', killLeftovers)
}
