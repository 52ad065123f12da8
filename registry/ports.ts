// Store ports: small interfaces each adapter (memory, Redis) implements, with one contract suite
// (test/contract/) run against both. The memory adapter is the reference semantics. "Not found" is
// `undefined`, never a rejection.
import type { CommandRecord, CommandState } from './commands.js'
import type { Model, ModelBinding, ModelDefinition } from './models.js'
import type { ExecutionState, OtaExecution, OtaJob, OtaPackage } from './ota.js'
import type { EnrollmentRecord, Registration } from './provisioning.js'
import type { TwinRecord, TwinSide, TwinSideName } from './twin.js'
import type { DevicePage, DeviceQuery, DeviceRecord, Presence, RegistryEvent } from './types.js'

export interface DeviceStore {
  /** Stores a new record; false when the id exists already. */
  create(record: DeviceRecord): Promise<boolean>
  get(id: string): Promise<DeviceRecord | undefined>
  getMany(ids: readonly string[]): Promise<(DeviceRecord | undefined)[]>
  /**
   * Replaces `before` with `next` when the stored revision is still `before.rev` (compare-and-set);
   * `next.rev` is `before.rev + 1`. False when another write came first.
   */
  compareAndSet(next: DeviceRecord, before: DeviceRecord): Promise<boolean>
  /** Removes the record; returns what was removed. */
  delete(id: string): Promise<DeviceRecord | undefined>
  list(query: DeviceQuery): Promise<DevicePage>
  count(): Promise<number>
}

export interface SessionStart {
  node: string
  session: string
  at: string
  /** tcp, tls, ws or wss */
  transport?: string
}

export interface SessionEnd {
  session: string
  at: string
}

export interface PresenceStore {
  /** Marks a session open; returns the event's sequence number. */
  connected(deviceId: string, s: SessionStart): Promise<number>
  /**
   * Marks a session closed. When a newer session has taken over (another `session` is current),
   * the device stays online: `online` says which. Returns the event's sequence number.
   */
  disconnected(deviceId: string, s: SessionEnd): Promise<{ seq: number; online: boolean }>
  get(deviceId: string): Promise<Presence | undefined>
  getMany(deviceIds: readonly string[]): Promise<(Presence | undefined)[]>
  remove(deviceId: string): Promise<void>
  /** Records that a node is alive for `ttlMs`. */
  heartbeat(node: string, ttlMs: number): Promise<void>
  /** Nodes whose last heartbeat has not expired. */
  liveNodes(): Promise<Set<string>>
  /** Forgets a node (graceful shutdown). */
  leave(node: string): Promise<void>
}

export interface TwinStore {
  /** The stored twin; undefined when the device's twin was never written (it is then empty). */
  get(deviceId: string): Promise<TwinRecord | undefined>
  getMany(deviceIds: readonly string[]): Promise<(TwinRecord | undefined)[]>
  /**
   * Replaces one side when its stored version is still `expected` (a missing twin has version 1):
   * true when written, else the version found.
   */
  casSide(deviceId: string, side: TwinSideName, next: TwinSide, expected: number): Promise<true | number>
  /** Raises the desired version the device has seen to `version` (never lowers it). */
  markSeen(deviceId: string, version: number): Promise<void>
  delete(deviceId: string): Promise<void>
}

export interface CreateCommandOptions {
  /** How long the record is kept. */
  retentionMs: number
  /** Queue it for the device, unless the device already has this many queued. */
  queueBound?: number
  /** A client's Idempotency-Key: a second create with the same key returns the first id. */
  idempotencyKey?: string
  /**
   * The same command moved on to `delivered`: stored instead of the record, and not queued, when the
   * device has nothing queued (so it goes out now without overtaking an older one). The result says
   * which was stored.
   */
  deliveredIfIdle?: CommandRecord
}

export type CreateCommandResult =
  | { created: true; delivered?: true }
  | { created: false; reason: 'queue_full' }
  | { created: false; reason: 'duplicate'; id: string }

