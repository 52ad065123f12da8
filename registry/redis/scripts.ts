// Lua scripts, registered with ioredis defineCommand. Each touches the keys of one device (one hash
// tag), or of the models (`{models}`). Merges happen in TypeScript; the scripts only compare
// revisions and set.
import type { Redis } from 'ioredis'

const scripts = {
  // KEYS[1] device hash; ARGV: format version, rev, doc. 1 when created, 0 when it existed.
  fhDeviceCreate: `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'rev', ARGV[2], 'doc', ARGV[3])
return 1`,
  // KEYS[1] device hash; ARGV: expected rev, new rev, doc. 1 when set.
  fhDeviceCas: `
local rev = redis.call('HGET', KEYS[1], 'rev')
if rev ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'doc', ARGV[3])
return 1`,
  // KEYS: device hash, presence hash, model binding hash; returns the removed doc or nil.
  fhDeviceDelete: `
local doc = redis.call('HGET', KEYS[1], 'doc')
if doc then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return doc`,
  // KEYS: device hash, model binding hash; ARGV: field, value. Set only while the device exists
  // (so a binding never outlives a device deleted meanwhile): 1 when set.
  fhDeviceModelSet: `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'v', '1', ARGV[1], ARGV[2])
return 1`,
  // KEYS: the model's version hash, key → ref hash, id index, key counter. ARGV: version, id, max
  // key, document head, document tail (the document is head .. key .. tail). Returns the key; 0 when
  // the version exists, -1 when every key is taken. A refused create takes no key.
  fhModelCreate: `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[3]) then return -1 end
local key = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. key .. ARGV[5])
redis.call('HSET', KEYS[2], key, ARGV[2] .. '@' .. ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
return key`,
  // KEYS[1] the model's version hash; ARGV[1] a version, or '' for the highest. The document or nil.
  fhModelGet: `
local v = ARGV[1]
if v == '' then
  local best = 0
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if tonumber(f) > best then best = tonumber(f) end
  end
  if best == 0 then return nil end
  v = tostring(best)
end
return redis.call('HGET', KEYS[1], v)`,
  // KEYS[1] presence hash; ARGV: node, session, at, transport. Returns the sequence number. A session
  // that started before the one recorded from another node (a late write; equal times: the smaller
  // node id) is not recorded (broker/mqtt/takeover.ts keeps the same one).
  fhPresenceUp: `
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local cur = redis.call('HMGET', KEYS[1], 'since', 'node')
if cur[1] and cur[2] and cur[2] ~= ARGV[1] and (cur[1] > ARGV[3] or (cur[1] == ARGV[3] and cur[2] > ARGV[1])) then
  return seq
end
redis.call('HSET', KEYS[1], 'online', '1', 'node', ARGV[1], 'session', ARGV[2], 'since', ARGV[3], 'transport', ARGV[4])
return seq`,
  // KEYS[1] presence hash; ARGV: session, at. Returns {seq, online}: a session that was taken over
  // leaves the device online.
  fhPresenceDown: `
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if redis.call('HGET', KEYS[1], 'session') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'online', '0', 'lastDisconnectAt', ARGV[2])
  return {seq, 0}
end
local online = redis.call('HGET', KEYS[1], 'online') == '1' and 1 or 0
return {seq, online}`,
  // KEYS[1] twin hash; ARGV: version field, doc field, expected version, next version, doc.
  // 0 when written, else the version found (a missing twin is at version 1).
  fhTwinCas: `
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '1')
if cur ~= tonumber(ARGV[3]) then return cur end
redis.call('HSET', KEYS[1], 'v', '1', ARGV[1], ARGV[4], ARGV[2], ARGV[5])
return 0`,
  // KEYS[1] twin hash; ARGV: version. Raises the seen desired version.
  fhTwinSeen: `
local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '1')
if tonumber(ARGV[1]) > seen then redis.call('HSET', KEYS[1], 'v', '1', 'seen', ARGV[1]) end
return 0`,
  // KEYS: record hash, the device's queue, idempotency key. ARGV: state, doc, retention ms, queue
  // bound (0: not queued), idempotency key ('' if none), id, and the doc of the command delivered
  // ('' if none): stored instead, unqueued, when the queue is empty. {'created'} | {'delivered'} |
  // {'queue_full'} | {'duplicate', id}.
  fhCommandCreate: `
if ARGV[5] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'duplicate', existing} end
end
if ARGV[7] ~= '' and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'v', '1', 's', 'delivered', 'doc', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[3]) end
  return {'delivered'}
end
if tonumber(ARGV[4]) > 0 then
  if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then return {'queue_full'} end
  redis.call('RPUSH', KEYS[2], ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', '1', 's', ARGV[1], 'doc', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[3]) end
return {'created'}`,
  // KEYS: record hash, the device's queue. ARGV: expected state, new state, doc, retention ms, id to
  // take out of the queue ('' for none; taken out whether the record moves or not). 1 when moved,
  // else the record's doc as it is (0 when there is none): a caller that lost a race reads nothing.
  fhCommandMove: `
if ARGV[5] ~= '' then redis.call('LREM', KEYS[2], 0, ARGV[5]) end
local cur = redis.call('HMGET', KEYS[1], 's', 'doc')
if not cur[1] then return 0 end
if cur[1] ~= ARGV[1] then return cur[2] end
redis.call('HSET', KEYS[1], 's', ARGV[2], 'doc', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`,
} as const

