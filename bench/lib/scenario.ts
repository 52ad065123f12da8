// What a scenario is: a named measurement with the brokers and transports it applies to, the
// figures it compares across brokers, the columns of its detail table, and a run function that
// measures one run on one target (fresh broker, fresh store) through the context. The CLI owns
// parsing, the order of runs, provenance, results, the report and cleanup, so scenarios stay about
// what they measure.
import type { Column } from './report.js'
import type { Stack, StackOptions } from './stack.js'
import type { BrokerKind, StoreKind, Target, Transport } from './target.js'

export interface BenchOptions {
  brokers: readonly BrokerKind[]
  stores: readonly StoreKind[]
  transport: Transport
  /** Short windows, smaller N, one run: everything in a few minutes. */
  quick: boolean
  runs: number
  /** Clients of the connect scenarios (overrides their default). */
  devices?: number
  /** CONNECTs waiting for their CONNACK at any time, in the connect scenarios. */
  concurrency?: number
  /** Clients the open-file limit leaves room for (each is a socket here and one in the broker). */
  maxClients: number
  /** Write a V8 CPU profile of every Node broker process to bench/results/profiles/. */
  cpuProf: boolean
}

/** One measurement as a scenario sees it; the CLI adds commit, machine, target and run. */
export interface Measurement {
  /** What was measured within the run, e.g. `qos0`/`qos1`, `cold`/`warm`; `main` when one thing. */
  case: string
  params: Record<string, number | string | boolean>
  figures: Record<string, number | string | boolean | Record<string, number>>
  /** CPU use over the measurement, in percent of one core, by role. */
  cpu: Record<string, number>
  /** Time series kept for the charts (e.g. broker RSS over time), not for tables. */
  series?: Record<string, [number, number][]>
}

export interface RunContext {
  readonly options: BenchOptions
  readonly target: Target
  /** 1-based run number. */
  readonly run: number
  /** Starts a fresh store and broker; the caller stops it (the CLI also does, on errors and Ctrl-C). */
  startStack(opts?: StackOptions): Promise<Stack>
  record(m: Measurement): void
  /** A progress line (stderr; stdout carries only the report). */
  progress(message: string): void
}

/** A figure compared across brokers: median, min–max, ratios, chart. */
export interface Metric {
  /** Key in `figures`. */
  key: string
  title: string
  unit: string
  better: 'higher' | 'lower'
  digits: number
}

export interface Scenario {
  readonly name: string
  /** A heading, e.g. "Fan-in: 10 publishers → 1 subscriber, QoS 0". */
  readonly title: string
  /** One line for the usage text. */
  readonly summary: string
  /** What it measures and how, for the report and the docs. */
  readonly description: string
  /** Part of `all` (connect-rate, FleetHub only, is run by name). */
  readonly inAll: boolean
  readonly brokers: readonly BrokerKind[]
  readonly transports: readonly Transport[]
  /** Compared across brokers; the first one gets the ratios and the chart. */
  readonly headline: readonly Metric[]
  /** The detail table. */
  readonly columns: readonly Column[]
  run(ctx: RunContext): Promise<void>
}

/** What the scenarios of FleetHub's own features (twins, queries, commands) share: FleetHub only, TCP, in `all`. */
export const FLEETHUB_FEATURE = {
  inAll: true,
  brokers: ['fleethub'],
  transports: ['tcp'],
} as const satisfies Pick<Scenario, 'inAll' | 'brokers' | 'transports'>
