// The reference firmware update agent (issue 8; docs/ota.md): it takes the notices FleetHub sends on
// `$iot/{id}/ota/notify` and reports each step on `ota/status`. An install is checked (signature,
// manifest, model), downloaded resumably, checked again (size, SHA-256), written into the inactive
// A/B slot, booted on trial after a simulated reboot, health-checked and confirmed; a failed health
// check or a rollback instruction goes back to the previous slot, or to the golden image when that
// one is no longer valid. Every step is recorded in state.json first, so a restart of the process
// (or a power cut) resumes where it was: a partial download, a reboot, a pending confirmation.
//
// Notices are handled one at a time, in order; a rollback or cancel for the job being downloaded
// stops the download at once. The file is long because the job is one state machine: its steps
// read best together.
import type { KeyObject } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import type { DeviceChannel } from './channel.js'
import {
  type JobInProgress,
  type LastOutcome,
  type OtaDiskState,
  openDisk,
  otaPaths,
  otherSlot,
  type PendingInstall,
  removePart,
  restoreGolden,
  type Slot,
  saveState,
  sha256File,
  sizeOf,
  slotValid,
  writeSlot,
} from './ota-disk.js'
import { DownloadError, downloadResumable, PowerCut } from './ota-download.js'
import {
  type InstallNotice,
  jobIdOf,
  OTA_STATES,
  type OtaErrorCode,
  type OtaNotice,
  type OtaState,
  type OtaStatus,
  parseNotice,
} from './ota-protocol.js'
import { corruptFile, dropConnection, isOtaFailure, type OtaFailure, tamperSignature } from './ota-simulation.js'
import { checkInstall, parsePublicKey } from './ota-verify.js'
import { decodeJson, encodeJson } from './payload.js'

export const DEFAULT_FIRMWARE_VERSION = '1.0.0'

export interface OtaHealthInfo {
  jobId: string
  version: string
}

export interface OtaAgentOptions {
  /** Where the slots, the golden image and state.json live; created on first use. */
  dir: string
  /** The Ed25519 public key the device trusts: a PEM, or base64url of the raw 32 bytes. */
  publicKey: string | KeyObject
  /** The device's model id: a package for named models must name it. */
  model?: string
  /** When set, a package's required tags must be among these. */
  tags?: Record<string, string>
  /** The factory image's version, when `dir` is new. Default 1.0.0. */
  firmwareVersion?: string
  /** Runs on the new image after its reboot; false or a throw rolls back. Default: healthy. */
  healthCheck?: (info: OtaHealthInfo) => boolean | Promise<boolean>
  /** Simulates a reboot. Default: the connection drops for `rebootMs` and comes back. */
  reboot?: () => Promise<void>
  /** How long the default reboot keeps the device offline. Default 200. */
  rebootMs?: number
  /** Fail on purpose, in one of the ways of OTA_FAILURES. */
  fail?: OtaFailure
  /**
   * With `fail: 'power_loss'`: called when the power goes, after the agent has stopped (the caller
   * then restarts the device and starts a new agent on the same `dir`). Default: the agent reboots
   * and resumes from state.json by itself.
   */
  onPowerLoss?: () => void
  /** Headers for the download requests (a CDN's credentials, say). */
  downloadHeaders?: Record<string, string>
  /** Download retries without progress before `download_failed`. Default 5. */
  downloadRetries?: number
  /** Pause before the first download retry (doubled for each next one). Default 200. */
  retryDelayMs?: number
  /** Percentage points between two `downloading` reports. Default 10. */
  progressStep?: number
  /** What the agent does, one line at a time. */
  log?: (message: string) => void
  /** Refused notices and failures the agent cannot report to FleetHub. */
  onError?: (err: Error) => void
}

export interface OtaAgent {
  readonly dir: string
  /** The version running now. */
  version(): string
  /** A copy of state.json as the agent holds it. */
  state(): OtaDiskState
  /** Resolves when every notice received so far has been handled. */
  idle(): Promise<void>
  /** Stops taking notices; a download in progress stops where it is (kept for a resume). */
  stop(): Promise<void>
}

/** What the agent needs of a device: its channel, and its mqtt.js client for the default reboot. */
export type OtaDevice = Pick<DeviceChannel, 'deviceId' | 'onDownlink' | 'subscribeDownlink' | 'publishRaw'> & {
  mqtt?: MqttClient
}

const rank = (s: OtaState) => OTA_STATES.indexOf(s)

/** Rejects once `signal` aborts, so a report waiting on a dead connection does not hold a stop. */
function orAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error('the OTA agent has stopped'))
  return new Promise<T>((resolve, reject) => {
    const stop = () => reject(new Error('the OTA agent has stopped'))
    signal.addEventListener('abort', stop, { once: true })
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', stop))
  })
}

