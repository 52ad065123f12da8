// `fleethub simulate --provision`: a fleet of sample devices that know only the bootstrap endpoint,
// their enrollment and its group key. Each provisions itself (deriving its own key), then connects
// to the hub it was assigned and runs as a sample device (sdk/sample-device.ts) until stopped.
import { parseArgs } from 'node:util'
import { isOtaFailure, OTA_FAILURES, type OtaFailure } from './ota-simulation.js'
import { type Provisioned, provision } from './provision.js'
import { runSampleDevice } from './sample-device.js'
import { DEFAULT_SIMULATE_URL } from './simulate.js'
import { OTA_FLAGS, OTA_USAGE, parseOtaFlags, type SimulateOtaOptions } from './simulate-ota.js'

export interface FleetOptions {
  /** The bootstrap endpoint. */
  url: string
  enrollmentId: string
  groupKey: string
  count: number
  /** Registration ids are `{prefix}{n}`, n from 1, zero-padded to the width of count. */
  prefix: string
  /** Registrations in flight at once. Default 20. */
  concurrency?: number
  signal?: AbortSignal
  /** Where log lines go. Default: stdout. */
  log?: (line: string) => void
  /** Runs the reference OTA agent on every device (its `fail`, if any, on all of them). */
  ota?: SimulateOtaOptions
  /** Failures spread over the fleet instead: `percent` of the devices fail each way. */
  otaFailMix?: { failure: OtaFailure; percent: number }[]
  /** What each provisioned device runs until the signal (default: the sample device). */
  run?: (device: Provisioned, signal: AbortSignal | undefined, log: (line: string) => void) => Promise<unknown>
}

export interface FleetSummary {
  provisioned: Provisioned[]
  failed: { registrationId: string; error: string }[]
}

export const FLEET_USAGE = `usage: fleethub simulate --provision --enrollment <id> --group-key <key> [--count N] [--prefix sim-] [--url <bootstrap url>]

  --provision  provision the devices first, then run each on the hub it was assigned
  --url        the bootstrap endpoint (default mqtt://localhost:1883)
  --enrollment the enrollment group
  --group-key  its group key (default: the FLEETHUB_GROUP_KEY environment variable); each device
               derives its own key from it and its registration id
  --count      how many devices (default 1, at most 10000)
  --prefix     registration ids are {prefix}{n} (default sim-)
${OTA_USAGE}
  in a fleet, --ota-fail also takes a mix: bad_hash:4,no_confirm:3 makes 4 % of the devices fail
  one way and 3 % the other (the same devices every run: by their number)
`

