// Compact binary frames (docs/models.md, "Compact frames"): telemetry and reported patches of a
// device bound to a registered model, with the field names left out: they come from the model.
//
//   byte 0     header  0b111VVFFF: VV format version (1), FFF flags
//                      0x01 BATCH      telemetry: several readings in one frame
//                      0x02 TIMESTAMP  readings carry their time (unix ms)
//                      0x04 RID        reported: a request id follows, answered on twin/res
//   bytes 1…   MessagePack values, one after another:
//     telemetry            [ts] record                  (ts with TIMESTAMP)
//     telemetry, BATCH     [ts] [record, …]             (with TIMESTAMP: ts, then [offsetMs, record, …])
//     reported             [rid] record                 (rid with RID)
//
// A record is a msgpackr record whose structure is the model's field list (telemetry fields for
// telemetry, properties for reported patches), so on the wire it is one byte (0x40 telemetry,
// 0x41 properties) and the values in the model's order; a field with no value is `undefined`
// (msgpackr's fixext 0). Numbers with a `scale` travel as the integer round(value / scale).
// Compact frames start with 0xE8-0xFF, which neither JSON nor a MessagePack envelope (a map) can.
//
// Decoding trusts nothing: truncated frames, other versions or flags, records that bring their own
// field names (msgpackr record definitions: they would otherwise change the shared structures for
// every later frame), unknown fields, wrong types and values out of range are all refused with a
// FrameError saying what.
import { FLOAT32_OPTIONS, Packr, Unpackr } from 'msgpackr'
import { type FieldSpec, fieldError, type ModelDefinition } from './models.js'

export const FRAME_VERSION = 1
export const FLAG_BATCH = 0x01
export const FLAG_TIMESTAMP = 0x02
export const FLAG_RID = 0x04
const FLAGS = FLAG_BATCH | FLAG_TIMESTAMP | FLAG_RID
const TELEMETRY = 0
const PROPERTIES = 1
/** Readings in one batch frame, at most. */
export const MAX_BATCH = 10_000

export type FrameKind = 'telemetry' | 'reported'

/** True when the payload is a compact frame (of any version): its first byte is 0b111xxxxx. */
export function isCompactFrame(payload: Uint8Array): boolean {
  return payload.length > 0 && (payload[0] as number) >= 0xe0
}

export class FrameError extends Error {
  override name = 'FrameError'
}

export interface Reading {
  /** unix ms: the frame's (or the receive time when the frame carries none). */
  ts: number
  data: Record<string, unknown>
}

export interface DecodedReported {
  rid?: string
  patch: Record<string, unknown>
}

interface Section {
  fields: FieldSpec[]
  names: string[]
  byName: Map<string, FieldSpec>
  /** Per field: wire value → value (scaled fields), or undefined when it is the same. */
  fromWire: (((raw: number) => number) | undefined)[]
  /** Per field: `"name":`, for writing JSON. */
  keys: string[]
}

function sectionOf(fields: FieldSpec[]): Section {
  return {
    fields,
    names: fields.map((f) => f.name),
    byName: new Map(fields.map((f) => [f.name, f])),
    fromWire: fields.map((f) => {
      if (f.scale === undefined) return undefined
      const scale = f.scale
      const inv = 1 / scale
      // dividing by a whole inverse is exact where multiplying by the scale is not (215 * 0.1)
      return Number.isInteger(inv) ? (raw: number) => raw / inv : (raw: number) => raw * scale
    }),
    keys: fields.map((f) => `${JSON.stringify(f.name)}:`),
  }
}

/** A value as JSON: numbers are finite and strings checked by then. */
function jsonOf(v: unknown): string {
  return typeof v === 'number' ? String(v) : typeof v === 'string' ? JSON.stringify(v) : v === null ? 'null' : String(v)
}

/** msgpackr wants a non-empty structure; a model without telemetry (or properties) gets a name no field can have. */
const namesOf = (fields: FieldSpec[]) => (fields.length ? fields.map((f) => f.name) : ['$none'])

/** The decoder's current record structures (msgpackr keeps them on the instance; its types do not say so). */
const structuresOf = (u: Unpackr) => (u as unknown as { structures: unknown[] }).structures

/** A model's codec: encode (devices, the SDK, the bench) and decode (the broker, its workers). */
export interface Codec {
  readonly id: string
  readonly version: number
  encodeTelemetry(
    readings: Record<string, unknown> | Record<string, unknown>[],
    opts?: { ts?: number | number[] },
  ): Buffer
  encodeReported(patch: Record<string, unknown>, opts?: { rid?: string }): Buffer
  decodeTelemetry(frame: Uint8Array, receivedAt: number): Reading[]
  /** The same readings as the JSON of `$iot/{id}/telemetry/decoded`, and how many there are. */
  decodeTelemetryJson(frame: Uint8Array, receivedAt: number): { json: string; readings: number }
  decodeReported(frame: Uint8Array): DecodedReported
}

