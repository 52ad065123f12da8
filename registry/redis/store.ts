// The Redis adapter. One device is one hash (format version, revision, JSON document) written by the
// scripts in scripts.ts; list indexes are sorted sets read with ZRANGEBYLEX behind a cursor, never
// KEYS or SCAN. Index entries are added before a record write and removed after it, so a crash in
// between leaves only extra entries, and every list re-checks the records it reads: an index is a
// candidate set, the record is the truth.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { CommandRecord } from '../commands.js'
import { autoCorkRedis } from '../cork.js'
import { errors } from '../errors.js'
import { createEventListeners } from '../events.js'
import type { CommandStore, DeviceStore, PresenceStore, RegistryEvents, RegistryStore, TwinStore } from '../ports.js'
import { MAX_SCAN, matchesQuery } from '../query.js'
import { emptySide, type TwinRecord, type TwinSide } from '../twin.js'
import type { DevicePage, DeviceQuery, DeviceRecord, Presence, RegistryEvent } from '../types.js'
import { createKeys, type RedisKeys } from './keys.js'
import { createModelStore } from './models.js'
import { createOtaStore } from './ota.js'
import { createProvisioningStore } from './provisioning.js'
import { defineScripts, type ScriptCalls } from './scripts.js'

/** Format version of stored device documents. */
const DEVICE_FORMAT = 1

export interface RedisStoreOptions {
  url: string
  /** Key prefix, so several hubs can share one Redis. */
  prefix?: string
  /** Connection errors and listener failures (never thrown to callers). */
  onError?: (err: Error) => void
  /** How long start-up waits for Redis before failing. */
  connectTimeoutMs?: number
}

function encode(r: DeviceRecord): string {
  return JSON.stringify({ v: DEVICE_FORMAT, ...r })
}

function decode(doc: string | null | undefined): DeviceRecord | undefined {
  if (doc == null) return undefined
  const { v, ...record } = JSON.parse(doc) as DeviceRecord & { v: number }
  if (v !== DEVICE_FORMAT) throw new Error(`device document format ${v} is not supported`)
  return record
}

function indexKeysOf(keys: RedisKeys, r: DeviceRecord): string[] {
  const out = [keys.allDevices, keys.byStatus(r.status)]
  for (const k in r.tags) out.push(keys.byTag(k, String(r.tags[k])))
  if (r.parentId !== undefined) out.push(keys.byParent(r.parentId))
  return out
}

function createDeviceStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): DeviceStore {
  // plain commands, not a pipeline: the connection is corked per turn (registry/cork.ts), so they
  // leave together anyway, without the Pipeline object ioredis builds (4 % of a registration's CPU)
  async function addToIndexes(id: string, indexKeys: string[]): Promise<void> {
    await Promise.all(indexKeys.map((k) => redis.zadd(k, 0, id)))
  }
  async function removeFromIndexes(id: string, indexKeys: string[]): Promise<void> {
    await Promise.all(indexKeys.map((k) => redis.zrem(k, id)))
  }
  async function getMany(ids: readonly string[]): Promise<(DeviceRecord | undefined)[]> {
    if (ids.length === 0) return []
    const p = redis.pipeline()
    for (const id of ids) p.hget(keys.device(id), 'doc')
    const res = (await p.exec()) ?? []
    return res.map(([err, doc]) => {
      if (err) throw err
      return decode(doc as string | null)
    })
  }
  /** The smallest index that every match must be in. */
  async function drivingIndex(q: DeviceQuery): Promise<string> {
    const candidates: string[] = []
    if (q.tags) for (const k in q.tags) candidates.push(keys.byTag(k, q.tags[k] as string))
    if (q.parentId !== undefined) candidates.push(keys.byParent(q.parentId))
    if (q.status !== undefined) candidates.push(keys.byStatus(q.status))
    if (candidates.length === 0) return keys.allDevices
    if (candidates.length === 1) return candidates[0] as string
    const p = redis.pipeline()
    for (const k of candidates) p.zcard(k)
    const sizes = ((await p.exec()) ?? []).map(([, n]) => Number(n))
    let best = 0
    for (let i = 1; i < sizes.length; i++) if ((sizes[i] as number) < (sizes[best] as number)) best = i
    return candidates[best] as string
  }

  return {
    async create(record) {
      const idx = indexKeysOf(keys, record)
      await addToIndexes(record.id, idx)
      const created = await s.fhDeviceCreate(keys.device(record.id), DEVICE_FORMAT, record.rev, encode(record))
      if (created === 1) return true
      // it existed: take back the index entries the existing record does not have
      const existing = await this.get(record.id)
      const keep = new Set(existing ? indexKeysOf(keys, existing) : [])
      await removeFromIndexes(
        record.id,
        idx.filter((k) => !keep.has(k)),
      )
      return false
    },
    async get(id) {
      return decode(await redis.hget(keys.device(id), 'doc'))
    },
    getMany,
    async compareAndSet(next, before) {
      const oldIdx = indexKeysOf(keys, before)
      const newIdx = indexKeysOf(keys, next)
      const added = newIdx.filter((k) => !oldIdx.includes(k))
      const removed = oldIdx.filter((k) => !newIdx.includes(k))
      await addToIndexes(next.id, added)
      const ok = (await s.fhDeviceCas(keys.device(next.id), before.rev, next.rev, encode(next))) === 1
      if (ok) {
        await removeFromIndexes(next.id, removed)
      } else {
        const now = await this.get(next.id)
        const keep = new Set(now ? indexKeysOf(keys, now) : [])
        await removeFromIndexes(
          next.id,
          added.filter((k) => !keep.has(k)),
        )
      }
      return ok
    },
    async delete(id) {
      const r = decode(await s.fhDeviceDelete(keys.device(id), keys.presence(id), keys.deviceModel(id)))
      if (r) await removeFromIndexes(id, indexKeysOf(keys, r))
      return r
    },
    async list(q: DeviceQuery): Promise<DevicePage> {
      const index = await drivingIndex(q)
      const items: DeviceRecord[] = []
      let scanned = 0
      let after = q.after
      // read as many as are still needed, more after a batch that filters some out: a page whose
      // devices all match reads each device once (a fixed 2× batch read half of them twice)
      let factor = 1
      for (;;) {
        const batch = Math.min(Math.max((q.limit - items.length) * factor, 16), 500)
        factor = Math.min(factor * 2, 64)
        const ids = await redis.zrangebylex(index, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, batch)
        if (ids.length === 0) return { items }
        const records = await getMany(ids)
        for (let i = 0; i < ids.length; i++) {
          after = ids[i] as string
          scanned++
          const r = records[i]
          if (r && matchesQuery(r, q)) items.push(r)
          const more = i < ids.length - 1 || ids.length === batch
          if (items.length >= q.limit || scanned >= MAX_SCAN) return more ? { items, next: after } : { items }
        }
        if (ids.length < batch) return { items }
      }
    },
    async count() {
      return redis.zcard(keys.allDevices)
    },
  }
}

function toPresence(h: Record<string, string>): Presence | undefined {
  if (!h.seq) return undefined
  const p: Presence = { online: h.online === '1', seq: Number(h.seq) }
  if (h.node) p.node = h.node
  if (h.session) p.session = h.session
  if (h.since) p.since = h.since
  if (h.transport) p.transport = h.transport
  if (h.lastDisconnectAt) p.lastDisconnectAt = h.lastDisconnectAt
  return p
}

function createPresenceStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): PresenceStore {
  return {
    async connected(deviceId, st) {
      return Number(await s.fhPresenceUp(keys.presence(deviceId), st.node, st.session, st.at, st.transport ?? ''))
    },
    async disconnected(deviceId, st) {
      const [seq, online] = await s.fhPresenceDown(keys.presence(deviceId), st.session, st.at)
      return { seq: Number(seq), online: Number(online) === 1 }
    },
    async get(deviceId) {
      return toPresence(await redis.hgetall(keys.presence(deviceId)))
    },
    async getMany(deviceIds) {
      if (deviceIds.length === 0) return []
      const p = redis.pipeline()
      for (const id of deviceIds) p.hgetall(keys.presence(id))
      const res = (await p.exec()) ?? []
      return res.map(([err, h]) => {
        if (err) throw err
        return toPresence(h as Record<string, string>)
      })
    },
    async remove(deviceId) {
      await redis.del(keys.presence(deviceId))
    },
    async heartbeat(node, ttlMs) {
      const now = Date.now()
      await redis
        .pipeline()
        .zadd(keys.nodes, now + ttlMs, node)
        .zremrangebyscore(keys.nodes, '-inf', now)
        .exec()
    },
    async liveNodes() {
      return new Set(await redis.zrangebyscore(keys.nodes, Date.now(), '+inf'))
    },
    async leave(node) {
      await redis.zrem(keys.nodes, node)
    },
  }
}

