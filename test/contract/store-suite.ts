// The store contract: one suite run against every RegistryStore adapter (memory and Redis), after
// aedes-persistence's abstract.js. The memory adapter is the reference semantics.
import type { Test } from 'tap'
import { verifiersOf } from '../../registry/credentials.js'
import type { RegistryStore } from '../../registry/ports.js'
import type { DeviceEvent, DeviceRecord, RegistryEvent } from '../../registry/types.js'
import { modelContract } from './model-suite.js'
import { otaContract } from './ota-suite.js'
import { provisioningContract } from './provisioning-suite.js'

export interface StoreFactory {
  /** A fresh, empty store. */
  make(): Promise<RegistryStore>
  /** A second handle on the same data (another node), when the adapter is shared. */
  peer?(): Promise<RegistryStore>
}

const KEYS = {
  primary: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8',
  secondary: 'HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4',
}

export function record(id: string, over: Partial<DeviceRecord> = {}): DeviceRecord {
  const at = '2026-01-01T00:00:00.000Z'
  return {
    id,
    status: 'enabled',
    tags: {},
    createdAt: at,
    updatedAt: at,
    keysRotatedAt: at,
    rev: 1,
    verifiers: verifiersOf(KEYS),
    ...over,
  }
}

async function all(store: RegistryStore, q: Parameters<RegistryStore['devices']['list']>[0]): Promise<string[]> {
  const ids: string[] = []
  let after = q.after
  for (let pages = 0; pages < 1000; pages++) {
    const page = await store.devices.list({ ...q, ...(after !== undefined ? { after } : {}) })
    ids.push(...page.items.map((r) => r.id))
    if (page.next === undefined) return ids
    after = page.next
  }
  throw new Error('paging did not end')
}

const waitFor = async (cond: () => boolean, ms = 2000) => {
  const until = Date.now() + ms
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
  return cond()
}

