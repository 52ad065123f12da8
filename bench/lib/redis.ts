// A throwaway redis-server on a free loopback port: no RDB snapshots, no AOF (persistence would put
// disk writes into the figures), its own temporary directory, removed when it stops.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { GENERATOR_CPU, onCpu } from './pinning.js'
import { freePort } from './ports.js'
import { hasExited, own, terminate } from './processes.js'
import { sleep } from './time.js'

export interface RedisServer {
  readonly url: string
  readonly pid: number
  stop(): Promise<void>
}

const START_ATTEMPTS = 100
const START_POLL_MS = 50

/** True when a PING on the port gets PONG within a second. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1')
    const done = (ok: boolean) => {
      c.destroy()
      resolve(ok)
    }
    c.setTimeout(1000, () => done(false))
    c.once('error', () => done(false))
    c.once('connect', () => c.write('PING\r\n'))
    c.once('data', (d) => done(d.toString().startsWith('+PONG')))
  })
}

/** The installed redis-server version, for the machine record. */
export function redisVersion(): string | undefined {
  try {
    const out = execFileSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 5000 })
    return /v=(\S+)/.exec(out)?.[1]
  } catch {
    return undefined
  }
}

/**
 * Starts redis-server. It shares the generator's CPU rather than the broker's: the broker's core is
 * what the figures measure, and the CPU columns show when that other core is the limit.
 */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'fleethub-bench-redis-'))
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]
  const { cmd, args: argv } = onCpu(GENERATOR_CPU, 'redis-server', args)
  const child = spawn(cmd, argv, { stdio: 'ignore' })
  child.on('error', () => {}) // a missing binary also shows as an exit, handled below
  const stop = own('redis-server', child, async () => {
    await terminate(child, 5000)
    rmSync(dir, { recursive: true, force: true })
  })
  for (let i = 0; i < START_ATTEMPTS; i++) {
    if (await ping(port)) {
      return { url: `redis://127.0.0.1:${port}`, pid: child.pid as number, stop }
    }
    if (hasExited(child)) break
    await sleep(START_POLL_MS)
  }
  await stop()
  throw new Error('redis-server did not start (is the redis-server package installed?)')
}
