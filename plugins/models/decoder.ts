// Where compact frames are decoded: inline on the event loop, or in a piscina pool of worker
// threads, in batches (one task per frame would cost about 100× the decode). The policy:
//
//   inline  always on the event loop: the cheapest per frame, and the right choice on one core;
//   pool    always in workers: the event loop only batches and publishes;
//   auto    inline while decoding would take less than a tenth of the event loop, in the pool above
//           that (back inline below a thirtieth), from the decode rate and the measured inline cost.
//
// The queue is bounded: past `maxQueued` frames in flight, a frame waits before it is queued, which
// holds its client's next packets (Aedes reads a client's socket again only when the packets it has
// are handled), so a flood slows its senders instead of growing memory. Results come back in the
// order the frames came in.
import { availableParallelism } from 'node:os'
import { Piscina } from 'piscina'
import type { Logger } from '../../broker/log.js'
import type { Metrics } from '../../broker/metrics.js'
import type { FrameKind } from '../../registry/compact.js'
import { createFrameDecoder, type FrameResult, type ModelShape } from './frames.js'
import type { DecodeBatch } from './worker.js'

export type DecodePolicy = 'inline' | 'pool' | 'auto'
export const DECODE_POLICIES: readonly DecodePolicy[] = ['inline', 'pool', 'auto']

export interface DecoderConfig {
  policy: DecodePolicy
  /** Worker threads of the pool. */
  threads: number
  /** Frames in flight (queued or decoding) before new ones wait. */
  maxQueued: number
  /** Frames per pool task, at most. */
  batchFrames: number
}

interface Job {
  key: number
  model: ModelShape
  kind: FrameKind
  frame: Uint8Array
  receivedAt: number
  resolve(r: FrameResult): void
}

/** Decoding may take this share of the event loop before auto moves it to the pool … */
const TO_POOL = 0.1
/** … and must fall below this share (of what it would take inline) to come back. */
const TO_INLINE = 1 / 30
const WINDOW_MS = 1000
/** Inline decoding per event-loop turn, at most (then the rest waits for the next turn). */
const TURN_BUDGET_NS = 2_000_000

export type Decoder = ReturnType<typeof createDecoder>

