// Device models (docs/models.md): what a device has — properties (its twin's reported state, some of
// them writable through desired state), telemetry fields and commands — with types, units and JSON
// Schema style constraints. A registered model is immutable per version and gets a 16-bit key, so a
// constrained device can say which model it implements in 2 bytes and send compact frames
// (registry/compact.ts) whose field names come from the model. A device may instead describe itself
// (a self-defined model): the same shape, kept with the device, never keyed.

/** Model ids follow the device id characters; a reference `id@version` names one version. */
export const MODEL_ID_PATTERN = '^[A-Za-z0-9\\-._:]{1,128}$'
const modelIdRe = new RegExp(MODEL_ID_PATTERN)
/** What a device's `modelId` may be: a model id, or `id@version`. */
export const MODEL_REF_PATTERN = '^[A-Za-z0-9\\-._:]{1,128}(@[1-9][0-9]{0,8})?$'
export const FIELD_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]{0,63}$'
const fieldNameRe = new RegExp(FIELD_NAME_PATTERN)

/** Keys are 1..65535 (0 is never assigned, so a zeroed frame never names a model). */
export const MAX_MODEL_KEY = 0xffff
export const MAX_FIELDS = 64
export const MAX_COMMANDS = 64
/** A definition, as JSON. */
export const MAX_MODEL_BYTES = 64 * 1024
/** A self-description a device sends (smaller: it travels over MQTT and lives with the device). */
export const MAX_SELF_MODEL_BYTES = 16 * 1024
const MAX_TEXT = 256

export type FieldType = 'boolean' | 'integer' | 'number' | 'string'
export const FIELD_TYPES: readonly FieldType[] = ['boolean', 'integer', 'number', 'string']

export interface FieldSpec {
  name: string
  type: FieldType
  unit?: string
  description?: string
  /** JSON Schema constraints, in the field's real units. */
  minimum?: number
  maximum?: number
  maxLength?: number
  enum?: (string | number)[]
  /**
   * Numbers only: in compact frames the value travels as the integer round(value / scale)
   * (e.g. 0.1 for a temperature with one decimal): one to three bytes instead of nine.
   */
  scale?: number
  /** Properties only: operators may set it through desired state. */
  writable?: boolean
}

export interface CommandSpec {
  name: string
  description?: string
  request?: FieldSpec[]
  response?: FieldSpec[]
}

export interface ModelDefinition {
  id: string
  /** 1, 2, …: a changed model is a new version. */
  version: number
  displayName?: string
  description?: string
  properties: FieldSpec[]
  telemetry: FieldSpec[]
  commands: CommandSpec[]
}

/** A definition as a client writes it: the field lists may be left out (empty). */
export type ModelInput = Omit<ModelDefinition, 'properties' | 'telemetry' | 'commands'> &
  Partial<Pick<ModelDefinition, 'properties' | 'telemetry' | 'commands'>>

/** A registered model: immutable, with the key devices use for it. */
export interface Model extends ModelDefinition {
  key: number
  createdAt: string
}

/** How a device is bound to a model. */
export interface ModelBinding {
  id: string
  version: number
  /** Registered models only. */
  key?: number
  /** registry: the device's `modelId`; key: the device sent the 2-byte key; self: it described itself. */
  source: 'registry' | 'key' | 'self'
  at: string
}

export function isModelId(id: unknown): id is string {
  return typeof id === 'string' && modelIdRe.test(id)
}

/** `acme.sensor` (the latest version) or `acme.sensor@3`; undefined when malformed. */
export function parseModelRef(ref: string): { id: string; version?: number } | undefined {
  const at = ref.lastIndexOf('@')
  if (at === -1) return isModelId(ref) ? { id: ref } : undefined
  const id = ref.slice(0, at)
  const v = ref.slice(at + 1)
  if (!isModelId(id) || !/^[1-9][0-9]{0,8}$/.test(v)) return undefined
  return { id, version: Number(v) }
}

/** `id@version`: how a model version is named in messages and stores. */
export function modelRef(id: string, version: number): string {
  return `${id}@${version}`
}

