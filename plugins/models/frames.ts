// Decoding one compact frame to what the broker publishes or applies, the same on the main thread
// and in a worker: telemetry becomes the JSON of `$iot/{id}/telemetry/decoded`, a reported frame a
// merge patch. Codecs are built once per model key and kept (models are immutable per key).
import { type Codec, createCodec, FrameError, type FrameKind } from '../../registry/compact.js'
import type { ModelDefinition } from '../../registry/models.js'

export type ModelShape = Pick<ModelDefinition, 'id' | 'version' | 'telemetry' | 'properties'>

export type FrameResult =
  | { ok: true; readings: number; json: string }
  | { ok: true; readings: 0; rid?: string; patch: Record<string, unknown> }
  | { ok: false; error: string }

const MAX_CODECS = 1000

export function createFrameDecoder() {
  const codecs = new Map<number, Codec>()

  function codecOf(key: number, model: ModelShape): Codec {
    let c = codecs.get(key)
    if (!c) {
      if (codecs.size >= MAX_CODECS) codecs.delete(codecs.keys().next().value as number)
      c = createCodec(model)
      codecs.set(key, c)
    }
    return c
  }

  return {
    has: (key: number) => codecs.has(key),
    decode(key: number, model: ModelShape, kind: FrameKind, frame: Uint8Array, receivedAt: number): FrameResult {
      try {
        const codec = codecOf(key, model)
        if (kind === 'reported') {
          const r = codec.decodeReported(frame)
          return r.rid === undefined
            ? { ok: true, readings: 0, patch: r.patch }
            : { ok: true, readings: 0, rid: r.rid, patch: r.patch }
        }
        const { json, readings } = codec.decodeTelemetryJson(frame, receivedAt)
        return { ok: true, readings, json }
      } catch (err) {
        // a FrameError says what is wrong; anything else is a decoder bug, still never a crash
        return {
          ok: false,
          error: err instanceof FrameError ? err.message : `decoder failed: ${(err as Error).message}`,
        }
      }
    },
  }
}
