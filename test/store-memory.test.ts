import t from 'tap'
import { createMemoryStore } from '../registry/memory/store.js'
import { MAX_MODEL_KEY } from '../registry/models.js'
import { definition } from './contract/model-suite.js'
import { storeContract } from './contract/store-suite.js'

t.test('memory store contract', async (t) => {
  storeContract(t, { make: async () => createMemoryStore() })
})

t.test('model keys run out after 65535 models, and nothing is stored then', async (t) => {
  const s = createMemoryStore()
  for (let i = 1; i <= MAX_MODEL_KEY; i++) await s.models.create(definition(`m${i}`), 'T')
  t.match(await s.models.getByKey(MAX_MODEL_KEY), { id: `m${MAX_MODEL_KEY}` })
  t.same(await s.models.create(definition('one-more'), 'T'), { created: false, reason: 'keys_exhausted' })
  t.equal(await s.models.get('one-more'), undefined)
  t.same(await s.models.create(definition('m1'), 'T'), { created: false, reason: 'exists' })
})
