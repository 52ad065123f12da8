// The memory adapter of the provisioning store: the reference semantics of ProvisioningStore.
import type { EnrollmentPage, ProvisioningStore, RegistrationPage } from '../ports.js'
import type { EnrollmentRecord, Registration } from '../provisioning.js'
import { SortedIds } from './sorted-ids.js'

/** Records are copied in and out, as a real store would, so callers never share objects with it. */
const copy = <T>(v: T): T => structuredClone(v)

/** One page of ids from `after` (exclusive): `next` is set when more may follow. */
function page<T>(ids: SortedIds, after: string | undefined, limit: number, get: (id: string) => T | undefined) {
  const items: T[] = []
  let last: string | undefined
  for (const id of ids.from(after)) {
    if (items.length === limit) return { items, next: last as string }
    const v = get(id)
    if (v === undefined) continue
    items.push(v)
    last = id
  }
  return { items }
}

export function createProvisioningStore(): ProvisioningStore {
  const enrollments = new Map<string, EnrollmentRecord>()
  const enrollmentIds = new SortedIds()
  const registrations = new Map<string, Registration>()
  const byEnrollment = new Map<string, SortedIds>()
  const claimed = new Map<string, number>()
  return {
    async createEnrollment(e) {
      if (enrollments.has(e.id)) return false
      enrollments.set(e.id, copy(e))
      enrollmentIds.add(e.id)
      return true
    },
    async getEnrollment(id) {
      const e = enrollments.get(id)
      return e && copy(e)
    },
    async replaceEnrollment(next, before) {
      const cur = enrollments.get(before.id)
      if (!cur || cur.rev !== before.rev) return false
      enrollments.set(next.id, copy(next))
      return true
    },
    async deleteEnrollment(id) {
      enrollmentIds.remove(id)
      return enrollments.delete(id)
    },
    async listEnrollments(q): Promise<EnrollmentPage> {
      return page(enrollmentIds, q.after, q.limit, (id) => {
        const e = enrollments.get(id)
        return e && copy(e)
      })
    },
    async getRegistration(id) {
      const r = registrations.get(id)
      return r && copy(r)
    },
    async putRegistration(r, expectedRev, previousEnrollment) {
      if ((registrations.get(r.registrationId)?.rev ?? 0) !== expectedRev) return false
      registrations.set(r.registrationId, copy(r))
      if (previousEnrollment !== undefined && previousEnrollment !== r.enrollmentId) {
        byEnrollment.get(previousEnrollment)?.remove(r.registrationId)
      }
      const ids = byEnrollment.get(r.enrollmentId) ?? new SortedIds()
      byEnrollment.set(r.enrollmentId, ids)
      ids.add(r.registrationId)
      return true
    },
    async listRegistrations(enrollmentId, q): Promise<RegistrationPage> {
      const ids = byEnrollment.get(enrollmentId)
      if (!ids) return { items: [] }
      return page(ids, q.after, q.limit, (id) => {
        const r = registrations.get(id)
        return r && r.enrollmentId === enrollmentId ? copy(r) : undefined
      })
    },
    async claimOnce(key, ttlMs) {
      const now = Date.now()
      if (claimed.size > 10_000) for (const [k, until] of claimed) if (until <= now) claimed.delete(k)
      const until = claimed.get(key)
      if (until !== undefined && until > now) return false
      claimed.set(key, now + ttlMs)
      return true
    },
  }
}
