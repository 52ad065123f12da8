// The bus between nodes, over Redis pub/sub. Nodes know each other from hello/beat/bye messages on
// a control channel; a node sends messages to Redis only while another node is present, so a single
// node with the Redis store pays no Redis round trip per message. Messages of one event-loop turn go
// in one PUBLISH (msgpackr), tagged with the origin node, which ignores its own batches.
//
// Joining: a new node says hello and waits (bounded) until every node the registry lists as alive
// has answered, so no node keeps messages from it for lack of knowing it is there.
import type { Redis } from 'ioredis'
import { Packr } from 'msgpackr'
import type { BusPacket } from './index.js'

/** How often a node says it is alive on the control channel. */
const BEAT_MS = 2000
/** A node that has not been heard of for this long is gone (it crashed without a bye). */
const PEER_TTL_MS = 30_000
/** Longest wait for the other nodes' answers when joining. */
const JOIN_WAIT_MS = 3000
/** Flush a batch early once it holds this many messages. */
const MAX_BATCH = 512

/**
 * $SYS topics Aedes publishes that nothing acts on: no client may read `$SYS`, and on its own node
 * Aedes's listener of `new/clients` ignores its own announcements. The broker drops them before
 * they are published (broker.ts), and a link never forwards them (the other nodes would close
 * their sessions of that id on `new/clients`, whatever the order; new clients are announced to
 * them on `$SYS/{node}/takeover/clients` instead, takeover.ts).
 */
const LOCAL_ONLY = /^\$SYS\/[^/]+\/(new\/clients|new\/subscribes|new\/unsubscribes|disconnect\/clients)$/

/** Whether `topic` is one of those announcements (a prefix test first: this runs per message). */
export function isLocalOnly(topic: string): boolean {
  return topic.startsWith('$SYS/') && LOCAL_ONLY.test(topic)
}

interface Control {
  t: 'hello' | 'beat' | 'bye'
  n: string
}

export interface ClusterLink {
  forward(packet: BusPacket): void
  onRemote(deliver: (packet: BusPacket) => void): void
  /** Waits until the nodes in `expected` have answered (bounded); resolves with the peers seen. */
  join(expected: readonly string[]): Promise<string[]>
  close(): Promise<void>
  peers(): string[]
  /** Whether another node is live, so that anything forwarded reaches one. */
  hasPeers(): boolean
}

export interface ClusterLinkOptions {
  node: string
  prefix: string
  pub: Redis
  sub: Redis
  onError(err: Error): void
}

// field order of a packet on the wire (field names never travel)
function toWire(p: BusPacket): unknown[] {
  return [p.topic, p.payload, p.qos, p.retain, p.dup, p.brokerId, p.brokerCounter, p.clientId, p.cmd]
}

function fromWire(w: unknown[]): BusPacket {
  const p: BusPacket = {
    cmd: w[8] ?? 'publish',
    topic: w[0] as string,
    payload: w[1] as Buffer,
    qos: w[2] ?? 0,
    retain: w[3] ?? false,
    dup: w[4] ?? false,
    brokerId: w[5],
    brokerCounter: w[6],
  }
  if (w[7] !== undefined && w[7] !== null) p.clientId = w[7]
  return p
}

export async function createClusterLink(opts: ClusterLinkOptions): Promise<ClusterLink> {
  const { node, pub, sub } = opts
  const data = `${opts.prefix}:bus:data`
  const control = `${opts.prefix}:bus:ctl`
  const packr = new Packr({ useRecords: false })
  const peers = new Map<string, number>()
  const joinWaiters = new Set<() => void>()
  let deliver: (packet: BusPacket) => void = () => {}
  let batch: unknown[][] = []
  let flushScheduled = false
  let closed = false

  const say = (t: Control['t']) => pub.publish(control, JSON.stringify({ t, n: node })).catch(opts.onError)

  function livePeers(): number {
    const now = Date.now()
    let n = 0
    for (const [id, seen] of peers) {
      if (now - seen > PEER_TTL_MS) peers.delete(id)
      else n++
    }
    return n
  }

  function flush() {
    flushScheduled = false
    if (batch.length === 0) return
    const out = batch
    batch = []
    pub.publish(data, packr.pack([node, out]) as Buffer).catch(opts.onError)
  }

  function onControl(message: string) {
    let c: Control
    try {
      c = JSON.parse(message) as Control
    } catch (err) {
      opts.onError(err as Error)
      return
    }
    if (c.n === node) return
    if (c.t === 'bye') peers.delete(c.n)
    else peers.set(c.n, Date.now())
    if (c.t === 'hello') void say('beat') // let the newcomer know about us at once
    for (const w of joinWaiters) w()
  }

  function onData(message: Buffer) {
    let origin: string
    let packets: unknown[][]
    try {
      ;[origin, packets] = packr.unpack(message) as [string, unknown[][]]
    } catch (err) {
      opts.onError(err as Error)
      return
    }
    if (origin === node) return
    peers.set(origin, Date.now())
    for (const w of packets) deliver(fromWire(w))
  }

  sub.on('messageBuffer', function onBusMessage(channel: Buffer, message: Buffer) {
    const ch = channel.toString()
    if (ch === data) onData(message)
    else if (ch === control) onControl(message.toString())
  })
  await sub.subscribe(data, control)
  const beat = setInterval(() => void say('beat'), BEAT_MS)
  beat.unref()

  return {
    forward(packet) {
      if (closed || livePeers() === 0 || isLocalOnly(packet.topic)) return
      batch.push(toWire(packet))
      if (batch.length >= MAX_BATCH) flush()
      else if (!flushScheduled) {
        flushScheduled = true
        setImmediate(flush)
      }
    },
    onRemote(fn) {
      deliver = fn
    },
    async join(expected) {
      await say('hello')
      const others = expected.filter((n) => n !== node)
      const missing = () => others.filter((n) => !peers.has(n))
      if (missing().length > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, JOIN_WAIT_MS)
          function done() {
            clearTimeout(timer)
            joinWaiters.delete(check)
            resolve()
          }
          function check() {
            if (missing().length === 0) done()
          }
          joinWaiters.add(check)
        })
      }
      return [...peers.keys()]
    },
    peers() {
      livePeers()
      return [...peers.keys()]
    },
    hasPeers() {
      return !closed && livePeers() > 0
    },
    async close() {
      if (closed) return
      flush()
      closed = true
      clearInterval(beat)
      await say('bye')
      await Promise.allSettled([sub.quit(), pub.quit()])
    },
  }
}
