import { encodeOnce, encodePublish } from './wire.js'

// How messages reach one client. Aedes's own deliveries wait for each write to drain, and the bus
// waits for the deliveries, so one subscriber that stops reading used to stop every publisher of
// its topics (for up to Aedes's drain timeout). Here a subscriber costs publishers nothing while its
// socket buffer is small:
// - QoS 0 to a client with more than SOFT_LIMIT bytes unsent is dropped for that client (counted),
//   and a client that stays that far behind for SLOW_CONSUMER_MS is cut off;
// - QoS 1/2 past SOFT_LIMIT makes the publishers wait for the client to drain, up to
//   SLOW_CONSUMER_MS; a client that does not drain by then, or that has HARD_LIMIT unsent, is cut
//   off (its persistent session keeps the messages; a clean session ends), so acknowledged QoS 1
//   messages are never dropped for a client that keeps its connection.
//
// [MQTT-3.2.0-1] The first packet a server sends is CONNACK. Aedes restores a persistent session's
// subscriptions before it writes the CONNACK, so a message published in between (in a cluster, one
// already on its way) used to be written first, and clients such as mqtt.js then never saw their
// session start. Deliveries are held until the CONNECT has finished (CONNACK and the stored queue
// written), then replayed in order, except those the stored queue has just delivered (QoS 1 and 2
// messages of persistent sessions are queued before they are routed): neither early nor twice.

/** Unsent bytes above which a client is "slow". */
export const SOFT_LIMIT = 256 * 1024
/** Unsent bytes at which a client is cut off at once. */
export const HARD_LIMIT = 8 * 1024 * 1024
/** How long publishers of QoS 1/2 wait for a slow client before it is cut off. */
export const SLOW_CONSUMER_MS = 5000

type Deliver = (packet: unknown, cb: () => void) => void

interface RoutedPacket {
  brokerId?: string
  brokerCounter?: number
}

interface ForwardPacket {
  topic: string
  payload: Buffer
  retain: boolean
  qos: number
  brokerId?: string | null
  brokerCounter?: number
  clientId?: string
  nl?: boolean
  properties?: unknown
}

interface DeliveringClient {
  id: string
  connected: boolean
  closed: boolean
  clean: boolean
  duplicates: Record<string, number>
  subscriptions: Record<string, { qos?: number }>
  /** The next packet identifier of an outgoing QoS 1 or 2 message. */
  _nextId: number
  broker: { authorizeForward(client: unknown, packet: ForwardPacket): ForwardPacket | null | undefined }
  conn: {
    writableLength?: number
    destroyed?: boolean
    writableEnded?: boolean
    write(buf: Buffer): boolean
    once(event: 'drain', listener: () => void): unknown
  }
  deliver0: Deliver
  deliverQoS: Deliver
  once(event: 'connected', listener: () => void): unknown
  close(): void
}

export interface DeliveryEvents {
  /** A QoS 0 message was not sent to a slow client. */
  dropped(client: unknown): void
  /** A slow client was disconnected. */
  cutOff(client: unknown, why: string): void
}

const kHeld = Symbol('fleethub.heldDeliveries')
const kWaiting = Symbol('fleethub.drainWaiters')

interface Held {
  queue: [Deliver, RoutedPacket][]
  /** Packets the stored queue wrote meanwhile, by broker id and counter. */
  written: Set<string>
}

type Client = DeliveringClient & { [kHeld]?: Held; [kWaiting]?: (() => void)[] }

/**
 * One delivery per message, however many of a client's filters match it. The bus calls every
 * matching filter in one synchronous pass, so a repeat is the message this client was just given.
 * Aedes instead dropped any message whose counter was not above the last one delivered; a QoS 1
 * message overtaken by a QoS 0 one published after it (QoS 1 waits for the offline queue first)
 * was then lost (moscajs/aedes#994). A message delivered again later (a nested publish in between)
 * would go out twice, which QoS 1 allows; none is lost.
 */
function dedupe(client: Client, p: ForwardPacket): boolean {
  const id = p.brokerId
  if (!id) return true
  const counter = p.brokerCounter ?? 0
  if (client.duplicates[id] === counter) return false
  client.duplicates[id] = counter
  return true
}

const keyOf = (p: RoutedPacket) => `${p.brokerId}\u0000${p.brokerCounter}`

function noop() {}

function unsent(client: Client): number {
  return client.conn.writableLength ?? 0
}

