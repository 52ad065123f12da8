// Firmware updates (docs/ota.md): packages with a signed manifest, jobs that roll a package out in
// waves, and one execution per device and job whose state only moves forward:
//
//   pending → notified → downloading → downloaded → verified → installing → rebooting → confirming
//     → succeeded
//   any state before a final one → failed | rolled_back | timed_out | cancelled
//   failed | timed_out → rolled_back (the device went back to its last known good image)
//
// Devices report the states from `downloading` on (/tmp/ota-spec.md, the wire design): a state moves
// forward only (repeating `downloading` is fine, skipping is allowed except that `succeeded` must
// come from `confirming`). The hub itself moves `pending → notified`, `→ timed_out`, `→ cancelled`,
// `→ failed` (confirmation_timeout, unconfirmed) and creates `skipped` ones. Everything here is pure:
// the stores apply what these functions decide, with a compare-and-set on the execution's revision.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto'

export const DEVICE_STATES = [
  'downloading',
  'downloaded',
  'verified',
  'installing',
  'rebooting',
  'confirming',
  'succeeded',
] as const
export type DeviceProgressState = (typeof DEVICE_STATES)[number]

export type ExecutionState =
  | 'pending'
  | 'notified'
  | DeviceProgressState
  | 'failed'
  | 'rolled_back'
  | 'timed_out'
  | 'cancelled'
  | 'skipped'

export const EXECUTION_STATES: readonly ExecutionState[] = [
  'pending',
  'notified',
  ...DEVICE_STATES,
  'failed',
  'rolled_back',
  'timed_out',
  'cancelled',
  'skipped',
]

/** States a device may report on `ota/status`. */
export const REPORTABLE: ReadonlySet<string> = new Set<string>([...DEVICE_STATES, 'failed', 'rolled_back'])

export const TERMINAL: ReadonlySet<ExecutionState> = new Set<ExecutionState>([
  'succeeded',
  'failed',
  'rolled_back',
  'timed_out',
  'cancelled',
  'skipped',
])

/** What counts against a rollout's failure threshold. */
export const FAILURES: ReadonlySet<ExecutionState> = new Set<ExecutionState>(['failed', 'rolled_back', 'timed_out'])

/** From `installing` on the device may run something else: a stop is then a rollback. */
const INSTALLED_FROM = DEVICE_STATES.indexOf('installing')

export type JobState = 'awaiting_approval' | 'scheduled' | 'running' | 'paused' | 'halted' | 'completed' | 'cancelled'

/** Jobs in these states are done: the scheduler forgets them. */
export const JOB_FINAL: ReadonlySet<JobState> = new Set<JobState>(['completed', 'cancelled'])

export interface OtaPackage {
  id: string
  name: string
  version: string
  /** Model ids the package is for; empty: any model. */
  models: string[]
  /** Tags a device must have; empty: any device. */
  tags: Record<string, string>
  /** awaiting_file: registered, the file is to be uploaded; ready: signed, usable by jobs. */
  state: 'awaiting_file' | 'ready'
  /** hosted: the hub serves the file; external: `url` points to another store. */
  source: 'hosted' | 'external'
  url?: string
  size?: number
  sha256?: string
  /** The exact JSON text that is signed (set once the size and hash are known). */
  manifest?: string
  /** base64url Ed25519 signature of the manifest's UTF-8 bytes. */
  signature?: string
  createdAt: string
  updatedAt: string
  rev: number
}

export interface MaintenanceWindow {
  /** "HH:MM", UTC */
  start: string
  end: string
}

export interface Rollout {
  /** Devices per wave (when neither size nor percent is given: one wave of every device). */
  waveSize?: number
  wavePercent?: number
  /** Notifications per minute at most; unset: no limit. */
  ratePerMinute?: number
  /** Fraction (0–1] of a wave that must succeed before the next wave starts. @default 1 */
  successThreshold: number
  /** Failures job-wide that halt the job: a fraction (< 1) of the job's devices, or a count (≥ 1). */
  failureThreshold?: number
  /** How long a device has from its notification to a final state. @default 3600000 */
  deviceTimeoutMs: number
  /** How long after `rebooting` a device has to report `succeeded`. @default 300000 */
  confirmWithinMs: number
  maintenanceWindow?: MaintenanceWindow
}

export interface JobTarget {
  deviceIds?: string[]
  where?: string
}

export interface HaltReason {
  threshold: 'failure' | 'success'
  message: string
  /** Failures job-wide when halted, and the limit they reached (failure threshold). */
  failures?: number
  limit?: number
  /** The wave that could not reach its success threshold. */
  wave?: number
  /** The devices that failed (at most 1000 listed). */
  devices: string[]
  at: string
}

