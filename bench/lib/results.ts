// Raw results, one JSON object per line per measurement, appended to bench/results/results.jsonl
// (git-ignored). Each line carries everything needed to compare it later: commit, machine, scenario,
// broker, store, transport, parameters, run number, figures and CPU use of every process involved.
import { appendFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import type { GitInfo, MachineInfo } from './provenance.js'
import { REPO_ROOT } from './provenance.js'
import type { Measurement } from './scenario.js'

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results')
export const RESULTS_FILE = path.join(RESULTS_DIR, 'results.jsonl')

/** Version of the record layout, raised when a field changes meaning (2: several brokers). */
export const RECORD_VERSION = 2

export interface ResultRecord extends Measurement {
  v: number
  /** When the measurement ended (ISO 8601). */
  at: string
  /** Shared by every record of one `npm run bench` invocation. */
  invocation: string
  git: GitInfo
  /** Hash of the compiled broker code the run's FleetHub loaded (see brokerBuildHash). */
  build: string
  machine: MachineInfo
  scenario: string
  broker: string
  /** `memory`, `redis`, or `none` (Mosquitto). */
  store: string
  /** `fleethub/memory`, `mosquitto`…: broker and store in one. */
  target: string
  transport: string
  run: number
  /** 1, or more when an earlier attempt was repeated because other processes competed for the CPUs. */
  attempt: number
  /** Set on a measurement that was repeated (e.g. `contended`): kept for the record, left out of reports. */
  discarded?: string
}

export function appendResult(record: ResultRecord): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const { series: _series, ...rest } = record
  // series are long; they go to the report's charts, the raw line keeps a sampled copy
  const line = record.series ? { ...rest, series: thin(record.series) } : rest
  appendFileSync(RESULTS_FILE, `${JSON.stringify(line)}\n`)
}

/** At most ~200 points per series, so a line stays readable. */
function thin(series: Record<string, [number, number][]>): Record<string, [number, number][]> {
  const out: Record<string, [number, number][]> = {}
  for (const [k, points] of Object.entries(series)) {
    const step = Math.max(1, Math.ceil(points.length / 200))
    out[k] = points.filter((_, i) => i % step === 0).map(([t, v]) => [Math.round(t), Math.round(v * 100) / 100])
  }
  return out
}
