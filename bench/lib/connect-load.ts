// The CONNECT load generator, on socket-load.ts: raw TCP sockets and mqtt-packet, no MQTT client
// library, so the generator's own cost stays small next to the broker's (its CPU use is measured).
// At most `concurrency` CONNECTs wait for their CONNACK at any time; accepted connections stay open
// until the caller closes them, as a real fleet's would. TCP only.
import type net from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { Identity } from './packets.js'
import { connectPacket } from './packets.js'
import { runSocketLoad } from './socket-load.js'
import { nowMs } from './time.js'

export interface ConnectLoadOptions {
  port: number
  /** One connection per identity. */
  identities: readonly Identity[]
  concurrency: number
  /** A CONNECT without CONNACK after this long counts as a failure ("timeout"). */
  timeoutMs: number
  /** Keep-alive announced in CONNECT, long enough that no PINGREQ is due during a phase. */
  keepaliveSec: number
}

export interface ConnectLoadResult {
  /** Accepted connections (CONNACK 0). */
  ok: number
  /** Failures by cause: `connack-4`, `timeout`, `socket-ECONNRESET`, `closed`. */
  failures: Record<string, number>
  /** CONNECT written → CONNACK read, in ms, for every CONNACK (accepted or not). */
  latenciesMs: number[]
  /** First CONNECT written → last CONNACK read, in ms (0 when no CONNACK came). */
  windowMs: number
  /** Accepted connections the broker closed before closeConnections (a kick or a crash), so far. */
  dropped: number
  /** The open connections, for the caller to close. */
  sockets: net.Socket[]
}

const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' })
/** Sockets the generator is closing itself: their close is not a drop. */
const closing = new WeakSet<net.Socket>()

/** CONNECT packets are built before the clock starts: encoding is not what is being measured. */
function connectPackets(identities: readonly Identity[], keepaliveSec: number): Buffer[] {
  return identities.map((id) => connectPacket(id, keepaliveSec))
}

/** Opens one connection per device and resolves when every CONNECT has an outcome. */
export async function runConnectLoad(opts: ConnectLoadOptions): Promise<ConnectLoadResult> {
  const result: ConnectLoadResult = { ok: 0, failures: {}, latenciesMs: [], windowMs: 0, dropped: 0, sockets: [] }
  let lastAckAt: number | undefined
  const run = await runSocketLoad({
    port: opts.port,
    items: connectPackets(opts.identities, opts.keepaliveSec),
    concurrency: opts.concurrency,
    timeoutMs: opts.timeoutMs,
    first: (packet) => packet,
    onPacket(p, x) {
      if (x.done || p.cmd !== 'connack') return
      const at = nowMs()
      lastAckAt = at
      result.latenciesMs.push(at - x.sentAt)
      x.settle(p.returnCode === 0 ? 'ok' : `connack-${p.returnCode}`)
    },
    keep(outcome, x) {
      if (outcome !== 'ok') return false
      result.ok++
      result.sockets.push(x.sock)
      x.sock.once('close', () => {
        if (!closing.has(x.sock)) result.dropped++
      })
      return true
    },
  })
  result.failures = run.failures
  result.windowMs = run.firstSentAt !== undefined && lastAckAt !== undefined ? lastAckAt - run.firstSentAt : 0
  return result
}

/** Sends DISCONNECT on every socket and waits (bounded) until all are closed; the rest are destroyed. */
export async function closeConnections(sockets: readonly net.Socket[], timeoutMs: number): Promise<void> {
  const closed = sockets.map(
    (s) =>
      new Promise<void>((resolve) => {
        closing.add(s)
        if (s.destroyed) return resolve()
        s.once('close', () => resolve())
        s.end(DISCONNECT)
      }),
  )
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs)
  })
  await Promise.race([Promise.all(closed), deadline])
  clearTimeout(timer)
  for (const s of sockets) s.destroy()
}
