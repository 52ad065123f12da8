// The message bus under Aedes (in place of mqemitter / mqemitter-redis). Aedes emits every PUBLISH
// here and subscribes every client subscription here; the bus
// - delivers to subscribers on this node directly, never through Redis;
// - sends a message to Redis only when another node is alive, batched per event-loop turn, tagged
//   with its origin so no node delivers it twice (cluster.ts);
// - completes an emit without recursion (mqemitter's queue recursed once per queued message and
//   overflowed the stack under load) and without an unbounded queue: a publisher waits only for
//   the deliveries themselves, and delivery.ts decides what a slow subscriber costs it.
import { Qlobber } from 'qlobber'
import type { ClusterLink } from './cluster.js'

export interface BusPacket {
  topic: string
  [field: string]: unknown
}

export type Notify = (packet: BusPacket, done: () => void) => void
type Callback = (err?: Error | null) => void

function noop() {}

export class Bus {
  private readonly matcher = new Qlobber<Notify>({
    separator: '/',
    wildcard_one: '+',
    wildcard_some: '#',
    // [MQTT-4.7.1-3]: `a/#` also matches `a`
    match_empty_levels: true,
  })
  private link: ClusterLink | undefined
  private readonly onError: (err: Error) => void
  closed = false

  constructor(onError: (err: Error) => void) {
    this.onError = onError
  }

  /** Whether a message published here can reach another node now. */
  hasPeers(): boolean {
    return this.link?.hasPeers() ?? false
  }

  /** Connects the bus to the other nodes (cluster mode). */
  attach(link: ClusterLink): void {
    this.link = link
    link.onRemote((packet) => this.deliver(packet, noop))
  }

  on(topic: string, notify: Notify, done?: () => void): this {
    this.matcher.add(topic, notify)
    if (done) setImmediate(done)
    return this
  }

  removeListener(topic: string, notify: Notify, done?: () => void): this {
    this.matcher.remove(topic, notify)
    if (done) setImmediate(done)
    return this
  }

  emit(packet: BusPacket, cb: Callback = noop): this {
    if (this.closed) {
      cb(new Error('the message bus is closed'))
      return this
    }
    this.link?.forward(packet)
    this.deliver(packet, cb)
    return this
  }

  /** Calls every local subscriber; `cb` once all of them called back (never in this stack). */
  private deliver(packet: BusPacket, cb: Callback): void {
    const matches = this.matcher.match(packet.topic)
    let pending = matches.length
    if (pending === 0) {
      process.nextTick(cb)
      return
    }
    let sync = true
    const one = () => {
      if (--pending !== 0) return
      if (sync) process.nextTick(cb)
      else cb()
    }
    for (let i = 0; i < matches.length; i++) {
      try {
        ;(matches[i] as Notify)(packet, one)
      } catch (err) {
        this.onError(err as Error)
        one()
      }
    }
    sync = false
  }

  close(cb: () => void = noop): void {
    if (this.closed) {
      cb()
      return
    }
    this.closed = true
    const link = this.link
    if (!link) {
      setImmediate(cb)
      return
    }
    link.close().then(cb, (err: Error) => {
      this.onError(err)
      cb()
    })
  }
}