/** The 2-byte key of a model, as a device sends it (big-endian). */
export function keyBytes(key: number): Buffer {
  const b = Buffer.allocUnsafe(2)
  b.writeUInt16BE(key, 0)
  return b
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const isText = (v: unknown, max = MAX_TEXT) => typeof v === 'string' && v.length <= max
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)

const FIELD_KEYS = new Set([
  'name',
  'type',
  'unit',
  'description',
  'minimum',
  'maximum',
  'maxLength',
  'enum',
  'scale',
  'writable',
])

function checkField(f: unknown, where: string, property: boolean): FieldSpec {
  if (!isObject(f)) throw new ModelError(`${where}: a field is an object`)
  for (const k of Object.keys(f)) if (!FIELD_KEYS.has(k)) throw new ModelError(`${where}: unknown key ${k}`)
  if (typeof f.name !== 'string' || !fieldNameRe.test(f.name)) {
    throw new ModelError(`${where}: name must match ${FIELD_NAME_PATTERN}`)
  }
  const at = `${where}.${f.name}`
  if (!FIELD_TYPES.includes(f.type as FieldType))
    throw new ModelError(`${at}: type is one of ${FIELD_TYPES.join(', ')}`)
  const type = f.type as FieldType
  const out: FieldSpec = { name: f.name, type }
  if (f.unit !== undefined) {
    if (!isText(f.unit, 32)) throw new ModelError(`${at}: unit is a string of at most 32 characters`)
    out.unit = f.unit as string
  }
  if (f.description !== undefined) {
    if (!isText(f.description)) throw new ModelError(`${at}: description is a string of at most ${MAX_TEXT} characters`)
    out.description = f.description as string
  }
  for (const k of ['minimum', 'maximum'] as const) {
    if (f[k] === undefined) continue
    if (type !== 'integer' && type !== 'number') throw new ModelError(`${at}: ${k} is for numbers`)
    if (!finite(f[k])) throw new ModelError(`${at}: ${k} is a finite number`)
    out[k] = f[k]
  }
  if (out.minimum !== undefined && out.maximum !== undefined && out.minimum > out.maximum) {
    throw new ModelError(`${at}: minimum is above maximum`)
  }
  if (f.maxLength !== undefined) {
    if (type !== 'string') throw new ModelError(`${at}: maxLength is for strings`)
    if (!Number.isInteger(f.maxLength) || (f.maxLength as number) < 0) {
      throw new ModelError(`${at}: maxLength is a whole number`)
    }
    out.maxLength = f.maxLength as number
  }
  if (f.enum !== undefined) {
    const ok =
      Array.isArray(f.enum) &&
      f.enum.length > 0 &&
      f.enum.length <= 256 &&
      f.enum.every((v) => (type === 'string' ? isText(v) : (type === 'integer' || type === 'number') && finite(v)))
    if (!ok) throw new ModelError(`${at}: enum is 1-256 values of the field's type`)
    out.enum = [...(f.enum as (string | number)[])]
  }
  if (f.scale !== undefined) {
    if (type !== 'number') throw new ModelError(`${at}: scale is for numbers`)
    if (!finite(f.scale) || f.scale <= 0) throw new ModelError(`${at}: scale is a positive number`)
    out.scale = f.scale
  }
  if (f.writable !== undefined) {
    if (!property) throw new ModelError(`${at}: writable is for properties`)
    if (typeof f.writable !== 'boolean') throw new ModelError(`${at}: writable is true or false`)
    out.writable = f.writable
  }
  return out
}

function checkFields(list: unknown, where: string, property = false): FieldSpec[] {
  if (list === undefined) return []
  if (!Array.isArray(list)) throw new ModelError(`${where} is an array`)
  if (list.length > MAX_FIELDS) throw new ModelError(`${where}: at most ${MAX_FIELDS} fields`)
  const names = new Set<string>()
  return list.map((f) => {
    const spec = checkField(f, where, property)
    if (names.has(spec.name)) throw new ModelError(`${where}: ${spec.name} appears twice`)
    names.add(spec.name)
    return spec
  })
}

/** A model definition that is not valid: the message says what and where. */
export class ModelError extends Error {
  override name = 'ModelError'
}

