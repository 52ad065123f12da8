// Request/response envelopes on the reserved topics: JSON or MessagePack, detected per message and
// answered in the same encoding. `rid` is chosen by the requester: a string of at most 64
// characters. Decoding never throws: a bad envelope is an answer (400), not a crash.
import { Packr } from 'msgpackr'

export type Encoding = 'json' | 'msgpack'

export const MAX_RID_LENGTH = 64

// plain maps, no records: a device decoding our answers needs no structure definitions
const packr = new Packr({ useRecords: false, mapsAsObjects: true })

export type Decoded =
  | { ok: true; encoding: Encoding; value: unknown }
  | { ok: false; encoding: Encoding; error: string }

function isJsonStart(payload: Buffer): boolean {
  for (let i = 0; i < payload.length; i++) {
    const c = payload[i] as number
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue
    return c === 0x7b /* { */ || c === 0x5b /* [ */ || c === 0x22 /* " */
  }
  return true
}

/** Decodes a payload as JSON when it looks like JSON, else as MessagePack. */
export function decodeEnvelope(payload: Buffer): Decoded {
  if (isJsonStart(payload)) {
    try {
      return { ok: true, encoding: 'json', value: JSON.parse(payload.toString('utf8')) }
    } catch {
      return { ok: false, encoding: 'json', error: 'the payload is not valid JSON' }
    }
  }
  try {
    return { ok: true, encoding: 'msgpack', value: packr.unpack(payload) }
  } catch {
    return { ok: false, encoding: 'msgpack', error: 'the payload is neither JSON nor valid MessagePack' }
  }
}

export function encodeEnvelope(value: unknown, encoding: Encoding): Buffer {
  return encoding === 'json' ? Buffer.from(JSON.stringify(value)) : (packr.pack(value) as Buffer)
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v)
}

/** The envelope's rid when it is a valid one; a reason when it is not. */
export function ridOf(envelope: unknown): { rid: string } | { error: string; rid?: undefined } {
  if (!isPlainObject(envelope)) return { error: 'the envelope must be an object' }
  const rid = envelope.rid
  if (typeof rid !== 'string' || rid.length === 0) return { error: 'rid must be a non-empty string' }
  if (rid.length > MAX_RID_LENGTH) return { error: `rid must be at most ${MAX_RID_LENGTH} characters` }
  return { rid }
}
