// The FleetHub broker under test, as a child process exactly as operators run it
// (`node dist/broker/cli.js start`), on CPU 0, with every port 0 and the real ports read from its
// one "listening" log line. Its log is drained (a full pipe would stall the broker) and warnings and
// errors are counted, since a broker that logs under load is part of what a benchmark should show.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { BROKER_CPU, onCpu } from './pinning.js'
import { hasExited, own, terminate } from './processes.js'

export interface BrokerOptions {
  /** Redis URL for the redis store; unset: the embedded in-memory store. */
  redisUrl?: string
  /** Directory for a V8 CPU profile of the broker (written when it stops). */
  cpuProfDir?: string
}

export interface RunningBroker {
  readonly name: 'fleethub'
  readonly pid: number
  readonly mqttPort: number
  readonly httpUrl: string
  readonly adminToken: string
  /** Log lines at warn level or above so far, and the last few of them. */
  problems(): { count: number; last: string[] }
  /** How the process ended (`code 1`, `SIGKILL`), or undefined while it runs. */
  exitStatus(): string | undefined
  stop(): Promise<void>
}

const CLI = fileURLToPath(new URL('../../broker/cli.js', import.meta.url))
const START_TIMEOUT_MS = 20_000
/** The broker's own graceful stop gives up after 15 s; allow a little more before SIGKILL. */
const STOP_GRACE_MS = 20_000
const KEPT_LINES = 20
/** pino's numeric level of `warn`. */
const WARN = 40

interface LogLine {
  level?: number
  msg?: string
  signal?: string
  mqtt?: number
  http?: number
}

function parseLine(line: string): LogLine | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    return JSON.parse(line) as LogLine
  } catch {
    return undefined
  }
}

/** The environment of the broker: this one's without FLEETHUB_* (so nothing leaks in), plus ours. */
function brokerEnv(opts: BrokerOptions, adminToken: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETHUB_')) env[k] = v
  Object.assign(env, {
    FLEETHUB_HOST: '127.0.0.1',
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_WS_PORT: '0',
    FLEETHUB_HTTP_PORT: '0',
    FLEETHUB_ADMIN_TOKEN: adminToken,
    // info: the "listening" line is an info line; the broker logs nothing per accepted CONNECT
    FLEETHUB_LOG_LEVEL: 'info',
  })
  if (opts.redisUrl) env.FLEETHUB_REDIS_URL = opts.redisUrl
  return env
}

export async function startFleetHub(opts: BrokerOptions = {}): Promise<RunningBroker> {
  const adminToken = randomBytes(24).toString('base64url')
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : []
  const { cmd, args } = onCpu(BROKER_CPU, process.execPath, [...nodeArgs, CLI, 'start'])
  const child = spawn(cmd, args, { env: brokerEnv(opts, adminToken), stdio: ['ignore', 'pipe', 'pipe'] })
  child.on('error', () => {}) // shows as an exit below
  let stopRequested = false
  const stop = own('fleethub broker', child, () => {
    stopRequested = true
    return terminate(child, STOP_GRACE_MS)
  })
  /** The signal the broker logged on a graceful stop: tells a stop from outside the bench. */
  let stoppedBy: string | undefined

  let problemCount = 0
  const last: string[] = []
  const keep = (line: string) => {
    last.push(line)
    if (last.length > KEPT_LINES) last.shift()
  }
  const listening = new Promise<{ mqtt: number; http: number }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the broker did not listen within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    )
    createInterface({ input: child.stdout }).on('line', function onBrokerLog(line) {
      const entry = parseLine(line)
      if (entry?.msg === 'listening' && typeof entry.mqtt === 'number' && typeof entry.http === 'number') {
        clearTimeout(timer)
        resolve({ mqtt: entry.mqtt, http: entry.http })
      } else if (entry?.msg === 'stopping') {
        stoppedBy = entry.signal
      } else if (!entry || (entry.level ?? 0) >= WARN) {
        problemCount++
        keep(line)
      }
    })
    createInterface({ input: child.stderr }).on('line', function onBrokerStderr(line) {
      problemCount++
      keep(line)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`the broker exited (${signal ?? code}) before listening:\n${last.join('\n')}`))
    })
  })

  try {
    const ports = await listening
    return {
      name: 'fleethub',
      pid: child.pid as number,
      mqttPort: ports.mqtt,
      httpUrl: `http://127.0.0.1:${ports.http}`,
      adminToken,
      problems: () => ({ count: problemCount, last: [...last] }),
      exitStatus() {
        if (!hasExited(child)) return undefined
        const how = child.signalCode ?? `code ${child.exitCode}`
        if (stopRequested) return how
        // another process signalled it: a broad `pkill -f broker/cli.js` elsewhere on the machine
        return stoppedBy ? `${how}, after a ${stoppedBy} the bench did not send` : `${how}, not stopped by the bench`
      },
      stop,
    }
  } catch (err) {
    await stop()
    throw err
  }
}
