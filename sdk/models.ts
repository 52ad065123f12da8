// Device models from the device's side (docs/models.md): bind to a registered model with its 2-byte
// key, or describe yourself; then send compact frames of a registered model — telemetry (one reading
// or a batch, with times or without) and reported patches — encoded from plain objects. FleetHub
// publishes the decoded telemetry as JSON on `$iot/{id}/telemetry/decoded` and applies decoded
// patches to the twin.
import { type Codec, createCodec } from '../registry/compact.js'
import { keyBytes, type Model, type ModelInput } from '../registry/models.js'
import type { DeviceChannel, PublishOptions } from './channel.js'
import { createRidSource, decodeEnvelope } from './envelope.js'
import { ApiError } from './errors.js'
import { isJsonObject } from './json.js'
import { createRequester, type RequestOptions, type RequestSettings } from './requests.js'

/** The rid FleetHub answers a 2-byte key with (the key carries none). */
const KEY_RID = '$model'

export interface ModelBound {
  id: string
  version: number
  key?: number
}

export interface CompactSender {
  readonly codec: Codec
  /** One reading, or a batch (an array) in one frame; `ts`: unix ms, one per reading. */
  telemetry(
    readings: Record<string, unknown> | Record<string, unknown>[],
    opts?: PublishOptions & { ts?: number | number[] },
  ): Promise<void>
  /** A reported patch of the model's properties (null deletes), acknowledged: resolves with the reported version. */
  report(patch: Record<string, unknown>, opts?: RequestOptions): Promise<number>
  /** The same without a request id: FleetHub applies it and answers nothing (failures go to events/error). */
  reportQuietly(patch: Record<string, unknown>, opts?: PublishOptions): Promise<void>
}

export interface ModelsClient {
  /** Binds this device to the registered model with `key`: resolves with the model's id and version. */
  bindKey(key: number, opts?: { timeoutMs?: number }): Promise<ModelBound>
  /** Describes this device (a self-defined model); its telemetry stays JSON. */
  describe(model: ModelInput, opts?: RequestOptions): Promise<ModelBound>
  /** Compact frames of a registered model (as `GET /models/{id}` answers it, with its key). */
  compact(model: Model): CompactSender
}

export function createModels(channel: DeviceChannel, settings: RequestSettings): ModelsClient {
  const requester = createRequester(channel, 'twin/res', settings)
  const nextRid = createRidSource()

  /**
   * Waits for the answer with `rid` on twin/res (a 2-byte key is answered with rid "$model": the
   * first one after sending settles it). A status outside 2xx rejects with an ApiError.
   */
  function answerTo(rid: string, timeoutMs: number, what: string) {
    let cancel = () => {}
    const answer = new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        off()
        reject(new Error(`no answer to ${what} of ${channel.deviceId} within ${timeoutMs} ms`))
      }, timeoutMs)
      const off = channel.onDownlink('twin/res', ({ payload }) => {
        const d = decodeEnvelope(payload)
        if (!d.ok || !isJsonObject(d.value) || d.value.rid !== rid) return
        cancel()
        const { status, body } = d.value
        if (typeof status === 'number' && status >= 200 && status < 300) return resolve(d.value)
        const e = isJsonObject(body) ? body : {}
        reject(
          new ApiError(
            typeof status === 'number' ? status : 500,
            typeof e.code === 'string' ? e.code : 'FLEETHUB_ERR_UNKNOWN',
            typeof e.message === 'string' ? e.message : `${what} was refused`,
            body,
          ),
        )
      })
      cancel = () => {
        off()
        clearTimeout(timer)
      }
    })
    return { answer, cancel }
  }

  /** Publishes `payload` (QoS 1) and waits for its answer. */
  async function send(kind: 'model' | 'twin/reported', payload: Buffer, rid: string, timeoutMs: number, what: string) {
    await requester.ready()
    const wait = answerTo(rid, timeoutMs, what)
    try {
      await channel.publishRaw(kind, payload, { qos: 1 })
    } catch (err) {
      wait.cancel()
      throw err
    }
    return wait.answer
  }

  return {
    async bindKey(key, opts = {}) {
      if (!Number.isInteger(key) || key < 1 || key > 0xffff) throw new TypeError('a model key is 1 to 65535')
      const a = await send('model', keyBytes(key), KEY_RID, opts.timeoutMs ?? settings.timeoutMs, 'the model key')
      return a.body as ModelBound
    },

    async describe(model, opts) {
      const a = await requester.request('model', { model }, opts)
      return a.body as ModelBound
    },

    compact(model) {
      const codec = createCodec(model)
      return {
        codec,
        telemetry(readings, opts = {}) {
          const { ts, ...publish } = opts
          return channel.publishRaw(
            'telemetry',
            codec.encodeTelemetry(readings, ts === undefined ? {} : { ts }),
            publish,
          )
        },
        async report(patch, opts = {}) {
          const rid = nextRid()
          const frame = codec.encodeReported(patch, { rid })
          const a = await send('twin/reported', frame, rid, opts.timeoutMs ?? settings.timeoutMs, 'a compact report')
          if (typeof a.version !== 'number') throw new Error('FleetHub answered a compact report without a version')
          return a.version
        },
        reportQuietly(patch, opts = {}) {
          return channel.publishRaw('twin/reported', codec.encodeReported(patch), opts)
        },
      }
    },
  }
}
