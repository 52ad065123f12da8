// The Redis model store. A model is one hash of version → document under the `{models}` hash tag;
// fhModelCreate checks the version, takes the next key from a counter (INCR) and stores the document
// and the key's entry at once, so two nodes creating models together never share a key. A device's
// binding and self-description are one hash under the device's tag, deleted with the device.
import type { Redis } from 'ioredis'
import { MAX_MODEL_KEY, type Model, type ModelBinding, type ModelDefinition, parseModelRef } from '../models.js'
import type { ModelStore, ModelSummary } from '../ports.js'
import type { RedisKeys } from './keys.js'
import type { ScriptCalls } from './scripts.js'

/** Format version of stored model documents, bindings and self-descriptions. */
const MODEL_FORMAT = 1

function decodeModel(doc: string | null | undefined): Model | undefined {
  if (doc == null) return undefined
  const { v, ...model } = JSON.parse(doc) as Model & { v: number }
  if (v !== MODEL_FORMAT) throw new Error(`model document format ${v} is not supported`)
  return model
}

function decodeField<T>(format: string | null | undefined, json: string | null | undefined): T | undefined {
  if (json == null) return undefined
  if (format !== String(MODEL_FORMAT)) throw new Error(`device model format ${format} is not supported`)
  return JSON.parse(json) as T
}

export function createModelStore(redis: Redis, keys: RedisKeys, s: ScriptCalls): ModelStore {
  async function get(id: string, version?: number): Promise<Model | undefined> {
    return decodeModel(await s.fhModelGet(keys.model(id), version === undefined ? '' : String(version)))
  }

  async function versions(id: string): Promise<number[]> {
    return (await redis.hkeys(keys.model(id))).map(Number).sort((a, b) => a - b)
  }

  async function getField<T>(deviceId: string, field: 'binding' | 'self'): Promise<T | undefined> {
    const [format, json] = await redis.hmget(keys.deviceModel(deviceId), 'v', field)
    return decodeField<T>(format, json)
  }

  async function setField(deviceId: string, field: 'binding' | 'self', value: unknown): Promise<boolean> {
    const key = keys.deviceModel(deviceId)
    return (await s.fhDeviceModelSet(keys.device(deviceId), key, field, JSON.stringify(value))) === 1
  }

  return {
    async create(def, createdAt) {
      // the script puts the key it takes between head and tail: {"v":1,…,"createdAt":…,"key":N}
      const body = JSON.stringify({ v: MODEL_FORMAT, ...def, createdAt })
      const head = `${body.slice(0, -1)},"key":`
      const key = Number(
        await s.fhModelCreate(
          keys.model(def.id),
          keys.modelKeys,
          keys.allModels,
          keys.modelKeySeq,
          def.version,
          def.id,
          MAX_MODEL_KEY,
          head,
          '}',
        ),
      )
      if (key === 0) return { created: false, reason: 'exists' }
      if (key === -1) return { created: false, reason: 'keys_exhausted' }
      return { created: true, model: { ...structuredClone(def), createdAt, key } }
    },
    get,
    async getByKey(key) {
      const ref = await redis.hget(keys.modelKeys, String(key))
      const parsed = ref === null ? undefined : parseModelRef(ref)
      return parsed && get(parsed.id, parsed.version)
    },
    versions,
    async list(q) {
      // one more id than asked for says whether another page follows
      const ids = await redis.zrangebylex(
        keys.allModels,
        q.after === undefined ? '-' : `(${q.after}`,
        '+',
        'LIMIT',
        0,
        q.limit + 1,
      )
      const page = ids.slice(0, q.limit)
      const [models, lists] = await Promise.all([
        Promise.all(page.map((id) => get(id))),
        Promise.all(page.map((id) => versions(id))),
      ])
      const items: ModelSummary[] = []
      page.forEach((_, i) => {
        const m = models[i]
        if (m) items.push({ ...m, versions: lists[i] as number[] })
      })
      return ids.length > q.limit ? { items, next: page[page.length - 1] as string } : { items }
    },
    async setBinding(deviceId, binding) {
      return setField(deviceId, 'binding', binding)
    },
    async getBinding(deviceId) {
      return getField<ModelBinding>(deviceId, 'binding')
    },
    async deleteBinding(deviceId) {
      await redis.hdel(keys.deviceModel(deviceId), 'binding')
    },
    async setSelfModel(deviceId, def) {
      return setField(deviceId, 'self', def)
    },
    async getSelfModel(deviceId) {
      return getField<ModelDefinition>(deviceId, 'self')
    },
  }
}
