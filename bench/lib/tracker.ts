// What subscribers received, per (subscriber, publisher) route: one bit per sequence number, so
// loss (a sequence number never seen), duplicates (seen twice) and reordering (seen after a higher
// one) are exact counts, not estimates. Latency samples are kept only while `recording` is on (the
// measurement window), in a preallocated array.
import { readStamp, type Stamp } from './payload.js'
import { Samples } from './stats.js'

class Route {
  bits = new Uint32Array(1024)
  distinct = 0
  maxSeq = -1

  /** Marks `seq`; returns 0 new in order, 1 new out of order, 2 duplicate. */
  mark(seq: number): number {
    const word = seq >>> 5
    if (word >= this.bits.length) {
      let size = this.bits.length * 2
      while (size <= word) size *= 2
      const grown = new Uint32Array(size)
      grown.set(this.bits)
      this.bits = grown
    }
    const mask = 1 << (seq & 31)
    const w = this.bits[word] as number
    if (w & mask) return 2
    this.bits[word] = w | mask
    this.distinct++
    if (seq > this.maxSeq) {
      this.maxSeq = seq
      return 0
    }
    return 1
  }

  has(seq: number): boolean {
    const word = seq >>> 5
    return word < this.bits.length && ((this.bits[word] as number) & (1 << (seq & 31))) !== 0
  }
}

export interface TrackerOptions {
  publishers: number
  subscribers: number
  /** Latency samples kept at most (later ones are dropped from the percentiles, not from the counts). */
  latencyCapacity: number
}

export class DeliveryTracker {
  readonly publishers: number
  /** Every PUBLISH received that carried one of our payloads, duplicates included. */
  deliveries = 0
  duplicates = 0
  outOfOrder = 0
  /** Payloads that were not ours (wrong size or format): should stay 0. */
  foreign = 0
  /** Distinct deliveries per publisher, over all subscribers (feeds the publishers' windows). */
  readonly byPublisher: Float64Array
  /** Deliveries per subscriber, duplicates included. */
  readonly bySubscriber: Float64Array
  private readonly latencies: Samples
  private routes: (Route | undefined)[]
  private scratch: Stamp = { publisher: 0, seq: 0, sentAt: 0 }
  /** Called after each delivery that freed a publisher's window. */
  onDelivered: (() => void) | undefined

  constructor(opts: TrackerOptions) {
    this.publishers = opts.publishers
    this.byPublisher = new Float64Array(opts.publishers)
    this.bySubscriber = new Float64Array(opts.subscribers)
    this.routes = new Array(opts.publishers * opts.subscribers)
    this.latencies = new Samples(opts.latencyCapacity)
  }

  /** Handler for subscriber `sub`'s received messages. */
  receive(sub: number, buf: Buffer, start: number, end: number, now: number): void {
    const s = this.scratch
    if (!readStamp(buf, start, end, s) || s.publisher >= this.publishers) {
      this.foreign++
      return
    }
    this.deliveries++
    this.bySubscriber[sub] = (this.bySubscriber[sub] as number) + 1
    const key = sub * this.publishers + s.publisher
    let route = this.routes[key]
    if (!route) {
      route = new Route()
      this.routes[key] = route
    }
    const outcome = route.mark(s.seq)
    if (outcome === 2) {
      this.duplicates++
      return
    }
    if (outcome === 1) this.outOfOrder++
    this.byPublisher[s.publisher] = (this.byPublisher[s.publisher] as number) + 1
    this.latencies.add(now - s.sentAt)
    this.onDelivered?.()
  }

  /** Distinct messages of `pub` that `sub` received. */
  distinct(sub: number, pub: number): number {
    return this.routes[sub * this.publishers + pub]?.distinct ?? 0
  }

  /** Whether `sub` received message `seq` of `pub`. */
  received(sub: number, pub: number, seq: number): boolean {
    return this.routes[sub * this.publishers + pub]?.has(seq) ?? false
  }

  /** Latency samples are kept only while this is on (the measurement window). */
  get recording(): boolean {
    return this.latencies.recording
  }

  set recording(on: boolean) {
    this.latencies.recording = on
  }

  latencySamples(): Float64Array {
    return this.latencies.all()
  }

  resetLatencies(): void {
    this.latencies.reset()
  }
}