export async function startOtaAgent(device: OtaDevice, opts: OtaAgentOptions): Promise<OtaAgent> {
  const key = parsePublicKey(opts.publicKey)
  if (opts.fail !== undefined && !isOtaFailure(opts.fail)) throw new TypeError(`unknown OTA failure ${opts.fail}`)
  const { dir, fail } = opts
  const firmwareVersion = opts.firmwareVersion ?? DEFAULT_FIRMWARE_VERSION
  let disk = await openDisk(dir, firmwareVersion)
  const life = new AbortController()
  let stopped = false
  let tail: Promise<void> = Promise.resolve()
  let current: { jobId: string; ac: AbortController; installing: boolean } | undefined
  /** The install notice taken last, until its step starts (a second job meanwhile is busy). */
  let claimed: string | undefined
  const log = (m: string) => opts.log?.(m)
  const reportError = (err: unknown) => opts.onError?.(err instanceof Error ? err : new Error(String(err)))

  const running = () => disk.versions[disk.active] ?? disk.golden
  const save = () => saveState(dir, disk)

  function enqueue(step: () => Promise<void>): void {
    tail = tail
      .then(() => (stopped ? undefined : step()))
      .catch((err: unknown) => {
        if (!stopped) reportError(err)
      })
  }

  function send(status: OtaStatus): Promise<void> {
    return orAbort(device.publishRaw('ota/status', encodeJson(status), { qos: 1 }), life.signal)
  }

  async function reboot(): Promise<void> {
    log('rebooting')
    try {
      if (opts.reboot) await orAbort(opts.reboot(), life.signal)
      else if (device.mqtt) await dropConnection(device.mqtt, opts.rebootMs ?? 200, life.signal)
    } catch (err) {
      if (stopped) throw err
      // the device is back, whatever the reboot hook says: state.json decides what runs
      reportError(new Error(`the reboot failed: ${(err as Error).message}`))
    }
    log(`running ${running()} in slot ${disk.active}`)
  }

  /** Records how a job ended, then reports it (again after a restart, until acknowledged). */
  async function finish(outcome: Omit<LastOutcome, 'sent'>): Promise<void> {
    disk.last = { ...outcome, sent: false }
    if (disk.job?.jobId === outcome.jobId) delete disk.job
    await save()
    if (outcome.state === 'failed') log(`job ${outcome.jobId} failed: ${outcome.error}`)
    await sendLast()
  }

  async function sendLast(): Promise<void> {
    const last = disk.last
    if (!last) return
    const { jobId, state, version, error } = last
    await send({ jobId, state, ...(version ? { version } : {}), ...(error ? { error } : {}) })
    last.sent = true
    await save()
  }

  /** Reports a forward state of a job once (a resume repeats only `downloading`). */
  async function reach(job: JobInProgress, state: OtaState): Promise<void> {
    if (job.reached && rank(job.reached) >= rank(state)) return
    await send({ jobId: job.jobId, state })
    job.reached = state
    await save()
  }

  const failJob = (job: JobInProgress, error: OtaErrorCode) =>
    removePart(dir).then(() => finish({ jobId: job.jobId, state: 'failed', error }))

  // ---- a job, from its notice to its reboot ----

  async function onInstall(n: InstallNotice): Promise<void> {
    if (disk.last?.jobId === n.jobId) {
      // FleetHub repeats a notice while it has not heard how the job went
      if (!disk.last.sent) await sendLast()
      return
    }
    if (disk.job?.jobId === n.jobId || disk.pending?.jobId === n.jobId) return // under way
    if (disk.job || disk.pending) {
      log(`job ${n.jobId} refused: job ${disk.job?.jobId ?? disk.pending?.jobId} is in progress`)
      return send({ jobId: n.jobId, state: 'failed', error: 'busy' })
    }
    const signature = fail === 'bad_signature' ? tamperSignature(n.signature) : n.signature
    const check = checkInstall({ ...n, signature }, key, {
      ...(opts.model !== undefined ? { model: opts.model } : {}),
      ...(opts.tags ? { tags: opts.tags } : {}),
    })
    if (!check.ok) {
      log(`job ${n.jobId} refused: ${check.message}`)
      return finish({ jobId: n.jobId, state: 'failed', error: check.error })
    }
    if (n.version === running() && n.sha256 === disk.hashes[disk.active]) {
      log(`job ${n.jobId}: ${n.version} is running already`)
      await send({ jobId: n.jobId, state: 'confirming', version: n.version })
      return finish({ jobId: n.jobId, state: 'succeeded', version: n.version })
    }
    const { jobId, version, url, size, sha256, confirmWithinMs } = n
    disk.job = { jobId, version, url, size, sha256, confirmWithinMs }
    await removePart(dir)
    await save()
    log(`job ${jobId}: installing ${version} (${size} bytes) from ${url}`)
    await runJob(disk.job)
  }

  async function runJob(job: JobInProgress): Promise<void> {
    const ac = new AbortController()
    const mine = { jobId: job.jobId, ac, installing: false }
    current = mine
    try {
      if (!(await downloadAndVerify(job, ac.signal)) || ac.signal.aborted) return
      mine.installing = true
      await install(job)
    } finally {
      if (current === mine) current = undefined
    }
  }

  /** True when the file is complete and verified; false when the job ended or stopped. */
  async function downloadAndVerify(job: JobInProgress, signal: AbortSignal): Promise<boolean> {
    const part = otaPaths(dir).part
    const step = opts.progressStep ?? 10
    let shown = -1
    const progress = (bytes: number) => {
      const pct = job.size === 0 ? 100 : Math.floor((bytes * 100) / job.size)
      if (shown >= 0 && pct < shown + step && !(pct === 100 && shown < 100)) return
      shown = pct
      send({ jobId: job.jobId, state: 'downloading', progress: pct }).catch(reportError)
    }
    const cut = fail === 'power_loss' && !job.powerLost && job.size > 1
    try {
      await downloadResumable({
        url: job.url,
        file: part,
        size: job.size,
        signal,
        onProgress: progress,
        ...(opts.downloadHeaders ? { headers: opts.downloadHeaders } : {}),
        ...(opts.downloadRetries !== undefined ? { retries: opts.downloadRetries } : {}),
        ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
        ...(cut ? { cutAt: Math.floor(job.size / 2) } : {}),
      })
    } catch (err) {
      if (signal.aborted) return false // a cancel, a rollback or a stop: their own steps follow
      if (err instanceof PowerCut) {
        await powerCut(job, err)
        return false
      }
      log(`job ${job.jobId}: download failed: ${(err as Error).message}`)
      await failJob(job, err instanceof DownloadError ? err.code : 'download_failed')
      return false
    }
    if (fail === 'bad_hash') await corruptFile(part)
    if ((await sizeOf(part)) !== job.size) {
      await failJob(job, 'size_mismatch')
      return false
    }
    await reach(job, 'downloaded')
    if ((await sha256File(part)) !== job.sha256) {
      await failJob(job, 'hash_mismatch')
      return false
    }
    await reach(job, 'verified')
    return true
  }

  async function install(job: JobInProgress): Promise<void> {
    await reach(job, 'installing')
    const target = otherSlot(disk.active)
    // the slot is overwritten: until it holds the new image it holds nothing a rollback could use
    disk.versions[target] = null
    disk.hashes[target] = null
    if (disk.previous === target) disk.previous = null
    await save()
    let written = false
    try {
      written = await writeSlot(dir, target, job.sha256)
    } catch (err) {
      reportError(err)
    }
    if (!written) return failJob(job, 'install_failed')
    disk.versions[target] = job.version
    disk.hashes[target] = job.sha256
    disk.pending = { jobId: job.jobId, slot: target, from: disk.active, version: job.version, stage: 'installed' }
    delete disk.job
    await save()
    await removePart(dir)
    await rebootInto(disk.pending)
  }

  async function rebootInto(p: PendingInstall): Promise<void> {
    await send({ jobId: p.jobId, state: 'rebooting' })
    disk.active = p.slot
    p.stage = 'rebooting'
    await save()
    await reboot()
    await boot()
  }

  // ---- after a (re)start: what state.json says is under way ----

  async function boot(): Promise<void> {
    const p = disk.pending
    if (p) {
      if (p.stage === 'installed') return rebootInto(p)
      if (p.stage === 'rebooting') {
        p.stage = 'booted'
        await save()
      }
      return confirm(p)
    }
    if (disk.job) {
      log(`job ${disk.job.jobId}: resuming the download`)
      return runJob(disk.job)
    }
    if (disk.last && !disk.last.sent) await sendLast()
  }

  async function confirm(p: PendingInstall): Promise<void> {
    let healthy = fail !== 'crash_after_reboot'
    if (healthy && opts.healthCheck) {
      try {
        healthy = (await opts.healthCheck({ jobId: p.jobId, version: p.version })) !== false
      } catch (err) {
        log(`health check threw: ${(err as Error).message}`)
        healthy = false
      }
    }
    if (!healthy) {
      log(`job ${p.jobId}: ${p.version} failed its health check`)
      return rollBack(p.jobId, 'health_check_failed')
    }
    if (!p.confirming) {
      await send({ jobId: p.jobId, state: 'confirming', version: p.version })
      p.confirming = true
      await save()
    }
    if (fail === 'no_confirm') {
      log(`job ${p.jobId}: not confirming ${p.version} (simulated)`)
      return
    }
    disk.previous = p.from
    delete disk.pending
    await finish({ jobId: p.jobId, state: 'succeeded', version: p.version })
    log(`job ${p.jobId}: ${p.version} confirmed`)
  }

  /** Goes back to the last known good image for `jobId` and reports `rolled_back`. */
  async function rollBack(jobId: string, error?: string): Promise<void> {
    const p = disk.pending
    const last = disk.last
    let target: Slot | undefined
    if (p?.jobId === jobId) {
      if (p.stage !== 'installed') target = p.from
      delete disk.pending
    } else if (last?.jobId === jobId && last.state === 'succeeded') {
      target = disk.previous ?? otherSlot(disk.active)
    } else if (last?.jobId === jobId && last.state === 'rolled_back') {
      if (!last.sent) await sendLast()
      return
    }
    if (disk.job?.jobId === jobId) {
      delete disk.job
      await removePart(dir)
    }
    if (target !== undefined) {
      if (!(await slotValid(dir, disk, target))) {
        log(`slot ${target} is not valid: restoring the golden image ${disk.golden}`)
        await restoreGolden(dir, disk, target)
      }
      disk.active = target
      disk.previous = null
    }
    disk.last = { jobId, state: 'rolled_back', version: running(), ...(error ? { error } : {}), sent: false }
    await save()
    log(`job ${jobId}: rolled back to ${running()}`)
    if (target !== undefined) await reboot()
    await sendLast()
  }

  async function onCancel(jobId: string): Promise<void> {
    if (disk.job?.jobId !== jobId) return // not ours, or installing already: too late to stop
    delete disk.job
    await removePart(dir)
    await save()
    log(`job ${jobId}: cancelled`)
  }

  async function powerCut(job: JobInProgress, cut: PowerCut): Promise<void> {
    job.powerLost = true
    await save()
    log(`job ${job.jobId}: ${cut.message} (simulated)`)
    if (opts.onPowerLoss) {
      await halt()
      opts.onPowerLoss()
      return
    }
    await reboot()
    disk = await openDisk(dir, firmwareVersion) // what a fresh start reads
    await boot()
  }

  // ---- notices ----

  function handle(n: OtaNotice): Promise<void> {
    if (n.action === 'install') {
      if (claimed === n.jobId) claimed = undefined // from here on, disk.job or disk.pending say it
      return onInstall(n)
    }
    if (n.action === 'rollback') return rollBack(n.jobId)
    return onCancel(n.jobId)
  }

  const off = device.onDownlink('ota/notify', function otaNotice({ payload }) {
    if (stopped) return
    const value = decodeJson(payload)
    const n = parseNotice(value)
    if ('problem' in n) {
      reportError(new Error(`an ota/notify was refused: ${n.problem}`))
      const jobId = jobIdOf(value)
      const install = (value as { action?: unknown } | undefined)?.action === 'install'
      if (jobId !== undefined && install) enqueue(() => finish({ jobId, state: 'failed', error: 'bad_notice' }))
      return
    }
    if (n.action === 'install') {
      const busyWith = claimed ?? disk.job?.jobId ?? disk.pending?.jobId
      if (busyWith !== undefined && busyWith !== n.jobId) {
        // answered at once: queued, it would wait for the whole other job
        log(`job ${n.jobId} refused: job ${busyWith} is in progress`)
        send({ jobId: n.jobId, state: 'failed', error: 'busy' }).catch(reportError)
        return
      }
      claimed = n.jobId
    } else if (current?.jobId === n.jobId && !current.installing) current.ac.abort(n.action)
    enqueue(() => handle(n))
  })

  async function halt(): Promise<void> {
    stopped = true
    off()
    current?.ac.abort('stop')
    life.abort()
  }

  enqueue(boot) // before any notice: the device finishes what it was doing
  const sub = await device.subscribeDownlink(['ota/notify'])
  if (sub.refused.length > 0) {
    await halt()
    throw new Error(`FleetHub refused the subscription to $iot/${device.deviceId}/ota/notify`)
  }
  log(`OTA agent: running ${running()} in slot ${disk.active}`)

  return {
    dir,
    version: running,
    state: () => structuredClone(disk),
    async idle() {
      let seen: Promise<void> | undefined
      while (seen !== tail) {
        seen = tail
        await seen
      }
    },
    async stop() {
      await halt()
      await tail
    },
  }
}