/** Calls `cb` when the client drains, or cuts it off after SLOW_CONSUMER_MS. */
function waitForDrain(client: Client, cb: () => void, events: DeliveryEvents): void {
  let waiters = client[kWaiting]
  if (waiters) {
    waiters.push(cb)
    return
  }
  waiters = [cb]
  client[kWaiting] = waiters
  const release = () => {
    clearTimeout(timer)
    const list = client[kWaiting] ?? []
    client[kWaiting] = undefined
    for (const w of list) w()
  }
  const timer = setTimeout(() => {
    if (!client.closed) {
      events.cutOff(client, `did not read ${unsent(client)} pending bytes within ${SLOW_CONSUMER_MS} ms`)
      client.close()
    }
    release()
  }, SLOW_CONSUMER_MS)
  client.conn.once('drain', release)
}

/** Keeps a delivery until the client's CONNECT has finished, then replays it. */
function hold(client: Client, deliver: Deliver, packet: unknown): void {
  let held = client[kHeld]
  if (!held) {
    held = { queue: [], written: new Set() }
    client[kHeld] = held
    client.once('connected', function replayHeldDeliveries() {
      const h = client[kHeld] as Held
      client[kHeld] = undefined
      for (const [d, p] of h.queue) if (p.brokerId === undefined || !h.written.has(keyOf(p))) d(p, noop)
    })
  }
  held.queue.push([deliver, packet as RoutedPacket])
}

export function wrapDeliveries(clientObject: unknown, events: DeliveryEvents): void {
  const client = clientObject as Client
  const originalQoS = client.deliverQoS

  /**
   * Writes a delivery at once, as Aedes checks it: no-local, one delivery per message, then
   * authorizeForward. `qos` 1 takes the client's next packet identifier, unless the client's own
   * subscription to exactly this topic asks for QoS 0 (as Aedes downgrades).
   */
  function writeNow(p: ForwardPacket, qos: 0 | 1): void {
    // no-local (MQTT 5, kept as Aedes has it) and one delivery per message for overlapping filters
    if ((p.clientId === client.id && p.nl) || !dedupe(client, p)) return
    const forward = client.broker.authorizeForward(client, p)
    if (!forward) return
    if (qos === 1 && (client.subscriptions[forward.topic]?.qos ?? 1) >= 1) {
      const id = client._nextId
      client._nextId = id >= 65535 ? 1 : id + 1
      client.conn.write(encodePublish(forward.topic, forward.payload, forward.retain, id))
    } else {
      client.conn.write(encodeOnce(forward))
    }
  }

  // QoS 0 is written here rather than by Aedes (which waited a setImmediate per delivery, built two
  // packet objects and wrote five times): checks as Aedes does them, then one encoded buffer.
  client.deliver0 = function deliverQoS0(packet, cb) {
    if (!client.connected) {
      if (!client.closed) hold(client, client.deliver0, packet)
      return cb()
    }
    const conn = client.conn
    if (conn.destroyed || conn.writableEnded) return cb()
    if (unsent(client) > SOFT_LIMIT) {
      events.dropped(client)
      waitForDrain(client, noop, events) // still stuck after SLOW_CONSUMER_MS: cut off
      return cb()
    }
    writeNow(packet as ForwardPacket, 0)
    cb()
  }

  // QoS 1 to a clean session is written here too: Aedes keeps no copy of it (it never resends to a
  // clean session), and its own path waited two setImmediates per delivery, so a device's answers
  // never shared a write with each other. Persistent sessions, QoS 2 and MQTT 5 properties take
  // Aedes's path (stored before it is written, resent on reconnect).
  client.deliverQoS = function deliverQoS12(packet, cb) {
    if (!client.connected && !client.closed) {
      hold(client, client.deliverQoS, packet)
      return cb()
    }
    const pending = unsent(client)
    if (pending > HARD_LIMIT) {
      events.cutOff(client, `${pending} bytes unsent`)
      client.close()
      return cb()
    }
    const p = packet as ForwardPacket
    if (client.clean && p.qos === 1 && p.properties === undefined && client.connected) {
      const conn = client.conn
      if (!conn.destroyed && !conn.writableEnded) writeNow(p, 1)
    } else if (dedupe(client, p)) {
      // Aedes checks again with its own rule: let it pass what this one passed
      if (p.brokerId) client.duplicates[p.brokerId] = (p.brokerCounter ?? 0) - 1
      originalQoS(packet, noop)
    }
    if (pending <= SOFT_LIMIT || client.closed) return cb()
    waitForDrain(client, cb, events)
  }
}

/** Called for every packet forwarded to a client (Aedes's authorizeForward): notes queue replays. */
export function noteForwarded(clientObject: unknown, packet: RoutedPacket): void {
  const held = (clientObject as Client)[kHeld]
  if (held && packet.brokerId !== undefined) held.written.add(keyOf(packet))
}