export interface OtaJob {
  id: string
  packageId: string
  /** The package's version, copied for reports and checks. */
  version: string
  state: JobState
  target: JobTarget
  requireApproval: boolean
  createdBy: string
  approvedBy?: string
  /** When the job may start (unix ms). */
  startAt: number
  rollout: Rollout
  /** Devices resolved when the job started (skipped ones included). */
  devices?: number
  /** Devices per wave (resolved at start) and the number of waves. */
  waveSize?: number
  waves?: number
  /** The current wave, from 1; 0 before the job starts. */
  wave: number
  halt?: HaltReason
  /** Why it was cancelled or paused, when given. */
  note?: string
  createdAt: string
  updatedAt: string
  startedAt?: string
  finishedAt?: string
  rev: number
}

export interface OtaExecution {
  jobId: string
  deviceId: string
  /** Position in the job's device list (from 0): which wave it is in. */
  ordinal: number
  state: ExecutionState
  progress?: number
  /** The version the device reported running (confirming, succeeded, rolled_back). */
  version?: string
  error?: string
  /** When the device was notified and when it must be finished by (unix ms). */
  notifiedAt?: number
  deadline?: number
  /** When `succeeded` is due after `rebooting` (unix ms). */
  confirmBy?: number
  /** A rollback instruction is outstanding until the device reports rolled_back. */
  rollback?: { reason: string; at: string }
  createdAt: string
  updatedAt: string
  history: { state: ExecutionState; at: string; error?: string }[]
  rev: number
}

/**
 * An execution is in flight (tracked by the scheduler for its deadlines) from its notification to a
 * final state. A rollback still owed after a final state is not: it has no deadline, and is sent
 * again whenever the device subscribes (the execution's `rollback` says so).
 */
export function isInFlight(e: OtaExecution): boolean {
  return e.state !== 'pending' && !TERMINAL.has(e.state)
}

// ---- the execution state machine ------------------------------------------------------------

export interface StatusReport {
  jobId: string
  state: string
  progress?: number
  version?: string
  error?: string
}

export type ReportOutcome =
  | { ok: true; next: OtaExecution; rollback: boolean }
  | { ok: false; reason: 'finished' | 'not_notified' | 'backwards' | 'invalid'; message: string }

const ERROR_CODE = /^[a-z][a-z0-9_]{0,63}$/

/** Checks a decoded `ota/status` payload; the report or why it is unusable. */
export function parseReport(v: unknown): { ok: true; report: StatusReport } | { ok: false; message: string } {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return { ok: false, message: 'the report must be an object' }
  const o = v as Record<string, unknown>
  if (typeof o.jobId !== 'string' || o.jobId.length === 0 || o.jobId.length > 64)
    return { ok: false, message: 'jobId must be a string of 1-64 characters' }
  if (typeof o.state !== 'string' || !REPORTABLE.has(o.state))
    return { ok: false, message: `state must be one of ${[...REPORTABLE].join(', ')}` }
  const r: StatusReport = { jobId: o.jobId, state: o.state }
  if (o.progress !== undefined) {
    if (typeof o.progress !== 'number' || !(o.progress >= 0 && o.progress <= 100))
      return { ok: false, message: 'progress must be a number from 0 to 100' }
    r.progress = o.progress
  }
  if (o.version !== undefined) {
    if (typeof o.version !== 'string' || o.version.length === 0 || o.version.length > 64)
      return { ok: false, message: 'version must be a string of 1-64 characters' }
    r.version = o.version
  }
  if (o.error !== undefined) {
    if (typeof o.error !== 'string' || !ERROR_CODE.test(o.error))
      return { ok: false, message: 'error must be a short snake_case code' }
    r.error = o.error
  }
  if (r.state === 'failed' && r.error === undefined)
    return { ok: false, message: 'a failed report needs an error code' }
  return { ok: true, report: r }
}

/** A copy of the execution moved to `to` (a repeated `downloading` adds no history entry). */
export function moveExecution(
  e: OtaExecution,
  to: ExecutionState,
  at: string,
  patch: Partial<OtaExecution> = {},
): OtaExecution {
  const next: OtaExecution = { ...e, ...patch, state: to, updatedAt: at, rev: e.rev + 1 }
  if (to !== e.state) {
    const h: OtaExecution['history'][number] = { state: to, at }
    if (patch.error !== undefined) h.error = patch.error
    next.history = [...e.history, h]
  }
  return next
}

function rank(s: ExecutionState): number {
  return s === 'notified' ? -1 : DEVICE_STATES.indexOf(s as DeviceProgressState)
}

/**
 * Applies a device's report to its execution. `rollback` says the hub must now tell the device to
 * roll back (a success it did not confirm). Refusals never change anything.
 */