export function createDecoder(config: DecoderConfig, log: Logger, metrics: Metrics) {
  const inline = createFrameDecoder()
  const canPool = config.policy === 'pool' || (config.policy === 'auto' && availableParallelism() > 1)
  let pool: Piscina | undefined
  let inPool = config.policy === 'pool'
  metrics.decodeInPool.set(inPool ? 1 : 0)

  // the auto policy's measurements: frames decoded in this window, and the inline cost per frame
  let windowStart = Date.now()
  let windowFrames = 0
  let inlineNsPerFrame = 2000
  const loadOf = (frames: number, ms: number) => (frames * inlineNsPerFrame) / (ms * 1e6)

  function review(now: number) {
    const ms = now - windowStart
    if (ms < WINDOW_MS) return
    const load = loadOf(windowFrames, ms)
    windowStart = now
    windowFrames = 0
    if (config.policy !== 'auto' || !canPool) return
    const next = inPool ? load > TO_INLINE : load > TO_POOL
    if (next !== inPool) {
      inPool = next
      metrics.decodeInPool.set(inPool ? 1 : 0)
      log.info({ load: Number(load.toFixed(3)), where: inPool ? 'pool' : 'inline' }, 'compact frame decoding moved')
    }
  }

  let queued = 0
  let drained: { promise: Promise<void>; resolve: () => void } | undefined
  const batch: Job[] = []
  let flushScheduled = false
  /** Batches settle in order: each waits for the one before it. */
  let settled: Promise<void> = Promise.resolve()

  function done(n: number) {
    queued -= n
    metrics.decodeQueued.set(queued)
    if (drained && queued <= config.maxQueued / 2) {
      drained.resolve()
      drained = undefined
    }
  }

  function poolOf(): Piscina {
    pool ??= new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: 1,
      maxThreads: config.threads,
      idleTimeout: 30_000,
      // no busy waiting for tasks: a worker shares its core with the event loop on small machines
      atomics: 'disabled',
    })
    return pool
  }

  function flush() {
    flushScheduled = false
    while (batch.length) {
      const jobs = batch.splice(0, config.batchFrames)
      let bytes = 0
      for (const j of jobs) bytes += j.frame.length
      const frames = new Uint8Array(bytes)
      const meta = new Float64Array(jobs.length * 5)
      const models = new Map<number, ModelShape>()
      let at = 0
      jobs.forEach((j, i) => {
        frames.set(j.frame, at)
        meta.set([at, j.frame.length, j.key, j.kind === 'reported' ? 1 : 0, j.receivedAt], i * 5)
        at += j.frame.length
        models.set(j.key, j.model)
      })
      const task: DecodeBatch = { models: [...models], frames, meta }
      const results = poolOf()
        .run(task, { transferList: [frames.buffer as ArrayBuffer, meta.buffer as ArrayBuffer] })
        .then(
          (r: FrameResult[]) => r,
          (err: unknown) => {
            log.error({ err }, 'decode worker failed: the batch is refused')
            return jobs.map((): FrameResult => ({ ok: false, error: 'the decoder failed' }))
          },
        )
      settled = settled
        .then(() => results)
        .then((r) => {
          jobs.forEach((j, i) => {
            const x = r[i] ?? { ok: false, error: 'no result' }
            metrics.framesDecoded.inc({ kind: j.kind, where: 'pool', result: x.ok ? 'ok' : 'error' })
            j.resolve(x)
          })
          done(jobs.length)
        })
    }
  }

  // Inline decoding takes at most TURN_BUDGET_NS of one event-loop turn; frames past it wait for
  // the next turn (in order, behind each other), so timers and other clients' I/O are not held up
  // by a burst of large frames.
  let turnNs = 0
  let turnResetScheduled = false
  const resetTurn = () => {
    turnNs = 0
    turnResetScheduled = false
  }
  const overBudget = () => turnNs >= TURN_BUDGET_NS
  const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

  function decodeInline(key: number, model: ModelShape, kind: FrameKind, frame: Uint8Array, receivedAt: number) {
    const t0 = process.hrtime.bigint()
    const r = inline.decode(key, model, kind, frame, receivedAt)
    const ns = Number(process.hrtime.bigint() - t0)
    turnNs += ns
    if (!turnResetScheduled) {
      turnResetScheduled = true
      setImmediate(resetTurn)
    }
    inlineNsPerFrame = inlineNsPerFrame * 0.99 + ns * 0.01
    metrics.framesDecoded.inc({ kind, where: 'inline', result: r.ok ? 'ok' : 'error' })
    return r
  }

  return {
    get inPool() {
      return inPool
    },

    /** Decodes one frame of a registered model (`key`); never rejects. */
    async decode(
      key: number,
      model: ModelShape,
      kind: FrameKind,
      frame: Uint8Array,
      receivedAt: number,
    ): Promise<FrameResult> {
      const now = Date.now()
      review(now)
      windowFrames++
      if (!inPool) {
        // inline still waits behind frames the pool has, so a device's results keep their order
        if (queued === 0 && !overBudget()) return decodeInline(key, model, kind, frame, receivedAt)
      }
      while (queued >= config.maxQueued) {
        metrics.decodeBackpressure.inc()
        if (!drained) {
          let resolve = () => {}
          const promise = new Promise<void>((r) => {
            resolve = r
          })
          drained = { promise, resolve }
        }
        await drained.promise
      }
      queued++
      metrics.decodeQueued.set(queued)
      if (!inPool) {
        // behind frames still in the pool, or this turn's budget is spent: inline, after them
        const mine = settled.then(async () => {
          if (overBudget()) await nextTurn()
          done(1)
          return decodeInline(key, model, kind, frame, receivedAt)
        })
        settled = mine.then(() => {})
        return mine
      }
      return new Promise<FrameResult>((resolve) => {
        batch.push({ key, model, kind, frame, receivedAt, resolve })
        if (batch.length >= config.batchFrames) flush()
        else if (!flushScheduled) {
          flushScheduled = true
          setImmediate(flush)
        }
      })
    },

    async close(): Promise<void> {
      flush()
      await settled
      await pool?.destroy()
      pool = undefined
    },
  }
}
