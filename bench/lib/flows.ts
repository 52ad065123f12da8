// How publishers decide when to write. Three shapes:
// - closed loop (throughput scenarios): each publisher keeps at most `window` messages between
//   write and delivery at the subscribers (and, at QoS 1, between write and PUBACK), so the broker
//   is kept busy without being buried; the rate is what the broker sustains;
// - open loop (overload): no end-to-end window at all; write whenever the socket takes more;
// - paced (latency): a fixed total rate, spread over the publishers, whatever the broker does.
// Writes are batched: a pump runs once per event-loop turn and writes each publisher's share in one
// buffer.
import type { Publisher } from './publisher.js'
import { nowMs } from './time.js'
import type { DeliveryTracker } from './tracker.js'

export interface Flow {
  start(): void
  /** Stops writing; messages already written stay in flight. */
  stop(): void
  /** Windows written off because nothing moved for STALL_MS (loss under a window would stall it). */
  readonly stalls: number
}

/** A publisher whose window stays full this long writes its in-flight messages off and goes on. */
const STALL_MS = 1000
const WATCH_MS = 250
/** Largest batch written at once. */
const MAX_BATCH = 256

export interface ClosedLoopOptions {
  publishers: readonly Publisher[]
  tracker: DeliveryTracker
  /** Deliveries expected per message (subscribers per topic). */
  fanout: number
  /** Messages in flight per publisher. */
  window: number
}

export function closedLoop(opts: ClosedLoopOptions): Flow {
  const { publishers, tracker, fanout, window } = opts
  /** A publisher writes when this much of its window is free: bigger batches, fewer writes. */
  const threshold = Math.max(1, Math.floor(window / 4))
  const writtenOff = new Float64Array(publishers.length)
  const blocked = new Uint8Array(publishers.length)
  let running = false
  let scheduled = false
  let stalls = 0
  let lastDeliveries = 0
  let lastProgressAt = 0
  let watch: NodeJS.Timeout | undefined

  const inFlight = (p: Publisher) =>
    p.sent - Math.floor((tracker.byPublisher[p.index] as number) / fanout) - (writtenOff[p.index] as number)

  function pump() {
    scheduled = false
    if (!running) return
    for (const p of publishers) {
      if (blocked[p.index] || p.client.isClosed) continue
      let credit = window - inFlight(p)
      if (p.qos > 0) credit = Math.min(credit, window - p.unacked)
      if (credit < threshold) continue
      if (!p.writeBatch(Math.min(credit, MAX_BATCH))) blocked[p.index] = 1
    }
  }
  function schedule() {
    if (scheduled || !running) return
    scheduled = true
    setImmediate(pump)
  }
  function watchStalls() {
    const now = nowMs()
    if (tracker.deliveries !== lastDeliveries) {
      lastDeliveries = tracker.deliveries
      lastProgressAt = now
      return
    }
    if (now - lastProgressAt < STALL_MS) return
    // nothing arrived for a while: whatever is in flight is not coming, free the windows
    stalls++
    lastProgressAt = now
    for (const p of publishers) writtenOff[p.index] = (writtenOff[p.index] as number) + Math.max(0, inFlight(p))
    schedule()
  }

  for (const p of publishers) {
    p.client.wire.onDrain(() => {
      blocked[p.index] = 0
      schedule()
    })
    p.onAck = schedule
  }
  tracker.onDelivered = schedule

  return {
    start() {
      running = true
      lastProgressAt = nowMs()
      watch = setInterval(watchStalls, WATCH_MS)
      schedule()
    },
    stop() {
      running = false
      clearInterval(watch)
      tracker.onDelivered = undefined
    },
    get stalls() {
      return stalls
    },
  }
}

export interface OpenLoopOptions {
  publishers: readonly Publisher[]
  /** Messages per write. */
  batch: number
}

/** Writes as fast as each socket takes bytes: a batch per publisher per turn until write() says wait. */
export function openLoop(opts: OpenLoopOptions): Flow {
  const { publishers, batch } = opts
  const blocked = new Uint8Array(publishers.length)
  let running = false
  let idle = false

  function pump() {
    if (!running) return
    let wrote = false
    for (const p of publishers) {
      if (blocked[p.index] || p.client.isClosed) continue
      const n = Math.min(batch, p.idsFree())
      if (n <= 0) continue
      if (!p.writeBatch(n)) blocked[p.index] = 1
      wrote = true
    }
    // another turn right away when something could be written; otherwise drain or a PUBACK restarts it
    if (wrote) setImmediate(pump)
    else idle = true
  }
  const wake = () => {
    if (idle && running) {
      idle = false
      setImmediate(pump)
    }
  }
  for (const p of publishers) {
    p.client.wire.onDrain(() => {
      blocked[p.index] = 0
      wake()
    })
    p.onAck = wake
  }
  return {
    start() {
      running = true
      setImmediate(pump)
    },
    stop() {
      running = false
    },
    stalls: 0,
  }
}

export interface PacedOptions {
  publishers: readonly Publisher[]
  /** Messages per second, over all publishers. */
  rate: number
}

/**
 * A fixed rate, whatever the receiver does: about every millisecond, `due(n)` is called with the
 * number of sends that fell due since the last call (open loop: nothing waits for answers).
 */
export function rateTicker(rate: number, due: (n: number) => void): { start(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined
  let startedAt = 0
  let done = 0
  function tick() {
    const target = Math.floor(((nowMs() - startedAt) * rate) / 1000)
    const n = target - done
    if (n > 0) {
      done = target
      due(n)
    }
  }
  return {
    start() {
      startedAt = nowMs()
      done = 0
      timer = setInterval(tick, 1)
    },
    stop() {
      clearInterval(timer)
    },
  }
}

/** A fixed total rate: every millisecond or so, each publisher writes the messages that fell due. */
export function paced(opts: PacedOptions): Flow {
  const { publishers, rate } = opts
  let due = 0
  const ticker = rateTicker(rate, (n) => {
    // round-robin: publisher i gets messages i, i + P, i + 2P… of the global sequence
    const P = publishers.length
    for (let i = 0; i < P; i++) {
      const p = publishers[(due + i) % P] as Publisher
      const share = Math.floor(n / P) + (i < n % P ? 1 : 0)
      if (share > 0 && !p.client.isClosed) p.writeBatch(share)
    }
    due += n
  })
  return { start: ticker.start, stop: ticker.stop, stalls: 0 }
}