// a twin hash: format `v`, per side a version (`dv`, `rv`) and a JSON {doc, meta} (`d`, `r`), and
// `seen`, the desired version the device has seen
const SIDE_FIELDS = { desired: ['dv', 'd'], reported: ['rv', 'r'] } as const

function parseSide(version: string | undefined, json: string | undefined): TwinSide {
  if (version === undefined || json === undefined) return emptySide()
  const { doc, meta } = JSON.parse(json) as { doc: TwinSide['doc']; meta: TwinSide['meta'] }
  return { version: Number(version), doc, meta }
}

function toTwin(h: Record<string, string>): TwinRecord | undefined {
  if (!h.v) return undefined
  if (h.v !== '1') throw new Error(`twin format ${h.v} is not supported`)
  return {
    desired: parseSide(h.dv, h.d),
    reported: parseSide(h.rv, h.r),
    desiredSeen: h.seen ? Number(h.seen) : 1,
  }
}

function createTwinStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): TwinStore {
  return {
    async get(deviceId) {
      return toTwin(await redis.hgetall(keys.twin(deviceId)))
    },
    async getMany(deviceIds) {
      if (deviceIds.length === 0) return []
      const p = redis.pipeline()
      for (const id of deviceIds) p.hgetall(keys.twin(id))
      const res = (await p.exec()) ?? []
      return res.map(([err, h]) => {
        if (err) throw err
        return toTwin(h as Record<string, string>)
      })
    },
    async casSide(deviceId, side, next, expected) {
      const [vf, df] = SIDE_FIELDS[side]
      const doc = JSON.stringify({ doc: next.doc, meta: next.meta })
      const r = Number(await s.fhTwinCas(keys.twin(deviceId), vf, df, expected, next.version, doc))
      return r === 0 ? true : r
    },
    async markSeen(deviceId, version) {
      await s.fhTwinSeen(keys.twin(deviceId), version)
    },
    async delete(deviceId) {
      await redis.del(keys.twin(deviceId))
    },
  }
}

function createCommandStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): CommandStore {
  const decodeCommand = (doc: string | null): CommandRecord | undefined => {
    if (doc == null) return undefined
    const { v, ...r } = JSON.parse(doc) as CommandRecord & { v: number }
    if (v !== 1) throw new Error(`command format ${v} is not supported`)
    return r
  }
  const encodeCommand = (r: CommandRecord) => JSON.stringify({ v: 1, ...r })
  return {
    async create(r, opts) {
      const idem = opts.idempotencyKey ?? ''
      const res = await s.fhCommandCreate(
        keys.command(r.deviceId, r.id),
        keys.commandQueue(r.deviceId),
        keys.idempotency(r.deviceId, idem),
        r.state,
        encodeCommand(r),
        opts.retentionMs,
        opts.queueBound ?? 0,
        idem,
        r.id,
        opts.deliveredIfIdle ? encodeCommand(opts.deliveredIfIdle) : '',
      )
      if (res[0] === 'created') return { created: true }
      if (res[0] === 'delivered') return { created: true, delivered: true }
      if (res[0] === 'queue_full') return { created: false, reason: 'queue_full' }
      return { created: false, reason: 'duplicate', id: res[1] as string }
    },
    async get(deviceId, id) {
      return decodeCommand(await redis.hget(keys.command(deviceId, id), 'doc'))
    },
    async transition(deviceId, id, from, next, retentionMs, opts) {
      const res = await s.fhCommandMove(
        keys.command(deviceId, id),
        keys.commandQueue(deviceId),
        from,
        next.state,
        encodeCommand(next),
        retentionMs,
        opts?.unqueue ? id : '',
      )
      return res === 1 ? true : typeof res === 'string' ? decodeCommand(res) : undefined
    },
    async queued(deviceId) {
      return redis.lrange(keys.commandQueue(deviceId), 0, -1)
    },
    async unqueue(deviceId, id) {
      await redis.lrem(keys.commandQueue(deviceId), 0, id)
    },
  }
}

