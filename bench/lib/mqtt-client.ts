// One generator client: a wire, a frame reader and just enough MQTT 3.1.1 for the benchmarks:
// CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH in both directions at QoS 0 and 1, PUBACK. Received
// QoS 1 messages are acknowledged in one write per chunk read; what the client does with a message
// or a PUBACK is up to its handlers (the delivery tracker, the publishers' windows).
import { CONNACK, frameReader, PUBACK, PUBLISH, packetType, SUBACK } from './frames.js'
import { connectPacket, DISCONNECT, type Identity, putPuback, subscribePacket } from './packets.js'
import type { Transport } from './target.js'
import { nowMs } from './time.js'
import { openWire, type Wire } from './wire.js'

export type { Identity } from './packets.js'

export interface ClientHandlers {
  /** A PUBLISH arrived; its payload is buf[start, end); `now` is the time the chunk was read. */
  message?(buf: Buffer, start: number, end: number, now: number): void
  puback?(packetId: number): void
  /** The connection is gone; `why` is an error code or `closed`. */
  closed?(why: string): void
}

export interface ConnectOptions {
  transport: Transport
  port: number
  identity: Identity
  timeoutMs: number
  /** Keep-alive announced in CONNECT: long, so no PINGREQ falls due during a measurement. */
  keepaliveSec?: number
  /** Read at most once per this many ms (see lib/wire.ts); 0 or unset: read as data arrives. */
  paceReadsMs?: number
}

export class ConnectRefused extends Error {
  readonly returnCode: number
  constructor(clientId: string, returnCode: number) {
    super(`CONNECT of ${clientId} refused with return code ${returnCode}`)
    this.returnCode = returnCode
  }
}

const KEEPALIVE_SEC = 600
const ACK_BATCH = 4096

type Waiter = { resolve(value: Buffer): void; reject(err: Error): void }

export class BenchClient {
  readonly wire: Wire
  readonly clientId: string
  handlers: ClientHandlers = {}
  /** Why and when the connection closed, once it has. */
  closedWhy: string | undefined
  closedAt: number | undefined
  private closing = false
  private waiting = new Map<string, Waiter>()
  private acks = Buffer.allocUnsafe(ACK_BATCH * 4)
  private ackCount = 0
  private nextMessageId = 1

  constructor(wire: Wire, clientId: string) {
    this.wire = wire
    this.clientId = clientId
    const reader = frameReader((first, buf, start, end) => this.onFrame(first, buf, start, end))
    wire.onData((chunk) => {
      this.now = nowMs()
      try {
        reader.push(chunk)
      } catch (err) {
        this.fail(err as Error)
        return
      }
      this.flushAcks()
    })
    wire.onClose((why) => {
      this.closedWhy = this.closing ? 'closed by the bench' : why
      this.closedAt = nowMs()
      for (const w of this.waiting.values()) w.reject(new Error(`${clientId}: connection closed (${why})`))
      this.waiting.clear()
      this.handlers.closed?.(this.closedWhy)
    })
  }

  private now = 0

  get isClosed(): boolean {
    return this.closedWhy !== undefined
  }

  private onFrame(first: number, buf: Buffer, start: number, end: number): void {
    const type = packetType(first)
    if (type === PUBLISH) {
      const qos = (first >> 1) & 3
      let at = start + 2 + buf.readUInt16BE(start)
      if (qos > 0) {
        this.queueAck(buf.readUInt16BE(at))
        at += 2
      }
      this.handlers.message?.(buf, at, end, this.now)
    } else if (type === PUBACK) {
      this.handlers.puback?.(buf.readUInt16BE(start))
    } else if (type === CONNACK) {
      this.settle('connack', buf.subarray(start, end))
    } else if (type === SUBACK) {
      this.settle(`suback-${buf.readUInt16BE(start)}`, buf.subarray(start + 2, end))
    }
  }

  private queueAck(packetId: number): void {
    if (this.ackCount === ACK_BATCH) this.flushAcks()
    putPuback(this.acks, this.ackCount * 4, packetId)
    this.ackCount++
  }

  private flushAcks(): void {
    if (this.ackCount === 0 || this.isClosed) return
    this.wire.write(Buffer.from(this.acks.subarray(0, this.ackCount * 4)))
    this.ackCount = 0
  }

  private settle(key: string, body: Buffer): void {
    const w = this.waiting.get(key)
    if (!w) return
    this.waiting.delete(key)
    w.resolve(Buffer.from(body))
  }

  private fail(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err)
    this.waiting.clear()
    this.wire.destroy()
  }

  /** Waits for the answer `key` (`connack`, `suback-<id>`), bounded by `timeoutMs`. */
  expect(key: string, timeoutMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.isClosed) return reject(new Error(`${this.clientId}: connection closed (${this.closedWhy})`))
      const timer = setTimeout(() => {
        this.waiting.delete(key)
        reject(new Error(`${this.clientId}: no ${key.replace(/-\d+$/, '')} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(key, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
    })
  }

  /** Subscribes and returns the granted QoS per filter (0x80: refused). */
  async subscribe(filters: readonly string[], qos: 0 | 1, timeoutMs: number): Promise<number[]> {
    const id = this.nextMessageId++
    const answer = this.expect(`suback-${id}`, timeoutMs)
    this.wire.write(subscribePacket(id, filters, qos))
    return [...(await answer)]
  }

  /** Sends DISCONNECT and closes; the close is not reported as a drop. */
  disconnect(): void {
    if (this.isClosed) return
    this.closing = true
    this.wire.end(DISCONNECT)
  }

  destroy(): void {
    this.closing = true
    this.wire.destroy()
  }
}

/** Opens the wire, sends CONNECT and resolves with the client once CONNACK 0 arrived. */
export async function connectClient(opts: ConnectOptions): Promise<BenchClient> {
  const wire = await openWire({
    transport: opts.transport,
    port: opts.port,
    timeoutMs: opts.timeoutMs,
    paceReadsMs: opts.paceReadsMs ?? 0,
  })
  const client = new BenchClient(wire, opts.identity.clientId)
  const answer = client.expect('connack', opts.timeoutMs)
  wire.write(connectPacket(opts.identity, opts.keepaliveSec ?? KEEPALIVE_SEC))
  try {
    const body = await answer
    const rc = body[1] ?? 255
    if (rc !== 0) throw new ConnectRefused(opts.identity.clientId, rc)
    return client
  } catch (err) {
    client.destroy()
    throw err
  }
}
