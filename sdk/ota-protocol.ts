// The firmware update messages as a device sees them (docs/ota.md; issue 8): the notices FleetHub
// sends on `$iot/{id}/ota/notify`, the signed manifest inside an install notice, and the status
// reports the device sends on `$iot/{id}/ota/status`. Parsing never throws: a message that is not
// one of these is `undefined` (or names what is wrong), for the agent to refuse clearly.
import { DEVICE_STATES, type Manifest } from '../registry/ota.js'
import { isJsonObject } from './json.js'

/** The device's states in order; `failed` and `rolled_back` may come at any time. */
export const OTA_STATES = [...DEVICE_STATES, 'failed', 'rolled_back'] as const
export type OtaState = (typeof OTA_STATES)[number]

/** Error codes of a `failed` report (the spec allows other short snake_case strings). */
export const OTA_ERRORS = [
  'download_failed',
  'size_mismatch',
  'hash_mismatch',
  'bad_signature',
  'incompatible',
  'install_failed',
  'health_check_failed',
  // the agent's own: a notice it cannot read, a notice that does not match its signed manifest,
  // and a second job while one is in progress
  'bad_notice',
  'manifest_mismatch',
  'busy',
] as const
export type OtaErrorCode = (typeof OTA_ERRORS)[number]

export interface OtaStatus {
  jobId: string
  state: OtaState
  progress?: number
  version?: string
  error?: string
}

export interface InstallNotice {
  jobId: string
  action: 'install'
  version: string
  url: string
  size: number
  sha256: string
  /** The manifest as the exact string that was signed. */
  manifest: string
  /** base64url of the Ed25519 signature over the manifest's UTF-8 bytes. */
  signature: string
  /** How long after `rebooting` the hub waits for `succeeded`. */
  confirmWithinMs: number
}

export interface RollbackNotice {
  jobId: string
  action: 'rollback'
  reason?: string
}

export interface CancelNotice {
  jobId: string
  action: 'cancel'
}

export type OtaNotice = InstallNotice | RollbackNotice | CancelNotice

export type { Manifest }

const SHA256_HEX = /^[0-9a-f]{64}$/
const isText = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length > 0 && v.length <= max
const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string')
const isStringMap = (v: unknown): v is Record<string, string> =>
  isJsonObject(v) && Object.values(v).every((s) => typeof s === 'string')

/** A notice's job id, when it has a usable one (a report needs it, even about a bad notice). */
export function jobIdOf(value: unknown): string | undefined {
  return isJsonObject(value) && isText(value.jobId, 128) ? value.jobId : undefined
}

/** The notice, or what is wrong with it. */
export function parseNotice(value: unknown): OtaNotice | { problem: string } {
  const jobId = jobIdOf(value)
  if (!isJsonObject(value) || jobId === undefined) return { problem: 'a notice needs a jobId' }
  const { action } = value
  if (action === 'cancel') return { jobId, action }
  if (action === 'rollback') {
    return typeof value.reason === 'string' ? { jobId, action, reason: value.reason } : { jobId, action }
  }
  if (action !== 'install') return { problem: `unknown action ${JSON.stringify(action)}` }
  const { version, url, size, sha256, manifest, signature, confirmWithinMs } = value
  if (!isText(version, 64)) return { problem: 'version must be a string' }
  if (!isText(url, 2048) || !/^https?:\/\//i.test(url)) return { problem: 'url must be an http(s) URL' }
  if (!isSize(size)) return { problem: 'size must be a whole number of bytes' }
  if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) return { problem: 'sha256 must be 64 lowercase hex' }
  if (!isText(manifest, 65_536)) return { problem: 'manifest must be a string' }
  if (!isText(signature, 256)) return { problem: 'signature must be a string' }
  if (!isSize(confirmWithinMs) || confirmWithinMs === 0) return { problem: 'confirmWithinMs must be > 0' }
  return { jobId, action, version, url, size, sha256, manifest, signature, confirmWithinMs }
}

/** The manifest's fields, or undefined when the (signed) text is not a version 1 manifest. */
export function parseManifest(text: string): Manifest | undefined {
  let m: unknown
  try {
    m = JSON.parse(text)
  } catch {
    return undefined
  }
  if (!isJsonObject(m) || m.v !== 1) return undefined
  const { packageId, name, version, size, sha256, createdAt } = m
  // absent lists mean "any", as empty ones do
  const models = m.models ?? []
  const tags = m.tags ?? {}
  if (!isText(packageId) || !isText(name) || !isText(version, 64) || !isSize(size)) return undefined
  if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) return undefined
  if (!isStringList(models) || !isStringMap(tags) || typeof createdAt !== 'string') return undefined
  return { v: 1, packageId, name, version, size, sha256, models, tags, createdAt }
}