type ScriptName = keyof typeof scripts

/** Typed calls of the registered scripts. */
export interface ScriptCalls {
  fhDeviceCreate(key: string, v: number, rev: number, doc: string): Promise<number>
  fhDeviceCas(key: string, expectedRev: number, rev: number, doc: string): Promise<number>
  fhDeviceDelete(key: string, presenceKey: string, modelKey: string): Promise<string | null>
  fhDeviceModelSet(key: string, modelKey: string, field: string, value: string): Promise<number>
  fhModelCreate(
    model: string,
    keys: string,
    ids: string,
    seq: string,
    version: number,
    id: string,
    maxKey: number,
    head: string,
    tail: string,
  ): Promise<number>
  fhModelGet(model: string, version: string): Promise<string | null>
  fhPresenceUp(key: string, node: string, session: string, at: string, transport: string): Promise<number>
  fhPresenceDown(key: string, session: string, at: string): Promise<[number, number]>
  fhTwinCas(
    key: string,
    versionField: string,
    docField: string,
    expected: number,
    next: number,
    doc: string,
  ): Promise<number>
  fhTwinSeen(key: string, version: number): Promise<number>
  fhCommandCreate(
    record: string,
    queue: string,
    idem: string,
    state: string,
    doc: string,
    retentionMs: number,
    queueBound: number,
    idemKey: string,
    id: string,
    deliveredDoc: string,
  ): Promise<string[]>
  fhCommandMove(
    record: string,
    queue: string,
    from: string,
    to: string,
    doc: string,
    retentionMs: number,
    unqueueId: string,
  ): Promise<number | string>
}

const keyCounts: Record<ScriptName, number> = {
  fhDeviceCreate: 1,
  fhDeviceCas: 1,
  fhDeviceDelete: 3,
  fhDeviceModelSet: 2,
  fhModelCreate: 4,
  fhModelGet: 1,
  fhPresenceUp: 1,
  fhPresenceDown: 1,
  fhTwinCas: 1,
  fhTwinSeen: 1,
  fhCommandCreate: 3,
  fhCommandMove: 2,
}

export function defineScripts(redis: Redis): ScriptCalls {
  for (const name of Object.keys(scripts) as ScriptName[]) {
    redis.defineCommand(name, { numberOfKeys: keyCounts[name], lua: scripts[name] })
  }
  return redis as unknown as ScriptCalls
}
