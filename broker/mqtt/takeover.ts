// One session per client id in the whole cluster [MQTT-3.1.4-2], with the newest one kept.
//
// Aedes announces every new client on `$SYS/{node}/new/clients`, and every other node closes its
// client of that id, whatever the order. Two CONNECTs of one id on two nodes in quick succession
// (a device reconnecting through a load balancer) could then end badly: when the announcement of
// the older session reached B after B had taken the newer CONNECT, B closed its new session, often
// before its CONNACK; and A closed the older one on B's announcement: no session was left.
//
// Here each announcement carries when the session started (the CONNECT's arrival, wall clock), and
// a node closes its own session of that id only when it started earlier (equal times: the smaller
// node id yields). Both nodes judge the same two sessions the same way, so exactly one survives,
// the one that started last. Sessions started on different nodes within the nodes' clock skew of
// each other are ordered by their clocks: keep them in sync (NTP). Aedes's own announcement stays on
// its node (bus/cluster.ts), where it still does nothing.
//
// The presence store orders sessions the same way (its `since`), so a session's late presence write
// does not displace the newer session's.
import type { Aedes } from 'aedes'

const FILTER = '$SYS/+/takeover/clients'

interface TakeoverClient {
  id: string
  closed: boolean
  close(done?: () => void): void
}

export interface TakeoverOptions {
  nodeId: string
  /** When a registered client's session started (ms since the epoch). */
  startOf(client: TakeoverClient): number
  /** A local session closed because the same id connected later on another node. */
  onTakenOver(clientId: string, byNode: string): void
  /** Whether another node is live: with none, an announcement would go nowhere (the bus drops it). */
  hasPeers(): boolean
}

function noop() {}

/** Whether the session that started at `at` on `node` outlives the one at `otherAt` on `otherNode`. */
function isNewer(at: number, node: string, otherAt: number, otherNode: string): boolean {
  return at > otherAt || (at === otherAt && node > otherNode)
}

export function installTakeover(aedes: Aedes, opts: TakeoverOptions): void {
  const clients = (aedes as unknown as { clients: Record<string, TakeoverClient | undefined> }).clients
  const topic = `$SYS/${opts.nodeId}/takeover/clients`

  aedes.on('client', function announceSession(client) {
    if (!opts.hasPeers()) return
    const c = client as unknown as TakeoverClient
    aedes.publish(
      {
        cmd: 'publish',
        topic,
        payload: Buffer.from(JSON.stringify([c.id, opts.startOf(c)])),
        qos: 0,
        retain: false,
        dup: false,
      },
      noop,
    )
  })

  aedes.subscribe(
    FILTER,
    function closeOlderSession(packet, done) {
      const from = packet.topic.split('/')[1] as string // $SYS/{node}/takeover/clients
      if (from === opts.nodeId) return done()
      let id: unknown
      let at: unknown
      try {
        ;[id, at] = JSON.parse(packet.payload.toString()) as unknown[]
      } catch {
        return done()
      }
      if (typeof id !== 'string' || typeof at !== 'number') return done()
      const local = clients[id]
      if (!local || local.closed) return done()
      // ours is the newer one: the other node closes its own on our announcement
      if (isNewer(opts.startOf(local), opts.nodeId, at, from)) return done()
      opts.onTakenOver(id, from)
      local.close(done)
    },
    noop,
  )
}
