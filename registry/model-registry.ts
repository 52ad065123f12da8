// The model registry (docs/models.md): registers models, looks them up, and binds devices to them.
// A registered version never changes, so models read once stay in an in-process cache (bounded by
// count, least recently used out first) and are frozen there. What a device resolves to can change:
// a new binding or self-description, or a new version of the model its `modelId` names without a
// version. Those cached answers are dropped on every node by registry events: `model.bound` and the
// device's own events for the device, `model.created` for the devices that name the model.
import { errors } from './errors.js'
import { Lru } from './lru.js'
import {
  MAX_MODEL_BYTES,
  MAX_MODEL_KEY,
  MAX_SELF_MODEL_BYTES,
  type Model,
  type ModelBinding,
  type ModelDefinition,
  ModelError,
  ModelSizeError,
  modelRef,
  parseModelRef,
  validateDefinition,
} from './models.js'
import type { ModelPage, RegistryEvents, RegistryStore } from './ports.js'
import { MAX_PAGE } from './query.js'
import { isDeviceEvent } from './types.js'

export interface ModelRegistryDeps {
  store: Pick<RegistryStore, 'models' | 'devices'>
  events: RegistryEvents
  /** This node's id, written into events as their origin. */
  node: string
  now?: () => Date
  /** Entries of each in-process cache (models, device resolutions). */
  cacheSize?: number
}

/** The model a device's frames use: a registered one, or the device's description of itself. */
export interface ResolvedModel {
  binding: ModelBinding
  model?: Model
  self?: ModelDefinition
}

interface DeviceEntry {
  resolved?: ResolvedModel
  /** The model id the device's `modelId` names, so a new version of it drops the entry. */
  named?: string
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x)
    Object.freeze(v)
  }
  return v
}

/** A definition from outside (HTTP, a device), checked; errors are the registry's. */
/** validateDefinition with the registry's errors: 413 when too large, else 400 INVALID_MODEL. */
export function checkedDefinition(input: unknown, maxBytes: number): ModelDefinition {
  try {
    return validateDefinition(input, maxBytes)
  } catch (err) {
    if (err instanceof ModelSizeError) throw new errors.PAYLOAD_TOO_LARGE(err.message)
    if (err instanceof ModelError) throw new errors.INVALID_MODEL(err.message)
    throw err
  }
}

const sameBinding = (a: ModelBinding | undefined, b: ModelBinding) =>
  a !== undefined && a.id === b.id && a.version === b.version && a.key === b.key && a.source === b.source

export type ModelRegistry = ReturnType<typeof createModelRegistry>

