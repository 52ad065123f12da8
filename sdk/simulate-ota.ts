// The firmware update flags of `fleethub simulate`: with `--ota-dir` and `--ota-public-key` the
// sample device runs the reference OTA agent (sdk/ota-agent.ts), keeping its slots under
// `{ota-dir}/{device id}`. Kept apart from sdk/simulate.ts, which only lists these flags.
import { readFileSync } from 'node:fs'
import { isOtaFailure, OTA_FAILURES, type OtaFailure } from './ota-simulation.js'
import { parsePublicKey } from './ota-verify.js'

export const OTA_FLAGS = ['ota-dir', 'ota-public-key', 'ota-fail', 'ota-model', 'firmware-version'] as const

export interface SimulateOtaOptions {
  /** The base directory: each device keeps its slots and state in `{dir}/{device id}`. */
  dir: string
  /** The trusted key: a PEM, or base64url of the raw 32 bytes. */
  publicKey: string
  fail?: OtaFailure
  model?: string
  firmwareVersion?: string
}

export const OTA_USAGE = `
  firmware updates (the reference OTA agent; both of the first two turn it on):
  --ota-dir           where the device keeps its A/B slots, golden image and state.json
                      ({dir}/{device id}; created on first use, resumed from after a restart)
  --ota-public-key    the operator's Ed25519 public key: a PEM file, or the base64url raw key
                      (GET /ota/signing-key answers both)
  --ota-fail          fail on purpose: ${OTA_FAILURES.join(', ')}
  --ota-model         the device's model id, checked against a package's models
  --firmware-version  the factory image's version on a new --ota-dir (default 1.0.0)
`

const RAW_KEY = /^[A-Za-z0-9_-]{43}$/

/** The key text of `--ota-public-key`: the raw key as it is, a PEM read from its file. */
function readKey(value: string): string {
  if (RAW_KEY.test(value) || value.includes('-----BEGIN')) return value
  try {
    return readFileSync(value, 'utf8')
  } catch (err) {
    throw new Error(`option --ota-public-key: cannot read ${value}: ${(err as NodeJS.ErrnoException).code ?? err}`)
  }
}

/** The OTA options from the parsed flags (`--name` → value), or undefined when OTA is off. */
export function parseOtaFlags(flags: ReadonlyMap<string, string>): SimulateOtaOptions | undefined {
  const dir = flags.get('--ota-dir')
  const keyFlag = flags.get('--ota-public-key')
  if (dir === undefined && keyFlag === undefined) {
    for (const f of ['--ota-fail', '--ota-model', '--firmware-version']) {
      if (flags.has(f)) throw new Error(`option ${f} needs --ota-dir and --ota-public-key`)
    }
    return undefined
  }
  if (dir === undefined) throw new Error('option --ota-public-key needs --ota-dir')
  if (keyFlag === undefined) throw new Error('option --ota-dir needs --ota-public-key')
  const publicKey = readKey(keyFlag)
  try {
    parsePublicKey(publicKey)
  } catch (err) {
    throw new Error(`option --ota-public-key: ${(err as Error).message}`)
  }
  const opts: SimulateOtaOptions = { dir, publicKey }
  const fail = flags.get('--ota-fail')
  if (fail !== undefined) {
    if (!isOtaFailure(fail)) throw new Error(`option --ota-fail must be one of ${OTA_FAILURES.join(', ')}, not ${fail}`)
    opts.fail = fail
  }
  const model = flags.get('--ota-model')
  if (model !== undefined) opts.model = model
  const version = flags.get('--firmware-version')
  if (version !== undefined) opts.firmwareVersion = version
  return opts
}
