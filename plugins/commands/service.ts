// Commands: invoke, deliver (now or when the device is back), settle the device's answers, time
// out. Every command goes through the device's queue in the store (unless it can go out at once:
// see Performance below): the node that holds the device's session takes it from there as soon as
// the session is subscribed to its commands (told on an internal topic, or by the subscription
// itself), so a command sent between a device's CONNACK and its SUBSCRIBE waits for the SUBSCRIBE
// instead of going to nobody. Every state change is written
// with a compare-and-set on the record's state and published on `$iot/{id}/events/command`. The
// node that makes a change settles the HTTP requests it holds itself, with the record it wrote;
// every node listens to the events and reads the record for the requests it holds when the change
// came from another node, so the device and the request may be on different nodes. A request
// waits for the final answer (or only the acknowledgement) until the command's deadline.
//
// Performance (bench command-rtt): the node delivering a command keeps its record until the
// command ends, so a state change costs one store call (a compare-and-set that answers with the
// record when it loses) and no read: states only move forward, so the record held in a state is
// the stored one. When the request arrives on the node holding the device's subscribed session and
// the device's queue is empty, the command is stored as delivered by its create (its history and
// events still say queued, then delivered) and goes out at once: one store call instead of three.
// A device's answers to one command are settled in turn, so the result never races its own
// acknowledgement; an acknowledgement waits one event-loop turn, and a result that arrives in it
// (a device often sends both in one packet) is written with it in one compare-and-set (both
// states are still recorded, announced and seen by waiting requests, in order). The device's
// record comes from the credential cache. So a command to a device connected to the node that
// takes the request costs the store 2 calls.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../../broker/log.js'
import type { Metrics } from '../../broker/metrics.js'
import type { BrokerPort } from '../../broker/session.js'
import {
  type CommandRecord,
  type CommandRequest,
  type CommandState,
  canMove,
  FINAL_STATES,
  isCommandName,
  moved,
  stateOfAnswer,
} from '../../registry/commands.js'
import { errors } from '../../registry/errors.js'
import type { CommandStore, PresenceStore } from '../../registry/ports.js'
import { createKeyedSerial } from '../../registry/serial.js'
import type { RegistryService } from '../../registry/service.js'
import { deviceTopic, eventTopic, SYS_PREFIX, splitIotTopic, topicMatches } from '../../registry/topics.js'

/** Largest command body, either way (serialized JSON). */
export const MAX_COMMAND_BODY = 64 * 1024
export const DEFAULT_TIMEOUT_MS = 30_000
/** A waiting request re-reads the record this long after the deadline, in case an event was missed. */
const GRACE_MS = 1000
/**
 * Internal: "a command is waiting in this device's queue", to every node, so the one holding the
 * device's (or its gateway's) session delivers it. No client may publish or subscribe to `$SYS/`.
 */
export const QUEUED_TOPIC = `${SYS_PREFIX}fleethub/commands/queued`

interface QueuedSignal {
  deviceId: string
  parentId?: string
  /** Secret bodies by command id: they travel the bus like the command itself, never the store. */
  secrets?: Record<string, unknown>
}

export interface InvokeOptions extends CommandRequest {
  /** FleetHub's own commands (`$changeKey`): `$` names allowed. */
  builtIn?: boolean
  /** Sent to the device but stored as `body` (for secrets: the record never holds them). */
  secretBody?: unknown
}

/** What a request gets: the record, in the state it stopped waiting in. */
export interface Outcome {
  record: CommandRecord
}

export interface CommandConfig {
  maxTimeoutMs: number
  retentionMs: number
  queueMax: number
}

interface Waiter {
  /** Would a record in this state end the wait? */
  ends(state: CommandState): boolean
  settle(r: CommandRecord): void
}

/** An acknowledgement waiting one event-loop turn, and the result that came in it. */
interface AckSlot {
  result?: {
    status: number
    body: unknown
    at: string
    resolve(why: string): void
    reject(err: unknown): void
  }
}

/** A command out to a device from this node: its deadline, and its record as last written. */
interface InFlight {
  timer: NodeJS.Timeout
  record: CommandRecord
}

type MoveOutcome = { moved: true; record: CommandRecord } | { moved: false; record: CommandRecord | undefined }

