// Admission: a node works on a bounded number of inbound packets at once, across all its
// connections (FLEETHUB_MAX_IN_FLIGHT). Aedes reads a connection again as soon as the packets of
// its last read are handled, so under a sustained overload every connection's next packets were
// read, parsed and started while the ones before them still waited for Redis: thousands of
// requests in flight, each holding its promises, closures and buffers for hundreds of
// milliseconds. V8's young generation then copied 40 % of what it held at every scavenge, and
// garbage collection took a third of the CPU (docs/benchmarks.md, twin-reported).
//
// Past the limit, a connection whose turn it is to be read waits in line instead, its bytes left in
// its socket (TCP holds its sender back); connections are read in arrival order as packets finish.
// Below the limit nothing waits, so latency at ordinary load is unchanged.
//
// - A connection counts for at most PER_CONNECTION of its packets: one that sends a burst (Aedes
//   handles a whole read at once) cannot take the node's whole allowance.
// - The gate is for throughput, never a reason to stop: when no packet has finished for STUCK_MS
//   while connections wait (say, QoS 1 publishes all waiting for one slow subscriber), every
//   waiting connection is read, as if there were no gate.
//
// Aedes's own reading is kept (its `_nextBatch`, called on 'readable' and when a packet is done,
// reads once nothing of the last read is in progress). Calls that would read while the node is full
// are held back and replayed, in order, when it is the connection's turn.

import type { Duplex } from 'node:stream'

/** Default of FLEETHUB_MAX_IN_FLIGHT: measured in docs/benchmarks.md. */
export const MAX_IN_FLIGHT = 256
/** Most packets one connection counts for. */
export const PER_CONNECTION = 16
/** Waiting connections are all read when no packet has finished for this long. */
export const STUCK_MS = 50

/** The parts of an Aedes client that read its connection. */
interface ReadingClient {
  conn: Duplex
  closed: boolean
  /** Aedes: packets of the last read still in progress (plus one for the pending read). */
  _parsingBatch: number
  /** Aedes: called when a packet is done, and on 'readable'; reads once nothing is in progress. */
  _nextBatch: (err?: Error) => void
  _parser: { prependListener(event: 'packet', listener: (this: { client: GatedClient }) => void): unknown }
}

const kGate = Symbol('fleethub.gate')
type GatedClient = ReadingClient & { [kGate]?: Gate }

interface Gate {
  readonly client: ReadingClient
  /** Aedes's `_nextBatch`. */
  readonly read: (err?: Error) => void
  /** Packets of this connection in progress. */
  n: number
  /** Calls of `read` held back, replayed in order when it is this connection's turn. */
  owed: number
  queued: boolean
}

export interface Admission {
  /** Puts a new Aedes client behind the gate (before it has read anything). */
  admit(client: unknown): void
  /** Packets in progress, as counted (each connection for at most PER_CONNECTION). */
  readonly inFlight: number
  /** Connections waiting to be read. */
  readonly waiting: number
  /** Times a connection had to wait. */
  readonly waits: number
  /** Times the waiting connections were all read because nothing finished for STUCK_MS. */
  readonly unstuck: number
}

export interface AdmissionOptions {
  limit?: number
  perConnection?: number
  stuckMs?: number
}

export function createAdmission(opts: AdmissionOptions = {}): Admission {
  const limit = opts.limit ?? MAX_IN_FLIGHT
  const perConnection = opts.perConnection ?? PER_CONNECTION
  const stuckMs = opts.stuckMs ?? STUCK_MS
  let inFlight = 0
  /** Waiting connections, oldest at `head`. */
  const line: (Gate | undefined)[] = []
  let head = 0
  let releasing = false
  let waits = 0
  let unstuck = 0
  /** Packets finished, for the watchdog. */
  let finished = 0
  /** Whether the watchdog's timer is set. */
  let watching = false

  function enqueue(g: Gate) {
    g.owed++
    if (g.queued) return
    g.queued = true
    waits++
    line.push(g)
    if (!watching) {
      watching = true
      setTimeout(watch, stuckMs, finished).unref()
    }
  }

  function watch(seen: number) {
    watching = false
    if (head === line.length) return
    if (finished === seen) {
      unstuck++
      release(true)
    }
    if (head < line.length) {
      watching = true
      setTimeout(watch, stuckMs, finished).unref()
    }
  }

  /** Reads the waiting connections, in order, while there is room (all of them when `force`). */
  function release(force = false) {
    if (releasing) return
    releasing = true
    try {
      while ((force || inFlight < limit) && head < line.length) {
        const g = line[head] as Gate
        line[head++] = undefined
        g.queued = false
        const owed = g.owed
        g.owed = 0
        for (let i = 0; i < owed && !g.client.closed; i++) g.read()
      }
      if (head === line.length) {
        line.length = 0
        head = 0
      } else if (head >= 1024) {
        line.splice(0, head)
        head = 0
      }
    } finally {
      releasing = false
    }
  }

  function releaseIfRoom() {
    if (inFlight < limit && head < line.length) release()
  }

  /** Aedes's `read`, unless this call would read while the node is full or others wait. */
  function next(g: Gate, err?: Error) {
    if (err) return g.read(err)
    if (g.owed > 0 || (g.client._parsingBatch <= 1 && (inFlight >= limit || head < line.length))) {
      enqueue(g)
      return
    }
    g.read()
  }

  // what a connection adds is kept small (idle-memory): the gate's state, and one closure (Aedes
  // calls `_nextBatch` without a receiver); the other listeners are shared and find the gate
  // through the connection (`conn.client`, set by Aedes)
  function packetIn(this: { client: GatedClient }) {
    const g = this.client[kGate] as Gate
    if (g.n++ < perConnection) inFlight++
  }
  function readableGated(this: { client: GatedClient }) {
    next(this.client[kGate] as Gate)
    releaseIfRoom()
  }
  function connectionClosed(this: { client: GatedClient }) {
    const g = this.client[kGate] as Gate
    // packets it still had in progress no longer count (Aedes may never finish them)
    inFlight -= Math.min(g.n, perConnection)
    g.n = 0
    g.owed = 0
    releaseIfRoom()
  }

  return {
    admit(clientObject) {
      const client = clientObject as GatedClient
      const g: Gate = { client, read: client._nextBatch, n: 0, owed: 0, queued: false }
      client[kGate] = g
      client._parser.prependListener('packet', packetIn)
      client._nextBatch = function packetDone(err?: Error) {
        if (g.n > 0 && --g.n < perConnection) inFlight--
        finished++
        next(g, err)
        releaseIfRoom()
      }
      client.conn.removeListener('readable', g.read)
      client.conn.on('readable', readableGated)
      client.conn.on('close', connectionClosed)
    },
    get inFlight() {
      return inFlight
    },
    get waiting() {
      return line.length - head
    },
    get waits() {
      return waits
    },
    get unstuck() {
      return unstuck
    },
  }
}