/** A definition over its size limit (answered 413, not 400). */
export class ModelSizeError extends ModelError {
  override name = 'ModelSizeError'
}

/**
 * Checks a definition (from the HTTP API or a device's self-description) and returns it with only
 * the known keys; throws ModelError. `maxBytes` bounds its JSON.
 */
export function validateDefinition(input: unknown, maxBytes = MAX_MODEL_BYTES): ModelDefinition {
  if (!isObject(input)) throw new ModelError('a model is an object')
  const size = Buffer.byteLength(JSON.stringify(input))
  if (size > maxBytes) throw new ModelSizeError(`a model is at most ${maxBytes} bytes of JSON; this one is ${size}`)
  for (const k of Object.keys(input)) {
    if (!['id', 'version', 'displayName', 'description', 'properties', 'telemetry', 'commands'].includes(k)) {
      throw new ModelError(`unknown key ${k}`)
    }
  }
  if (!isModelId(input.id)) throw new ModelError(`id must match ${MODEL_ID_PATTERN}`)
  if (!Number.isInteger(input.version) || (input.version as number) < 1 || (input.version as number) > 1e9) {
    throw new ModelError('version is a whole number from 1')
  }
  const def: ModelDefinition = {
    id: input.id,
    version: input.version as number,
    properties: checkFields(input.properties, 'properties', true),
    telemetry: checkFields(input.telemetry, 'telemetry'),
    commands: [],
  }
  if (input.displayName !== undefined) {
    if (!isText(input.displayName, 128)) throw new ModelError('displayName is a string of at most 128 characters')
    def.displayName = input.displayName as string
  }
  if (input.description !== undefined) {
    if (!isText(input.description)) throw new ModelError(`description is at most ${MAX_TEXT} characters`)
    def.description = input.description as string
  }
  if (input.commands !== undefined) {
    if (!Array.isArray(input.commands) || input.commands.length > MAX_COMMANDS) {
      throw new ModelError(`commands is an array of at most ${MAX_COMMANDS}`)
    }
    const names = new Set<string>()
    for (const c of input.commands) {
      if (!isObject(c) || typeof c.name !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(c.name)) {
        throw new ModelError('a command has a name of 1-64 characters from letters, digits and _.:-')
      }
      if (names.has(c.name)) throw new ModelError(`commands: ${c.name} appears twice`)
      names.add(c.name)
      const spec: CommandSpec = { name: c.name }
      if (c.description !== undefined) {
        if (!isText(c.description)) throw new ModelError(`commands.${c.name}: description is at most ${MAX_TEXT}`)
        spec.description = c.description as string
      }
      if (c.request !== undefined) spec.request = checkFields(c.request, `commands.${c.name}.request`)
      if (c.response !== undefined) spec.response = checkFields(c.response, `commands.${c.name}.response`)
      def.commands.push(spec)
    }
  }
  if (def.properties.length + def.telemetry.length === 0) {
    throw new ModelError('a model has at least one property or telemetry field')
  }
  return def
}

/** Why `value` does not fit `spec`, or undefined when it does. */
export function fieldError(spec: FieldSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case 'boolean':
      if (typeof value !== 'boolean') return `${spec.name}: a boolean`
      return undefined
    case 'string':
      if (typeof value !== 'string') return `${spec.name}: a string`
      if (spec.maxLength !== undefined && value.length > spec.maxLength) {
        return `${spec.name}: at most ${spec.maxLength} characters`
      }
      if (spec.enum && !spec.enum.includes(value)) return `${spec.name}: one of the model's values`
      return undefined
    default: {
      if (!finite(value)) return `${spec.name}: a finite number`
      if (spec.type === 'integer' && !Number.isInteger(value)) return `${spec.name}: a whole number`
      if (spec.minimum !== undefined && value < spec.minimum) return `${spec.name}: at least ${spec.minimum}`
      if (spec.maximum !== undefined && value > spec.maximum) return `${spec.name}: at most ${spec.maximum}`
      if (spec.enum && !spec.enum.includes(value)) return `${spec.name}: one of the model's values`
      return undefined
    }
  }
}