export interface CommandStore {
  create(record: CommandRecord, opts: CreateCommandOptions): Promise<CreateCommandResult>
  get(deviceId: string, id: string): Promise<CommandRecord | undefined>
  /**
   * Replaces the record when its stored state is still `from`: the one way a state moves. True when
   * replaced; otherwise the record as it is now (undefined: none), so a caller that lost a race
   * needs no second read. States only move forward, so a caller holding the record in state `from`
   * holds exactly the stored one. With `unqueue`, the id also leaves the device's queue, whether
   * or not the record moved.
   */
  transition(
    deviceId: string,
    id: string,
    from: CommandState,
    next: CommandRecord,
    retentionMs: number,
    opts?: { unqueue?: boolean },
  ): Promise<true | CommandRecord | undefined>
  /** Ids of a device's queued commands, oldest first. */
  queued(deviceId: string): Promise<string[]>
  unqueue(deviceId: string, id: string): Promise<void>
}

export type CreateModelResult =
  | { created: true; model: Model }
  | { created: false; reason: 'exists' | 'keys_exhausted' }

/** A model as lists show it: its latest version, with every version registered. */
export type ModelSummary = Model & { versions: number[] }

export interface ModelPage {
  items: ModelSummary[]
  /** Set when more models may follow: pass it as `after` for the next page. */
  next?: string
}

/**
 * Registered models (immutable per version, each with a 16-bit key) and, per device, its binding
 * and self-description. Both go with the device: deleting the device deletes them.
 */
export interface ModelStore {
  /**
   * Registers a version and gives it the next free key (1..MAX_MODEL_KEY) in one atomic step: no
   * key is handed out twice, even to nodes creating models at once, and a refused create uses none.
   */
  create(def: ModelDefinition, createdAt: string): Promise<CreateModelResult>
  /** One version; without `version`, the highest. */
  get(id: string, version?: number): Promise<Model | undefined>
  getByKey(key: number): Promise<Model | undefined>
  /** The model's versions, ascending; empty when it has none. */
  versions(id: string): Promise<number[]>
  /** Models in id order; `after` is exclusive. */
  list(q: { after?: string; limit: number }): Promise<ModelPage>
  /** False when the device does not exist (nothing is stored for it). */
  setBinding(deviceId: string, binding: ModelBinding): Promise<boolean>
  getBinding(deviceId: string): Promise<ModelBinding | undefined>
  deleteBinding(deviceId: string): Promise<void>
  /** The device's own description of itself; false when the device does not exist. */
  setSelfModel(deviceId: string, def: ModelDefinition): Promise<boolean>
  getSelfModel(deviceId: string): Promise<ModelDefinition | undefined>
}

export interface EnrollmentPage {
  items: EnrollmentRecord[]
  next?: string
}

export interface RegistrationPage {
  items: Registration[]
  next?: string
}

/**
 * The bootstrap service's records: enrollments, the registrations it admitted (listed per
 * enrollment), and single-use marks for provisioning tokens.
 */
export interface ProvisioningStore {
  /** False when the id exists already. */
  createEnrollment(e: EnrollmentRecord): Promise<boolean>
  getEnrollment(id: string): Promise<EnrollmentRecord | undefined>
  /** Replaces the record when its stored `rev` is still `before.rev`; `next.rev` is one more. */
  replaceEnrollment(next: EnrollmentRecord, before: EnrollmentRecord): Promise<boolean>
  deleteEnrollment(id: string): Promise<boolean>
  /** Enrollments in id order; `after` is exclusive. */
  listEnrollments(q: { after?: string; limit: number }): Promise<EnrollmentPage>
  getRegistration(registrationId: string): Promise<Registration | undefined>
  /**
   * Writes a registration when the stored one's `rev` is still `expectedRev` (0: none stored yet), and
   * files it under its enrollment (moving it from `previousEnrollment`). False when another write came first.
   */
  putRegistration(r: Registration, expectedRev: number, previousEnrollment?: string): Promise<boolean>
  /** Registrations of one enrollment in registration-id order; `after` is exclusive. */
  listRegistrations(enrollmentId: string, q: { after?: string; limit: number }): Promise<RegistrationPage>
  /** Marks `key` used until `ttlMs` from now; false when it was already marked (a replay). */
  claimOnce(key: string, ttlMs: number): Promise<boolean>
}

