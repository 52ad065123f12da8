// Runs `fleethub start` as a real child process (the way operators run it), reading the one
// `listening` log line for its ports.
import { type ChildProcess, spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Ports } from '../../broker/app.js'

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../broker/cli.js')

export interface Node {
  ports: Ports
  proc: ChildProcess
  /** Everything it wrote to stdout and stderr so far. */
  output(): string
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>
}

export function runCli(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

export function exitOf(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null) return Promise.resolve(proc.exitCode)
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)))
}

export async function startNode(env: Record<string, string>, teardown?: (fn: () => unknown) => void): Promise<Node> {
  const proc = runCli(['start'], {
    FLEETHUB_HOST: '127.0.0.1',
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_WS_PORT: '0',
    FLEETHUB_HTTP_PORT: '0',
    FLEETHUB_LOG_LEVEL: 'info',
    ...env,
  })
  let out = ''
  proc.stdout?.on('data', (d) => {
    out += d
  })
  proc.stderr?.on('data', (d) => {
    out += d
  })
  const exited = exitOf(proc)
  const node: Node = {
    ports: { mqtt: 0, ws: 0, http: 0 },
    proc,
    output: () => out,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return exited
    },
  }
  teardown?.(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL')
  })
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    for (const line of out.split('\n')) {
      if (!line.includes('"msg":"listening"')) continue
      const j = JSON.parse(line) as Ports
      node.ports = { mqtt: j.mqtt, ws: j.ws, http: j.http }
      return node
    }
    if (proc.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 50))
  }
  proc.kill('SIGKILL')
  throw new Error(`fleethub did not start:\n${out}`)
}

/** A tiny HTTP client for a node's API. */
export async function api(
  node: Node,
  token: string,
  method: string,
  url: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: test code reads whatever JSON the API answered
): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${node.ports.http}${url}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  return { status: res.status, json: text ? JSON.parse(text) : undefined }
}
