// The device's side of models (docs/models.md):
//
// - `$iot/{id}/model` with exactly 2 bytes binds the device to the registered model with that key
//   (big-endian); with an envelope `{rid, model}` (JSON or MessagePack) the device describes itself.
//   Answers go to `$iot/{id}/twin/res`: `{rid, status, body}`, rid "$model" for a key (which has
//   none), in JSON for a key and in the request's encoding for a self-description.
// - Compact telemetry frames on `$iot/{id}/telemetry` are decoded (decoder.ts) and published as
//   JSON on `$iot/{id}/telemetry/decoded`; compact reported frames on `twin/reported` are decoded
//   here and applied by the twins plugin.
// - A frame that cannot be decoded is counted (by model and reason, and per device), reported on
//   `$iot/{id}/events/error`, logged once per session, and dropped; the device stays connected.
import type { Logger } from '../../broker/log.js'
import type { Metrics } from '../../broker/metrics.js'
import type { BrokerPort, UplinkMessage } from '../../broker/session.js'
import { isCompactFrame } from '../../registry/compact.js'
import { decodeEnvelope, type Encoding, encodeEnvelope, isPlainObject, ridOf } from '../../registry/envelope.js'
import { errorBody, errors, statusOf } from '../../registry/errors.js'
import { checkedDefinition, type ModelRegistry } from '../../registry/model-registry.js'
import { MAX_SELF_MODEL_BYTES, type Model, parseModelRef } from '../../registry/models.js'
import type { RegistryService } from '../../registry/service.js'
import { deviceTopic, eventTopic } from '../../registry/topics.js'
import type { Decoder } from './decoder.js'

/** The rid of answers to a 2-byte key, which carries none. */
export const KEY_RID = '$model'
const LOGGED_BAD_FRAME = 1 << 9
/** Devices whose decode failures are counted here, at most (oldest forgotten first). */
const MAX_COUNTED = 10_000

export type ReportedFrame = { ok: true; rid?: string; patch: Record<string, unknown> } | { ok: false; error: string }

