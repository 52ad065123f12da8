// Starts vanilla Aedes (aedes-server.ts, compiled next to this file) as the broker under test.
import { fileURLToPath } from 'node:url'
import { jsonLine, spawnBroker, waitForLine } from '../lib/broker-process.js'
import type { RunningBroker } from '../lib/target.js'

export interface AedesOptions {
  /** Redis URL: aedes-persistence-redis and mqemitter-redis; unset: Aedes's in-memory defaults. */
  redisUrl?: string
  cpuProfDir?: string
}

const SERVER = fileURLToPath(new URL('./aedes-server.js', import.meta.url))
const START_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 5_000

/** Its only stdout line is the listening line; anything else (stack traces go to stderr) is trouble. */
function isProblem(line: string): boolean {
  return jsonLine(line)?.msg !== 'listening'
}

export async function startAedes(opts: AedesOptions = {}): Promise<RunningBroker> {
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : []
  const proc = spawnBroker({
    name: 'aedes broker',
    cmd: process.execPath,
    args: [...nodeArgs, SERVER, ...(opts.redisUrl ? ['--redis', opts.redisUrl] : [])],
    stopGraceMs: STOP_GRACE_MS,
    isProblem,
  })
  try {
    const ports = await waitForLine(
      proc,
      function listeningLine(line) {
        const e = jsonLine(line)
        return e?.msg === 'listening' ? { mqtt: e.mqtt as number, ws: e.ws as number } : undefined
      },
      START_TIMEOUT_MS,
    )
    return {
      kind: 'aedes',
      pid: proc.pid,
      mqttPort: ports.mqtt,
      wsPort: ports.ws,
      problems: proc.problems,
      exitStatus: proc.exitStatus,
      alive: proc.alive,
      stop: proc.stop,
    }
  } catch (err) {
    await proc.stop()
    throw new Error(`vanilla Aedes did not start: ${(err as Error).message}`)
  }
}