export interface RegistryEvents {
  /**
   * Delivers the event to every subscriber on every node. This node's subscribers have heard it
   * when the promise resolves (so the node that made a change acts on it before answering); other
   * nodes' hear it shortly after.
   */
  publish(event: RegistryEvent): Promise<void>
  subscribe(listener: (event: RegistryEvent) => void): () => void
  /**
   * Called when events may have been lost: the store's subscription broke and is back. Whatever a
   * listener keeps up to date from events must be read again. Never called in memory.
   */
  onGap(listener: () => void): () => void
}

/** Everything the registry keeps, behind one adapter. */
export interface RegistryStore {
  readonly kind: 'memory' | 'redis'
  readonly devices: DeviceStore
  readonly presence: PresenceStore
  readonly twins: TwinStore
  readonly commands: CommandStore
  readonly models: ModelStore
  readonly provisioning: ProvisioningStore
  readonly ota: OtaStore
  readonly events: RegistryEvents
  /** Resolves when the backing store answers; rejects otherwise. */
  ping(): Promise<void>
  close(): Promise<void>
}

export interface OtaPage<T> {
  items: T[]
  /** Set when more may follow: pass it as `after` for the next page. */
  next?: string
}

/**
 * Firmware updates (registry/ota.ts): packages, jobs, per job its executions (one per device, in
 * the order the job resolved them) with totals by state, per device a pointer to its current
 * execution, and per job a scheduler lease. Every execution write is a compare-and-set on its
 * revision that moves the job's totals in the same atomic step, so concurrent reports and the
 * scheduler never count twice.
 */
export interface OtaStore {
  /** False when the id exists. */
  createPackage(p: OtaPackage): Promise<boolean>
  getPackage(id: string): Promise<OtaPackage | undefined>
  /** Packages in id order; `after` is exclusive. */
  listPackages(q: { after?: string; limit: number }): Promise<OtaPage<OtaPackage>>
  /** Replaces the package when its stored revision is still `next.rev - 1`. */
  updatePackage(next: OtaPackage): Promise<boolean>
  /** Removes it unless a job that is not completed or cancelled uses it: 'in_use' then. */
  deletePackage(id: string): Promise<'deleted' | 'not_found' | 'in_use'>

  /** Stores a new job (and remembers it under its package). */
  createJob(job: OtaJob): Promise<void>
  getJob(id: string): Promise<OtaJob | undefined>
  /** Jobs in id order (ids sort by creation time). */
  listJobs(q: { after?: string; limit: number }): Promise<OtaPage<OtaJob>>
  /** Replaces the job when its stored revision is still `next.rev - 1`. */
  updateJob(next: OtaJob): Promise<boolean>
  /**
   * The scheduler's work list: ids of the jobs not completed or cancelled, and of final jobs whose
   * devices are still in flight (their deadlines still run).
   */
  openJobs(): Promise<string[]>

  /** Adds executions (new ones only; their totals are counted). */
  addExecutions(jobId: string, list: readonly OtaExecution[]): Promise<void>
  getExecution(jobId: string, deviceId: string): Promise<OtaExecution | undefined>
  /** Executions with `from <= ordinal < to`, in ordinal order, at most `limit`. */
  executionsByOrdinal(jobId: string, from: number, to: number, limit: number): Promise<OtaExecution[]>
  /**
   * Replaces the execution when its stored revision is still `next.rev - 1`, moving the job's
   * totals from the stored state to `next.state` in the same step. False when another write came first.
   */
  transition(next: OtaExecution): Promise<boolean>
  /** Devices whose executions are in flight (notified, not final, or owing a rollback). */
  inFlight(jobId: string): Promise<string[]>
  totals(jobId: string): Promise<Partial<Record<ExecutionState, number>>>

  /** The device's current (or last) execution's job. */
  setCurrent(deviceId: string, jobId: string): Promise<void>
  getCurrent(deviceId: string): Promise<string | undefined>

  /** Takes or renews the job's lease for `node`; false while another node holds it. */
  lease(jobId: string, node: string, ttlMs: number): Promise<boolean>
  release(jobId: string, node: string): Promise<void>
}
