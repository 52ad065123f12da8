// Raw results, one JSON object per line per measurement, appended to bench/results/results.jsonl
// (git-ignored). Each line carries everything needed to compare it later: commit, machine, scenario,
// broker, store, parameters, run number, figures and CPU use.
import { appendFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import type { GitInfo, MachineInfo } from './provenance.js'
import { REPO_ROOT } from './provenance.js'

export const RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results')
export const RESULTS_FILE = path.join(RESULTS_DIR, 'results.jsonl')

/** Version of the record layout, raised when a field changes meaning. */
export const RECORD_VERSION = 1

export interface ResultRecord {
  v: number
  /** When the measurement ended (ISO 8601). */
  at: string
  /** Shared by every record of one `npm run bench` invocation. */
  invocation: string
  git: GitInfo
  /** Hash of the compiled broker code the run's broker loaded (see brokerBuildHash). */
  build: string
  machine: MachineInfo
  scenario: string
  broker: string
  store: string
  params: Record<string, number | string | boolean>
  run: number
  /** What was measured within the scenario, e.g. the phase `cold` or `warm`. */
  case: string
  figures: Record<string, number | Record<string, number>>
  /** CPU use over the measurement, in percent of one core, by process role. */
  cpu: Record<string, number>
}

export function appendResult(record: ResultRecord): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  appendFileSync(RESULTS_FILE, `${JSON.stringify(record)}\n`)
}
