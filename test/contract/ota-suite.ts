// The OtaStore contract, part of the store contract (store-suite.ts): packages, jobs, executions
// whose compare-and-set moves the job's totals atomically, the in-flight set, per-device pointers
// and the scheduler lease.
import type { Test } from 'tap'
import { moveExecution, type OtaExecution, type OtaJob, type OtaPackage } from '../../registry/ota.js'
import type { RegistryStore } from '../../registry/ports.js'
import type { StoreFactory } from './store-suite.js'

const AT = '2026-01-01T00:00:00.000Z'

export function otaPackage(id: string, over: Partial<OtaPackage> = {}): OtaPackage {
  return {
    id,
    name: 'fw',
    version: '1.0.0',
    models: [],
    tags: {},
    state: 'awaiting_file',
    source: 'hosted',
    createdAt: AT,
    updatedAt: AT,
    rev: 1,
    ...over,
  }
}

export function otaJob(id: string, packageId: string, over: Partial<OtaJob> = {}): OtaJob {
  return {
    id,
    packageId,
    version: '1.0.0',
    state: 'scheduled',
    target: { deviceIds: ['d1'] },
    requireApproval: false,
    createdBy: 'alice',
    startAt: 0,
    rollout: { successThreshold: 1, deviceTimeoutMs: 60_000, confirmWithinMs: 10_000 },
    wave: 0,
    createdAt: AT,
    updatedAt: AT,
    rev: 1,
    ...over,
  }
}

export function execution(jobId: string, deviceId: string, ordinal: number, over: Partial<OtaExecution> = {}) {
  const e: OtaExecution = {
    jobId,
    deviceId,
    ordinal,
    state: 'pending',
    createdAt: AT,
    updatedAt: AT,
    history: [{ state: 'pending', at: AT }],
    rev: 1,
    ...over,
  }
  return e
}

