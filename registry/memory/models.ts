// The in-memory model store: the reference semantics of ModelStore. A device's binding and
// self-description live in a map the device store shares, so deleting the device drops them.
import { MAX_MODEL_KEY, type Model, type ModelBinding, type ModelDefinition } from '../models.js'
import type { ModelStore, ModelSummary } from '../ports.js'
import { SortedIds } from './sorted-ids.js'

const copy = structuredClone

/** What is kept per device; the device store deletes the entry with the device. */
export interface DeviceModelState {
  binding?: ModelBinding
  self?: ModelDefinition
}

export function createModelStore(
  perDevice: Map<string, DeviceModelState>,
  deviceExists: (id: string) => boolean,
): ModelStore {
  /** id → version → model */
  const models = new Map<string, Map<number, Model>>()
  const byKey = new Map<number, Model>()
  const ids = new SortedIds()
  let lastKey = 0

  function versionsOf(id: string): number[] {
    return [...(models.get(id)?.keys() ?? [])].sort((a, b) => a - b)
  }

  function find(id: string, version?: number): Model | undefined {
    const vs = versionsOf(id)
    return models.get(id)?.get(version ?? (vs[vs.length - 1] as number))
  }

  function setField<K extends keyof DeviceModelState>(deviceId: string, field: K, value: DeviceModelState[K]) {
    if (!deviceExists(deviceId)) return false
    const state = perDevice.get(deviceId) ?? {}
    state[field] = copy(value)
    perDevice.set(deviceId, state)
    return true
  }

  return {
    async create(def, createdAt) {
      const versions = models.get(def.id) ?? new Map<number, Model>()
      if (versions.has(def.version)) return { created: false, reason: 'exists' }
      if (lastKey >= MAX_MODEL_KEY) return { created: false, reason: 'keys_exhausted' }
      const model: Model = { ...copy(def), key: ++lastKey, createdAt }
      versions.set(def.version, model)
      models.set(def.id, versions)
      byKey.set(model.key, model)
      ids.add(def.id)
      return { created: true, model: copy(model) }
    },
    async get(id, version) {
      const m = find(id, version)
      return m && copy(m)
    },
    async getByKey(key) {
      const m = byKey.get(key)
      return m && copy(m)
    },
    async versions(id) {
      return versionsOf(id)
    },
    async list(q) {
      const items: ModelSummary[] = []
      for (const id of ids.from(q.after)) {
        if (items.length >= q.limit) return { items, next: items[items.length - 1]?.id as string }
        items.push({ ...copy(find(id) as Model), versions: versionsOf(id) })
      }
      return { items }
    },
    async setBinding(deviceId, binding) {
      return setField(deviceId, 'binding', binding)
    },
    async getBinding(deviceId) {
      const b = perDevice.get(deviceId)?.binding
      return b && copy(b)
    },
    async deleteBinding(deviceId) {
      const state = perDevice.get(deviceId)
      if (state) delete state.binding
    },
    async setSelfModel(deviceId, def) {
      return setField(deviceId, 'self', def)
    },
    async getSelfModel(deviceId) {
      const d = perDevice.get(deviceId)?.self
      return d && copy(d)
    },
  }
}
