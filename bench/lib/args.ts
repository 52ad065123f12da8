// Command-line parsing: `<scenario…|all> [--broker …] [--store …] [--transport tcp|ws] [--quick]
// [--runs N] [--devices N] [--concurrency N] [--cpu-prof]`. Anything else is a UsageError, which
// the CLI answers with the usage text.
import { parseArgs } from 'node:util'
import type { BenchOptions, Scenario } from './scenario.js'
import { BROKERS, type BrokerKind, STORES, type StoreKind, TRANSPORTS, type Transport } from './target.js'

export class UsageError extends Error {}

export interface ParsedArgs {
  help: boolean
  scenarios: Scenario[]
  options?: BenchOptions
}

const LIMITS = {
  // each client is a socket in the generator and in the broker: stay inside common fd limits
  devices: { min: 1, max: 20_000 },
  concurrency: { min: 1, max: 5_000 },
  runs: { min: 1, max: 20 },
} as const

const DEFAULT_RUNS = 3

function wholeNumber(flag: keyof typeof LIMITS, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  const { min, max } = LIMITS[flag]
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, not ${JSON.stringify(raw)}`)
  }
  return Number(raw)
}

/** `all`, or a comma-separated list of allowed names. */
function choice<T extends string>(flag: string, raw: string | undefined, allowed: readonly T[]): T[] {
  if (raw === undefined || raw === 'all') return [...allowed]
  const picked = raw.split(',').map((s) => s.trim())
  for (const p of picked) {
    if (!allowed.includes(p as T)) throw new UsageError(`--${flag} must be ${allowed.join(', ')} or all, not ${p}`)
  }
  return allowed.filter((a) => picked.includes(a))
}

export function parseBenchArgs(
  argv: readonly string[],
  all: readonly Scenario[],
  find: (name: string) => Scenario | undefined,
): ParsedArgs {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help) return { help: true, scenarios: [] }
  if (positionals.length === 0) throw new UsageError('name a scenario, or all')
  const scenarios: Scenario[] = []
  for (const name of positionals) {
    const picked = name === 'all' ? all.filter((s) => s.inAll) : [find(name)]
    for (const s of picked) {
      if (!s) throw new UsageError(`unknown scenario ${JSON.stringify(name)}`)
      if (!scenarios.includes(s)) scenarios.push(s)
    }
  }
  const transport = values.transport ?? 'tcp'
  if (!TRANSPORTS.includes(transport as Transport))
    throw new UsageError(`--transport must be ${TRANSPORTS.join(' or ')}`)
  const quick = values.quick === true
  const options: BenchOptions = {
    brokers: choice<BrokerKind>('broker', values.broker, BROKERS),
    stores: choice<StoreKind>('store', values.store, STORES),
    transport: transport as Transport,
    quick,
    runs: wholeNumber('runs', values.runs) ?? (quick ? 1 : DEFAULT_RUNS),
    maxClients: Number.POSITIVE_INFINITY,
    cpuProf: values['cpu-prof'] === true,
  }
  const devices = wholeNumber('devices', values.devices)
  const concurrency = wholeNumber('concurrency', values.concurrency)
  if (devices !== undefined) options.devices = devices
  if (concurrency !== undefined) options.concurrency = concurrency
  return { help: false, scenarios, options }
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      broker: { type: 'string' },
      store: { type: 'string' },
      transport: { type: 'string' },
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      devices: { type: 'string' },
      concurrency: { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}
