// The device side of twins over MQTT: `twin/get` answers the whole twin (desired and reported, not
// tags) and counts as having seen the current desired version; `twin/reported` applies a merge
// patch (optional `ifVersion`: 412 on a mismatch) and answers `{rid, status: 204, version}`.
// Reporting `$lastDesiredVersion` acknowledges the desired version the device has applied.
// Answers go to `$iot/{id}/twin/res` in the request's encoding, at the request's QoS (0 or 1).
// A compact reported frame (docs/models.md) is decoded by the models plugin when it is there, and
// answered in MessagePack when it carries a rid.
import type { BrokerPort, UplinkMessage } from '../../broker/session.js'
import { isCompactFrame } from '../../registry/compact.js'
import { decodeEnvelope, type Encoding, encodeEnvelope, isPlainObject, ridOf } from '../../registry/envelope.js'
import { errorBody, errors, statusOf } from '../../registry/errors.js'
import { deviceTopic } from '../../registry/topics.js'
import { LAST_DESIRED_VERSION, sideView } from '../../registry/twin.js'
import type { TwinApi } from './api.js'

interface Answer {
  rid?: string
  status: number
  version?: number
  body?: unknown
}

/** Where compact reported frames are decoded: set by the models plugin. */
export interface TwinFrames {
  decode?: (
    m: UplinkMessage,
  ) => Promise<{ ok: true; rid?: string; patch: Record<string, unknown> } | { ok: false; error: string }>
}

export function createDeviceHandlers(api: TwinApi, broker: BrokerPort, frames: TwinFrames = {}) {
  function answer(m: UplinkMessage, encoding: Encoding, a: Answer): Promise<void> {
    return broker.publish(deviceTopic(m.deviceId, 'twin/res'), encodeEnvelope(a, encoding), { qos: m.qos > 0 ? 1 : 0 })
  }

  function failure(rid: string | undefined, err: unknown): Answer {
    const a: Answer = { status: statusOf(err), body: errorBody(err).error }
    if (rid !== undefined) a.rid = rid
    return a
  }

  /** Decodes the envelope; answers 400 itself and returns undefined when it is unusable. */
  async function open(
    m: UplinkMessage,
  ): Promise<{ encoding: Encoding; rid: string; envelope: Record<string, unknown> } | undefined> {
    const d = decodeEnvelope(m.payload)
    if (!d.ok) {
      await answer(m, d.encoding, failure(undefined, new errors.BAD_REQUEST(d.error)))
      return undefined
    }
    const r = ridOf(d.value)
    if (r.rid === undefined) {
      const rid = isPlainObject(d.value) && typeof d.value.rid === 'string' ? d.value.rid.slice(0, 64) : undefined
      await answer(m, d.encoding, failure(rid, new errors.BAD_REQUEST(r.error)))
      return undefined
    }
    return { encoding: d.encoding, rid: r.rid, envelope: d.value as Record<string, unknown> }
  }

  /** Applies a reported patch (and its `$lastDesiredVersion`); the reported version after it. */
  async function applyReported(deviceId: string, patch: Record<string, unknown>, ifVersion: number | undefined) {
    const { [LAST_DESIRED_VERSION]: seen, ...rest } = patch
    if (seen !== undefined) {
      if (!Number.isInteger(seen) || (seen as number) < 1) {
        throw new errors.INVALID_PATCH(`${LAST_DESIRED_VERSION} must be a desired version number`)
      }
      await api.twins.markSeen(deviceId, seen as number)
    }
    return Object.keys(rest).length > 0 || seen === undefined
      ? await api.patchReported(deviceId, rest, ifVersion)
      : (await api.twins.get(deviceId)).reported.version
  }

  return {
    async get(m: UplinkMessage): Promise<void> {
      const req = await open(m)
      if (!req) return
      try {
        const twin = await api.twins.get(m.deviceId)
        await api.twins.markSeen(m.deviceId, twin.desired.version)
        const body = { desired: sideView(twin.desired), reported: sideView(twin.reported) }
        await answer(m, req.encoding, { rid: req.rid, status: 200, body })
      } catch (err) {
        await answer(m, req.encoding, failure(req.rid, err))
      }
    },

    async reported(m: UplinkMessage): Promise<void> {
      if (frames.decode && isCompactFrame(m.payload)) {
        const f = await frames.decode(m)
        if (!f.ok) return // counted and reported on events/error; its rid, if any, is unreadable
        try {
          const version = await applyReported(m.deviceId, f.patch, undefined)
          if (f.rid !== undefined) await answer(m, 'msgpack', { rid: f.rid, status: 204, version })
        } catch (err) {
          if (f.rid !== undefined) await answer(m, 'msgpack', failure(f.rid, err))
          else throw err
        }
        return
      }
      const req = await open(m)
      if (!req) return
      try {
        const { patch, ifVersion } = req.envelope
        if (!isPlainObject(patch)) throw new errors.INVALID_PATCH('patch must be a JSON object')
        if (ifVersion !== undefined && !(Number.isInteger(ifVersion) && (ifVersion as number) >= 1)) {
          throw new errors.BAD_REQUEST('ifVersion must be a whole number from 1')
        }
        const version = await applyReported(m.deviceId, patch, ifVersion as number | undefined)
        await answer(m, req.encoding, { rid: req.rid, status: 204, version })
      } catch (err) {
        await answer(m, req.encoding, failure(req.rid, err))
      }
    },
  }
}
