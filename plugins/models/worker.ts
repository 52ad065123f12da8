// The decode worker (a piscina task): one task is a batch of frames in one transferred buffer, so
// the cost of a task (tens of microseconds) is shared by hundreds of frames. Every batch carries the
// models its frames use (which worker takes a task is piscina's choice); codecs are kept per worker.
import { createFrameDecoder, type FrameResult, type ModelShape } from './frames.js'

export interface DecodeBatch {
  /** The models this batch's frames use, by key. */
  models: [number, ModelShape][]
  /** All frames, one after another. */
  frames: Uint8Array
  /** Per frame: offset, length, model key, kind (0 telemetry, 1 reported), receivedAt. */
  meta: Float64Array
}

const decoder = createFrameDecoder()
const models = new Map<number, ModelShape>()

export default function decodeBatch(batch: DecodeBatch): FrameResult[] {
  for (const [key, model] of batch.models) models.set(key, model)
  const out: FrameResult[] = []
  const m = batch.meta
  for (let i = 0; i < m.length; i += 5) {
    const key = m[i + 2] as number
    const model = models.get(key)
    if (!model) {
      out.push({ ok: false, error: `model key ${key} is unknown to the decoder` })
      continue
    }
    const frame = batch.frames.subarray(m[i] as number, (m[i] as number) + (m[i + 1] as number))
    out.push(decoder.decode(key, model, m[i + 3] === 1 ? 'reported' : 'telemetry', frame, m[i + 4] as number))
  }
  return out
}
