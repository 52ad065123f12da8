#!/usr/bin/env node
import './v8-flags.js'
import './quiet-debug.js'
import { isCoded } from '../registry/errors.js'
import { FLEET_USAGE, parseFleetArgs, runProvisionedFleet } from '../sdk/fleet.js'
import { runSampleDevice } from '../sdk/sample-device.js'
import { parseSimulateArgs, SIMULATE_USAGE } from '../sdk/simulate.js'
// The `fleethub` command. `fleethub start [flags]` runs a node until SIGINT or SIGTERM, then stops
// gracefully and exits 0. Configuration errors exit 2 with a message that names the option.
import { startApp } from './app.js'
import { loadConfig, optionsHelp } from './config.js'

const USAGE = `usage: fleethub <command> [flags]

commands:
  start      run a FleetHub node (embedded in-memory mode unless FLEETHUB_REDIS_URL is set)
  simulate   run a sample device, or provision a fleet of them (fleethub simulate --help)
  help       show this text

flags of start (each also read from its environment variable):
`

/** How long a graceful stop may take before the process gives up and exits 1. */
const STOP_TIMEOUT_MS = 15_000

async function start(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}${optionsHelp()}\n`)
    return
  }
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(argv)
  } catch (err) {
    process.stderr.write(`fleethub: ${(err as Error).message}\n`)
    process.exit(2)
  }
  const app = await startApp(config)
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    app.log.info({ signal }, 'stopping')
    const timer = setTimeout(() => {
      app.log.error('graceful stop timed out')
      process.exit(1)
    }, STOP_TIMEOUT_MS)
    timer.unref()
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'stop failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
}

/** A sample device that follows its twin's config and system sections (sdk/sample-device.ts). */
async function simulate(argv: string[]): Promise<void> {
  if (argv.includes('--provision')) return simulateFleet(argv)
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${SIMULATE_USAGE}\nor:\n${FLEET_USAGE}`)
    return
  }
  let opts: ReturnType<typeof parseSimulateArgs>
  try {
    opts = parseSimulateArgs(argv)
  } catch (err) {
    process.stderr.write(`fleethub simulate: ${(err as Error).message}\n${SIMULATE_USAGE}`)
    process.exit(2)
  }
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  process.once('SIGTERM', () => stop.abort())
  const summary = await runSampleDevice({ ...opts, signal: stop.signal })
  process.stdout.write(`stopped after ${summary.telemetrySent} telemetry messages\n`)
}

/** Devices that provision themselves from a group key, then run on their hubs (sdk/fleet.ts). */
async function simulateFleet(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(FLEET_USAGE)
    return
  }
  let opts: ReturnType<typeof parseFleetArgs>
  try {
    opts = parseFleetArgs(argv)
  } catch (err) {
    process.stderr.write(`fleethub simulate: ${(err as Error).message}\n${FLEET_USAGE}`)
    process.exit(2)
  }
  const stop = new AbortController()
  process.once('SIGINT', () => stop.abort())
  process.once('SIGTERM', () => stop.abort())
  const summary = await runProvisionedFleet({ ...opts, signal: stop.signal })
  process.stdout.write(`stopped: ${summary.provisioned.length} provisioned, ${summary.failed.length} failed\n`)
  if (summary.provisioned.length === 0) process.exit(1)
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  switch (command) {
    case 'start':
      return start(rest)
    case 'simulate':
      return simulate(rest)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}${optionsHelp()}\n`)
      return
    default:
      process.stderr.write(`fleethub: unknown command ${command}\n${USAGE}`)
      process.exit(2)
  }
}

main().catch((err: unknown) => {
  // an expected failure (FLEETHUB_ERR_*) is explained by its message; anything else shows its stack
  const expected = isCoded(err) && err.code.startsWith('FLEETHUB_ERR_')
  process.stderr.write(`fleethub: ${expected ? (err as Error).message : ((err as Error)?.stack ?? String(err))}\n`)
  process.exit(1)
})
