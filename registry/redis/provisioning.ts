// The Redis provisioning store. An enrollment and a registration are each one hash (format version,
// revision, JSON document) written by the device scripts (fhDeviceCreate, fhDeviceCas), so every
// write is a compare-and-set on one key. A registration lives under its device's hash tag. Lists read
// sorted-set indexes behind a cursor; an index is a candidate set, the record is the truth.
import type { Redis } from 'ioredis'
import type { EnrollmentPage, ProvisioningStore, RegistrationPage } from '../ports.js'
import type { EnrollmentRecord, Registration } from '../provisioning.js'
import type { RedisKeys } from './keys.js'
import type { ScriptCalls } from './scripts.js'

/** Format version of stored enrollments and registrations. */
const FORMAT = 1

function decode<T>(v: string | null | undefined, doc: string | null | undefined): T | undefined {
  if (doc == null) return undefined
  if (v !== String(FORMAT)) throw new Error(`provisioning document format ${v} is not supported`)
  return JSON.parse(doc) as T
}

export function createProvisioningStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): ProvisioningStore {
  async function read<T>(key: string): Promise<T | undefined> {
    const [v, doc] = await redis.hmget(key, 'v', 'doc')
    return decode<T>(v, doc)
  }

  /** Reads the records of up to `limit` ids after `after` from an index; `next` when more may follow. */
  async function page<T>(index: string, after: string | undefined, limit: number, keyOf: (id: string) => string) {
    const ids = await redis.zrangebylex(index, after === undefined ? '-' : `(${after}`, '+', 'LIMIT', 0, limit + 1)
    const more = ids.length > limit
    const slice = more ? ids.slice(0, limit) : ids
    if (slice.length === 0) return { items: [] as T[] }
    const p = redis.pipeline()
    for (const id of slice) p.hmget(keyOf(id), 'v', 'doc')
    const res = (await p.exec()) ?? []
    const items: (T | undefined)[] = res.map(([err, pair]) => {
      if (err) throw err
      const [v, doc] = pair as [string | null, string | null]
      return decode<T>(v, doc)
    })
    const out = { items: items.filter((x): x is T => x !== undefined) }
    return more ? { ...out, next: slice[slice.length - 1] as string } : out
  }

  return {
    async createEnrollment(e) {
      await redis.zadd(keys.allEnrollments, 0, e.id)
      return (await s.fhDeviceCreate(keys.enrollment(e.id), FORMAT, e.rev, JSON.stringify(e))) === 1
    },
    getEnrollment(id) {
      return read<EnrollmentRecord>(keys.enrollment(id))
    },
    async replaceEnrollment(next, before) {
      return (await s.fhDeviceCas(keys.enrollment(next.id), before.rev, next.rev, JSON.stringify(next))) === 1
    },
    async deleteEnrollment(id) {
      const removed = await redis.del(keys.enrollment(id))
      await redis.zrem(keys.allEnrollments, id)
      return removed === 1
    },
    async listEnrollments(q): Promise<EnrollmentPage> {
      return page<EnrollmentRecord>(keys.allEnrollments, q.after, q.limit, keys.enrollment)
    },
    getRegistration(id) {
      return read<Registration>(keys.registration(id))
    },
    async putRegistration(r, expectedRev, previousEnrollment) {
      // index first: a crash in between leaves an extra candidate, never a missing one
      await redis.zadd(keys.enrollmentRegistrations(r.enrollmentId), 0, r.registrationId)
      const key = keys.registration(r.registrationId)
      const doc = JSON.stringify(r)
      const ok =
        expectedRev === 0
          ? (await s.fhDeviceCreate(key, FORMAT, r.rev, doc)) === 1
          : (await s.fhDeviceCas(key, expectedRev, r.rev, doc)) === 1
      if (ok && previousEnrollment !== undefined && previousEnrollment !== r.enrollmentId) {
        await redis.zrem(keys.enrollmentRegistrations(previousEnrollment), r.registrationId)
      }
      return ok
    },
    async listRegistrations(enrollmentId, q): Promise<RegistrationPage> {
      const res = await page<Registration>(
        keys.enrollmentRegistrations(enrollmentId),
        q.after,
        q.limit,
        keys.registration,
      )
      return { ...res, items: res.items.filter((r) => r.enrollmentId === enrollmentId) }
    },
    async claimOnce(key, ttlMs) {
      return (await redis.set(keys.usedToken(key), '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK'
    },
  }
}
