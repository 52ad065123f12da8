// The Redis OTA store. A job's record, executions, totals, in-flight set, device order and lease all
// carry the job's hash tag (`{job:ID}`), so one script moves an execution (compare-and-set on its
// revision) and the job's totals and in-flight set together. Packages and the job lists share the
// `{ota}` tag; a device's pointer to its current job goes under the device's own tag. Lists that span
// tags (open jobs, a package's jobs) are candidate sets re-checked against the records, as the device
// indexes are.
import type { Redis } from 'ioredis'
import { type ExecutionState, isInFlight, JOB_FINAL, type OtaExecution, type OtaJob, type OtaPackage } from '../ota.js'
import type { OtaStore } from '../ports.js'

/** Format version of stored OTA documents. */
const OTA_FORMAT = 1

const scripts = {
  // KEYS[1] record hash; ARGV: format, rev, doc. 1 when created, 0 when it existed.
  fhOtaCreate: `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'rev', ARGV[2], 'doc', ARGV[3])
return 1`,
  // KEYS[1] record hash; ARGV: expected rev, new rev, doc. 1 when set.
  fhOtaCas: `
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'doc', ARGV[3])
return 1`,
  // KEYS: execution hash, device order, totals, in-flight set. ARGV: format, ordinal, state, doc,
  // in flight (1/0), device id. 1 when added, 0 when it existed.
  fhOtaAddExecution: `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local doc = cjson.decode(ARGV[4])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'rev', tostring(doc.rev), 's', ARGV[3], 'doc', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[6])
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
if ARGV[5] == '1' then redis.call('SADD', KEYS[4], ARGV[6]) end
return 1`,
  // KEYS: execution hash, totals, in-flight set. ARGV: expected rev, new rev, new state, doc,
  // in flight (1/0), device id. 1 when moved (totals follow the state), 0 when another write came first.
  fhOtaMove: `
local cur = redis.call('HMGET', KEYS[1], 'rev', 's')
if cur[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 's', ARGV[3], 'doc', ARGV[4])
if cur[2] ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], cur[2], -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
if ARGV[5] == '1' then redis.call('SADD', KEYS[3], ARGV[6]) else redis.call('SREM', KEYS[3], ARGV[6]) end
return 1`,
  // KEYS[1] lease; ARGV: node, ttl ms. 1 when this node holds it (taken or renewed).
  fhOtaLease: `
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`,
  // KEYS[1] lease; ARGV[1] node. Released only by its holder.
  fhOtaRelease: `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`,
} as const

type ScriptName = keyof typeof scripts

interface OtaScripts {
  fhOtaCreate(key: string, format: number, rev: number, doc: string): Promise<number>
  fhOtaCas(key: string, expected: number, rev: number, doc: string): Promise<number>
  fhOtaAddExecution(
    ex: string,
    order: string,
    totals: string,
    inflight: string,
    format: number,
    ordinal: number,
    state: string,
    doc: string,
    inFlight: string,
    deviceId: string,
  ): Promise<number>
  fhOtaMove(
    ex: string,
    totals: string,
    inflight: string,
    expected: number,
    rev: number,
    state: string,
    doc: string,
    inFlight: string,
    deviceId: string,
  ): Promise<number>
  fhOtaLease(key: string, node: string, ttlMs: number): Promise<number>
  fhOtaRelease(key: string, node: string): Promise<number>
}

const keyCounts: Record<ScriptName, number> = {
  fhOtaCreate: 1,
  fhOtaCas: 1,
  fhOtaAddExecution: 4,
  fhOtaMove: 3,
  fhOtaLease: 1,
  fhOtaRelease: 1,
}

function decode<T>(format: string | null | undefined, doc: string | null | undefined, what: string): T | undefined {
  if (doc == null) return undefined
  if (format !== String(OTA_FORMAT)) throw new Error(`${what} format ${format} is not supported`)
  return JSON.parse(doc) as T
}

