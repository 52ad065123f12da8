// The ProvisioningStore contract, part of the store contract (store-suite.ts): enrollments with
// compare-and-set, registrations filed per enrollment (and moved with them), and single-use marks.
import type { Test } from 'tap'
import type { RegistryStore } from '../../registry/ports.js'
import type { EnrollmentRecord, Registration } from '../../registry/provisioning.js'
import type { StoreFactory } from './store-suite.js'

const AT = '2026-01-01T00:00:00.000Z'

function enrollment(id: string, over: Partial<EnrollmentRecord> = {}): EnrollmentRecord {
  return {
    id,
    kind: 'group',
    status: 'enabled',
    tags: {},
    desired: {},
    allocation: { policy: 'hashed' },
    reprovision: 'reassign',
    createdAt: AT,
    updatedAt: AT,
    rev: 1,
    secret: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
    ...over,
  }
}

function registration(id: string, enrollmentId: string, rev = 1): Registration {
  return {
    registrationId: id,
    deviceId: id,
    enrollmentId,
    hub: 'local',
    assignedAt: AT,
    firstAt: AT,
    count: rev,
    history: [{ at: AT, hub: 'local', enrollmentId, node: 'n' }],
    rev,
  }
}

export function provisioningContract(t: Test, f: StoreFactory, fresh: (t: Test) => Promise<RegistryStore>): void {
  t.test('enrollments: create once, compare-and-set, pages, delete', async (t) => {
    const s = (await fresh(t)).provisioning
    t.equal(await s.createEnrollment(enrollment('e-2')), true)
    t.equal(await s.createEnrollment(enrollment('e-2', { tags: { x: 1 } })), false, 'an id is taken once')
    t.same(await s.getEnrollment('e-2'), enrollment('e-2'))
    t.equal(await s.getEnrollment('nope'), undefined)
    const before = (await s.getEnrollment('e-2')) as EnrollmentRecord
    const next = { ...before, status: 'disabled' as const, rev: 2 }
    t.equal(await s.replaceEnrollment(next, before), true)
    t.equal(
      await s.replaceEnrollment({ ...before, rev: 2, tags: { lost: true } }, before),
      false,
      'a stale write loses',
    )
    t.equal((await s.getEnrollment('e-2'))?.status, 'disabled')
    for (const id of ['e-1', 'e-3', 'e-4']) await s.createEnrollment(enrollment(id))
    const p1 = await s.listEnrollments({ limit: 2 })
    t.same(
      p1.items.map((e) => e.id),
      ['e-1', 'e-2'],
    )
    t.equal(p1.next, 'e-2')
    const p2 = await s.listEnrollments({ limit: 2, after: 'e-2' })
    t.same(
      p2.items.map((e) => e.id),
      ['e-3', 'e-4'],
    )
    t.equal(p2.next, undefined, 'no cursor after the last page')
    t.equal(await s.deleteEnrollment('e-3'), true)
    t.equal(await s.deleteEnrollment('e-3'), false)
    t.same(
      (await s.listEnrollments({ limit: 10 })).items.map((e) => e.id),
      ['e-1', 'e-2', 'e-4'],
    )
  })

  t.test('registrations: compare-and-set, listed per enrollment, moved with it', async (t) => {
    const s = (await fresh(t)).provisioning
    t.equal(await s.putRegistration(registration('d-1', 'g'), 0), true)
    t.equal(await s.putRegistration(registration('d-1', 'g'), 0), false, 'a second first write loses')
    t.equal(await s.putRegistration(registration('d-1', 'g', 2), 1), true)
    t.equal(await s.putRegistration(registration('d-1', 'g', 3), 1), false, 'a stale rev loses')
    t.equal((await s.getRegistration('d-1'))?.count, 2)
    for (const id of ['d-0', 'd-2', 'd-3']) await s.putRegistration(registration(id, 'g'), 0)
    await s.putRegistration(registration('x-1', 'other'), 0)
    const p1 = await s.listRegistrations('g', { limit: 3 })
    t.same(
      p1.items.map((r) => r.registrationId),
      ['d-0', 'd-1', 'd-2'],
    )
    const p2 = await s.listRegistrations('g', { limit: 3, after: p1.next as string })
    t.same(
      p2.items.map((r) => r.registrationId),
      ['d-3'],
    )
    t.equal(await s.putRegistration(registration('d-2', 'other', 2), 1, 'g'), true)
    t.same(
      (await s.listRegistrations('g', { limit: 10 })).items.map((r) => r.registrationId),
      ['d-0', 'd-1', 'd-3'],
      'moved out of its old enrollment',
    )
    t.same(
      (await s.listRegistrations('other', { limit: 10 })).items.map((r) => r.registrationId),
      ['d-2', 'x-1'],
      'and into its new one',
    )
    t.same((await s.listRegistrations('none', { limit: 10 })).items, [])
  })

  t.test('single-use marks', async (t) => {
    const s = (await fresh(t)).provisioning
    t.equal(await s.claimOnce('tok-1', 200), true)
    t.equal(await s.claimOnce('tok-1', 200), false, 'a second use is refused')
    t.equal(await s.claimOnce('tok-2', 200), true)
    await new Promise((r) => setTimeout(r, 300))
    t.equal(await s.claimOnce('tok-1', 200), true, 'forgotten after its time')
  })

  if (f.peer) {
    const peer = f.peer
    t.test('a mark made on one node holds on another', async (t) => {
      const s = await fresh(t)
      const other = await peer()
      t.teardown(() => other.close())
      t.equal(await s.provisioning.claimOnce('shared-tok', 5000), true)
      t.equal(await other.provisioning.claimOnce('shared-tok', 5000), false)
    })
  }
}