const keyOf = (deviceId: string, id: string) => `${deviceId}\u0000${id}`

export type CommandService = Awaited<ReturnType<typeof createCommandService>>

export async function createCommandService(deps: {
  store: CommandStore
  presence: PresenceStore
  registry: RegistryService
  /**
   * Where a command looks its device up (existence and gateway): the credential cache, kept by
   * registry events on every node, so a command to a connected device reads nothing for it.
   * Without it, the registry.
   */
  devices?: { get(id: string): Promise<{ parentId?: string } | undefined> }
  broker: BrokerPort
  config: CommandConfig
  log: Logger
  metrics: Metrics
}) {
  const { store, presence, registry, devices, broker, config, log, metrics } = deps
  const waiters = new Map<string, Set<Waiter>>()
  const inFlight = new Map<string, InFlight>()
  /** Secret bodies of commands this node delivers, never stored. */
  const secrets = new Map<string, unknown>()
  /** Per device, the deliveries on this node: queued commands go out one by one, in order. */
  const deliveries = createKeyedSerial()
  /** Per command, an acknowledgement waiting its turn, and the result that came meanwhile. */
  const acking = new Map<string, AckSlot>()
  /**
   * Per command, the answers being settled on this node, one after the other: a result that follows
   * the acknowledgement moves from the acknowledged record instead of losing a compare-and-set to it.
   */
  const answers = createKeyedSerial()
  /** The payloads of this node's own command events, which its listener need not parse. */
  const ownEvents = new WeakSet<Buffer>()

  // one ISO timestamp per millisecond, not one Date and string per state change
  let isoAt = 0
  let iso = ''
  function now(): string {
    const t = Date.now()
    if (t !== isoAt) {
      isoAt = t
      iso = new Date(t).toISOString()
    }
    return iso
  }

  /** Publishes a state change for services, and for the requests waiting on any node. */
  async function announce(r: CommandRecord): Promise<void> {
    const e: Record<string, unknown> = { id: r.id, name: r.name, state: r.state, at: r.updatedAt }
    if (r.result) {
      e.status = r.result.status
      if (r.result.body !== undefined) e.body = r.result.body
    }
    if (FINAL_STATES.has(r.state)) metrics.commands.inc({ state: r.state })
    const payload = Buffer.from(JSON.stringify(e))
    ownEvents.add(payload)
    await broker.publish(eventTopic(r.deviceId, 'command'), payload, { qos: 1 })
  }

  /** Moves a record to `to` (read first unless this node holds it). Undefined: not allowed. */
  async function move(
    deviceId: string,
    id: string,
    to: CommandState,
    patch?: (r: CommandRecord) => Partial<CommandRecord>,
  ): Promise<CommandRecord | undefined> {
    const r = inFlight.get(keyOf(deviceId, id))?.record ?? (await store.get(deviceId, id))
    if (!r) return undefined
    const out = await moveFrom(r, to, patch)
    return out.moved ? out.record : undefined
  }

  /**
   * Moves `r` to `to` with a compare-and-set on its state; when another writer came first, tries
   * again from the record the store answers with. Refused: the record as it is (undefined: none).
   */
  async function moveFrom(
    r: CommandRecord,
    to: CommandState,
    patch?: (r: CommandRecord) => Partial<CommandRecord>,
    unqueue = false,
  ): Promise<MoveOutcome> {
    let cur: CommandRecord | undefined = r
    for (let attempt = 0; attempt < 5 && cur && canMove(cur.state, to); attempt++) {
      const next = moved(cur, to, now(), patch?.(cur))
      const res = await store.transition(cur.deviceId, cur.id, cur.state, next, config.retentionMs, { unqueue })
      if (res === true) {
        changed(next)
        await announce(next)
        return { moved: true, record: next }
      }
      cur = res
    }
    return { moved: false, record: cur }
  }

  /** A state change this node wrote: its own waiting requests are settled with it, no read. */
  function changed(r: CommandRecord) {
    const k = keyOf(r.deviceId, r.id)
    if (FINAL_STATES.has(r.state)) clearDeadline(k)
    else {
      const f = inFlight.get(k)
      if (f) f.record = r
    }
    const set = waiters.get(k)
    if (set) for (const w of [...set]) w.settle(r)
  }

  function clearDeadline(k: string) {
    const f = inFlight.get(k)
    if (f) clearTimeout(f.timer)
    inFlight.delete(k)
    secrets.delete(k)
  }

  function armDeadline(r: CommandRecord) {
    const k = keyOf(r.deviceId, r.id)
    const timer = setTimeout(
      function commandDeadline() {
        const f = inFlight.get(k)
        inFlight.delete(k)
        secrets.delete(k)
        const moving = f ? moveFrom(f.record, 'timed_out') : move(r.deviceId, r.id, 'timed_out')
        void moving.catch((err: unknown) => log.error({ err }, 'command timeout failed'))
      },
      Math.max(0, (r.deadline ?? Date.now()) - Date.now()),
    )
    timer.unref()
    inFlight.set(k, { timer, record: r })
  }

  /** Sends a command to the device, as it is now delivered (state written first: once only). */
  async function send(r: CommandRecord): Promise<void> {
    const message: Record<string, unknown> = { rid: r.id, name: r.name, deadline: r.deadline }
    const secret = secrets.get(keyOf(r.deviceId, r.id))
    const body = secret !== undefined ? secret : r.body
    if (body !== undefined) message.body = body
    armDeadline(r)
    await broker.publish(deviceTopic(r.deviceId, 'cmd/req'), JSON.stringify(message), { qos: 1 })
  }

  /** Is the device reachable now: connected itself, or through its connected gateway? */
  async function reachable(deviceId: string, parentId: string | undefined): Promise<boolean> {
    if (broker.localSession(deviceId)) return true
    const ids = parentId === undefined ? [deviceId] : [deviceId, parentId]
    if (parentId !== undefined && broker.localSession(parentId)) return true
    const [states, live] = await Promise.all([presence.getMany(ids), presence.liveNodes()])
    return states.some((p) => p?.online === true && p.node !== undefined && live.has(p.node))
  }

  /** Is this node holding the session that takes `deviceId`'s commands, subscribed to them already? */
  function heldHere(deviceId: string, parentId: string | undefined): boolean {
    const topic = deviceTopic(deviceId, 'cmd/req')
    for (const clientId of parentId === undefined ? [deviceId] : [deviceId, parentId]) {
      if (broker.localSession(clientId) && broker.subscriptionsOf(clientId).some((f) => topicMatches(f, topic))) {
        return true
      }
    }
    return false
  }

  /** Has the node holding the device's session deliver its queue: this one, or any other. */
  async function dispatch(r: CommandRecord, parentId: string | undefined): Promise<void> {
    if (heldHere(r.deviceId, parentId)) return deliverQueued(r.deviceId, r)
    const signal: QueuedSignal = { deviceId: r.deviceId }
    if (parentId !== undefined) signal.parentId = parentId
    const secret = secrets.get(keyOf(r.deviceId, r.id))
    if (secret !== undefined) signal.secrets = { [r.id]: secret }
    await broker.publish(QUEUED_TOPIC, JSON.stringify(signal), { qos: 0 })
  }

  /** Keeps a secret body until the command's deadline at the latest. */
  function keepSecret(deviceId: string, id: string, body: unknown, deadline: number | undefined) {
    const k = keyOf(deviceId, id)
    secrets.set(k, body)
    if (deadline === undefined) return
    setTimeout(() => inFlight.has(k) || secrets.delete(k), Math.max(0, deadline - Date.now()) + GRACE_MS).unref()
  }

  /** Delivers a device's queued commands in order; one run at a time per device on this node. */
  function deliverQueued(deviceId: string, known?: CommandRecord): Promise<void> {
    return deliveries.run(deviceId, () => deliverEach(deviceId, known))
  }

  /** `known`: a record this node has just created (as stored), so it need not be read back. */
  async function deliverEach(deviceId: string, known?: CommandRecord): Promise<void> {
    for (const id of await store.queued(deviceId)) {
      const r = known?.id === id ? known : await store.get(deviceId, id)
      if (r?.state !== 'queued') {
        await store.unqueue(deviceId, id)
        continue
      }
      // each leaves the queue with its move (whether or not it moves: another writer came first)
      if (r.expiresAt !== undefined && r.expiresAt < Date.now()) {
        await moveFrom(r, 'expired', undefined, true)
        continue
      }
      // a command sent while the device was online keeps the deadline it was given; a queued one
      // gets its whole timeout from now
      const out = await moveFrom(r, 'delivered', (x) => ({ deadline: x.deadline ?? Date.now() + x.timeoutMs }), true)
      if (out.moved) await send(out.record)
    }
  }

  /** A waiting request's deadline has passed: a command still queued expires, one out times out. */
  async function giveUp(r: CommandRecord): Promise<CommandRecord | undefined> {
    const out = r.state !== 'queued' ? await moveFrom(r, 'timed_out') : await moveFrom(r, 'expired', undefined, true)
    return out.moved ? out.record : undefined
  }

  function wait(r: CommandRecord, ackOnly: boolean): Promise<Outcome> {
    const ends = (state: CommandState) => FINAL_STATES.has(state) || (ackOnly && state === 'acknowledged')
    const done = (x: CommandRecord) => ends(x.state)
    if (done(r)) return Promise.resolve({ record: r })
    const k = keyOf(r.deviceId, r.id)
    return new Promise<Outcome>((resolve) => {
      let set = waiters.get(k)
      if (!set) {
        set = new Set()
        waiters.set(k, set)
      }
      // past the deadline (and a grace), the record says how it ended, even if an event was missed
      const last = r.deadline ?? (r.expiresAt ?? Date.now()) + (r.timeoutMs ?? 0)
      const timer = setTimeout(
        async function deadlinePassed() {
          const latest = (await store.get(r.deviceId, r.id).catch(() => undefined)) ?? r
          if (done(latest)) return w.settle(latest)
          w.settle((await giveUp(latest).catch(() => undefined)) ?? latest)
        },
        Math.max(0, last - Date.now()) + GRACE_MS,
      )
      timer.unref()
      const w: Waiter = {
        ends,
        settle(x) {
          if (!done(x)) return
          clearTimeout(timer)
          set.delete(w)
          if (set.size === 0) waiters.delete(k)
          resolve({ record: x })
        },
      }
      set.add(w)
    })
  }

  /** Settles this node's waiting requests from a command event (on every node). */
  const unsubscribe = await broker.subscribe('$iot/+/events/command', function onCommandEvent(topic, payload) {
    // this node's own change: it settled its waiters already (and another node's event is a new buffer)
    if (waiters.size === 0 || ownEvents.has(payload)) return
    const split = splitIotTopic(topic)
    if (!split) return
    let e: { id: string; state: CommandState }
    try {
      e = JSON.parse(payload.toString()) as { id: string; state: CommandState }
    } catch {
      return
    }
    const set = waiters.get(keyOf(split.deviceId, e.id))
    // a change made on this node settled its waiters already: only another node's needs a read
    if (!set || ![...set].some((w) => w.ends(e.state))) return
    // the record, not the event, is the truth (events of one command may arrive out of order)
    void store.get(split.deviceId, e.id).then(
      (r) => {
        if (r) for (const w of [...set]) w.settle(r)
      },
      (err: unknown) => log.error({ err }, 'command event: record read failed'),
    )
  })

  /** A command is queued for a device: deliver it if this node holds the session that takes it. */
  const unsignal = await broker.subscribe(QUEUED_TOPIC, function onQueued(_topic, payload) {
    let signal: QueuedSignal
    try {
      signal = JSON.parse(payload.toString()) as QueuedSignal
    } catch {
      return
    }
    const { deviceId, parentId } = signal
    const held = broker.localSession(deviceId) || (parentId !== undefined && broker.localSession(parentId))
    if (!held) return
    for (const [id, body] of Object.entries(signal.secrets ?? {}))
      keepSecret(deviceId, id, body, Date.now() + config.maxTimeoutMs)
    if (heldHere(deviceId, parentId)) {
      deliverQueued(deviceId).catch((err: unknown) => log.error({ err, deviceId }, 'queued commands: delivery failed'))
    }
  })

  function checkBody(body: unknown, what: string) {
    if (body === undefined) return
    const size = Buffer.byteLength(JSON.stringify(body) ?? '')
    if (size > MAX_COMMAND_BODY)
      throw new errors.PAYLOAD_TOO_LARGE(`${what} is ${size} bytes; at most ${MAX_COMMAND_BODY}`)
  }

  return {
    async invoke(deviceId: string, name: string, opts: InvokeOptions = {}): Promise<Outcome> {
      if (!(opts.builtIn ? /^\$?[A-Za-z0-9_.:-]{1,64}$/.test(name) : isCommandName(name))) {
        throw new errors.BAD_REQUEST(
          'a command name is 1-64 characters from letters, digits and _.:- (names starting with $ are reserved)',
        )
      }
      const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > config.maxTimeoutMs) {
        throw new errors.BAD_REQUEST(`timeoutMs must be 1 to ${config.maxTimeoutMs}`)
      }
      checkBody(opts.body, 'the command body')
      const device = await (devices ? devices.get(deviceId) : registry.getRecord(deviceId))
      if (!device) throw new errors.DEVICE_NOT_FOUND(deviceId)
      const online = await reachable(deviceId, device.parentId)
      if (!online && !opts.queue) throw new errors.DEVICE_OFFLINE(deviceId)

      const at = now()
      const id = randomUUID()
      const state: CommandState = 'queued'
      const r: CommandRecord = {
        id,
        deviceId,
        name,
        state,
        createdAt: at,
        updatedAt: at,
        timeoutMs,
        history: [{ state, at }],
      }
      if (opts.body !== undefined) r.body = opts.body
      // online: the deadline runs from the request, and a command not out by then expires; queued for
      // an offline device: it expires after its ttlMs, and gets its deadline when it goes out
      if (online) r.deadline = r.expiresAt = Date.now() + timeoutMs
      else r.expiresAt = Date.now() + (opts.queue as { ttlMs: number }).ttlMs
      // the device's session is here and nothing is being delivered to it: the record is stored
      // as delivered at once unless older commands wait in its queue (one store call, not three)
      const direct =
        online && !deliveries.busy(deviceId) && heldHere(deviceId, device.parentId)
          ? moved(r, 'delivered', at)
          : undefined
      const created = await store.create(r, {
        retentionMs: config.retentionMs,
        queueBound: config.queueMax,
        ...(opts.idempotencyKey !== undefined ? { idempotencyKey: opts.idempotencyKey } : {}),
        ...(direct ? { deliveredIfIdle: direct } : {}),
      })
      if (!created.created) {
        if (created.reason === 'queue_full') throw new errors.QUEUE_FULL(deviceId, config.queueMax)
        // a retried request: the first one's command, not a second run
        const first = await store.get(deviceId, created.id)
        if (!first) throw new errors.COMMAND_NOT_FOUND(created.id, deviceId)
        const waiting = first.state !== 'queued' || first.deadline !== undefined
        return waiting ? wait(first, opts.ack === true) : { record: first }
      }
      if (opts.secretBody !== undefined) keepSecret(deviceId, id, opts.secretBody, r.deadline)
      await announce(r)
      if (created.delivered && direct) {
        await announce(direct)
        const outcome = wait(direct, opts.ack === true)
        await send(direct)
        return outcome
      }
      if (!online) return { record: r }
      const outcome = wait(r, opts.ack === true)
      await dispatch(r, device.parentId)
      return outcome
    },

    async get(deviceId: string, id: string): Promise<CommandRecord> {
      const r = await store.get(deviceId, id)
      if (!r) throw new errors.COMMAND_NOT_FOUND(id, deviceId)
      if (r.state === 'queued' && r.expiresAt !== undefined && r.expiresAt < Date.now()) {
        const out = await moveFrom(r, 'expired', undefined, true)
        return out.record ?? r
      }
      return r
    },

    async cancel(deviceId: string, id: string): Promise<CommandRecord> {
      const r = await store.get(deviceId, id)
      if (!r) throw new errors.COMMAND_NOT_FOUND(id, deviceId)
      const out = await moveFrom(r, 'cancelled')
      if (!out.moved) throw new errors.COMMAND_FINISHED(id, r.state)
      await store.unqueue(deviceId, id)
      return out.record
    },

    /** Delivers a device's queued commands in order (it has just subscribed to its commands). */
    deliverQueued,

    /**
     * A device's answer on `cmd/res`. Late, duplicate, unknown or invalid answers are counted,
     * reported to services on `$iot/{id}/events/error`, and dropped: never delivered twice.
     */
    async answer(deviceId: string, rid: string, status: unknown, body: unknown): Promise<'ok' | string> {
      if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
        return reject(deviceId, 'invalid', 'status must be a whole number from 100 to 599', rid)
      }
      try {
        checkBody(body, 'the answer body')
      } catch (err) {
        return reject(deviceId, 'invalid', (err as Error).message, rid)
      }
      const k = keyOf(deviceId, rid)
      const at = now()
      const to = stateOfAnswer(status)
      // the result that follows an acknowledgement still waiting for its turn: one write for both
      const slot = acking.get(k)
      if (slot && !slot.result && to !== 'acknowledged') {
        return new Promise<string>((resolve, reject) => {
          slot.result = { status, body, at, resolve, reject }
        })
      }
      // an acknowledgement of a command this node delivered waits one event-loop turn for the
      // result a device often sends right after it (in the same packet)
      const waitsTurn =
        to === 'acknowledged' && inFlight.get(k)?.record.state === 'delivered' && !acking.has(k) && !answers.busy(k)
      if (waitsTurn) {
        const mine: AckSlot = {}
        acking.set(k, mine)
        return answers.run(k, async () => {
          await new Promise<void>((resolve) => setImmediate(resolve))
          acking.delete(k)
          return settleAck(deviceId, rid, at, mine)
        })
      }
      return answers.run(k, () => settle(deviceId, rid, status, body, at))
    },

    /** An answer that cannot even be read: counted and reported like the others. */
    reject,

    async close(): Promise<void> {
      for (const f of inFlight.values()) clearTimeout(f.timer)
      inFlight.clear()
      await Promise.all([unsubscribe(), unsignal()])
    },
  }

  /** An acknowledgement, with the result that came in its turn: both in one compare-and-set. */
  async function settleAck(deviceId: string, rid: string, at: string, slot: AckSlot): Promise<string> {
    const res = slot.result
    if (!res) return settle(deviceId, rid, 202, undefined, at)
    try {
      const r = inFlight.get(keyOf(deviceId, rid))?.record
      if (r?.state === 'delivered') {
        const acked = moved(r, 'acknowledged', at, { ack: { at } })
        const result =
          res.body === undefined
            ? { status: res.status, at: res.at }
            : { status: res.status, body: res.body, at: res.at }
        const done = moved(acked, stateOfAnswer(res.status), res.at, { result })
        if ((await store.transition(deviceId, rid, 'delivered', done, config.retentionMs)) === true) {
          changed(acked)
          await announce(acked)
          changed(done)
          await announce(done)
          res.resolve('ok')
          return 'ok'
        }
      }
      // another writer came first: each answer on its own, in order
      const ack = await settle(deviceId, rid, 202, undefined, at)
      res.resolve(await settle(deviceId, rid, res.status, res.body, res.at))
      return ack
    } catch (err) {
      res.reject(err)
      throw err
    }
  }

  async function settle(deviceId: string, rid: string, status: number, body: unknown, at: string): Promise<string> {
    // the node that delivered the command holds its record: an answer to it reads nothing
    const r = inFlight.get(keyOf(deviceId, rid))?.record ?? (await store.get(deviceId, rid))
    if (!r) return reject(deviceId, 'unknown', 'no such command for this device', rid)
    const to = stateOfAnswer(status)
    const out = canMove(r.state, to)
      ? await moveFrom(r, to, () =>
          to === 'acknowledged'
            ? { ack: { at } }
            : { result: body === undefined ? { status, at } : { status, body, at } },
        )
      : { moved: false, record: r }
    if (out.moved) return 'ok'
    const cur = out.record
    if (!cur) return reject(deviceId, 'unknown', 'no such command for this device', rid)
    if (canMove(cur.state, to)) return reject(deviceId, 'duplicate', 'another answer came first', rid)
    return reject(
      deviceId,
      FINAL_STATES.has(cur.state) ? 'late' : 'duplicate',
      `the command is already ${cur.state}`,
      rid,
    )
  }

  async function reject(deviceId: string, reason: string, why: string, rid?: string): Promise<string> {
    metrics.commandAnswersDropped.inc({ reason })
    const e =
      rid === undefined
        ? { kind: 'command-answer', reason, error: why }
        : { kind: 'command-answer', reason, rid, error: why }
    await broker.publish(eventTopic(deviceId, 'error'), JSON.stringify(e), { qos: 1 })
    return why
  }
}
