// Mosquitto from the Debian package, the C anchor: `mosquitto -c <generated conf>` with defaults
// except the listener, no persistence and TCP_NODELAY (as the Node brokers set it). Anonymous, or
// with a password file (`mosquitto_passwd -U` over a plain file) and `allow_anonymous false` when a
// scenario gives users. Its websockets listener cannot be bound to 127.0.0.1 in 2.0.x (it listens
// on every interface), so the bench does not offer it: the bench stays on loopback.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawnBroker } from '../lib/broker-process.js'
import { freePort } from '../lib/ports.js'
import type { RunningBroker } from '../lib/target.js'
import { sleep } from '../lib/time.js'

export const MOSQUITTO = '/usr/sbin/mosquitto'
const PASSWD = 'mosquitto_passwd'
const START_ATTEMPTS = 100
const START_POLL_MS = 50
const STOP_GRACE_MS = 5_000

export interface MosquittoUser {
  username: string
  password: string
}

export interface MosquittoOptions {
  /** With users: a password file and no anonymous access. */
  users?: readonly MosquittoUser[]
}

/** The installed version (`2.0.11`), or undefined when the package is missing. */
export function mosquittoVersion(): string | undefined {
  try {
    const out = execFileSync(MOSQUITTO, ['-h'], { encoding: 'utf8', timeout: 5000, stdio: 'pipe' })
    return /version (\S+)/.exec(out)?.[1]
  } catch (err) {
    // `mosquitto -h` exits 3 after printing its usage
    const out = String((err as { stdout?: unknown }).stdout ?? '')
    return /version (\S+)/.exec(out)?.[1]
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(1000, () => done(false))
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

/** A hashed password file: plain `user:password` lines converted in place by mosquitto_passwd -U. */
function writePasswordFile(file: string, users: readonly MosquittoUser[]): void {
  writeFileSync(file, users.map((u) => `${u.username}:${u.password}\n`).join(''), { mode: 0o644 })
  execFileSync(PASSWD, ['-U', file], { stdio: 'pipe', timeout: 120_000 })
}

function config(port: number, passwordFile: string | undefined): string {
  return [
    `listener ${port} 127.0.0.1`,
    passwordFile ? 'allow_anonymous false' : 'allow_anonymous true',
    ...(passwordFile ? [`password_file ${passwordFile}`] : []),
    'persistence false',
    'set_tcp_nodelay true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n')
}

export async function startMosquitto(opts: MosquittoOptions = {}): Promise<RunningBroker> {
  // readable by the `mosquitto` user that a broker started as root switches to
  const dir = mkdtempSync(path.join(tmpdir(), 'fleethub-bench-mosquitto-'))
  chmodSync(dir, 0o755)
  const passwordFile = opts.users ? path.join(dir, 'passwd') : undefined
  if (passwordFile && opts.users) writePasswordFile(passwordFile, opts.users)
  const port = await freePort()
  const conf = path.join(dir, 'mosquitto.conf')
  writeFileSync(conf, config(port, passwordFile), { mode: 0o644 })
  const proc = spawnBroker({
    name: 'mosquitto',
    cmd: MOSQUITTO,
    args: ['-c', conf],
    stopGraceMs: STOP_GRACE_MS,
    isProblem: () => true, // it logs only errors and warnings
  })
  const stop = async () => {
    await proc.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  for (let i = 0; i < START_ATTEMPTS && proc.alive(); i++) {
    if (await canConnect(port)) {
      return {
        kind: 'mosquitto',
        pid: proc.pid,
        mqttPort: port,
        wsPort: undefined,
        problems: proc.problems,
        exitStatus: proc.exitStatus,
        alive: proc.alive,
        stop,
      }
    }
    await sleep(START_POLL_MS)
  }
  const why = proc.problems().last.join('\n')
  await stop()
  throw new Error(`mosquitto did not start:\n${why}`)
}