export function createCodec(model: Pick<ModelDefinition, 'id' | 'version' | 'telemetry' | 'properties'>): Codec {
  const telemetry = sectionOf(model.telemetry)
  const properties = sectionOf(model.properties)
  const structures = () => [namesOf(model.telemetry), namesOf(model.properties)]
  const packr = new Packr({
    structures: structures(),
    useRecords: true,
    maxSharedStructures: 2,
    useFloat32: FLOAT32_OPTIONS.DECIMAL_FIT,
  })
  let unpackr = freshUnpackr()
  let shared = structuresOf(unpackr)
  let first = shared[TELEMETRY]
  let second = shared[PROPERTIES]

  function freshUnpackr() {
    return new Unpackr({ structures: structures(), useRecords: true, maxSharedStructures: 2, mapsAsObjects: true })
  }

  /** Record definitions in a frame change the decoder's structures: start over, refuse the frame. */
  function checkStructures() {
    const now = structuresOf(unpackr)
    if (now === shared && now.length === 2 && now[TELEMETRY] === first && now[PROPERTIES] === second) return
    unpackr = freshUnpackr()
    shared = structuresOf(unpackr)
    first = shared[TELEMETRY]
    second = shared[PROPERTIES]
    throw new FrameError('the frame defines its own field names: compact frames take them from the model')
  }

  function values(frame: Uint8Array): unknown[] {
    let out: unknown[]
    try {
      out = unpackr.unpackMultiple(frame.subarray(1) as Buffer) as unknown[]
    } catch (err) {
      checkStructures()
      throw new FrameError(`truncated or malformed frame: ${(err as Error).message}`)
    }
    checkStructures()
    return out
  }

  function header(frame: Uint8Array, kind: FrameKind): number {
    if (!isCompactFrame(frame)) throw new FrameError('not a compact frame (the first byte is 0xE8-0xFF)')
    const h = frame[0] as number
    const version = (h >> 3) & 0b11
    if (version !== FRAME_VERSION) throw new FrameError(`frame format version ${version} is not supported (1 is)`)
    const flags = h & FLAGS
    if (kind === 'telemetry' && flags & FLAG_RID) throw new FrameError('telemetry frames carry no request id')
    if (kind === 'reported' && flags & (FLAG_BATCH | FLAG_TIMESTAMP)) {
      throw new FrameError('a reported patch frame is one record: no BATCH or TIMESTAMP flag')
    }
    return flags
  }

  /**
   * A record's values in the section's field order (undefined: absent), checked against the model;
   * nulls only where deletes are allowed.
   */
  function fromWire(rec: unknown, section: Section, what: string, nulls: boolean): unknown[] {
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) {
      throw new FrameError(`${what}: a record of the model's fields`)
    }
    const r = rec as Record<string, unknown>
    const { fields, names } = section
    // a record of the model's structure has exactly its names, in order: read it by position
    const keys = Object.keys(r)
    let exact = keys.length === names.length
    for (let i = 0; exact && i < keys.length; i++) exact = keys[i] === names[i]
    if (!exact) {
      const name = keys.find((k) => !section.byName.has(k))
      if (name !== undefined) throw new FrameError(`${what}: ${name} is not a field of ${model.id}@${model.version}`)
    }
    const raws = exact ? Object.values(r) : names.map((n) => r[n])
    const out = new Array<unknown>(names.length)
    for (let i = 0; i < raws.length; i++) {
      const raw = raws[i]
      if (raw === undefined) continue
      if (raw === null) {
        if (!nulls) throw new FrameError(`${what}: ${names[i]} is null`)
        out[i] = null
        continue
      }
      const scale = section.fromWire[i]
      let v = raw
      if (scale !== undefined) {
        if (!Number.isInteger(raw)) throw new FrameError(`${what}: ${names[i]} travels as a scaled whole number`)
        v = scale(raw as number)
      }
      const bad = fieldError(fields[i] as FieldSpec, v)
      if (bad) throw new FrameError(`${what}: ${bad}`)
      out[i] = v
    }
    return out
  }

  function objectOf(values: unknown[], section: Section): Record<string, unknown> {
    const o: Record<string, unknown> = {}
    for (let i = 0; i < values.length; i++) if (values[i] !== undefined) o[section.names[i] as string] = values[i]
    return o
  }

  function jsonOfRecord(values: unknown[], section: Section): string {
    let json = '{'
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      if (v === undefined) continue
      json += `${json.length > 1 ? ',' : ''}${section.keys[i]}${jsonOf(v)}`
    }
    return `${json}}`
  }

  const isTime = (t: unknown): t is number => Number.isInteger(t) && (t as number) >= 0

  /** The readings of a telemetry frame: each time and its values in field order. */
  function readings(frame: Uint8Array, receivedAt: number): { ts: number; values: unknown[] }[] {
    const flags = header(frame, 'telemetry')
    const v = values(frame)
    const timed = (flags & FLAG_TIMESTAMP) !== 0
    if (v.length !== (timed ? 2 : 1)) throw new FrameError('a telemetry frame is [timestamp] and its reading(s)')
    const base = timed ? v[0] : receivedAt
    if (!isTime(base)) throw new FrameError('the timestamp is unix milliseconds')
    const body = v[timed ? 1 : 0]
    if (!(flags & FLAG_BATCH)) return [{ ts: base, values: fromWire(body, telemetry, 'reading', false) }]
    if (!Array.isArray(body) || body.length === 0) throw new FrameError('a batch is a non-empty array of readings')
    const step = timed ? 2 : 1
    if (body.length % step !== 0 || body.length / step > MAX_BATCH) {
      throw new FrameError(`a batch is 1 to ${MAX_BATCH} readings${timed ? ', each after its time offset' : ''}`)
    }
    const out: { ts: number; values: unknown[] }[] = []
    for (let i = 0; i < body.length; i += step) {
      let ts = base
      if (timed) {
        const off = body[i]
        if (!Number.isInteger(off)) throw new FrameError(`reading ${i / step}: the time offset is whole milliseconds`)
        ts = base + (off as number)
      }
      out.push({ ts, values: fromWire(body[i + step - 1], telemetry, `reading ${i / step}`, false) })
    }
    return out
  }

  const jsonPrefix = `{"model":${JSON.stringify(model.id)},"version":${model.version},"readings":[`

  function toWire(values: Record<string, unknown>, section: Section, what: string, nulls: boolean) {
    for (const name of Object.keys(values)) {
      if (!section.byName.has(name))
        throw new FrameError(`${what}: ${name} is not a field of ${model.id}@${model.version}`)
    }
    const rec: Record<string, unknown> = {}
    if (!section.fields.length) rec.$none = undefined
    for (const f of section.fields) {
      const v = values[f.name]
      if (v === undefined || (v === null && nulls)) {
        rec[f.name] = v
        continue
      }
      const bad = fieldError(f, v)
      if (bad) throw new FrameError(`${what}: ${bad}`)
      rec[f.name] = f.scale !== undefined ? Math.round((v as number) / f.scale) : v
    }
    return rec
  }

  return {
    id: model.id,
    version: model.version,

    encodeTelemetry(readings, opts = {}) {
      const list = Array.isArray(readings) ? readings : [readings]
      if (list.length === 0 || list.length > MAX_BATCH) throw new FrameError(`1 to ${MAX_BATCH} readings per frame`)
      const ts = opts.ts === undefined ? undefined : Array.isArray(opts.ts) ? opts.ts : [opts.ts]
      if (ts && ts.length !== list.length) throw new FrameError('one timestamp per reading')
      const recs = list.map((r, i) => toWire(r, telemetry, `reading ${i}`, false))
      const flags = (Array.isArray(readings) ? FLAG_BATCH : 0) | (ts ? FLAG_TIMESTAMP : 0)
      const parts: Buffer[] = [Buffer.of(0xe0 | (FRAME_VERSION << 3) | flags)]
      if (ts) {
        const base = ts[0] as number
        parts.push(packr.pack(base))
        if (flags & FLAG_BATCH) parts.push(packr.pack(recs.flatMap((r, i) => [(ts[i] as number) - base, r])))
        else parts.push(packr.pack(recs[0]))
      } else parts.push(packr.pack(flags & FLAG_BATCH ? recs : recs[0]))
      return Buffer.concat(parts)
    },

    encodeReported(patch, opts = {}) {
      const rec = toWire(patch, properties, 'patch', true)
      const parts: Buffer[] = [Buffer.of(0xe0 | (FRAME_VERSION << 3) | (opts.rid !== undefined ? FLAG_RID : 0))]
      if (opts.rid !== undefined) parts.push(packr.pack(opts.rid))
      parts.push(packr.pack(rec))
      return Buffer.concat(parts)
    },

    decodeTelemetry(frame, receivedAt) {
      return readings(frame, receivedAt).map((r) => ({ ts: r.ts, data: objectOf(r.values, telemetry) }))
    },

    decodeTelemetryJson(frame, receivedAt) {
      const list = readings(frame, receivedAt)
      let json = jsonPrefix
      for (let i = 0; i < list.length; i++) {
        const r = list[i] as { ts: number; values: unknown[] }
        json += `${i ? ',' : ''}{"ts":${r.ts},"data":${jsonOfRecord(r.values, telemetry)}}`
      }
      return { json: `${json}]}`, readings: list.length }
    },

    decodeReported(frame) {
      const flags = header(frame, 'reported')
      const v = values(frame)
      const withRid = (flags & FLAG_RID) !== 0
      if (v.length !== (withRid ? 2 : 1)) throw new FrameError('a reported frame is [rid] and one record')
      const out: DecodedReported = {
        patch: objectOf(fromWire(v[withRid ? 1 : 0], properties, 'patch', true), properties),
      }
      if (withRid) {
        const rid = v[0]
        if (typeof rid !== 'string' || rid.length === 0 || rid.length > 64) {
          throw new FrameError('rid is a string of 1-64 characters')
        }
        out.rid = rid
      }
      return out
    },
  }
}