export function storeContract(t: Test, f: StoreFactory): void {
  const fresh = async (t: Test) => {
    const s = await f.make()
    t.teardown(() => s.close())
    return s
  }

  t.test('create stores a device once', async (t) => {
    const s = await fresh(t)
    t.equal(await s.devices.create(record('a')), true)
    t.equal(await s.devices.create(record('a', { tags: { x: '1' } })), false, 'a second create of the id is refused')
    t.same((await s.devices.get('a'))?.tags, {}, 'and changes nothing')
    t.equal(await s.devices.count(), 1)
  })

  t.test('not found is undefined, never a rejection', async (t) => {
    const s = await fresh(t)
    t.equal(await s.devices.get('nope'), undefined)
    t.equal(await s.devices.delete('nope'), undefined)
    t.equal(await s.presence.get('nope'), undefined)
    await s.devices.create(record('b'))
    const many = await s.devices.getMany(['nope', 'b'])
    t.equal(many[0], undefined)
    t.equal(many[1]?.id, 'b')
    t.same(await s.devices.getMany([]), [])
  })

  t.test('values are copies: changing what get returned changes nothing stored', async (t) => {
    const s = await fresh(t)
    const r = record('c', { tags: { a: '1' } })
    await s.devices.create(r)
    r.tags.a = 'changed'
    const got = await s.devices.get('c')
    t.equal(got?.tags.a, '1')
    if (got) got.tags.a = 'again'
    t.equal((await s.devices.get('c'))?.tags.a, '1')
  })

  t.test('a record round-trips with every field', async (t) => {
    const s = await fresh(t)
    const r = record('gw:1@site.a-b_c', {
      tags: { n: 3, on: true, s: 'x y' },
      parentId: 'p',
      modelId: 'm:1',
      status: 'disabled',
    })
    await s.devices.create(r)
    t.same(await s.devices.get(r.id), r)
  })

  t.test('compareAndSet applies only on the expected revision', async (t) => {
    const s = await fresh(t)
    const r = record('d')
    await s.devices.create(r)
    const next = { ...r, status: 'disabled' as const, rev: 2 }
    t.equal(await s.devices.compareAndSet(next, r), true)
    t.equal((await s.devices.get('d'))?.status, 'disabled')
    const stale = { ...r, tags: { lost: 'yes' }, rev: 2 }
    t.equal(await s.devices.compareAndSet(stale, r), false, 'a write based on revision 1 loses')
    t.same((await s.devices.get('d'))?.tags, {})
    t.equal(await s.devices.compareAndSet(record('ghost', { rev: 2 }), record('ghost')), false, 'no record, no write')
    t.equal(await s.devices.get('ghost'), undefined)
  })

  t.test('delete returns what it removed', async (t) => {
    const s = await fresh(t)
    await s.devices.create(record('e', { tags: { k: 'v' } }))
    t.equal((await s.devices.delete('e'))?.id, 'e')
    t.equal(await s.devices.get('e'), undefined)
    t.same(await all(s, { limit: 10 }), [])
    t.same(await all(s, { tags: { k: 'v' }, limit: 10 }), [], 'and it left the indexes')
    t.equal(await s.devices.count(), 0)
  })

  t.test('list pages through devices in id order, filtered', async (t) => {
    const s = await fresh(t)
    const ids: string[] = []
    for (let i = 0; i < 120; i++) {
      const id = `dev-${String(i).padStart(3, '0')}`
      ids.push(id)
      await s.devices.create(
        record(id, {
          status: i % 3 === 0 ? 'disabled' : 'enabled',
          tags: { floor: String(i % 4), even: i % 2 === 0, n: i % 5 },
          ...(i % 10 === 0 ? { parentId: 'gw-1' } : {}),
        }),
      )
    }
    const page = await s.devices.list({ limit: 7 })
    t.same(
      page.items.map((r) => r.id),
      ids.slice(0, 7),
    )
    t.equal(page.next, ids[6], 'the cursor is the last id of the page')
    t.same(await all(s, { limit: 7 }), ids, 'every device once, in order')
    t.same(await all(s, { limit: 1000 }), ids, 'one big page')
    t.same(
      await all(s, { status: 'disabled', limit: 9 }),
      ids.filter((_, i) => i % 3 === 0),
    )
    t.same(
      await all(s, { tags: { floor: '2' }, limit: 4 }),
      ids.filter((_, i) => i % 4 === 2),
    )
    t.same(
      await all(s, { tags: { even: 'true', n: '0' }, limit: 5 }),
      ids.filter((_, i) => i % 2 === 0 && i % 5 === 0),
      'tag values compare as text',
    )
    t.same(
      await all(s, { tags: { floor: '1' }, status: 'enabled', limit: 3 }),
      ids.filter((_, i) => i % 4 === 1 && i % 3 !== 0),
    )
    t.same(
      await all(s, { parentId: 'gw-1', limit: 2 }),
      ids.filter((_, i) => i % 10 === 0),
    )
    t.same(await all(s, { tags: { floor: 'none' }, limit: 5 }), [])
    t.same(await all(s, { after: 'dev-115', limit: 50 }), ids.slice(116), 'after is exclusive')
    t.same(await all(s, { after: 'dev-0555', limit: 50 }), ids.slice(56), 'after need not be an id')
  })

  t.test('list follows changes of status and tags', async (t) => {
    const s = await fresh(t)
    const r = record('f', { tags: { room: 'a' } })
    await s.devices.create(r)
    const next = { ...r, rev: 2, status: 'disabled' as const, tags: { room: 'b' } }
    await s.devices.compareAndSet(next, r)
    t.same(await all(s, { tags: { room: 'a' }, limit: 10 }), [])
    t.same(await all(s, { tags: { room: 'b' }, limit: 10 }), ['f'])
    t.same(await all(s, { status: 'enabled', limit: 10 }), [])
    t.same(await all(s, { status: 'disabled', limit: 10 }), ['f'])
    const lost = { ...r, rev: 2, tags: { room: 'c' } }
    t.equal(await s.devices.compareAndSet(lost, r), false)
    t.same(await all(s, { tags: { room: 'c' }, limit: 10 }), [], 'a lost write leaves no trace in the indexes')
  })

  t.test('presence counts events and survives takeovers', async (t) => {
    const s = await fresh(t)
    t.equal(await s.presence.connected('p', { node: 'n1', session: 's1', at: 'T1' }), 1)
    t.same(await s.presence.get('p'), { online: true, seq: 1, node: 'n1', session: 's1', since: 'T1' })
    t.equal(await s.presence.connected('p', { node: 'n2', session: 's2', at: 'T2' }), 2, 'a takeover')
    t.same(
      await s.presence.disconnected('p', { session: 's1', at: 'T3' }),
      { seq: 3, online: true },
      'the old session ends late',
    )
    t.equal((await s.presence.get('p'))?.node, 'n2', 'and the device stays on the new node')
    t.same(await s.presence.disconnected('p', { session: 's2', at: 'T4' }), { seq: 4, online: false })
    const p = await s.presence.get('p')
    t.equal(p?.online, false)
    t.equal(p?.lastDisconnectAt, 'T4')
    const many = await s.presence.getMany(['p', 'q'])
    t.equal(many[0]?.seq, 4)
    t.equal(many[1], undefined)
    await s.presence.remove('p')
    t.equal(await s.presence.get('p'), undefined)
  })

  t.test('the newest session keeps the presence when an older one is written late', async (t) => {
    const s = await fresh(t)
    const t1 = '2026-11-28T01:00:00.100Z'
    const t2 = '2026-11-28T01:00:00.200Z'
    // the session on n2 started later, but the older one's write from n1 arrives after it
    t.equal(await s.presence.connected('p', { node: 'n2', session: 'new', at: t2 }), 1)
    t.equal(await s.presence.connected('p', { node: 'n1', session: 'old', at: t1 }), 2, 'the late write is counted')
    t.match(await s.presence.get('p'), { online: true, node: 'n2', session: 'new', since: t2 }, 'but not recorded')
    t.same(await s.presence.disconnected('p', { session: 'old', at: t2 }), { seq: 3, online: true }, 'its end')
    t.match(await s.presence.get('p'), { online: true, node: 'n2', session: 'new' }, 'leaves the device online')

    // equal start times on two nodes: the greater node id is the newer, as the takeover decides
    t.equal(await s.presence.connected('q', { node: 'n2', session: 'b', at: t1 }), 1)
    t.equal(await s.presence.connected('q', { node: 'n1', session: 'a', at: t1 }), 2)
    t.equal((await s.presence.get('q'))?.session, 'b')
    t.equal(await s.presence.connected('q', { node: 'n3', session: 'c', at: t1 }), 3)
    t.equal((await s.presence.get('q'))?.session, 'c')

    // on one node, writes arrive in the order the sessions started: the later write wins
    // whatever the clock says (it may have been set back)
    t.equal(await s.presence.connected('r', { node: 'n1', session: 'x', at: t2 }), 1)
    t.equal(await s.presence.connected('r', { node: 'n1', session: 'y', at: t1 }), 2)
    t.equal((await s.presence.get('r'))?.session, 'y')
  })

  t.test('nodes are live while they heart-beat', async (t) => {
    const s = await fresh(t)
    await s.presence.heartbeat('n1', 10_000)
    await s.presence.heartbeat('n2', 30)
    t.ok((await s.presence.liveNodes()).has('n2'))
    await new Promise((r) => setTimeout(r, 60))
    const live = await s.presence.liveNodes()
    t.ok(live.has('n1'))
    t.notOk(live.has('n2'), 'a node that stopped is not live')
    await s.presence.leave('n1')
    t.notOk((await s.presence.liveNodes()).has('n1'))
  })

  t.test('registry events reach every subscriber', async (t) => {
    const s = await fresh(t)
    const a: RegistryEvent[] = []
    const b: DeviceEvent[] = []
    const offA = s.events.subscribe((e) => a.push(e))
    s.events.subscribe((e) => b.push(e as DeviceEvent))
    const e: RegistryEvent = { type: 'device.disabled', deviceId: 'x', origin: 'n1', at: 'T', rev: 3 }
    await s.events.publish(e)
    t.ok(a.length === 1 && b.length === 1, "this node's listeners have heard it when publish resolves")
    t.same(a[0], e)
    offA()
    await s.events.publish({ ...e, type: 'device.deleted', parentId: 'gw' })
    t.ok(await waitFor(() => b.length === 2))
    t.equal(a.length, 1, 'an unsubscribed listener hears nothing more')
    t.equal(b[1]?.parentId, 'gw')
  })

  t.test('a throwing listener does not stop the others', async (t) => {
    const s = await fresh(t)
    const got: string[] = []
    s.events.subscribe(() => {
      throw new Error('boom')
    })
    s.events.subscribe((e) => got.push(e.type))
    await s.events.publish({ type: 'device.updated', deviceId: 'y', origin: 'n', at: 'T' })
    t.ok(await waitFor(() => got.length === 1))
  })

  t.test('twins: compare-and-set per side, seen versions only rise', async (t) => {
    const s = await fresh(t)
    t.equal(await s.twins.get('tw'), undefined, 'a twin never written is undefined (empty)')
    const side = (version: number, doc: Record<string, number>) => ({ version, doc, meta: { $: 'T' } })
    t.equal(await s.twins.casSide('tw', 'desired', side(2, { a: 1 }), 1), true, 'the first write expects version 1')
    t.equal(await s.twins.casSide('tw', 'desired', side(2, { a: 2 }), 1), 2, 'a stale write gets the current version')
    t.equal(await s.twins.casSide('tw', 'reported', side(2, { r: 1 }), 1), true, 'the sides are independent')
    const got = await s.twins.get('tw')
    t.same(got?.desired, side(2, { a: 1 }))
    t.same(got?.reported, side(2, { r: 1 }))
    t.equal(got?.desiredSeen, 1)
    await s.twins.markSeen('tw', 2)
    await s.twins.markSeen('tw', 1)
    t.equal((await s.twins.get('tw'))?.desiredSeen, 2, 'seen never goes back')
    const many = await s.twins.getMany(['tw', 'none'])
    t.equal(many[0]?.desired.version, 2)
    t.equal(many[1], undefined)
    await s.twins.delete('tw')
    t.equal(await s.twins.get('tw'), undefined)
  })

  if (f.peer) {
    const peer = f.peer
    t.test('a second node sees the same data and events', async (t) => {
      const s = await fresh(t)
      const other = await peer()
      t.teardown(() => other.close())
      const heard: RegistryEvent[] = []
      other.events.subscribe((e) => heard.push(e))
      await s.devices.create(record('shared', { tags: { t: '1' } }))
      t.equal((await other.devices.get('shared'))?.id, 'shared')
      t.same(await all(other, { tags: { t: '1' }, limit: 10 }), ['shared'])
      const mine: RegistryEvent[] = []
      s.events.subscribe((e) => mine.push(e))
      const e: RegistryEvent = { type: 'credential.revoked', deviceId: 'shared', origin: 'a', at: 'T', rev: 2 }
      await s.events.publish(e)
      t.ok(await waitFor(() => heard.length === 1), 'the event crossed nodes')
      t.same(heard[0], e, 'as it was published')
      await other.events.publish({ ...e, deviceId: 'back' })
      t.ok(await waitFor(() => mine.length === 2), 'and back')
      t.same(
        mine.map((x) => (x as DeviceEvent).deviceId),
        ['shared', 'back'],
        'the publisher heard its own event once, when it published it',
      )
      await s.presence.heartbeat('node-a', 10_000)
      t.ok((await other.presence.liveNodes()).has('node-a'))
    })
  }

  modelContract(t, f, fresh)
  provisioningContract(t, f, fresh)
  otaContract(t, f, fresh)
}