/** The options of `fleethub simulate --provision`; `env` supplies FLEETHUB_GROUP_KEY. */
export function parseFleetArgs(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): FleetOptions {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        provision: { type: 'boolean' },
        url: { type: 'string' },
        enrollment: { type: 'string' },
        'group-key': { type: 'string' },
        count: { type: 'string' },
        prefix: { type: 'string' },
        ...Object.fromEntries(OTA_FLAGS.map((f) => [f, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    throw new Error(`${(err as Error).message} (options: --url, --enrollment, --group-key, --count, --prefix)`)
  }
  const enrollmentId = values.enrollment as string | undefined
  if (!enrollmentId) throw new Error('missing option --enrollment')
  const groupKey = (values['group-key'] as string | undefined) ?? env.FLEETHUB_GROUP_KEY
  if (!groupKey) throw new Error('missing option --group-key (or the FLEETHUB_GROUP_KEY environment variable)')
  const countText = (values.count as string | undefined) ?? '1'
  const count = Number(countText)
  if (!/^\d+$/.test(countText) || count < 1 || count > 10_000) throw new Error('option --count must be 1 to 10000')
  const opts: FleetOptions = {
    url: (values.url as string | undefined) ?? DEFAULT_SIMULATE_URL,
    enrollmentId,
    groupKey,
    count,
    prefix: (values.prefix as string | undefined) ?? 'sim-',
  }
  const otaFlags = new Map<string, string>()
  for (const f of OTA_FLAGS) {
    const v = values[f]
    if (typeof v === 'string') otaFlags.set(`--${f}`, v)
  }
  const fail = otaFlags.get('--ota-fail')
  if (fail?.includes(':')) {
    opts.otaFailMix = parseFailMix(fail)
    otaFlags.delete('--ota-fail')
    if (!otaFlags.has('--ota-dir')) throw new Error('option --ota-fail needs --ota-dir and --ota-public-key')
  }
  const ota = parseOtaFlags(otaFlags)
  if (ota) opts.ota = ota
  return opts
}

/** `bad_hash:4,no_confirm:3` → 4 % of the devices fail one way, 3 % the other. */
export function parseFailMix(text: string): { failure: OtaFailure; percent: number }[] {
  const mix = text.split(',').map((part) => {
    const [failure, percentText] = part.split(':')
    if (!isOtaFailure(failure)) {
      throw new Error(`option --ota-fail: ${JSON.stringify(failure)} is not one of ${OTA_FAILURES.join(', ')}`)
    }
    const percent = Number(percentText)
    if (!/^\d+$/.test(percentText ?? '') || percent > 100)
      throw new Error(`option --ota-fail: ${part}: a whole percent`)
    return { failure, percent }
  })
  if (mix.reduce((a, m) => a + m.percent, 0) > 100)
    throw new Error('option --ota-fail: the percents add up to over 100')
  return mix
}

/** The failure of device number `n` (from 1) under a mix: spread by number, the same every run. */
export function failureOf(mix: readonly { failure: OtaFailure; percent: number }[], n: number): OtaFailure | undefined {
  // every tenth device first, then the ones between, so small fleets get a share of each way too
  const bucket = ((n - 1) % 10) * 10 + Math.floor(((n - 1) % 100) / 10)
  let upTo = 0
  for (const m of mix) {
    upTo += m.percent
    if (bucket < upTo) return m.failure
  }
  return undefined
}

/** Provisions the fleet, then runs every device that got a hub until the signal; resolves after. */
export async function runProvisionedFleet(opts: FleetOptions): Promise<FleetSummary> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`))
  const width = String(opts.count).length
  const ids = Array.from({ length: opts.count }, (_, i) => `${opts.prefix}${String(i + 1).padStart(width, '0')}`)
  const summary: FleetSummary = { provisioned: [], failed: [] }
  let next = 0
  async function worker(): Promise<void> {
    while (next < ids.length && !opts.signal?.aborted) {
      const registrationId = ids[next++] as string
      try {
        const p = await provision({
          url: opts.url,
          enrollmentId: opts.enrollmentId,
          registrationId,
          groupKey: opts.groupKey,
        })
        summary.provisioned.push(p)
        log(`${registrationId}: provisioned, hub ${p.hub.mqtt}`)
      } catch (err) {
        summary.failed.push({ registrationId, error: (err as Error).message })
        log(`${registrationId}: provisioning failed: ${(err as Error).message}`)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 20, ids.length) }, worker))
  log(`provisioned ${summary.provisioned.length} of ${opts.count} devices`)
  const numberOf = new Map(ids.map((id, i) => [id, i + 1]))
  const otaOf = (d: Provisioned): SimulateOtaOptions | undefined => {
    if (!opts.ota || !opts.otaFailMix) return opts.ota
    const fail = failureOf(opts.otaFailMix, numberOf.get(d.deviceId) ?? 0)
    const { fail: _none, ...ota } = opts.ota
    return fail ? { ...ota, fail } : ota
  }
  const run =
    opts.run ??
    ((d: Provisioned, signal: AbortSignal | undefined, line: (l: string) => void) => {
      const ota = otaOf(d)
      return runSampleDevice({
        url: d.hub.mqtt,
        deviceId: d.deviceId,
        key: d.key,
        log: line,
        ...(signal ? { signal } : {}),
        ...(ota ? { ota } : {}),
      })
    })
  await Promise.all(
    summary.provisioned.map((d) =>
      run(d, opts.signal, (line) => log(`${d.deviceId}: ${line}`)).catch((err: unknown) =>
        log(`${d.deviceId}: stopped: ${(err as Error).message}`),
      ),
    ),
  )
  return summary
}
