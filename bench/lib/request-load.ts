// Request load on an HTTP API, in the two shapes the message flows have (lib/flows.ts):
// - paced (open loop): a fixed rate of requests, started whatever the answers do, so the latency of
//   each includes any queueing behind slower ones (the figure a client at that rate would see);
// - closed loop: a fixed number of requests in flight, each answer starting the next: the rate is
//   what the server sustains.
// Each request is one call of `send`, which resolves with undefined for a success or the reason of
// a failure (`http-504`, `bad-body`…); latency is recorded for successes while `latency.recording`.
import { rateTicker } from './flows.js'
import { Samples } from './stats.js'
import { nowMs, sleep } from './time.js'

export type Send = (i: number) => Promise<string | undefined>

export interface LoadCounts {
  started: number
  done: number
  ok: number
  failures: Record<string, number>
}

/** Samples of one window: 20,000 requests/s for 10 s (no request scenario comes near). */
export const LATENCY_CAPACITY = 200_000
const SETTLE_MAX_MS = 35_000

export class RequestLoad {
  readonly latency: Samples
  private readonly send: Send
  private readonly counts: LoadCounts = { started: 0, done: 0, ok: 0, failures: {} }
  private stopLoop: (() => void) | undefined

  /**
   * `latency`: samples to record into, allocated once by a scenario with several loads. A fresh
   * array of megabytes at the start of a load makes this process collect garbage (its memory
   * outside the heap counts) just as the load starts, and the requests it should send meanwhile
   * go out as one burst.
   */
  constructor(send: Send, latency: Samples = new Samples(LATENCY_CAPACITY)) {
    this.send = send
    this.latency = latency
  }

  get inFlight(): number {
    return this.counts.started - this.counts.done
  }

  snapshot(): LoadCounts {
    return { ...this.counts, failures: { ...this.counts.failures } }
  }

  private fail(why: string): void {
    this.counts.failures[why] = (this.counts.failures[why] ?? 0) + 1
  }

  private one(): Promise<void> {
    const c = this.counts
    const i = c.started++
    const t0 = nowMs()
    return this.send(i).then(
      (failure) => {
        c.done++
        if (failure === undefined) {
          c.ok++
          this.latency.add(nowMs() - t0)
        } else this.fail(failure)
      },
      (err: Error) => {
        c.done++
        this.fail(err.message.replace(/^.*failed: /, '').slice(0, 60))
      },
    )
  }

  /** Starts `rate` requests per second until stop(). */
  paced(rate: number): void {
    const ticker = rateTicker(rate, (n) => {
      for (let k = 0; k < n; k++) void this.one()
    })
    ticker.start()
    this.stopLoop = ticker.stop
  }

  /** Keeps `concurrency` requests in flight until stop(). */
  closed(concurrency: number): void {
    let running = true
    const worker = async () => {
      while (running) await this.one()
    }
    for (let k = 0; k < concurrency; k++) void worker()
    this.stopLoop = () => {
      running = false
    }
  }

  /** Starts no more requests; the ones in flight go on (see settle). */
  stop(): void {
    this.stopLoop?.()
    this.stopLoop = undefined
  }

  /** Waits for the requests in flight to finish (bounded: a command times out after its own deadline). */
  async settle(maxMs = SETTLE_MAX_MS): Promise<number> {
    const until = nowMs() + maxMs
    while (this.inFlight > 0 && nowMs() < until) await sleep(10)
    return this.inFlight
  }
}