export function applyReport(
  e: OtaExecution,
  r: StatusReport,
  job: { version: string; rollout: { confirmWithinMs: number } },
  now: number,
): ReportOutcome {
  const at = new Date(now).toISOString()
  if (e.state === 'pending') return { ok: false, reason: 'not_notified', message: 'the device was not notified yet' }
  if (TERMINAL.has(e.state)) {
    // a device told to roll back (or that failed and rolled back on its own) says it is back
    if (r.state === 'rolled_back' && (e.state === 'failed' || e.state === 'timed_out')) {
      return { ok: true, next: moveExecution(e, 'rolled_back', at, withVersion(r)), rollback: false }
    }
    return { ok: false, reason: 'finished', message: `the execution is already ${e.state}` }
  }
  if (r.state === 'failed') {
    return { ok: true, next: moveExecution(e, 'failed', at, { error: r.error as string }), rollback: false }
  }
  if (r.state === 'rolled_back') {
    return { ok: true, next: moveExecution(e, 'rolled_back', at, withVersion(r)), rollback: false }
  }
  if (r.state === 'succeeded') {
    if (e.state !== 'confirming' || r.version !== job.version) {
      const next = moveExecution(e, 'failed', at, {
        error: 'unconfirmed',
        rollback: { reason: 'unconfirmed', at },
        ...withVersion(r),
      })
      return { ok: true, next, rollback: true }
    }
    const next = moveExecution(e, 'succeeded', at, { version: r.version })
    delete next.confirmBy
    return { ok: true, next, rollback: false }
  }
  const from = rank(e.state)
  const to = rank(r.state as ExecutionState)
  if (to < from || (to === from && r.state !== 'downloading')) {
    return { ok: false, reason: 'backwards', message: `cannot go from ${e.state} to ${r.state}` }
  }
  const patch: Partial<OtaExecution> = {}
  if (r.progress !== undefined) patch.progress = r.progress
  if (r.state === 'downloaded') patch.progress = 100
  if (r.state === 'rebooting') patch.confirmBy = now + job.rollout.confirmWithinMs
  if (r.state === 'confirming') {
    if (r.version !== undefined && r.version !== job.version) {
      // back on another image after the reboot: the new one did not come up
      const next = moveExecution(e, 'failed', at, {
        error: 'wrong_version',
        version: r.version,
        rollback: { reason: 'wrong_version', at },
      })
      return { ok: true, next, rollback: true }
    }
    if (r.version !== undefined) patch.version = r.version
    // confirming without having said rebooting: the deadline starts now
    if (e.confirmBy === undefined) patch.confirmBy = now + job.rollout.confirmWithinMs
  }
  return { ok: true, next: moveExecution(e, r.state as ExecutionState, at, patch), rollback: false }
}

function withVersion(r: StatusReport): Partial<OtaExecution> {
  return r.version !== undefined ? { version: r.version } : {}
}

export type DeadlineOutcome = { next: OtaExecution; send?: 'rollback' | 'cancel' } | undefined

/** What the hub does with an execution whose deadline has passed at `now`; undefined: nothing yet. */
export function checkDeadlines(e: OtaExecution, now: number): DeadlineOutcome {
  if (TERMINAL.has(e.state) || e.state === 'pending') return undefined
  const at = new Date(now).toISOString()
  if (e.confirmBy !== undefined && now >= e.confirmBy && (e.state === 'rebooting' || e.state === 'confirming')) {
    const next = moveExecution(e, 'failed', at, {
      error: 'confirmation_timeout',
      rollback: { reason: 'confirmation_timeout', at },
    })
    return { next, send: 'rollback' }
  }
  if (e.deadline !== undefined && now >= e.deadline) {
    const installed = rank(e.state) >= INSTALLED_FROM
    const patch: Partial<OtaExecution> = { error: 'timed_out' }
    if (installed) patch.rollback = { reason: 'timed_out', at }
    return { next: moveExecution(e, 'timed_out', at, patch), send: installed ? 'rollback' : 'cancel' }
  }
  return undefined
}

/** Can a job's cancel stop this execution? Those the device is installing run to their end. */
export function cancellable(e: OtaExecution): boolean {
  return e.state === 'pending' || (rank(e.state) < INSTALLED_FROM && !TERMINAL.has(e.state))
}

// ---- rollout arithmetic ---------------------------------------------------------------------

export function waveSizeOf(r: Rollout, devices: number): number {
  if (devices === 0) return 1
  if (r.waveSize !== undefined) return Math.max(1, Math.min(r.waveSize, devices))
  if (r.wavePercent !== undefined) return Math.max(1, Math.min(devices, Math.ceil((devices * r.wavePercent) / 100)))
  return devices
}

/** The failure count that halts a job of `devices` counted devices; undefined: never halts. */
export function failureLimit(r: Rollout, devices: number): number | undefined {
  const f = r.failureThreshold
  if (f === undefined) return undefined
  return f < 1 ? Math.max(1, Math.ceil(f * devices)) : Math.floor(f)
}