export function otaContract(t: Test, f: StoreFactory, fresh: (t: Test) => Promise<RegistryStore>): void {
  t.test('ota: packages are created once, updated by revision, listed in pages', async (t) => {
    const s = await fresh(t)
    t.equal(await s.ota.createPackage(otaPackage('p1')), true)
    t.equal(await s.ota.createPackage(otaPackage('p1')), false, 'a second create of the id is refused')
    t.equal(await s.ota.getPackage('nope'), undefined)
    const p = (await s.ota.getPackage('p1')) as OtaPackage
    t.equal(await s.ota.updatePackage({ ...p, state: 'ready', rev: 2 }), true)
    t.equal(await s.ota.updatePackage({ ...p, state: 'awaiting_file', rev: 2 }), false, 'a stale revision loses')
    t.match(await s.ota.getPackage('p1'), { state: 'ready', rev: 2 })
    for (const id of ['p3', 'p2']) await s.ota.createPackage(otaPackage(id))
    const first = await s.ota.listPackages({ limit: 2 })
    t.same(
      first.items.map((x) => x.id),
      ['p1', 'p2'],
    )
    t.equal(first.next, 'p2')
    const second = await s.ota.listPackages({ after: first.next as string, limit: 2 })
    t.same(
      second.items.map((x) => x.id),
      ['p3'],
    )
    t.equal(second.next, undefined)
  })

  t.test('ota: a package used by an open job cannot be deleted', async (t) => {
    const s = await fresh(t)
    await s.ota.createPackage(otaPackage('p1'))
    await s.ota.createJob(otaJob('j1', 'p1'))
    t.equal(await s.ota.deletePackage('p1'), 'in_use')
    const j = (await s.ota.getJob('j1')) as OtaJob
    t.equal(await s.ota.updateJob({ ...j, state: 'completed', rev: 2 }), true)
    t.equal(await s.ota.deletePackage('p1'), 'deleted')
    t.equal(await s.ota.getPackage('p1'), undefined)
    t.equal(await s.ota.deletePackage('p1'), 'not_found')
  })

  t.test('ota: jobs update by revision; open jobs leave the list when final', async (t) => {
    const s = await fresh(t)
    await s.ota.createJob(otaJob('j1', 'p'))
    await s.ota.createJob(otaJob('j2', 'p'))
    t.same(await s.ota.openJobs(), ['j1', 'j2'])
    const j = (await s.ota.getJob('j1')) as OtaJob
    t.equal(await s.ota.updateJob({ ...j, state: 'running', rev: 2 }), true)
    t.equal(await s.ota.updateJob({ ...j, state: 'paused', rev: 2 }), false)
    await s.ota.addExecutions('j1', [execution('j1', 'd1', 0, { state: 'installing' })])
    t.equal(await s.ota.updateJob({ ...j, state: 'cancelled', rev: 3 }), true)
    t.same(await s.ota.openJobs(), ['j1', 'j2'], 'a final job stays while a device is in flight')
    const e = (await s.ota.getExecution('j1', 'd1')) as OtaExecution
    await s.ota.transition(moveExecution(e, 'succeeded', AT))
    t.same(await s.ota.openJobs(), ['j2'])
    const page = await s.ota.listJobs({ limit: 10 })
    t.same(
      page.items.map((x) => [x.id, x.state]),
      [
        ['j1', 'cancelled'],
        ['j2', 'scheduled'],
      ],
    )
  })

  t.test('ota: execution moves are compare-and-set and keep totals and the in-flight set', async (t) => {
    const s = await fresh(t)
    await s.ota.createJob(otaJob('j1', 'p'))
    await s.ota.addExecutions('j1', [
      execution('j1', 'd1', 0),
      execution('j1', 'd2', 1),
      execution('j1', 'd3', 2, { state: 'skipped', error: 'incompatible' }),
    ])
    await s.ota.addExecutions('j1', [execution('j1', 'd1', 0)])
    t.same(await s.ota.totals('j1'), { pending: 2, skipped: 1 }, 'a second add of a device counts nothing')
    t.same(await s.ota.inFlight('j1'), [])
    const e = (await s.ota.getExecution('j1', 'd1')) as OtaExecution
    const notified = moveExecution(e, 'notified', AT, { deadline: 5 })
    t.equal(await s.ota.transition(notified), true)
    t.equal(await s.ota.transition(moveExecution(e, 'cancelled', AT)), false, 'a stale revision loses')
    t.same(await s.ota.totals('j1'), { pending: 1, notified: 1, skipped: 1 })
    t.same(await s.ota.inFlight('j1'), ['d1'])
    const dl = moveExecution(notified, 'downloading', AT, { progress: 10 })
    t.equal(await s.ota.transition(dl), true)
    const dl2 = moveExecution(dl, 'downloading', AT, { progress: 50 })
    t.equal(await s.ota.transition(dl2), true, 'a repeated state is a write, not a move')
    t.same(await s.ota.totals('j1'), { pending: 1, downloading: 1, skipped: 1 })
    const failed = moveExecution(dl2, 'failed', AT, { error: 'x', rollback: { reason: 'x', at: AT } })
    t.equal(await s.ota.transition(failed), true)
    t.same(await s.ota.inFlight('j1'), [], 'a final state leaves the in-flight set')
    t.equal(await s.ota.transition(moveExecution(failed, 'rolled_back', AT)), true)
    t.same(await s.ota.inFlight('j1'), [])
    t.same(await s.ota.totals('j1'), { pending: 1, rolled_back: 1, skipped: 1 })
    t.match(await s.ota.getExecution('j1', 'd1'), { state: 'rolled_back', progress: 50, rev: 6 })
    t.equal(await s.ota.getExecution('j1', 'nope'), undefined)
  })

  t.test('ota: concurrent moves of one execution: exactly one wins, counted once', async (t) => {
    const s = await fresh(t)
    const other = f.peer ? await f.peer() : s
    if (other !== s) t.teardown(() => other.close())
    await s.ota.createJob(otaJob('j1', 'p'))
    const list = Array.from({ length: 20 }, (_, i) => execution('j1', `d${i}`, i, { state: 'notified' }))
    await s.ota.addExecutions('j1', list)
    const results = await Promise.all(
      list.flatMap((e) => [
        s.ota.transition(moveExecution(e, 'timed_out', AT)),
        other.ota.transition(moveExecution(e, 'downloading', AT)),
        s.ota.transition(moveExecution(e, 'failed', AT)),
      ]),
    )
    t.equal(results.filter(Boolean).length, 20, 'one write per execution')
    const totals = await s.ota.totals('j1')
    t.equal(
      Object.values(totals).reduce((a, b) => a + (b ?? 0), 0),
      20,
      'totals still add up to the devices',
    )
    t.equal(totals.notified, undefined)
  })

  t.test('ota: executions read by ordinal range, in order', async (t) => {
    const s = await fresh(t)
    await s.ota.createJob(otaJob('j1', 'p'))
    await s.ota.addExecutions(
      'j1',
      Array.from({ length: 10 }, (_, i) => execution('j1', `dev-${9 - i}`, 9 - i)),
    )
    const wave = await s.ota.executionsByOrdinal('j1', 3, 6, 100)
    t.same(
      wave.map((e) => e.deviceId),
      ['dev-3', 'dev-4', 'dev-5'],
    )
    t.same(
      (await s.ota.executionsByOrdinal('j1', 8, Number.POSITIVE_INFINITY, 100)).map((e) => e.ordinal),
      [8, 9],
    )
    t.equal((await s.ota.executionsByOrdinal('j1', 0, 10, 4)).length, 4, 'the limit holds')
    t.same(await s.ota.executionsByOrdinal('nope', 0, 10, 4), [])
  })

  t.test('ota: per-device pointer and the scheduler lease', async (t) => {
    const s = await fresh(t)
    t.equal(await s.ota.getCurrent('d1'), undefined)
    await s.ota.setCurrent('d1', 'j1')
    t.equal(await s.ota.getCurrent('d1'), 'j1')
    await s.ota.createJob(otaJob('j1', 'p'))
    t.equal(await s.ota.lease('j1', 'node-a', 300), true)
    t.equal(await s.ota.lease('j1', 'node-b', 300), false, 'held by another node')
    t.equal(await s.ota.lease('j1', 'node-a', 300), true, 'renewed by its holder')
    await s.ota.release('j1', 'node-b')
    t.equal(await s.ota.lease('j1', 'node-b', 300), false, 'only the holder releases')
    await s.ota.release('j1', 'node-a')
    t.equal(await s.ota.lease('j1', 'node-b', 100), true, 'released: another node takes it')
    await new Promise((r) => setTimeout(r, 150))
    t.equal(await s.ota.lease('j1', 'node-a', 100), true, 'expired: another node takes it')
  })
}
