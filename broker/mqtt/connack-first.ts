// [MQTT-3.2.0-1] The first packet a server sends is CONNACK. Aedes restores a persistent session's
// subscriptions before it writes the CONNACK, so a message published in between (in a cluster, one
// already on its way through Redis) used to be written first, and clients such as mqtt.js then
// never saw their session start. Deliveries to a client are held until its CONNECT has finished
// (CONNACK and the stored queue written), then replayed in order, except those the stored queue
// has just delivered (QoS 1 and 2 messages of persistent sessions are queued before they are
// routed): a message is neither sent early nor twice.

type Deliver = (packet: unknown, cb: () => void) => void

interface RoutedPacket {
  brokerId?: string
  brokerCounter?: number
}

interface DeliveringClient {
  connected: boolean
  closed: boolean
  deliver0: Deliver
  deliverQoS: Deliver
  once(event: 'connected', listener: () => void): unknown
}

const kHeld = Symbol('fleethub.heldDeliveries')

interface Held {
  queue: [Deliver, RoutedPacket][]
  /** Packets the stored queue wrote meanwhile, by broker id and counter. */
  written: Set<string>
}

type HoldingClient = DeliveringClient & { [kHeld]?: Held }

const keyOf = (p: RoutedPacket) => `${p.brokerId}\u0000${p.brokerCounter}`

export function holdDeliveriesUntilConnected(clientObject: unknown): void {
  const client = clientObject as HoldingClient
  const hold = (deliver: Deliver): Deliver =>
    function deliverAfterConnack(packet, cb) {
      if (client.connected || client.closed) return deliver(packet, cb)
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
      cb()
    }
  client.deliver0 = hold(client.deliver0)
  client.deliverQoS = hold(client.deliverQoS)
}

/** Called for every packet forwarded to a client (Aedes's authorizeForward): notes queue replays. */
export function noteForwarded(clientObject: unknown, packet: RoutedPacket): void {
  const held = (clientObject as HoldingClient)[kHeld]
  if (held && packet.brokerId !== undefined) held.written.add(keyOf(packet))
}

function noop() {}