export function createOtaStore(redis: Redis, prefix: string): OtaStore {
  for (const name of Object.keys(scripts) as ScriptName[]) {
    redis.defineCommand(name, { numberOfKeys: keyCounts[name], lua: scripts[name] })
  }
  const s = redis as unknown as OtaScripts
  const k = {
    pkg: (id: string) => `${prefix}:{ota}:pkg:${id}`,
    pkgs: `${prefix}:{ota}:pkgs`,
    pkgJobs: (id: string) => `${prefix}:{ota}:pkgjobs:${id}`,
    jobs: `${prefix}:{ota}:jobs`,
    open: `${prefix}:{ota}:open`,
    job: (id: string) => `${prefix}:{job:${id}}:job`,
    ex: (jobId: string, deviceId: string) => `${prefix}:{job:${jobId}}:ex:${deviceId}`,
    order: (jobId: string) => `${prefix}:{job:${jobId}}:order`,
    totals: (jobId: string) => `${prefix}:{job:${jobId}}:totals`,
    inflight: (jobId: string) => `${prefix}:{job:${jobId}}:inflight`,
    lease: (jobId: string) => `${prefix}:{job:${jobId}}:lease`,
    current: (deviceId: string) => `${prefix}:{${deviceId}}:ota`,
  }

  async function read<T>(key: string, what: string): Promise<T | undefined> {
    const [format, doc] = await redis.hmget(key, 'v', 'doc')
    return decode<T>(format, doc, what)
  }

  async function readMany<T>(keys: string[], what: string): Promise<(T | undefined)[]> {
    if (keys.length === 0) return []
    const p = redis.pipeline()
    for (const key of keys) p.hmget(key, 'v', 'doc')
    const res = (await p.exec()) ?? []
    return res.map(([err, v]) => {
      if (err) throw err
      const [format, doc] = v as [string | null, string | null]
      return decode<T>(format, doc, what)
    })
  }

  async function pageOf<T>(zset: string, after: string | undefined, limit: number, key: (id: string) => string) {
    const ids = await redis.zrangebylex(zset, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, limit + 1)
    const pageIds = ids.slice(0, limit)
    const docs = await readMany<T>(pageIds.map(key), 'OTA document')
    const items = docs.filter((d): d is T => d !== undefined)
    return ids.length > limit ? { items, next: pageIds[pageIds.length - 1] as string } : { items }
  }

  async function jobStates(ids: string[]): Promise<(OtaJob | undefined)[]> {
    return readMany<OtaJob>(ids.map(k.job), 'job')
  }

  return {
    async createPackage(p) {
      const created = (await s.fhOtaCreate(k.pkg(p.id), OTA_FORMAT, p.rev, JSON.stringify(p))) === 1
      if (created) await redis.zadd(k.pkgs, 0, p.id)
      return created
    },
    async getPackage(id) {
      return read<OtaPackage>(k.pkg(id), 'package')
    },
    async listPackages(q) {
      return pageOf<OtaPackage>(k.pkgs, q.after, q.limit, k.pkg)
    },
    async updatePackage(next) {
      return (await s.fhOtaCas(k.pkg(next.id), next.rev - 1, next.rev, JSON.stringify(next))) === 1
    },
    async deletePackage(id) {
      if ((await redis.exists(k.pkg(id))) === 0) return 'not_found'
      const jobs = await jobStates(await redis.smembers(k.pkgJobs(id)))
      if (jobs.some((j) => j !== undefined && !JOB_FINAL.has(j.state))) return 'in_use'
      await redis.del(k.pkg(id), k.pkgJobs(id))
      await redis.zrem(k.pkgs, id)
      return 'deleted'
    },

    async createJob(job) {
      // the lists first: a crash in between leaves a candidate that reads as nothing
      await redis.sadd(k.pkgJobs(job.packageId), job.id)
      await redis.sadd(k.open, job.id)
      await redis.zadd(k.jobs, 0, job.id)
      await s.fhOtaCreate(k.job(job.id), OTA_FORMAT, job.rev, JSON.stringify(job))
    },
    async getJob(id) {
      return read<OtaJob>(k.job(id), 'job')
    },
    async listJobs(q) {
      return pageOf<OtaJob>(k.jobs, q.after, q.limit, k.job)
    },
    async updateJob(next) {
      return (await s.fhOtaCas(k.job(next.id), next.rev - 1, next.rev, JSON.stringify(next))) === 1
    },
    async openJobs() {
      const ids = await redis.smembers(k.open)
      const jobs = await jobStates(ids)
      const out: string[] = []
      const final = ids.filter((id, i) => {
        const j = jobs[i]
        if (j && !JOB_FINAL.has(j.state)) out.push(id)
        return j !== undefined && JOB_FINAL.has(j.state)
      })
      // a final job stays on the list while devices are in flight (and a job not written yet, too)
      const p = redis.pipeline()
      for (const id of final) p.scard(k.inflight(id))
      const counts = ((await p.exec()) ?? []).map(([, n]) => Number(n))
      const done: string[] = []
      final.forEach((id, i) => {
        if ((counts[i] ?? 0) > 0) out.push(id)
        else done.push(id)
      })
      if (done.length > 0) await redis.srem(k.open, ...done)
      return out.sort()
    },

    async addExecutions(jobId, list) {
      await Promise.all(
        list.map((e) =>
          s.fhOtaAddExecution(
            k.ex(jobId, e.deviceId),
            k.order(jobId),
            k.totals(jobId),
            k.inflight(jobId),
            OTA_FORMAT,
            e.ordinal,
            e.state,
            JSON.stringify(e),
            isInFlight(e) ? '1' : '0',
            e.deviceId,
          ),
        ),
      )
    },
    async getExecution(jobId, deviceId) {
      return read<OtaExecution>(k.ex(jobId, deviceId), 'execution')
    },
    async executionsByOrdinal(jobId, from, to, limit) {
      const ids = await redis.zrangebyscore(
        k.order(jobId),
        from,
        Number.isFinite(to) ? `(${to}` : '+inf',
        'LIMIT',
        0,
        limit,
      )
      const docs = await readMany<OtaExecution>(
        ids.map((id) => k.ex(jobId, id)),
        'execution',
      )
      return docs.filter((d): d is OtaExecution => d !== undefined)
    },
    async transition(next) {
      const moved = await s.fhOtaMove(
        k.ex(next.jobId, next.deviceId),
        k.totals(next.jobId),
        k.inflight(next.jobId),
        next.rev - 1,
        next.rev,
        next.state,
        JSON.stringify(next),
        isInFlight(next) ? '1' : '0',
        next.deviceId,
      )
      return moved === 1
    },
    async inFlight(jobId) {
      return redis.smembers(k.inflight(jobId))
    },
    async totals(jobId) {
      const h = await redis.hgetall(k.totals(jobId))
      const out: Partial<Record<ExecutionState, number>> = {}
      for (const [state, n] of Object.entries(h)) if (Number(n) !== 0) out[state as ExecutionState] = Number(n)
      return out
    },

    async setCurrent(deviceId, jobId) {
      await redis.set(k.current(deviceId), jobId)
    },
    async getCurrent(deviceId) {
      return (await redis.get(k.current(deviceId))) ?? undefined
    },

    async lease(jobId, node, ttlMs) {
      return (await s.fhOtaLease(k.lease(jobId), node, ttlMs)) === 1
    },
    async release(jobId, node) {
      await s.fhOtaRelease(k.lease(jobId), node)
    },
  }
}
