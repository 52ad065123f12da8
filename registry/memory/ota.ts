// The in-memory OTA store: the reference semantics of OtaStore. Each write happens in one
// synchronous step, so a compare-and-set and its totals update are atomic as in the Redis scripts.
import { type ExecutionState, isInFlight, JOB_FINAL, type OtaExecution, type OtaJob, type OtaPackage } from '../ota.js'
import type { OtaStore } from '../ports.js'
import { SortedIds } from './sorted-ids.js'

const copy = structuredClone

interface JobData {
  job: OtaJob
  executions: Map<string, OtaExecution>
  byOrdinal: OtaExecution[]
  totals: Map<ExecutionState, number>
  inFlight: Set<string>
  lease?: { node: string; until: number }
}

export function createOtaStore(): OtaStore {
  const packages = new Map<string, OtaPackage>()
  const packageIds = new SortedIds()
  const jobsOfPackage = new Map<string, Set<string>>()
  const jobs = new Map<string, JobData>()
  const jobIds = new SortedIds()
  const current = new Map<string, string>()

  function page<T>(ids: Iterable<string>, limit: number, get: (id: string) => T | undefined) {
    const items: T[] = []
    let last: string | undefined
    for (const id of ids) {
      if (items.length >= limit) return { items, next: last as string }
      const v = get(id)
      if (v !== undefined) {
        items.push(copy(v))
        last = id
      }
    }
    return { items }
  }

  function bump(d: JobData, s: ExecutionState, by: number) {
    const n = (d.totals.get(s) ?? 0) + by
    if (n === 0) d.totals.delete(s)
    else d.totals.set(s, n)
  }

  return {
    async createPackage(p) {
      if (packages.has(p.id)) return false
      packages.set(p.id, copy(p))
      packageIds.add(p.id)
      return true
    },
    async getPackage(id) {
      const p = packages.get(id)
      return p && copy(p)
    },
    async listPackages(q) {
      return page(packageIds.from(q.after), q.limit, (id) => packages.get(id))
    },
    async updatePackage(next) {
      const cur = packages.get(next.id)
      if (!cur || cur.rev !== next.rev - 1) return false
      packages.set(next.id, copy(next))
      return true
    },
    async deletePackage(id) {
      if (!packages.has(id)) return 'not_found'
      for (const j of jobsOfPackage.get(id) ?? []) {
        const d = jobs.get(j)
        if (d && !JOB_FINAL.has(d.job.state)) return 'in_use'
      }
      packages.delete(id)
      packageIds.remove(id)
      return 'deleted'
    },

    async createJob(job) {
      jobs.set(job.id, {
        job: copy(job),
        executions: new Map(),
        byOrdinal: [],
        totals: new Map(),
        inFlight: new Set(),
      })
      jobIds.add(job.id)
      const set = jobsOfPackage.get(job.packageId) ?? new Set()
      set.add(job.id)
      jobsOfPackage.set(job.packageId, set)
    },
    async getJob(id) {
      const d = jobs.get(id)
      return d && copy(d.job)
    },
    async listJobs(q) {
      return page(jobIds.from(q.after), q.limit, (id) => jobs.get(id)?.job)
    },
    async updateJob(next) {
      const d = jobs.get(next.id)
      if (!d || d.job.rev !== next.rev - 1) return false
      d.job = copy(next)
      return true
    },
    async openJobs() {
      return [...jobs.values()]
        .filter((d) => !JOB_FINAL.has(d.job.state) || d.inFlight.size > 0)
        .map((d) => d.job.id)
        .sort()
    },

    async addExecutions(jobId, list) {
      const d = jobs.get(jobId)
      if (!d) return
      for (const e of list) {
        if (d.executions.has(e.deviceId)) continue
        const c = copy(e)
        d.executions.set(e.deviceId, c)
        d.byOrdinal.push(c)
        bump(d, e.state, 1)
        if (isInFlight(e)) d.inFlight.add(e.deviceId)
      }
      d.byOrdinal.sort((a, b) => a.ordinal - b.ordinal)
    },
    async getExecution(jobId, deviceId) {
      const e = jobs.get(jobId)?.executions.get(deviceId)
      return e && copy(e)
    },
    async executionsByOrdinal(jobId, from, to, limit) {
      const d = jobs.get(jobId)
      if (!d) return []
      const out: OtaExecution[] = []
      for (const e of d.byOrdinal) {
        if (e.ordinal < from) continue
        if (e.ordinal >= to || out.length >= limit) break
        out.push(copy(d.executions.get(e.deviceId) as OtaExecution))
      }
      return out
    },
    async transition(next) {
      const d = jobs.get(next.jobId)
      const cur = d?.executions.get(next.deviceId)
      if (!d || !cur || cur.rev !== next.rev - 1) return false
      const c = copy(next)
      d.executions.set(next.deviceId, c)
      const i = d.byOrdinal.indexOf(cur)
      if (i >= 0) d.byOrdinal[i] = c
      if (cur.state !== next.state) {
        bump(d, cur.state, -1)
        bump(d, next.state, 1)
      }
      if (isInFlight(next)) d.inFlight.add(next.deviceId)
      else d.inFlight.delete(next.deviceId)
      return true
    },
    async inFlight(jobId) {
      return [...(jobs.get(jobId)?.inFlight ?? [])]
    },
    async totals(jobId) {
      return Object.fromEntries(jobs.get(jobId)?.totals ?? [])
    },

    async setCurrent(deviceId, jobId) {
      current.set(deviceId, jobId)
    },
    async getCurrent(deviceId) {
      return current.get(deviceId)
    },

    async lease(jobId, node, ttlMs) {
      const d = jobs.get(jobId)
      if (!d) return false
      const now = Date.now()
      if (d.lease && d.lease.node !== node && d.lease.until > now) return false
      d.lease = { node, until: now + ttlMs }
      return true
    },
    async release(jobId, node) {
      const d = jobs.get(jobId)
      if (d?.lease?.node === node) delete d.lease
    },
  }
}
