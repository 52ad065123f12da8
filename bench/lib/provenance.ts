// Where a figure comes from: the code (git commit, and whether the tree had uncommitted changes)
// and the machine. Figures from different commits or machines are only comparable with this.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { type Dirent, readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository root (this file is compiled to dist/bench/lib/). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))

export interface GitInfo {
  commit: string
  /** Uncommitted changes: the figures may not belong to `commit` alone. */
  dirty: boolean
  /** When dirty: a short hash of `git diff HEAD`, so records taken on the same changes can be told apart. */
  diff?: string
}

export interface MachineInfo {
  cpuModel: string
  cores: number
  memoryGiB: number
  os: string
  node: string
  /** Broker on CPU 0, generator on CPU 1 (false: no taskset or a single CPU). */
  pinned: boolean
  redis?: string
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 5000,
      stdio: 'pipe',
      maxBuffer: 64 * 2 ** 20,
    }).trim()
  } catch {
    return undefined
  }
}

export function gitInfo(): GitInfo {
  const commit = git(['rev-parse', '--short', 'HEAD']) ?? 'unknown'
  const status = git(['status', '--porcelain'])
  const dirty = status === undefined ? false : status.length > 0
  if (!dirty) return { commit, dirty }
  const diff = git(['diff', 'HEAD'])
  return diff
    ? { commit, dirty, diff: createHash('sha256').update(diff).digest('hex').slice(0, 12) }
    : { commit, dirty }
}

export function machineInfo(pinned: boolean, redis?: string): MachineInfo {
  const cpus = os.cpus()
  const info: MachineInfo = {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    pinned,
  }
  if (redis) info.redis = redis
  return info
}

/** The compiled code a broker process loads (its cli lives in dist/broker). */
const BROKER_BUILD_DIRS = ['broker', 'plugins', 'registry'].map((d) => path.join(REPO_ROOT, 'dist', d))

function jsFiles(dir: string): string[] {
  let entries: Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return []
  }
  return entries.flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return jsFiles(p)
    return e.name.endsWith('.js') ? [p] : []
  })
}

/**
 * A short hash of the compiled broker code. In a shared checkout someone may rebuild dist/ while
 * a benchmark runs; this tells which code each broker process actually ran.
 */
export function brokerBuildHash(): string {
  const hash = createHash('sha256')
  for (const file of BROKER_BUILD_DIRS.flatMap(jsFiles).sort()) {
    hash.update(path.relative(REPO_ROOT, file)).update('\0').update(readFileSync(file)).update('\0')
  }
  return hash.digest('hex').slice(0, 12)
}
