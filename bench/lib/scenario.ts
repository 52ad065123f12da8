// What a scenario is: a named measurement with its defaults, the stores it supports, the columns of
// its summary, and a run function that starts what it needs through the context and records each
// measurement. The CLI owns parsing, provenance, results and cleanup, so scenarios stay about
// what they measure.
import type { Column } from './report.js'
import type { Stack, StoreKind } from './stack.js'

export interface BenchOptions {
  store: StoreKind
  devices: number
  concurrency: number
  runs: number
  /** Write a V8 CPU profile of every broker process to bench/results/profiles/. */
  cpuProf: boolean
}

export type Defaults = Pick<BenchOptions, 'store' | 'devices' | 'concurrency' | 'runs'>

/** One measurement as a scenario sees it; the CLI adds commit, machine, scenario and parameters. */
export interface Measurement {
  run: number
  case: string
  figures: Record<string, number | Record<string, number>>
  cpu: Record<string, number>
}

export interface ScenarioContext {
  readonly options: BenchOptions
  /** Starts a fresh store and broker; the caller stops it (the CLI also does, on errors and Ctrl-C). */
  startStack(): Promise<Stack>
  /** Appends one measurement to the results file and keeps it for the summary. */
  record(m: Measurement): void
  /** A progress line on stderr (stdout carries only the summary). */
  progress(message: string): void
}

export interface Scenario {
  readonly name: string
  /** One line for the usage text. */
  readonly summary: string
  readonly defaults: Defaults
  readonly stores: readonly StoreKind[]
  readonly columns: readonly Column[]
  run(ctx: ScenarioContext): Promise<void>
}
