// Command-line parsing: `<scenario> [--store memory|redis] [--devices N] [--concurrency N] [--runs N]
// [--cpu-prof]`. Anything else is a UsageError, which the CLI answers with the usage text.
import { parseArgs } from 'node:util'
import type { BenchOptions, Scenario } from './scenario.js'
import { STORES, type StoreKind } from './stack.js'

export class UsageError extends Error {}

export interface ParsedArgs {
  help: boolean
  scenario?: Scenario
  options?: BenchOptions
}

const LIMITS = {
  // each device is a socket in the generator and in the broker: stay well inside common fd limits
  devices: { min: 1, max: 10_000 },
  concurrency: { min: 1, max: 5_000 },
  runs: { min: 1, max: 20 },
} as const

function wholeNumber(flag: keyof typeof LIMITS, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback
  const { min, max } = LIMITS[flag]
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(raw)}`)
  }
  return Number(raw)
}

export function parseBenchArgs(argv: readonly string[], find: (name: string) => Scenario | undefined): ParsedArgs {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) return { help: true }
  if (positionals.length !== 1) throw new UsageError('give exactly one scenario')
  const name = positionals[0] as string
  const scenario = find(name)
  if (!scenario) throw new UsageError(`unknown scenario ${JSON.stringify(name)}`)
  const store = (values.store ?? scenario.defaults.store) as StoreKind
  if (!STORES.includes(store)) throw new UsageError(`--store must be ${STORES.join(' or ')}`)
  if (!scenario.stores.includes(store)) throw new UsageError(`${scenario.name} does not support --store ${store}`)
  const options: BenchOptions = {
    store,
    devices: wholeNumber('devices', values.devices, scenario.defaults.devices),
    concurrency: wholeNumber('concurrency', values.concurrency, scenario.defaults.concurrency),
    runs: wholeNumber('runs', values.runs, scenario.defaults.runs),
    cpuProf: values['cpu-prof'] === true,
  }
  return { help: false, scenario, options }
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      store: { type: 'string' },
      devices: { type: 'string' },
      concurrency: { type: 'string' },
      runs: { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}
