// The ModelStore contract, part of the store contract (store-suite.ts): registered models with their
// keys, versions and pages, and per-device bindings and self-descriptions that go with the device.
import type { Test } from 'tap'
import type { ModelBinding, ModelDefinition } from '../../registry/models.js'
import type { RegistryStore } from '../../registry/ports.js'
import { record, type StoreFactory } from './store-suite.js'

const AT = '2026-01-01T00:00:00.000Z'

export function definition(id: string, version = 1, over: Partial<ModelDefinition> = {}): ModelDefinition {
  return {
    id,
    version,
    properties: [],
    telemetry: [{ name: 'temperature', type: 'number', unit: '°C', scale: 0.1 }],
    commands: [],
    ...over,
  }
}

const binding = (over: Partial<ModelBinding> = {}): ModelBinding => ({
  id: 'acme.air',
  version: 1,
  key: 1,
  source: 'key',
  at: AT,
  ...over,
})

export function modelContract(t: Test, f: StoreFactory, fresh: (t: Test) => Promise<RegistryStore>): void {
  t.test('models: a version is registered once, with the next key', async (t) => {
    const s = await fresh(t)
    const a = await s.models.create(definition('acme.air'), AT)
    t.same(a, { created: true, model: { ...definition('acme.air'), key: 1, createdAt: AT } })
    t.same(await s.models.create(definition('acme.air', 1, { displayName: 'other' }), AT), {
      created: false,
      reason: 'exists',
    })
    t.equal((await s.models.get('acme.air'))?.displayName, undefined, 'a refused create changes nothing')
    const b = await s.models.create(definition('acme.air', 2), AT)
    t.match(b, { created: true, model: { key: 2 } }, 'a refused create took no key')
    const c = await s.models.create(definition('zeta', 1), AT)
    t.match(c, { created: true, model: { key: 3 } })
  })

  t.test('models: get by version, latest, key; versions ascending; unknown is undefined', async (t) => {
    const s = await fresh(t)
    for (const v of [2, 10, 1]) await s.models.create(definition('m', v), AT)
    t.equal((await s.models.get('m'))?.version, 10, 'no version: the highest (compared as numbers)')
    t.equal((await s.models.get('m', 2))?.key, 1)
    t.same(await s.models.versions('m'), [1, 2, 10])
    t.same(await s.models.versions('none'), [])
    t.match(await s.models.getByKey(3), { id: 'm', version: 1 })
    t.equal(await s.models.get('m', 3), undefined)
    t.equal(await s.models.get('none'), undefined)
    t.equal(await s.models.getByKey(99), undefined)
  })

  t.test('models: a definition round-trips with every field, and values are copies', async (t) => {
    const s = await fresh(t)
    const def = definition('rich:1.a-b_c', 7, {
      displayName: 'Rich',
      description: 'every field',
      properties: [
        { name: 'mode', type: 'string', enum: ['eco', 'boost'], writable: true, maxLength: 8 },
        { name: 'on', type: 'boolean' },
      ],
      telemetry: [
        { name: 't', type: 'number', minimum: -40.5, maximum: 85.25, scale: 0.01, unit: '°C' },
        { name: 'n', type: 'integer', enum: [1, 2, 3] },
      ],
      commands: [
        { name: 'reboot' },
        { name: 'set', request: [{ name: 'x', type: 'integer' }], response: [], description: 'd' },
      ],
    })
    const created = await s.models.create(def, AT)
    const key = created.created ? created.model.key : 0
    t.same(await s.models.get(def.id, 7), { ...def, key, createdAt: AT })
    t.same(await s.models.getByKey(key), { ...def, key, createdAt: AT })
    const empty = await s.models.create(definition('bare'), AT)
    t.same((await s.models.get('bare'))?.commands, [], 'an empty list stays a list')
    t.ok(empty.created)
    const got = await s.models.get(def.id)
    if (got) got.telemetry.length = 0
    t.equal((await s.models.get(def.id))?.telemetry.length, 2)
  })

  t.test('models: list pages by id with the latest version and the versions', async (t) => {
    const s = await fresh(t)
    const ids = ['a', 'b.1', 'b:2', 'c', 'd', 'e']
    for (const id of ids) await s.models.create(definition(id), AT)
    await s.models.create(definition('c', 3), AT)
    const first = await s.models.list({ limit: 4 })
    t.same(
      first.items.map((m) => m.id),
      ids.slice(0, 4),
    )
    t.equal(first.next, 'c')
    t.match(first.items[3], { id: 'c', version: 3, versions: [1, 3] })
    const last = await s.models.list({ after: first.next as string, limit: 4 })
    t.same(
      last.items.map((m) => m.id),
      ['d', 'e'],
    )
    t.equal(last.next, undefined, 'no cursor on the last page')
    const exact = await s.models.list({ after: 'c', limit: 2 })
    t.equal(exact.next, undefined, 'a page that ends exactly at the end has no cursor')
    t.same((await s.models.list({ after: 'zz', limit: 5 })).items, [])
  })

  t.test('models: concurrent creates never share a key', async (t) => {
    const s = await fresh(t)
    const other = f.peer ? await f.peer() : s
    if (other !== s) t.teardown(() => other.close())
    const stores = [s, other]
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        (stores[i % 2] as RegistryStore).models.create(definition(`m${i}`, 1 + (i % 3)), AT),
      ),
    )
    const keys = results.map((r) => (r.created ? r.model.key : 0))
    t.same(
      [...keys].sort((a, b) => a - b),
      Array.from({ length: 60 }, (_, i) => i + 1),
      'keys 1..60, each once',
    )
    const same = await Promise.all(
      Array.from({ length: 10 }, (_, i) => (stores[i % 2] as RegistryStore).models.create(definition('dup'), AT)),
    )
    t.equal(same.filter((r) => r.created).length, 1, 'one of ten creates of one version wins')
    t.match(await s.models.create(definition('after'), AT), { model: { key: 62 } }, 'the losers took no key')
  })

  t.test('bindings and self-descriptions are kept per device and deleted with it', async (t) => {
    const s = await fresh(t)
    t.equal(await s.models.setBinding('ghost', binding()), false, 'no device, no binding')
    t.equal(await s.models.setSelfModel('ghost', definition('self')), false)
    t.equal(await s.models.getBinding('ghost'), undefined)
    t.equal(await s.models.getSelfModel('ghost'), undefined)
    await s.devices.create(record('dev'))
    t.equal(await s.models.setBinding('dev', binding()), true)
    t.same(await s.models.getBinding('dev'), binding())
    const self: ModelBinding = { id: 'self', version: 4, source: 'self', at: AT }
    t.equal(await s.models.setBinding('dev', self), true)
    t.same(await s.models.getBinding('dev'), self, 'replaced')
    t.equal(await s.models.setSelfModel('dev', definition('self', 4)), true)
    t.same(await s.models.getSelfModel('dev'), definition('self', 4))
    await s.models.deleteBinding('dev')
    t.equal(await s.models.getBinding('dev'), undefined)
    t.same(await s.models.getSelfModel('dev'), definition('self', 4), 'the self-description stays')
    await s.models.setBinding('dev', binding())
    await s.devices.delete('dev')
    await s.devices.create(record('dev'))
    t.equal(await s.models.getBinding('dev'), undefined, 'a deleted device leaves no binding')
    t.equal(await s.models.getSelfModel('dev'), undefined, 'nor a self-description')
  })

  if (f.peer) {
    const peer = f.peer
    t.test('models: a second node sees models by key and bindings', async (t) => {
      const s = await fresh(t)
      const other = await peer()
      t.teardown(() => other.close())
      const r = await s.models.create(definition('shared'), AT)
      t.match(await other.models.getByKey(r.created ? r.model.key : 0), { id: 'shared', version: 1 })
      await s.devices.create(record('d1'))
      await s.models.setBinding('d1', binding())
      t.same(await other.models.getBinding('d1'), binding())
    })
  }
}