/** The successes a wave of `counted` devices needs to let the next one start. */
export function successesNeeded(r: Rollout, counted: number): number {
  return Math.ceil(r.successThreshold * counted - 1e-9)
}

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/

export function isHhMm(s: string): boolean {
  return HHMM.test(s)
}

function minutes(s: string): number {
  const m = HHMM.exec(s) as RegExpExecArray
  return Number(m[1]) * 60 + Number(m[2])
}

/** Is `now` inside the window (UTC)? A window whose end is before its start spans midnight. */
export function inWindow(w: MaintenanceWindow | undefined, now: number): boolean {
  if (!w) return true
  const d = new Date(now)
  const t = d.getUTCHours() * 60 + d.getUTCMinutes()
  const s = minutes(w.start)
  const e = minutes(w.end)
  if (s === e) return true
  return s < e ? t >= s && t < e : t >= s || t < e
}

// ---- manifests and signatures ---------------------------------------------------------------

export interface Manifest {
  v: 1
  packageId: string
  name: string
  version: string
  size: number
  sha256: string
  /** Model ids the package is for; empty: any model. */
  models: string[]
  /** Tags a device must have; empty: any device. */
  tags: Record<string, string>
  createdAt: string
}

/** The manifest text of a package whose size and hash are known (key order fixed). */
export function buildManifest(p: OtaPackage): string {
  if (p.size === undefined || p.sha256 === undefined) throw new Error('the package has no size and hash yet')
  const m: Manifest = {
    v: 1,
    packageId: p.id,
    name: p.name,
    version: p.version,
    size: p.size,
    sha256: p.sha256,
    models: p.models,
    tags: p.tags,
    createdAt: p.createdAt,
  }
  return JSON.stringify(m)
}

export interface SigningKey {
  privateKey: KeyObject
  publicKey: KeyObject
  /** The public key as PEM (SPKI) and as base64url of its raw 32 bytes. */
  publicKeyPem: string
  publicKeyRaw: string
  /** True when generated at start (no key configured). */
  ephemeral: boolean
}

function fromPrivate(privateKey: KeyObject, ephemeral: boolean): SigningKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the OTA signing key must be an Ed25519 key, not ${privateKey.asymmetricKeyType}`)
  }
  const publicKey = createPublicKey(privateKey)
  const jwk = publicKey.export({ format: 'jwk' }) as { x: string }
  return {
    privateKey,
    publicKey,
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    publicKeyRaw: jwk.x,
    ephemeral,
  }
}

/** Reads a PKCS#8 PEM Ed25519 private key. */
export function loadSigningKey(pem: string | Buffer): SigningKey {
  return fromPrivate(createPrivateKey(pem), false)
}

export function generateSigningKey(): SigningKey {
  return fromPrivate(generateKeyPairSync('ed25519').privateKey, true)
}

export function signManifest(manifest: string, key: SigningKey): string {
  return sign(null, Buffer.from(manifest, 'utf8'), key.privateKey).toString('base64url')
}

/**
 * The trusted public key, from a PEM (SPKI) or the base64url of its raw 32 bytes (what
 * `GET /ota/signing-key` answers as `publicKey`). Throws a TypeError for anything else.
 */
export function parsePublicKey(key: string | KeyObject): KeyObject {
  let k: KeyObject
  if (typeof key !== 'string') k = key
  else if (key.includes('-----BEGIN')) {
    try {
      k = createPublicKey(key)
    } catch (err) {
      throw new TypeError(`not a public key PEM: ${(err as Error).message}`)
    }
  } else {
    const raw = key.trim()
    if (!/^[A-Za-z0-9_-]{43}$/.test(raw) || Buffer.from(raw, 'base64url').length !== 32) {
      throw new TypeError('an Ed25519 public key is a PEM or the base64url of its 32 raw bytes')
    }
    k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw }, format: 'jwk' })
  }
  if (k.type !== 'public' || k.asymmetricKeyType !== 'ed25519')
    throw new TypeError('the key is not an Ed25519 public key')
  return k
}

/**
 * Does `signature` (base64url) sign `manifest` under the public key (a KeyObject, or what
 * parsePublicKey reads)? Never throws: a key or signature that is not one answers false.
 */
export function verifyManifest(manifest: string, signature: string, publicKey: KeyObject | string): boolean {
  if (!/^[A-Za-z0-9_-]+$/.test(signature)) return false
  const sig = Buffer.from(signature, 'base64url')
  if (sig.length !== 64) return false
  try {
    return verify(null, Buffer.from(manifest, 'utf8'), parsePublicKey(publicKey), sig)
  } catch {
    return false
  }
}