export function createModelDevice(deps: {
  models: ModelRegistry
  registry: RegistryService
  decoder: Decoder
  broker: BrokerPort
  log: Logger
  metrics: Metrics
}) {
  const { models, registry, decoder, broker, log, metrics } = deps
  const failures = new Map<string, number>()

  function answer(m: UplinkMessage, encoding: Encoding, a: { rid?: string; status: number; body?: unknown }) {
    return broker.publish(deviceTopic(m.deviceId, 'twin/res'), encodeEnvelope(a, encoding), { qos: m.qos > 0 ? 1 : 0 })
  }

  /** Counts, reports and drops a frame that cannot be decoded. */
  async function refuse(m: UplinkMessage, reason: string, error: string, model?: { id: string; version: number }) {
    const ref = model ? `${model.id}@${model.version}` : 'none'
    metrics.decodeErrors.inc({ model: ref, reason })
    const count = (failures.get(m.deviceId) ?? 0) + 1
    failures.delete(m.deviceId)
    if (failures.size >= MAX_COUNTED) failures.delete(failures.keys().next().value as string)
    failures.set(m.deviceId, count)
    if (!(m.session.logged & LOGGED_BAD_FRAME)) {
      m.session.logged |= LOGGED_BAD_FRAME
      log.info(
        { clientId: m.session.clientId, deviceId: m.deviceId, reason, error },
        'frame refused (logged once per session)',
      )
    }
    const e = { kind: 'decode', topic: m.kind, model: model ? ref : null, reason, error, count }
    await broker.publish(eventTopic(m.deviceId, 'error'), JSON.stringify(e), { qos: 1 })
  }

  /** The registered model a device's compact frames use, or why there is none. */
  async function modelFor(deviceId: string): Promise<Model | string> {
    const r = await models.resolve(deviceId)
    if (r?.model) return r.model
    if (r?.self)
      return `${deviceId} described itself (${r.self.id}@${r.self.version}): compact frames need a registered model`
    return `${deviceId} is bound to no registered model: send the model's 2-byte key on $iot/${deviceId}/model first`
  }

  /** The registry's `modelId` for the device refuses a binding to another model id. */
  async function checkRegistryModel(deviceId: string, id: string, version: number) {
    const ref = (await registry.getRecord(deviceId))?.modelId
    const want = ref === undefined ? undefined : parseModelRef(ref)
    if (!want) return
    if (want.id !== id || (want.version !== undefined && want.version !== version)) {
      throw new errors.CONFLICT(`the registry binds ${deviceId} to ${ref}, not ${id}@${version}`)
    }
  }

  async function bindKey(m: UplinkMessage): Promise<void> {
    const key = m.payload.readUInt16BE(0)
    try {
      const model = await models.byKey(key)
      if (!model) throw new errors.MODEL_KEY_NOT_FOUND(`0x${key.toString(16).padStart(4, '0')}`)
      await checkRegistryModel(m.deviceId, model.id, model.version)
      const at = new Date().toISOString()
      await models.bind(m.deviceId, { id: model.id, version: model.version, key, source: 'key', at })
      await answer(m, 'json', { rid: KEY_RID, status: 200, body: { id: model.id, version: model.version, key } })
    } catch (err) {
      await answer(m, 'json', { rid: KEY_RID, status: statusOf(err), body: errorBody(err).error })
      if (statusOf(err) < 500) await refuse(m, 'binding', (err as Error).message)
      else throw err
    }
  }

  async function describe(m: UplinkMessage): Promise<void> {
    const d = decodeEnvelope(m.payload)
    if (!d.ok) return answer(m, d.encoding, { status: 400, body: errorBody(new errors.BAD_REQUEST(d.error)).error })
    const r = ridOf(d.value)
    if (r.rid === undefined)
      return answer(m, d.encoding, { status: 400, body: errorBody(new errors.BAD_REQUEST(r.error)).error })
    try {
      if (m.payload.length > MAX_SELF_MODEL_BYTES + 1024) {
        throw new errors.PAYLOAD_TOO_LARGE(`a self-description is at most ${MAX_SELF_MODEL_BYTES} bytes of JSON`)
      }
      const def = checkedDefinition(isPlainObject(d.value) ? d.value.model : undefined, MAX_SELF_MODEL_BYTES)
      await checkRegistryModel(m.deviceId, def.id, def.version)
      await models.describe(m.deviceId, def)
      await answer(m, d.encoding, {
        rid: r.rid,
        status: 200,
        body: { id: def.id, version: def.version, source: 'self' },
      })
    } catch (err) {
      await answer(m, d.encoding, { rid: r.rid, status: statusOf(err), body: errorBody(err).error })
      if (statusOf(err) >= 500) throw err
    }
  }

  async function decodeTelemetry(m: UplinkMessage): Promise<void> {
    const model = await modelFor(m.deviceId)
    if (typeof model === 'string') return refuse(m, 'no_model', model)
    const r = await decoder.decode(model.key, model, 'telemetry', m.payload, Date.now())
    if (!r.ok) return refuse(m, 'invalid', r.error, model)
    if (!('json' in r)) return
    metrics.readingsDecoded.inc(r.readings)
    await broker.publish(deviceTopic(m.deviceId, 'telemetry/decoded'), r.json, { qos: m.qos > 0 ? 1 : 0 })
  }

  return {
    /** `$iot/{id}/model`: a 2-byte key, or a self-description. */
    model(m: UplinkMessage): Promise<void> {
      return m.payload.length === 2 ? bindKey(m) : describe(m)
    },

    /** `$iot/{id}/telemetry`: compact frames are decoded; anything else passes as it is, at no cost. */
    telemetry(m: UplinkMessage): Promise<void> | undefined {
      return isCompactFrame(m.payload) ? decodeTelemetry(m) : undefined
    },

    /** A compact `twin/reported` frame, for the twins plugin: the patch, or why there is none (reported). */
    async reported(m: UplinkMessage): Promise<ReportedFrame> {
      const model = await modelFor(m.deviceId)
      if (typeof model === 'string') {
        await refuse(m, 'no_model', model)
        return { ok: false, error: model }
      }
      const r = await decoder.decode(model.key, model, 'reported', m.payload, Date.now())
      if (!r.ok) {
        await refuse(m, 'invalid', r.error, model)
        return r
      }
      if (!('patch' in r)) return { ok: false, error: 'not a reported frame' }
      return r.rid === undefined ? { ok: true, patch: r.patch } : { ok: true, rid: r.rid, patch: r.patch }
    },
  }
}