/**
 * Registry events on `{prefix}:events`. Each message carries `src`, the publishing store's random
 * id: its own listeners heard the event before `publish` resolved (registry/events.ts), so the
 * echo is dropped. Messages without `src` (a node of an earlier build) are delivered.
 */
function createEvents(redis: Redis, sub: Redis, keys: RedisKeys, onError: (err: Error) => void): RegistryEvents {
  const listeners = createEventListeners(onError)
  const self = randomUUID()
  sub.on('message', function onRegistryMessage(channel: string, message: string) {
    if (channel !== keys.events) return
    let parsed: RegistryEvent & { src?: string }
    try {
      parsed = JSON.parse(message) as RegistryEvent & { src?: string }
    } catch (err) {
      onError(err as Error)
      return
    }
    const { src, ...event } = parsed
    if (src !== self) listeners.deliver(event as RegistryEvent)
  })
  // 'ready' again is a reconnect: ioredis subscribes again by itself, but events published while
  // the connection was down are lost. Once subscribed, the listeners are told to read again.
  sub.on('ready', function resubscribed() {
    sub.subscribe(keys.events).then(listeners.gap, onError)
  })
  return {
    async publish(event) {
      listeners.deliver(event)
      await redis.publish(keys.events, JSON.stringify({ ...event, src: self }))
    },
    subscribe: listeners.add,
    onGap: listeners.addGap,
  }
}

/** The name (CLIENT SETNAME) of the connection registry events arrive on. */
export const EVENTS_CONNECTION = 'fleethub-registry-events'

/** Connects to Redis (failing after connectTimeoutMs) and returns the store. */
export async function createRedisStore(opts: RedisStoreOptions): Promise<RegistryStore> {
  const onError = opts.onError ?? (() => {})
  const keys = createKeys(opts.prefix ?? 'fh')
  // No auto-pipelining: ioredis's builds a Pipeline (with its promises) per event-loop turn and
  // defers every reply by a tick. Without it the store's calls cost less broker CPU whatever the
  // load (bench, alternating builds: twin-reported saturated 7,110 against 6,083 patches/s, medians
  // of 4; provision-storm 2.0 against 2.1-2.4 ms per registration; docs/benchmarks.md). Instead the
  // connection is corked (registry/cork.ts), at first per tick, now per event-loop turn: the
  // commands of one turn leave in one system call, with no object per batch (per tick: twin-reported
  // saturated 8,999 and 9,387 against 8,522 and 8,599; provision-storm 1.57-1.68 against 1.71 ms per
  // registration).
  const redis = autoCorkRedis(new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 2 }))
  const sub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 2, connectionName: EVENTS_CONNECTION })
  let firstError: Error | undefined
  const startupError = (err: Error) => {
    firstError ??= err
  }
  redis.on('error', startupError)
  sub.on('error', startupError)
  const timeout = opts.connectTimeoutMs ?? 5000
  try {
    await withTimeout(Promise.all([redis.connect(), sub.connect()]), timeout, `no answer within ${timeout} ms`)
    await sub.subscribe(keys.events)
  } catch (err) {
    redis.disconnect()
    sub.disconnect()
    const cause = firstError ?? (err as Error)
    throw new errors.UNAVAILABLE(`cannot reach Redis at ${redactUrl(opts.url)}: ${cause.message}`)
  } finally {
    redis.off('error', startupError)
    sub.off('error', startupError)
  }
  redis.on('error', onError)
  sub.on('error', onError)
  const s = defineScripts(redis)
  return {
    kind: 'redis',
    devices: createDeviceStore(redis, keys, s),
    presence: createPresenceStore(redis, keys, s),
    twins: createTwinStore(redis, keys, s),
    commands: createCommandStore(redis, keys, s),
    models: createModelStore(redis, keys, s),
    provisioning: createProvisioningStore(redis, keys, s),
    ota: createOtaStore(redis, opts.prefix ?? 'fh'),
    events: createEvents(redis, sub, keys, onError),
    async ping() {
      await withTimeout(redis.ping(), 1000, 'Redis did not answer PING within 1 s')
    },
    async close() {
      await Promise.allSettled([redis.quit(), sub.quit()])
    },
  }
}

/** The URL without its password, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return 'the configured URL'
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}
