// Firmware updates (docs/ota.md): one service for the HTTP routes, the devices' status reports and
// the rollout scheduler. Every execution change is a compare-and-set in the store (which moves the
// job's totals in the same step), announced on `$iot/{id}/events/ota` and `$fleet/jobs/{jobId}/events`.
//
// The scheduler: every node looks at the open jobs each tick, and drives the ones whose lease it
// holds (taken and renewed in the store), so one node at a time drives a job and another takes over
// from the stored state when it stops or is lost. Deadlines are stored in the executions, so they
// survive restarts too.
import { randomBytes, randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Readable } from 'node:stream'
import type { Logger } from '../../broker/log.js'
import type { Metrics } from '../../broker/metrics.js'
import type { BrokerPort } from '../../broker/session.js'
import { decodeEnvelope } from '../../registry/envelope.js'
import { errors } from '../../registry/errors.js'
import {
  applyReport,
  buildManifest,
  cancellable,
  checkDeadlines,
  type ExecutionState,
  FAILURES,
  failureLimit,
  type HaltReason,
  inWindow,
  JOB_FINAL,
  type JobTarget,
  type MaintenanceWindow,
  moveExecution,
  type OtaExecution,
  type OtaJob,
  type OtaPackage,
  parseReport,
  type Rollout,
  type SigningKey,
  signManifest,
  successesNeeded,
  TERMINAL,
  waveSizeOf,
} from '../../registry/ota.js'
import type { OtaStore } from '../../registry/ports.js'
import type { RegistryService } from '../../registry/service.js'
import { deviceTopic, eventTopic } from '../../registry/topics.js'
import type { TwinApi } from '../twins/api.js'
import type { PackageFiles } from './files.js'

/** Most devices one job may target. */
export const MAX_JOB_DEVICES = 100_000
/** Failing devices a halt reason lists at most. */
const MAX_LISTED = 1000
const BATCH = 500

export interface PackageInput {
  name: string
  version: string
  models?: string[]
  tags?: Record<string, string>
  size?: number
  sha256?: string
  url?: string
}

export interface JobInput {
  packageId: string
  target: JobTarget
  startAt?: string
  requireApproval?: boolean
  rollout?: Partial<Rollout>
}

export type OtaService = ReturnType<typeof createOtaService>

