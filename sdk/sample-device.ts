// A sample device on the SDK (`fleethub simulate`): it applies remote configuration, reports what
// it applied, and sends fake readings every `system.reportingIntervalSec`. Its own log follows
// `system.logLevel`, so changing desired state visibly changes what the device does. It answers the
// commands `reboot` (simulated: its uptime starts again) and `ping`, and takes a new key from key
// rollover (in memory only). With `ota` it runs the reference firmware update agent
// (sdk/ota-agent.ts) and reports the version it runs as `firmware.version`.
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { CommandContext } from './commands.js'
import { connectDevice, type DeviceAuth } from './device.js'
import type { JsonObject } from './json.js'
import { type OtaAgent, startOtaAgent } from './ota-agent.js'
import type { LogLevel, SystemProperties } from './remote-config.js'
import type { SimulateOtaOptions } from './simulate-ota.js'

export interface SampleDeviceOptions {
  url: string
  deviceId: string
  key: string
  auth?: DeviceAuth
  /** Stops the device: it disconnects and `runSampleDevice` resolves. */
  signal?: AbortSignal
  /** Where log lines go. Default: stdout. */
  log?: (line: string) => void
  /** How long the simulated `reboot` takes before it answers. Default 1000. */
  rebootMs?: number
  /** Runs the OTA agent with its state in `{ota.dir}/{deviceId}`. */
  ota?: SimulateOtaOptions
}

export interface SampleDeviceSummary {
  telemetrySent: number
}

export interface SampleReading {
  temp: number
  humidity: number
  uptimeSec: number
}

export const DEFAULT_REPORTING_INTERVAL_SEC = 10
export const DEFAULT_REBOOT_MS = 1000

const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug', 'trace']

/** Plausible indoor readings: slow waves with a little noise. */
export function fakeReading(uptimeSec: number): SampleReading {
  const round = (v: number) => Math.round(v * 10) / 10
  return {
    temp: round(21 + 2 * Math.sin(uptimeSec / 600) + (Math.random() - 0.5) * 0.4),
    humidity: round(45 + 8 * Math.cos(uptimeSec / 900) + (Math.random() - 0.5) * 2),
    uptimeSec,
  }
}

/** Resolves when the signal aborts (never without one). */
function aborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return
    if (signal.aborted) return resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

export async function runSampleDevice(opts: SampleDeviceOptions): Promise<SampleDeviceSummary> {
  const write = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`))
  let level: LogLevel = 'info'
  function log(at: LogLevel, message: string): void {
    if (LEVELS.indexOf(at) <= LEVELS.indexOf(level))
      write(`${new Date().toISOString()} ${at} ${opts.deviceId}: ${message}`)
  }
  const summary: SampleDeviceSummary = { telemetrySent: 0 }
  if (opts.signal?.aborted) return summary

  const dev = await connectDevice({
    url: opts.url,
    deviceId: opts.deviceId,
    key: opts.key,
    ...(opts.auth ? { auth: opts.auth } : {}),
    onError: (err) => log('warn', err.message),
    onKeyChange() {
      // a real device writes the key to its storage here, before it answers; never log the key
      log('info', 'key rollover: would persist the new key now (kept in memory for reconnects)')
    },
  })
  // the simulated reboot starts the uptime again
  let startedAt = Date.now()
  const uptimeSec = () => Math.round((Date.now() - startedAt) / 1000)
  let intervalSec = DEFAULT_REPORTING_INTERVAL_SEC
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  let agent: OtaAgent | undefined

  function sendReading(): void {
    const reading = fakeReading(uptimeSec())
    summary.telemetrySent++
    dev.publishTelemetry(reading).then(
      () => log('debug', `telemetry ${JSON.stringify(reading)}`),
      (err: Error) => log('warn', `telemetry not sent: ${err.message}`),
    )
  }

  /** (Re)starts the reading timer at the current interval. */
  function schedule(): void {
    clearInterval(timer)
    if (!stopped) timer = setInterval(sendReading, intervalSec * 1000)
  }

  async function startAgent(ota: SimulateOtaOptions): Promise<OtaAgent> {
    const a = await startOtaAgent(dev, {
      dir: path.join(ota.dir, opts.deviceId),
      publicKey: ota.publicKey,
      ...(ota.model !== undefined ? { model: ota.model } : {}),
      ...(ota.firmwareVersion !== undefined ? { firmwareVersion: ota.firmwareVersion } : {}),
      ...(ota.fail !== undefined ? { fail: ota.fail } : {}),
      log: (m) => log('info', `ota: ${m}`),
      onError: (err) => log('warn', `ota: ${err.message}`),
    })
    if (ota.fail) log('warn', `ota: will fail on purpose: ${ota.fail}`)
    await dev.twin.report({ firmware: { version: a.version() } })
    return a
  }

  try {
    // the handlers resolve once they have applied the current desired state, so the first reading
    // already goes out at the configured interval
    await dev.onSystem(function applySystem(system: SystemProperties) {
      level = system.logLevel ?? 'info'
      const next = system.reportingIntervalSec ?? DEFAULT_REPORTING_INTERVAL_SEC
      if (next !== intervalSec) {
        intervalSec = next
        if (timer) schedule()
      }
      log(
        'info',
        `system applied: every ${intervalSec} s, log level ${level}${system.timeServer ? `, time server ${system.timeServer}` : ''}`,
      )
    })
    await dev.onConfig(function applyConfig(config: JsonObject) {
      log('info', `config applied: ${JSON.stringify(config)}`)
    })
    dev.commands.handle('reboot', async function reboot(_body, ctx: CommandContext) {
      // the SDK has acknowledged it (202); pretend to restart, without restarting the process
      log('info', `command reboot (${ctx.rid}): rebooting`)
      await sleep(opts.rebootMs ?? DEFAULT_REBOOT_MS, undefined, { signal: ctx.signal })
      startedAt = Date.now()
      const rebootedAt = new Date(startedAt).toISOString()
      await dev.twin.report({ lastReboot: { rebootedAt } })
      log('info', `rebooted at ${rebootedAt}`)
      return { ok: true }
    })
    dev.commands.handle('ping', function ping(_body, ctx: CommandContext) {
      log('debug', `command ping (${ctx.rid})`)
      return { pong: uptimeSec() }
    })
    await dev.commands.listen()
    if (opts.ota) agent = await startAgent(opts.ota)
    if (!opts.signal?.aborted) {
      log('info', `connected to ${opts.url}; sending telemetry every ${intervalSec} s`)
      sendReading()
      schedule()
    }
    await aborted(opts.signal)
  } finally {
    stopped = true
    clearInterval(timer)
    await agent?.stop()
    await dev.end()
    log('info', `stopped after ${summary.telemetrySent} readings`)
  }
  return summary
}
