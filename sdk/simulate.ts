// The flags of `fleethub simulate` (which runs sdk/sample-device.ts): parsed here so the CLI only
// wires them up. Errors name the option, for the CLI to print as they are.
import { parseArgs } from 'node:util'
import type { DeviceAuth } from './device.js'
import { OTA_FLAGS, OTA_USAGE, parseOtaFlags, type SimulateOtaOptions } from './simulate-ota.js'

export interface SimulateOptions {
  url: string
  deviceId: string
  key: string
  auth?: DeviceAuth
  /** The reference OTA agent, when --ota-dir and --ota-public-key are given. */
  ota?: SimulateOtaOptions
}

export const SIMULATE_USAGE = `usage: fleethub simulate --device-id <id> [--key <key>] [--url <url>] [--auth key|token]
                         [--ota-dir <dir> --ota-public-key <pem file|key>] [--ota-fail <how>] [--ota-model <id>]
                         [--firmware-version <version>]

  --url        broker URL: mqtt://, mqtts://, ws://…/mqtt or wss://…/mqtt (default mqtt://localhost:1883)
  --device-id  the device to run as (create it first: POST /devices)
  --key        its primary or secondary key (default: the FLEETHUB_DEVICE_KEY environment variable)
  --auth       key: send the key (TLS links only); token: sign a token from it
               (default: key on mqtts:// and wss://, token otherwise)
${OTA_USAGE}`

export const DEFAULT_SIMULATE_URL = 'mqtt://localhost:1883'

const FLAGS = ['url', 'device-id', 'key', 'auth', ...OTA_FLAGS] as const

/** Reads `--flag value` and `--flag=value` (node's parseArgs); throws on unknown or empty flags. */
function readFlags(argv: readonly string[]): Map<string, string> {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      args: [...argv],
      options: Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    throw new Error(`${(err as Error).message} (options: ${FLAGS.map((f) => `--${f}`).join(', ')})`)
  }
  const out = new Map<string, string>()
  for (const f of FLAGS) {
    const v = values[f]
    if (v === undefined) continue
    if (typeof v !== 'string' || v === '') throw new Error(`option --${f} needs a value`)
    out.set(`--${f}`, v)
  }
  return out
}

/** The options of `fleethub simulate`; `env` supplies FLEETHUB_DEVICE_KEY. */
export function parseSimulateArgs(
  argv: readonly string[],
  env: Record<string, string | undefined> = process.env,
): SimulateOptions {
  const flags = readFlags(argv)
  const deviceId = flags.get('--device-id')
  if (!deviceId) throw new Error('missing option --device-id')
  const key = flags.get('--key') ?? env.FLEETHUB_DEVICE_KEY
  if (!key) throw new Error('missing option --key (or the FLEETHUB_DEVICE_KEY environment variable)')
  const url = flags.get('--url') ?? DEFAULT_SIMULATE_URL
  const opts: SimulateOptions = { url, deviceId, key }
  const auth = flags.get('--auth')
  if (auth !== undefined) {
    if (auth !== 'key' && auth !== 'token') throw new Error(`option --auth must be key or token, not ${auth}`)
    opts.auth = auth
  }
  const ota = parseOtaFlags(flags)
  if (ota) opts.ota = ota
  return opts
}