export function createOtaService(deps: {
  store: OtaStore
  registry: RegistryService
  broker: BrokerPort
  twins: TwinApi
  files: PackageFiles
  key: SigningKey
  log: Logger
  metrics: Metrics
  config: { tickMs: number; baseUrl?: string; host: string; httpPort: number }
}) {
  const { store, registry, broker, twins, files, key, log, metrics, config } = deps
  const leaseTtl = Math.max(3000, config.tickMs * 5)
  /** The HTTP port devices download from (the real one once the node listens: port 0 picks one). */
  let httpPort = config.httpPort
  const downloads = new Set<Socket>()
  /** Jobs whose lease this node holds, with what it keeps in memory to drive them. */
  const held = new Map<string, { cursor: number; tokens: number; at: number }>()
  let timer: NodeJS.Timeout | undefined
  let ticking: Promise<void> | undefined
  let closed = false

  const iso = (ms = Date.now()) => new Date(ms).toISOString()

  function baseUrl(): string {
    if (config.baseUrl) return config.baseUrl.replace(/\/+$/, '')
    const port = httpPort
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
  }

  function urlOf(p: OtaPackage): string {
    return p.source === 'external' ? (p.url as string) : `${baseUrl()}/ota/packages/${p.id}/file`
  }

  // ---- events and messages to devices ----

  function jobTopic(jobId: string) {
    return `$fleet/jobs/${jobId}/events`
  }

  async function announce(prev: ExecutionState, e: OtaExecution): Promise<void> {
    metrics.otaTransitions.inc({ state: e.state })
    const ev: Record<string, unknown> = { jobId: e.jobId, deviceId: e.deviceId, state: e.state, previous: prev }
    if (e.version !== undefined) ev.version = e.version
    if (e.error !== undefined) ev.error = e.error
    if (e.progress !== undefined && e.state === 'downloading') ev.progress = e.progress
    ev.at = e.updatedAt
    const payload = JSON.stringify(ev)
    await Promise.all([
      broker.publish(eventTopic(e.deviceId, 'ota'), payload, { qos: 1 }),
      broker.publish(jobTopic(e.jobId), payload, { qos: 1 }),
    ])
  }

  async function jobEvent(job: OtaJob, extra: Record<string, unknown> = {}): Promise<void> {
    const ev = {
      jobId: job.id,
      type: 'job',
      state: job.state,
      ...extra,
      totals: await store.totals(job.id),
      at: job.updatedAt,
    }
    await broker.publish(jobTopic(job.id), JSON.stringify(ev), { qos: 1 })
  }

  function installMessage(job: OtaJob, p: OtaPackage) {
    return {
      jobId: job.id,
      action: 'install',
      version: p.version,
      url: urlOf(p),
      size: p.size,
      sha256: p.sha256,
      manifest: p.manifest,
      signature: p.signature,
      confirmWithinMs: job.rollout.confirmWithinMs,
    }
  }

  function tell(deviceId: string, message: object): Promise<void> {
    return broker.publish(deviceTopic(deviceId, 'ota/notify'), JSON.stringify(message), { qos: 1 })
  }

  /** Writes a moved execution; re-reads and re-decides when another write came first. */
  async function move(
    jobId: string,
    deviceId: string,
    decide: (e: OtaExecution) => OtaExecution | undefined,
  ): Promise<{ prev: OtaExecution; next: OtaExecution } | undefined> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const e = await store.getExecution(jobId, deviceId)
      if (!e) return undefined
      const next = decide(e)
      if (!next) return undefined
      if (await store.transition(next)) {
        // the stored state is the truth; its events are news, and a bus that is down loses only them
        await announce(e.state, next).catch((err: unknown) =>
          log.warn({ err, jobId, deviceId, state: next.state }, 'OTA: an execution event was not published'),
        )
        return { prev: e, next }
      }
    }
    return undefined
  }

  async function mutateJob(id: string, change: (j: OtaJob) => OtaJob | Error): Promise<OtaJob> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const j = await store.getJob(id)
      if (!j) throw new errors.JOB_NOT_FOUND(id)
      const next = change(j)
      if (next instanceof Error) throw next
      if (await store.updateJob(next)) return next
    }
    throw new errors.CONFLICT(`job ${id} changed too often meanwhile: try again`)
  }

  function jobMoved(j: OtaJob, patch: Partial<OtaJob>): OtaJob {
    return { ...j, ...patch, updatedAt: iso(), rev: j.rev + 1 }
  }

  // ---- packages ----

  async function getPackage(id: string): Promise<OtaPackage> {
    const p = await store.getPackage(id)
    if (!p) throw new errors.PACKAGE_NOT_FOUND(id)
    return p
  }

  function sealed(p: OtaPackage): OtaPackage {
    const manifest = buildManifest(p)
    return { ...p, state: 'ready', manifest, signature: signManifest(manifest, key) }
  }

  // ---- jobs: targets, start, waves ----

  async function resolveTargets(job: OtaJob): Promise<string[]> {
    const out: string[] = []
    const seen = new Set<string>()
    const add = (id: string) => {
      if (seen.has(id)) return
      seen.add(id)
      out.push(id)
    }
    for (const id of job.target.deviceIds ?? []) add(id)
    if (job.target.where !== undefined) {
      let after: string | undefined
      do {
        const page = await registry.listDevices({
          where: job.target.where,
          limit: 1000,
          ...(after !== undefined ? { after } : {}),
        })
        for (const d of page.items) add(d.id)
        after = page.next
      } while (after !== undefined && out.length < MAX_JOB_DEVICES)
    }
    return out.slice(0, MAX_JOB_DEVICES)
  }

  /** Why a device cannot take the package, or undefined when it can. */
  async function ineligible(deviceId: string, p: OtaPackage, jobId: string): Promise<string | undefined> {
    const d = await registry.getRecord(deviceId)
    if (!d) return 'device_not_found'
    for (const [k, v] of Object.entries(p.tags)) {
      if (!Object.hasOwn(d.tags, k) || String(d.tags[k]) !== v) return 'incompatible'
    }
    if (p.models.length > 0) {
      const model = (await registry.store.models.getBinding(deviceId))?.id ?? d.modelId
      if (model === undefined || !p.models.includes(model)) return 'incompatible'
    }
    const other = await store.getCurrent(deviceId)
    if (other !== undefined && other !== jobId) {
      const [oj, oe] = await Promise.all([store.getJob(other), store.getExecution(other, deviceId)])
      if (oj && !JOB_FINAL.has(oj.state) && oe && !TERMINAL.has(oe.state) && oe.state !== 'pending') return 'busy'
    }
    return undefined
  }

  async function startJob(job: OtaJob): Promise<OtaJob | undefined> {
    const p = await store.getPackage(job.packageId)
    const ids = await resolveTargets(job)
    const at = iso()
    const eligible: string[] = []
    const skipped: { id: string; why: string }[] = []
    for (const id of ids) {
      const why = p ? await ineligible(id, p, job.id) : 'package_deleted'
      if (why) skipped.push({ id, why })
      else eligible.push(id)
    }
    const list: OtaExecution[] = []
    eligible.forEach((deviceId, ordinal) => {
      list.push({
        jobId: job.id,
        deviceId,
        ordinal,
        state: 'pending',
        createdAt: at,
        updatedAt: at,
        history: [{ state: 'pending', at }],
        rev: 1,
      })
    })
    skipped.forEach(({ id, why }, i) => {
      list.push({
        jobId: job.id,
        deviceId: id,
        ordinal: eligible.length + i,
        state: 'skipped',
        error: why,
        createdAt: at,
        updatedAt: at,
        history: [{ state: 'skipped', at, error: why }],
        rev: 1,
      })
    })
    for (let i = 0; i < list.length; i += BATCH) await store.addExecutions(job.id, list.slice(i, i + BATCH))
    const waveSize = waveSizeOf(job.rollout, eligible.length)
    const waves = Math.ceil(eligible.length / waveSize)
    const next = jobMoved(job, {
      state: eligible.length === 0 ? 'completed' : 'running',
      devices: eligible.length,
      waveSize,
      waves,
      wave: eligible.length === 0 ? 0 : 1,
      startedAt: at,
      ...(eligible.length === 0 ? { finishedAt: at, note: 'no device could take the package' } : {}),
    })
    if (!(await store.updateJob(next))) return undefined
    await jobEvent(next, { event: 'started', skipped: skipped.length })
    if (next.state === 'completed') await jobEvent(next, { event: 'completed' })
    else await jobEvent(next, { event: 'wave_started', wave: 1 })
    return next
  }

  async function halt(job: OtaJob, reason: Omit<HaltReason, 'at'>): Promise<OtaJob | undefined> {
    const next = jobMoved(job, { state: 'halted', halt: { ...reason, at: iso() } })
    if (!(await store.updateJob(next))) return undefined
    log.warn({ jobId: job.id, threshold: reason.threshold, devices: reason.devices.length }, 'OTA job halted')
    await jobEvent(next, { event: 'halted', reason: next.halt })
    return next
  }

  async function failedIn(jobId: string, from: number, to: number): Promise<string[]> {
    const out: string[] = []
    for (let at = from; at < to && out.length < MAX_LISTED; at += BATCH) {
      for (const e of await store.executionsByOrdinal(jobId, at, Math.min(to, at + BATCH), BATCH)) {
        if (FAILURES.has(e.state) && out.length < MAX_LISTED) out.push(e.deviceId)
      }
    }
    return out
  }

  /** Times out executions past their deadlines (whatever the job's state: devices in flight go on). */
  async function enforceDeadlines(job: OtaJob): Promise<void> {
    const now = Date.now()
    for (const deviceId of await store.inFlight(job.id)) {
      let send: 'rollback' | 'cancel' | undefined
      const moved = await move(job.id, deviceId, (e) => {
        const out = checkDeadlines(e, now)
        send = out?.send
        return out?.next
      })
      if (moved && send) {
        await tell(
          deviceId,
          send === 'rollback'
            ? { jobId: job.id, action: 'rollback', reason: moved.next.error }
            : { jobId: job.id, action: 'cancel' },
        )
      }
    }
  }

  async function notify(job: OtaJob, p: OtaPackage, e: OtaExecution): Promise<boolean> {
    const now = Date.now()
    // the device's pointer first: once it is `notified`, a reconnect must find what to re-send
    await store.setCurrent(e.deviceId, job.id)
    const moved = await move(job.id, e.deviceId, (x) =>
      x.state === 'pending'
        ? moveExecution(x, 'notified', iso(now), { notifiedAt: now, deadline: now + job.rollout.deviceTimeoutMs })
        : undefined,
    )
    if (!moved) return false
    await tell(e.deviceId, installMessage(job, p))
    return true
  }

  async function drive(job: OtaJob): Promise<void> {
    const state = held.get(job.id) as { cursor: number; tokens: number; at: number }
    const totals = await store.totals(job.id)
    const devices = job.devices ?? 0
    const W = job.waveSize ?? 1
    const failures = (totals.failed ?? 0) + (totals.rolled_back ?? 0) + (totals.timed_out ?? 0)
    const limit = failureLimit(job.rollout, devices)
    if (limit !== undefined && failures >= limit) {
      await halt(job, {
        threshold: 'failure',
        message: `${failures} of ${devices} devices failed: the failure threshold is ${limit}`,
        failures,
        limit,
        devices: await failedIn(job.id, 0, Math.min(devices, job.wave * W)),
      })
      return
    }
    const waveEnd = Math.min(devices, job.wave * W)
    // notify what is pending up to the end of the current wave, in order, within the rate and window
    const now = Date.now()
    const rate = job.rollout.ratePerMinute
    if (rate !== undefined) {
      state.tokens = Math.min(Math.max(1, rate / 60), state.tokens + ((now - state.at) * rate) / 60_000)
      state.at = now
    }
    if (inWindow(job.rollout.maintenanceWindow, now) && state.cursor < waveEnd) {
      const p = await store.getPackage(job.packageId)
      if (!p) {
        await halt(job, { threshold: 'failure', message: 'the package was deleted', devices: [] })
        return
      }
      let cursor = state.cursor
      let stop = false
      while (!stop && cursor < waveEnd) {
        const batch = await store.executionsByOrdinal(job.id, cursor, waveEnd, BATCH)
        if (batch.length === 0) break
        for (const e of batch) {
          if (e.state === 'pending') {
            if (rate !== undefined && state.tokens < 1) {
              stop = true
              break
            }
            await notify(job, p, e)
            if (rate !== undefined) state.tokens -= 1
          }
          cursor = e.ordinal + 1
        }
      }
      state.cursor = cursor
    }
    // the wave's outcome
    const from = (job.wave - 1) * W
    const wave = await store.executionsByOrdinal(job.id, from, waveEnd, W)
    let succeeded = 0
    let open = 0
    for (const e of wave) {
      if (e.state === 'succeeded') succeeded++
      else if (!TERMINAL.has(e.state)) open++
    }
    const needed = successesNeeded(job.rollout, wave.length)
    if (succeeded >= needed) {
      if (job.wave < (job.waves ?? 1)) {
        const next = jobMoved(job, { wave: job.wave + 1 })
        if (await store.updateJob(next)) await jobEvent(next, { event: 'wave_started', wave: next.wave })
        return
      }
      const left = (await store.inFlight(job.id)).length + (totals.pending ?? 0)
      if (left === 0) {
        const next = jobMoved(job, { state: 'completed', finishedAt: iso() })
        if (await store.updateJob(next)) await jobEvent(next, { event: 'completed' })
      }
      return
    }
    if (open === 0) {
      await halt(job, {
        threshold: 'success',
        message: `wave ${job.wave}: ${succeeded} of ${wave.length} devices succeeded, ${needed} needed`,
        wave: job.wave,
        devices: await failedIn(job.id, from, waveEnd),
      })
    }
  }

  async function driveJob(id: string): Promise<void> {
    let job = await store.getJob(id)
    if (!job || job.state === 'awaiting_approval') {
      if (held.has(id)) {
        held.delete(id)
        await store.release(id, broker.nodeId)
      }
      return
    }
    if (job.state === 'scheduled' && Date.now() < job.startAt) return
    if (!(await store.lease(id, broker.nodeId, leaseTtl))) {
      held.delete(id)
      return
    }
    // taken over (or first seen): start from the stored state
    if (!held.has(id)) held.set(id, { cursor: 0, tokens: 1, at: Date.now() })
    if (job.state === 'scheduled') {
      job = await startJob(job)
      if (!job) return
    }
    // a cancelled or completed job is on the list only while devices are in flight: their deadlines
    await enforceDeadlines(job)
    if (job.state === 'running') await drive(job)
  }

  async function tick(): Promise<void> {
    for (const id of await store.openJobs()) {
      if (closed) return
      await driveJob(id).catch((err: unknown) => log.error({ err, jobId: id }, 'OTA job step failed'))
    }
  }

  function runTick() {
    if (ticking || closed) return
    ticking = tick()
      .catch((err: unknown) => log.error({ err }, 'OTA scheduler tick failed'))
      .finally(() => {
        ticking = undefined
      })
  }

  // ---- device reports ----

  async function refuse(deviceId: string, reason: string, message: string, jobId?: string): Promise<void> {
    metrics.otaReportsRefused.inc({ reason })
    const e: Record<string, unknown> = { kind: 'ota-status', reason, error: message }
    if (jobId !== undefined) e.jobId = jobId
    await broker.publish(eventTopic(deviceId, 'error'), JSON.stringify(e), { qos: 1 })
  }

  async function writeFirmware(deviceId: string, e: OtaExecution): Promise<void> {
    if (e.version === undefined) return
    try {
      await twins.patchReported(deviceId, { firmware: { version: e.version, jobId: e.jobId, updatedAt: e.updatedAt } })
    } catch (err) {
      log.warn({ err, deviceId }, 'OTA: could not write reported.firmware')
    }
  }

  const service = {
    key,
    files,
    baseUrl,
    /** A download in progress: a stopping node cuts it (the device resumes with a Range request). */
    downloading(socket: Socket, res: ServerResponse) {
      downloads.add(socket)
      res.once('close', () => downloads.delete(socket))
    },

    /** The node listens: hosted files are served on this port. */
    setHttpPort(port: number) {
      httpPort = port
    },

    // ---- packages ----

    async createPackage(input: PackageInput): Promise<OtaPackage> {
      const at = iso()
      const p: OtaPackage = {
        id: randomUUID(),
        name: input.name,
        version: input.version,
        models: [...new Set(input.models ?? [])],
        tags: input.tags ?? {},
        state: 'awaiting_file',
        source: input.url !== undefined ? 'external' : 'hosted',
        createdAt: at,
        updatedAt: at,
        rev: 1,
      }
      if (input.size !== undefined) p.size = input.size
      if (input.sha256 !== undefined) p.sha256 = input.sha256.toLowerCase()
      if (input.url !== undefined) {
        let u: URL
        try {
          u = new URL(input.url)
        } catch {
          throw new errors.BAD_REQUEST('url must be an absolute http(s) URL')
        }
        if (u.protocol !== 'https:' && u.protocol !== 'http:')
          throw new errors.BAD_REQUEST('url must be an absolute http(s) URL')
        if (input.size === undefined || input.sha256 === undefined) {
          throw new errors.BAD_REQUEST('a package at an external url needs its size and sha256')
        }
        p.url = input.url
      }
      const stored = p.source === 'external' ? sealed(p) : p
      if (!(await store.createPackage(stored))) throw new errors.CONFLICT('package id collision: try again')
      return stored
    },

    getPackage,

    async listPackages(q: { after?: string; limit: number }) {
      return store.listPackages(q)
    },

    async deletePackage(id: string): Promise<void> {
      const r = await store.deletePackage(id)
      if (r === 'not_found') throw new errors.PACKAGE_NOT_FOUND(id)
      if (r === 'in_use') throw new errors.PACKAGE_IN_USE(id)
      await files.remove(id)
    },

    /** Stores the uploaded file of a hosted package, checks it against what was declared, signs. */
    async upload(id: string, body: Readable): Promise<OtaPackage> {
      const p = await getPackage(id)
      if (p.source !== 'hosted') throw new errors.PACKAGE_NOT_READY(`package ${id} is at an external url`)
      if (p.state !== 'awaiting_file') throw new errors.PACKAGE_NOT_READY(`package ${id} has its file already`)
      // into a file of its own, renamed over the package's only if everything matches
      const tmp = `${id}.upload-${randomBytes(4).toString('hex')}`
      const f = await files.write(tmp, body)
      try {
        if (p.size !== undefined && p.size !== f.size) {
          throw new errors.PACKAGE_FILE_MISMATCH(`the file is ${f.size} bytes; the package says ${p.size}`)
        }
        if (p.sha256 !== undefined && p.sha256 !== f.sha256) {
          throw new errors.PACKAGE_FILE_MISMATCH(`the file's SHA-256 is ${f.sha256}; the package says ${p.sha256}`)
        }
        await files.promote(tmp, id)
      } catch (err) {
        await files.remove(tmp)
        throw err
      }
      const next = sealed({ ...p, size: f.size, sha256: f.sha256, updatedAt: iso(), rev: p.rev + 1 })
      if (!(await store.updatePackage(next))) throw new errors.CONFLICT(`package ${id} changed meanwhile`)
      return next
    },

    /** A hosted, ready package's file for a device download; undefined when there is none. */
    async downloadable(id: string): Promise<{ p: OtaPackage; size: number } | undefined> {
      const p = await store.getPackage(id)
      if (p?.source !== 'hosted' || p.state !== 'ready') return undefined
      const size = await files.size(id)
      return size === undefined ? undefined : { p, size }
    },

    // ---- jobs ----

    async createJob(input: JobInput, operator: string): Promise<OtaJob> {
      const p = await getPackage(input.packageId)
      if (p.state !== 'ready') throw new errors.PACKAGE_NOT_READY(`package ${p.id} has no file yet: upload it first`)
      const t = input.target
      if ((t.deviceIds === undefined || t.deviceIds.length === 0) && t.where === undefined) {
        throw new errors.BAD_REQUEST('target needs deviceIds or where')
      }
      if (t.where !== undefined) await registry.listDevices({ where: t.where, limit: 1 }) // parses, or 400
      const r = input.rollout ?? {}
      if (r.waveSize !== undefined && r.wavePercent !== undefined) {
        throw new errors.BAD_REQUEST('give waveSize or wavePercent, not both')
      }
      const w = r.maintenanceWindow as MaintenanceWindow | undefined
      const rollout: Rollout = {
        successThreshold: r.successThreshold ?? 1,
        deviceTimeoutMs: r.deviceTimeoutMs ?? 3_600_000,
        confirmWithinMs: r.confirmWithinMs ?? 300_000,
      }
      for (const k of ['waveSize', 'wavePercent', 'ratePerMinute', 'failureThreshold'] as const) {
        if (r[k] !== undefined) rollout[k] = r[k]
      }
      if (w) rollout.maintenanceWindow = { start: w.start, end: w.end }
      let startAt = Date.now()
      if (input.startAt !== undefined) {
        startAt = Date.parse(input.startAt)
        if (Number.isNaN(startAt)) throw new errors.BAD_REQUEST('startAt must be an ISO 8601 date-time')
      }
      const at = iso()
      const job: OtaJob = {
        id: `job-${Date.now().toString(36).padStart(9, '0')}-${randomBytes(5).toString('hex')}`,
        packageId: p.id,
        version: p.version,
        state: input.requireApproval ? 'awaiting_approval' : 'scheduled',
        target: structuredClone(t),
        requireApproval: input.requireApproval === true,
        createdBy: operator,
        startAt,
        rollout,
        wave: 0,
        createdAt: at,
        updatedAt: at,
        rev: 1,
      }
      await store.createJob(job)
      await jobEvent(job, { event: 'created' })
      runTick()
      return job
    },

    async getJob(id: string) {
      const job = await store.getJob(id)
      if (!job) throw new errors.JOB_NOT_FOUND(id)
      const [totals, inFlight] = await Promise.all([store.totals(id), store.inFlight(id)])
      let failures = 0
      for (const s of FAILURES) failures += totals[s] ?? 0
      return { ...job, totals, failures, inFlight: inFlight.length }
    },

    async listJobs(q: { after?: string; limit: number }) {
      return store.listJobs(q)
    },

    async approve(id: string, operator: string): Promise<OtaJob> {
      const job = await mutateJob(id, (j) => {
        if (j.state !== 'awaiting_approval') return new errors.JOB_STATE(`job ${id} is ${j.state}: nothing to approve`)
        if (j.createdBy === operator) return new errors.SAME_OPERATOR(id, operator)
        return jobMoved(j, { state: 'scheduled', approvedBy: operator })
      })
      await jobEvent(job, { event: 'approved', by: operator })
      runTick()
      return job
    },

    async pause(id: string): Promise<OtaJob> {
      const job = await mutateJob(id, (j) =>
        j.state === 'running' ? jobMoved(j, { state: 'paused' }) : new errors.JOB_STATE(`job ${id} is ${j.state}`),
      )
      await jobEvent(job, { event: 'paused' })
      return job
    },

    async resume(id: string): Promise<OtaJob> {
      const job = await mutateJob(id, (j) =>
        j.state === 'paused'
          ? jobMoved(j, { state: 'running' })
          : new errors.JOB_STATE(`job ${id} is ${j.state}: only a paused job resumes`),
      )
      await jobEvent(job, { event: 'resumed' })
      runTick()
      return job
    },

    /** Cancels the job: devices not yet installing are told to stop; those installing finish. */
    async cancel(id: string): Promise<OtaJob> {
      const job = await mutateJob(id, (j) =>
        JOB_FINAL.has(j.state)
          ? new errors.JOB_STATE(`job ${id} is ${j.state} already`)
          : jobMoved(j, { state: 'cancelled', finishedAt: iso() }),
      )
      const at = iso()
      for (let from = 0; ; from += BATCH) {
        const batch = await store.executionsByOrdinal(id, from, Number.POSITIVE_INFINITY, BATCH)
        for (const e of batch) {
          if (!cancellable(e)) continue
          const moved = await move(id, e.deviceId, (x) =>
            cancellable(x) ? moveExecution(x, 'cancelled', at, { error: 'job_cancelled' }) : undefined,
          )
          if (moved && moved.prev.state !== 'pending') await tell(e.deviceId, { jobId: id, action: 'cancel' })
        }
        if (batch.length < BATCH) break
      }
      await jobEvent(job, { event: 'cancelled' })
      return job
    },

    async executions(id: string, after: number | undefined, limit: number) {
      if (!(await store.getJob(id))) throw new errors.JOB_NOT_FOUND(id)
      const from = after === undefined ? 0 : after + 1
      const items = await store.executionsByOrdinal(id, from, Number.POSITIVE_INFINITY, limit + 1)
      const page = items.slice(0, limit)
      return items.length > limit ? { items: page, next: String(page[page.length - 1]?.ordinal) } : { items: page }
    },

    /**
     * A deleted device leaves its open jobs as `cancelled` (`device_deleted`): not a failure of the
     * release, and not a device the job waits for until its deadline.
     */
    async deviceDeleted(deviceId: string): Promise<void> {
      const at = iso()
      for (const jobId of await store.openJobs()) {
        await move(jobId, deviceId, (x) =>
          TERMINAL.has(x.state) ? undefined : moveExecution(x, 'cancelled', at, { error: 'device_deleted' }),
        )
      }
    },

    async deviceOta(deviceId: string): Promise<{ deviceId: string; execution?: OtaExecution }> {
      if (!(await registry.getRecord(deviceId))) throw new errors.DEVICE_NOT_FOUND(deviceId)
      const jobId = await store.getCurrent(deviceId)
      const e = jobId === undefined ? undefined : await store.getExecution(jobId, deviceId)
      return e ? { deviceId, execution: e } : { deviceId }
    },

    // ---- devices ----

    /** A device's report on `ota/status`; refusals are counted and reported, never thrown. */
    async onStatus(deviceId: string, payload: Buffer): Promise<void> {
      const d = decodeEnvelope(payload)
      if (!d.ok) return refuse(deviceId, 'invalid', d.error)
      const parsed = parseReport(d.value)
      if (!parsed.ok) return refuse(deviceId, 'invalid', parsed.message)
      const r = parsed.report
      const job = await store.getJob(r.jobId)
      if (!job) return refuse(deviceId, 'unknown_job', `no job ${r.jobId}`, r.jobId)
      let refusal: { reason: string; message: string } | undefined
      let rollback = false
      const moved = await move(job.id, deviceId, (e) => {
        const out = applyReport(e, r, job, Date.now())
        if (!out.ok) {
          refusal = out
          return undefined
        }
        rollback = out.rollback
        return out.next
      })
      if (!moved) {
        if (refusal) return refuse(deviceId, refusal.reason, refusal.message, job.id)
        if (!(await store.getExecution(job.id, deviceId))) {
          return refuse(deviceId, 'not_in_job', `device ${deviceId} is not part of job ${job.id}`, job.id)
        }
        return refuse(deviceId, 'conflict', 'the execution changed too often meanwhile', job.id)
      }
      const e = moved.next
      if (e.state === 'succeeded' || e.state === 'rolled_back') await writeFirmware(deviceId, e)
      if (rollback) await tell(deviceId, { jobId: job.id, action: 'rollback', reason: e.error })
      if (TERMINAL.has(e.state) && job.state === 'running') runTick()
    },

    /** The device (re)subscribed to its notifications: send what it must not miss. */
    async resend(deviceId: string): Promise<void> {
      const jobId = await store.getCurrent(deviceId)
      if (jobId === undefined) return
      const e = await store.getExecution(jobId, deviceId)
      if (!e) return
      if (e.rollback && e.state !== 'rolled_back') {
        await tell(deviceId, { jobId, action: 'rollback', reason: e.rollback.reason })
        return
      }
      if (e.state !== 'notified') return
      const job = await store.getJob(jobId)
      const p = job && (await store.getPackage(job.packageId))
      if (job && p) await tell(deviceId, installMessage(job, p))
    },

    // ---- scheduler ----

    start() {
      timer = setInterval(runTick, config.tickMs)
      timer.unref()
      runTick()
    },

    /** One pass over the open jobs now (tests, and after changes that should not wait a tick). */
    async tickNow(): Promise<void> {
      while (ticking) await ticking
      runTick()
      await ticking
    },

    async close(): Promise<void> {
      closed = true
      if (timer) clearInterval(timer)
      for (const socket of downloads) socket.destroy()
      downloads.clear()
      await ticking
      // another node takes the jobs over at once instead of after the lease expires
      await Promise.all([...held.keys()].map((id) => store.release(id, broker.nodeId).catch(() => {})))
      held.clear()
    },
  }
  return service
}