export function createModelRegistry(deps: ModelRegistryDeps) {
  const { store, events, node } = deps
  const now = deps.now ?? (() => new Date())
  const size = deps.cacheSize ?? 10_000
  const byKey = new Lru<number, Model>(size)
  const byRef = new Lru<string, Model>(size)
  const devices = new Lru<string, DeviceEntry>(size)
  /** Resolutions in flight; `stale` is set by an event that arrives meanwhile (then not cached). */
  const loading = new Map<string, { promise: Promise<ResolvedModel | undefined>; stale: boolean }>()

  function remember(m: Model): Model {
    deepFreeze(m)
    byKey.set(m.key, m)
    byRef.set(modelRef(m.id, m.version), m)
    return m
  }

  function forgetDevice(deviceId: string): void {
    devices.delete(deviceId)
    const slot = loading.get(deviceId)
    if (slot) slot.stale = true
  }

  function forgetNamers(modelId: string): void {
    devices.deleteWhere((e) => e.named === modelId)
    for (const slot of loading.values()) slot.stale = true
  }

  const unsubscribe = events.subscribe(function evictOnRegistryEvent(e) {
    if (isDeviceEvent(e)) forgetDevice(e.deviceId)
    else forgetNamers(e.modelId)
  })
  // events may have been lost: every device's resolution is read again (models never change)
  const unsubscribeGap = events.onGap(function forgetAllDevices() {
    devices.deleteWhere(() => true)
    for (const slot of loading.values()) slot.stale = true
  })

  async function get(id: string, version?: number): Promise<Model | undefined> {
    const hit = version === undefined ? undefined : byRef.get(modelRef(id, version))
    if (hit) return hit
    const m = await store.models.get(id, version)
    return m && remember(m)
  }

  async function getByKey(key: number): Promise<Model | undefined> {
    if (!Number.isInteger(key) || key < 1 || key > MAX_MODEL_KEY) return undefined
    const hit = byKey.get(key)
    if (hit) return hit
    const m = await store.models.getByKey(key)
    return m && remember(m)
  }

  async function lookUp(deviceId: string): Promise<DeviceEntry> {
    const binding = await store.models.getBinding(deviceId)
    if (binding?.source === 'self') {
      const self = await store.models.getSelfModel(deviceId)
      return { resolved: self ? { binding, self } : { binding } }
    }
    if (binding) {
      const model = await (binding.key !== undefined ? getByKey(binding.key) : get(binding.id, binding.version))
      return { resolved: model ? { binding, model } : { binding } }
    }
    const d = await store.devices.get(deviceId)
    const ref = d?.modelId === undefined ? undefined : parseModelRef(d.modelId)
    if (!d || !ref) return {}
    const model = await get(ref.id, ref.version)
    if (!model) return { named: ref.id }
    const b: ModelBinding = {
      id: model.id,
      version: model.version,
      key: model.key,
      source: 'registry',
      at: d.createdAt,
    }
    return { named: ref.id, resolved: { binding: b, model } }
  }

  async function load(deviceId: string): Promise<ResolvedModel | undefined> {
    try {
      const entry = deepFreeze(await lookUp(deviceId))
      if (loading.get(deviceId)?.stale === false) devices.set(deviceId, entry)
      return entry.resolved
    } finally {
      loading.delete(deviceId)
    }
  }

  async function resolve(deviceId: string): Promise<ResolvedModel | undefined> {
    const hit = devices.get(deviceId)
    if (hit) return hit.resolved
    const inFlight = loading.get(deviceId)
    if (inFlight) return inFlight.promise
    const slot = { promise: load(deviceId), stale: false }
    loading.set(deviceId, slot)
    return slot.promise
  }

  /** Drops this node's entry at once (the event reaches the others), and tells every node. */
  async function changed(deviceId: string): Promise<void> {
    forgetDevice(deviceId)
    await events.publish({ type: 'model.bound', deviceId, origin: node, at: now().toISOString() })
  }

  return {
    /** Registers a definition (unchecked input): 400 invalid, 413 too large, 409 when the version exists. */
    async create(input: unknown): Promise<Model> {
      const def = checkedDefinition(input, MAX_MODEL_BYTES)
      const at = now().toISOString()
      const r = await store.models.create(def, at)
      if (!r.created) {
        if (r.reason === 'exists') throw new errors.MODEL_EXISTS(modelRef(def.id, def.version))
        throw new errors.MODEL_KEYS_EXHAUSTED(MAX_MODEL_KEY)
      }
      forgetNamers(def.id)
      await events.publish({ type: 'model.created', modelId: def.id, version: def.version, origin: node, at })
      return remember(r.model)
    },

    /** One version; without `version` the highest. Models are frozen: never change what you get. */
    get,

    /** The model with this key (cached). */
    byKey: getByKey,

    /** The model's versions, ascending (empty when it has none). */
    versions(id: string): Promise<number[]> {
      return store.models.versions(id)
    },

    /** Models in id order, each as its latest version with its versions. */
    list(q: { after?: string; limit?: number }): Promise<ModelPage> {
      const limit = Math.min(Math.max(q.limit ?? 100, 1), MAX_PAGE)
      return store.models.list(q.after === undefined ? { limit } : { after: q.after, limit })
    },

    /**
     * Binds a device to a registered model (a self-description binds with `describe`); the key is
     * the model's. False when the device was bound so already (nothing written, no event).
     */
    async bind(deviceId: string, binding: ModelBinding & { source: 'key' | 'registry' }): Promise<boolean> {
      const model = await get(binding.id, binding.version)
      if (!model) throw new errors.MODEL_NOT_FOUND(modelRef(binding.id, binding.version))
      const b: ModelBinding = { ...binding, key: model.key }
      if (sameBinding(await store.models.getBinding(deviceId), b)) return false
      if (!(await store.models.setBinding(deviceId, b))) throw new errors.DEVICE_NOT_FOUND(deviceId)
      await changed(deviceId)
      return true
    },

    /**
     * Keeps a device's description of itself (unchecked input, at most MAX_SELF_MODEL_BYTES) and
     * binds the device to it. Answers the binding; an unchanged description writes nothing.
     */
    async describe(deviceId: string, input: unknown): Promise<ModelBinding> {
      const def = checkedDefinition(input, MAX_SELF_MODEL_BYTES)
      const b: ModelBinding = { id: def.id, version: def.version, source: 'self', at: now().toISOString() }
      const [current, self] = await Promise.all([
        store.models.getBinding(deviceId),
        store.models.getSelfModel(deviceId),
      ])
      if (current && sameBinding(current, b) && JSON.stringify(self) === JSON.stringify(def)) return current
      const stored = (await store.models.setSelfModel(deviceId, def)) && (await store.models.setBinding(deviceId, b))
      if (!stored) throw new errors.DEVICE_NOT_FOUND(deviceId)
      await changed(deviceId)
      return b
    },

    /** Removes a device's binding (its registry `modelId`, if any, applies again). */
    async unbind(deviceId: string): Promise<void> {
      await store.models.deleteBinding(deviceId)
      await changed(deviceId)
    },

    /**
     * The model a device's frames use: its binding (key or self), else its registry `modelId`
     * (`id`: the latest version, `id@3`: that one). Undefined when neither names a model. Cached
     * per device until an event says it changed.
     */
    resolve,

    /** How the device is bound, as `GET /devices/{id}` shows it. */
    async binding(deviceId: string): Promise<ModelBinding | undefined> {
      return (await resolve(deviceId))?.binding
    },

    /** resolve, or why not: DEVICE_NOT_FOUND, MODEL_NOT_BOUND. */
    async deviceModel(deviceId: string): Promise<ResolvedModel> {
      const r = await resolve(deviceId)
      if (r) return r
      if (!(await store.devices.get(deviceId))) throw new errors.DEVICE_NOT_FOUND(deviceId)
      throw new errors.MODEL_NOT_BOUND(deviceId)
    },

    close(): void {
      unsubscribe()
      unsubscribeGap()
    },
  }
}
