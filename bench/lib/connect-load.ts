// The CONNECT load generator: raw TCP sockets and mqtt-packet, no MQTT client library, so the
// generator's own cost stays small next to the broker's (its CPU use is measured to prove it).
// At most `concurrency` CONNECTs wait for their CONNACK at any time; accepted connections stay open
// until the caller closes them, as a real fleet's would. TCP only.
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import type { Identity } from './packets.js'
import { connectPacket } from './packets.js'
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

const HOST = '127.0.0.1'
const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' })
/** Sockets the generator is closing itself: their close is not a drop. */
const closing = new WeakSet<net.Socket>()

/** CONNECT packets are built before the clock starts: encoding is not what is being measured. */
function connectPackets(identities: readonly Identity[], keepaliveSec: number): Buffer[] {
  return identities.map((id) => connectPacket(id, keepaliveSec))
}

/** Opens one connection per device and resolves when every CONNECT has an outcome. */
export function runConnectLoad(opts: ConnectLoadOptions): Promise<ConnectLoadResult> {
  const packets = connectPackets(opts.identities, opts.keepaliveSec)
  const total = packets.length
  const result: ConnectLoadResult = { ok: 0, failures: {}, latenciesMs: [], windowMs: 0, dropped: 0, sockets: [] }
  let firstSentAt: number | undefined
  let lastAckAt: number | undefined
  let next = 0
  let inFlight = 0
  let settled = 0

  return new Promise((resolve) => {
    function fail(cause: string) {
      result.failures[cause] = (result.failures[cause] ?? 0) + 1
    }

    function launchMore() {
      while (inFlight < opts.concurrency && next < total) connectOne(packets[next++] as Buffer)
      if (settled === total) {
        result.windowMs = firstSentAt !== undefined && lastAckAt !== undefined ? lastAckAt - firstSentAt : 0
        resolve(result)
      }
    }

    function connectOne(packet: Buffer) {
      inFlight++
      const sock = net.connect({ host: HOST, port: opts.port, noDelay: true })
      const parser = mqttPacket.parser({ protocolVersion: 4 })
      let sentAt = 0
      let done = false
      const settle = (outcome: 'ok' | string) => {
        if (done) return
        done = true
        clearTimeout(timer)
        inFlight--
        settled++
        if (outcome === 'ok') {
          result.sockets.push(sock)
          sock.once('close', () => {
            if (!closing.has(sock)) result.dropped++
          })
        } else {
          fail(outcome)
          sock.destroy()
        }
        launchMore()
      }
      const timer = setTimeout(() => settle('timeout'), opts.timeoutMs)
      sock.once('connect', function sendConnect() {
        sentAt = nowMs()
        firstSentAt ??= sentAt
        sock.write(packet)
      })
      sock.on('data', (chunk) => parser.parse(chunk))
      parser.on('packet', function onPacket(p: Packet) {
        if (done || p.cmd !== 'connack') return
        const at = nowMs()
        lastAckAt = at
        result.latenciesMs.push(at - sentAt)
        if (p.returnCode === 0) {
          result.ok++
          settle('ok')
        } else settle(`connack-${p.returnCode}`)
      })
      parser.on('error', () => settle('bad-packet'))
      // errors after CONNACK (the broker going away) do not change the phase's outcome
      sock.on('error', (err: NodeJS.ErrnoException) => settle(`socket-${err.code ?? 'error'}`))
      sock.on('close', () => settle('closed'))
    }

    launchMore()
  })
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
