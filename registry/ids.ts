// Identifier and tag rules shared by the HTTP API, CONNECT and the stores.
import { errors } from './errors.js'
import { parseModelRef } from './models.js'

/** Device ids: 1-128 characters from letters, digits and `-._:@` (no `/`, `+`, `#`, `{` or `}`, so
 * an id is always one MQTT topic level and a safe Redis hash tag). Ids starting with `service:` are
 * reserved for service principals, so a user name never means two things at CONNECT. */
export const DEVICE_ID_PATTERN = '^(?!service:)[A-Za-z0-9\\-._:@]{1,128}$'
const deviceIdRe = new RegExp(DEVICE_ID_PATTERN)

export function isDeviceId(id: unknown): id is string {
  return typeof id === 'string' && deviceIdRe.test(id)
}

export function assertDeviceId(id: unknown): string {
  if (!isDeviceId(id)) throw new errors.INVALID_DEVICE_ID()
  return id
}

/** Tags are flat service-side metadata: up to 64 keys of 1-64 characters, scalar values. */
export type TagValue = string | number | boolean
export type Tags = Record<string, TagValue>
export const TAG_KEY_PATTERN = '^[A-Za-z0-9_\\-.]{1,64}$'
const tagKeyRe = new RegExp(TAG_KEY_PATTERN)
export const MAX_TAGS = 64
export const MAX_TAG_VALUE_LENGTH = 256

export function isTagKey(k: string): boolean {
  return tagKeyRe.test(k)
}

/** Validates a whole tag set (after a patch was applied); throws INVALID_TAGS with the reason. */
export function assertTags(tags: unknown): Tags {
  if (tags === null || typeof tags !== 'object' || Array.isArray(tags)) {
    throw new errors.INVALID_TAGS('tags must be an object')
  }
  const entries = Object.entries(tags)
  if (entries.length > MAX_TAGS) throw new errors.INVALID_TAGS(`at most ${MAX_TAGS} tags`)
  for (const [k, v] of entries) {
    if (!isTagKey(k) || k === '__proto__') {
      throw new errors.INVALID_TAGS(`key ${JSON.stringify(k.slice(0, 80))} is not allowed`)
    }
    if (typeof v === 'string') {
      if (v.length > MAX_TAG_VALUE_LENGTH) throw new errors.INVALID_TAGS(`value of ${k} is too long`)
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new errors.INVALID_TAGS(`value of ${k} must be finite`)
    } else if (typeof v !== 'boolean') {
      throw new errors.INVALID_TAGS(`value of ${k} must be a string, number or boolean`)
    }
  }
  return tags as Tags
}

/** Applies a JSON merge patch (RFC 7396) of a flat tag set: `null` deletes a key. */
export function patchTags(current: Tags, patch: Record<string, TagValue | null>): Tags {
  const next: Tags = { ...current }
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete next[k]
    else next[k] = v
  }
  return assertTags(next)
}

/** Service principals log in as `service:{name}`. */
export const SERVICE_PREFIX = 'service:'
const serviceNameRe = /^[A-Za-z0-9\-._]{1,64}$/
export function serviceNameOf(username: string): string | undefined {
  if (!username.startsWith(SERVICE_PREFIX)) return undefined
  const name = username.slice(SERVICE_PREFIX.length)
  return serviceNameRe.test(name) ? name : undefined
}

/** Checks a `modelId` given by an operator (BAD_REQUEST when it is not a model reference). */
export function assertModelRef(modelId: string | undefined): void {
  if (modelId !== undefined && !parseModelRef(modelId)) {
    throw new errors.BAD_REQUEST(
      'modelId is a model id (1-128 characters from letters, digits and -._:), or id@version',
    )
  }
}
