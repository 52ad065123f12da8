// FleetHub exactly as operators run it: `node dist/broker/cli.js start` on the broker's CPU, every
// port 0 and the real ports read from its one "listening" log line. Warnings and errors in its
// JSON log are counted.
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { jsonLine, spawnBroker, waitForLine } from '../lib/broker-process.js'
import type { RunningBroker } from '../lib/target.js'

export interface FleetHubOptions {
  /** Redis URL for the redis store; unset: the embedded in-memory store. */
  redisUrl?: string
  /** Directory for a V8 CPU profile of the broker (written when it stops). */
  cpuProfDir?: string
  /** More FLEETHUB_* settings (e.g. FLEETHUB_DECODE_POLICY for the compact-decode scenario). */
  env?: Record<string, string>
  /** FLEETHUB_NODE_ID; unset: the broker picks a random one. */
  nodeId?: string
}

const CLI = fileURLToPath(new URL('../../broker/cli.js', import.meta.url))
const START_TIMEOUT_MS = 20_000
/** The broker's own graceful stop gives up after 15 s; allow a little more before SIGKILL. */
const STOP_GRACE_MS = 20_000
/** pino's numeric level of `warn`. */
const WARN = 40

/** The environment of the broker: this one's without FLEETHUB_* (so nothing leaks in), plus ours. */
function brokerEnv(opts: FleetHubOptions, adminToken: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLEETHUB_')) env[k] = v
  Object.assign(env, {
    FLEETHUB_HOST: '127.0.0.1',
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_WS_PORT: '0',
    FLEETHUB_HTTP_PORT: '0',
    FLEETHUB_ADMIN_TOKEN: adminToken,
    // info: the "listening" line is an info line; the broker logs nothing per message or CONNECT
    FLEETHUB_LOG_LEVEL: 'info',
  })
  if (opts.redisUrl) env.FLEETHUB_REDIS_URL = opts.redisUrl
  Object.assign(env, opts.env)
  if (opts.nodeId) env.FLEETHUB_NODE_ID = opts.nodeId
  return env
}

function isProblem(line: string): boolean {
  const entry = jsonLine(line)
  return !entry || (typeof entry.level === 'number' && entry.level >= WARN)
}

export async function startFleetHub(opts: FleetHubOptions = {}): Promise<RunningBroker> {
  const adminToken = randomBytes(24).toString('base64url')
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : []
  const proc = spawnBroker({
    name: opts.nodeId ? `fleethub broker ${opts.nodeId}` : 'fleethub broker',
    cmd: process.execPath,
    args: [...nodeArgs, CLI, 'start'],
    env: brokerEnv(opts, adminToken),
    stopGraceMs: STOP_GRACE_MS,
    isProblem,
  })
  try {
    const ports = await waitForLine(
      proc,
      function listeningLine(line) {
        const e = jsonLine(line)
        return e?.msg === 'listening' && typeof e.mqtt === 'number' && typeof e.ws === 'number'
          ? { mqtt: e.mqtt, ws: e.ws, http: e.http as number }
          : undefined
      },
      START_TIMEOUT_MS,
    )
    return {
      kind: 'fleethub',
      pid: proc.pid,
      mqttPort: ports.mqtt,
      wsPort: ports.ws,
      api: { url: `http://127.0.0.1:${ports.http}`, adminToken },
      problems: proc.problems,
      exitStatus: proc.exitStatus,
      alive: proc.alive,
      stop: proc.stop,
    }
  } catch (err) {
    await proc.stop()
    throw new Error(`the FleetHub broker did not start: ${(err as Error).message}`)
  }
}
