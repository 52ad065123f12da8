// `npm run bench -- <scenario> [flags]`: runs one scenario against FleetHub, appends the raw results
// to bench/results/results.jsonl and prints a Markdown summary on stdout (progress goes to stderr).
// Every process it starts is stopped at the end, on errors and on Ctrl-C.
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { parseBenchArgs, UsageError } from './lib/args.js'
import { GENERATOR_CPU, pinSelf } from './lib/pinning.js'
import { stopAll, stopOnSignals } from './lib/processes.js'
import { brokerBuildHash, type GitInfo, gitInfo, machineInfo } from './lib/provenance.js'
import { redisVersion } from './lib/redis.js'
import { markdownTable } from './lib/report.js'
import { appendResult, RECORD_VERSION, RESULTS_DIR, RESULTS_FILE, type ResultRecord } from './lib/results.js'
import type { BenchOptions, Scenario, ScenarioContext } from './lib/scenario.js'
import { startStack } from './lib/stack.js'
import { findScenario, SCENARIOS } from './scenarios/index.js'

function usage(): string {
  const width = Math.max(...SCENARIOS.map((s) => s.name.length))
  const list = SCENARIOS.map((s) => {
    const d = s.defaults
    return (
      `  ${s.name.padEnd(width)}  ${s.summary}\n` +
      `  ${''.padEnd(width)}  defaults: --store ${d.store} --devices ${d.devices} ` +
      `--concurrency ${d.concurrency} --runs ${d.runs}`
    )
  })
  return `usage: npm run bench -- <scenario> [flags]

scenarios:
${list.join('\n')}

flags:
  --store memory|redis  registry store of the broker
  --devices N           devices to create and connect
  --concurrency N       CONNECTs waiting for their CONNACK at any time
  --runs N              repetitions (each on a fresh broker and store)
  --cpu-prof            V8 CPU profile of each broker in bench/results/profiles/ (slows the broker)

Raw results are appended to ${path.relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}.
`
}

function describeCommit(git: GitInfo): string {
  if (!git.dirty) return git.commit
  return git.diff ? `${git.commit} + uncommitted changes ${git.diff}` : `${git.commit} + uncommitted changes`
}

function invocationId(): string {
  return `${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(3).toString('hex')}`
}

async function runScenario(scenario: Scenario, options: BenchOptions): Promise<void> {
  const pinned = pinSelf(GENERATOR_CPU)
  const invocation = invocationId()
  const git = gitInfo()
  const machine = machineInfo(pinned, options.store === 'redis' ? redisVersion() : undefined)
  const cpuProfDir = options.cpuProf ? path.join(RESULTS_DIR, 'profiles', invocation) : undefined
  const records: ResultRecord[] = []
  const progress = (message: string) => process.stderr.write(`${message}\n`)

  progress(
    `${scenario.name}: store ${options.store}, ${options.devices} devices, concurrency ${options.concurrency}, ` +
      `${options.runs} runs; commit ${describeCommit(git)}; ` +
      (pinned ? 'broker on CPU 0, generator on CPU 1' : 'not pinned'),
  )
  const firstBuild = brokerBuildHash()
  let build = firstBuild
  const ctx: ScenarioContext = {
    options,
    startStack() {
      build = brokerBuildHash()
      if (build !== firstBuild) {
        progress(`warning: dist/ was rebuilt since the bench started (broker build ${firstBuild} → ${build})`)
      }
      return startStack({ store: options.store, ...(cpuProfDir ? { cpuProfDir } : {}) })
    },
    record(m) {
      const record: ResultRecord = {
        v: RECORD_VERSION,
        at: new Date().toISOString(),
        invocation,
        git,
        build,
        machine,
        scenario: scenario.name,
        broker: 'fleethub',
        store: options.store,
        params: {
          devices: options.devices,
          concurrency: options.concurrency,
          runs: options.runs,
          cpuProf: options.cpuProf,
        },
        ...m,
      }
      appendResult(record)
      records.push(record)
    },
    progress,
  }
  await scenario.run(ctx)

  const title = `${scenario.name}, fleethub, ${options.store} store, ${options.devices} devices, concurrency ${options.concurrency}`
  process.stdout.write(`\n### ${title}\n\n`)
  const builds = [...new Set(records.map((r) => r.build))].join(', ')
  process.stdout.write(
    `commit ${describeCommit(git)} (broker build ${builds}), ${machine.cpuModel} × ${machine.cores}, node ${machine.node}` +
      `${machine.redis ? `, redis ${machine.redis}` : ''}; median (min–max) of ${options.runs} runs\n\n`,
  )
  process.stdout.write(`${markdownTable(records, scenario.columns)}\n`)
  progress(`\nraw results appended to ${RESULTS_FILE}${cpuProfDir ? `; broker CPU profiles in ${cpuProfDir}` : ''}`)
}

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseBenchArgs>
  try {
    parsed = parseBenchArgs(process.argv.slice(2), findScenario)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`bench: ${err.message}\n\n${usage()}`)
    return 2
  }
  if (parsed.help || !parsed.scenario || !parsed.options) {
    process.stdout.write(usage())
    return 0
  }
  stopOnSignals()
  try {
    await runScenario(parsed.scenario, parsed.options)
    return 0
  } finally {
    await stopAll()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exit(1)
  },
)
