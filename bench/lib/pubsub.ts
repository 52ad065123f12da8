// A publish/subscribe set-up on a running broker: the plan's subscribers connected and subscribed,
// its publishers connected, a delivery tracker behind every subscriber. Shared by the throughput,
// latency and overload scenarios, which differ in how the publishers write (lib/flows.ts).
import { closeAll, connectAll, subscribeAll } from './clients.js'
import type { BenchClient, Identity } from './mqtt-client.js'
import { Publisher } from './publisher.js'
import type { RunningBroker, Transport } from './target.js'
import { nowMs, sleep } from './time.js'
import { DeliveryTracker } from './tracker.js'

/** Who publishes and subscribes what: built by each scenario from its topic mapping. */
export interface PubSubPlan {
  publishers: { identity: Identity; topic: string }[]
  subscribers: { identity: Identity; filters: string[] }[]
  /** Publishers whose messages subscriber `sub` must receive (for the loss count). */
  routesOf(sub: number): readonly number[]
  /** Deliveries per published message. */
  fanout: number
}

export interface PubSub {
  readonly subscribers: BenchClient[]
  readonly publishers: Publisher[]
  readonly tracker: DeliveryTracker
  /** Messages written by all publishers so far. */
  sent(): number
  /** Messages the subscribers should have had and did not, over every route. */
  lost(): number
  /** Clients whose connection closed before close() (a broker that cut them off or died). */
  closedClients(): number
  /** DISCONNECT, a short wait, then destroy. */
  close(): Promise<void>
  /** Destroys every connection at once. */
  destroy(): void
}

export interface PubSubOptions {
  transport: Transport
  qos: 0 | 1
  latencyCapacity: number
  /** Keep every PUBACKed sequence number (the overload scenario checks each was delivered). */
  keepAckedSeqs?: boolean
  /** Read pacing of every client, in ms (see lib/wire.ts). */
  paceReadsMs?: number
}

export async function openPubSub(broker: RunningBroker, plan: PubSubPlan, opts: PubSubOptions): Promise<PubSub> {
  const subs = await connectAll(
    broker,
    opts.transport,
    plan.subscribers.map((s) => s.identity),
    opts.paceReadsMs,
  )
  let pubClients: BenchClient[] = []
  try {
    await subscribeAll(subs, (i) => plan.subscribers[i]?.filters ?? [], opts.qos)
    pubClients = await connectAll(
      broker,
      opts.transport,
      plan.publishers.map((p) => p.identity),
      opts.paceReadsMs,
    )
  } catch (err) {
    await closeAll(subs)
    throw err
  }
  const all = [...subs, ...pubClients]
  const tracker = new DeliveryTracker({
    publishers: plan.publishers.length,
    subscribers: subs.length,
    latencyCapacity: opts.latencyCapacity,
  })
  subs.forEach((c, i) => {
    c.handlers.message = (buf, start, end, now) => tracker.receive(i, buf, start, end, now)
  })
  const publishers = pubClients.map(
    (c, i) => new Publisher(i, c, plan.publishers[i]?.topic ?? '', opts.qos, opts.keepAckedSeqs ?? false),
  )
  return {
    subscribers: subs,
    publishers,
    tracker,
    sent: () => publishers.reduce((n, p) => n + p.sent, 0),
    lost() {
      let lost = 0
      plan.subscribers.forEach((_, sub) => {
        for (const pub of plan.routesOf(sub)) lost += (publishers[pub]?.sent ?? 0) - tracker.distinct(sub, pub)
      })
      return lost
    },
    closedClients: () => all.filter((c) => c.isClosed).length,
    close: () => closeAll(all),
    destroy() {
      for (const c of all) c.destroy()
    },
  }
}

const DRAIN_QUIET_MS = 300
const DRAIN_MAX_MS = 5_000

/** Waits until no delivery arrived for DRAIN_QUIET_MS (bounded): the stragglers of the last window. */
export async function drain(tracker: DeliveryTracker, maxMs = DRAIN_MAX_MS): Promise<number> {
  const startedAt = nowMs()
  let last = tracker.deliveries
  let quietSince = nowMs()
  while (nowMs() - startedAt < maxMs) {
    await sleep(50)
    if (tracker.deliveries !== last) {
      last = tracker.deliveries
      quietSince = nowMs()
    } else if (nowMs() - quietSince >= DRAIN_QUIET_MS) break
  }
  return nowMs() - startedAt
}

/** Waits (bounded) for the first delivery: a subscription may take a moment to reach a Redis bus. */
export async function waitFirstDelivery(tracker: DeliveryTracker, maxMs: number): Promise<number | undefined> {
  const startedAt = nowMs()
  while (tracker.deliveries === 0 && nowMs() - startedAt < maxMs) await sleep(20)
  return tracker.deliveries > 0 ? nowMs() - startedAt : undefined
}
