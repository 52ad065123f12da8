import t from 'tap'
import { createMemoryStore } from '../registry/memory/store.js'
import { storeContract } from './contract/store-suite.js'

t.test('memory store contract', async (t) => {
  storeContract(t, { make: async () => createMemoryStore() })
})
