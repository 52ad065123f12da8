// The loop under the raw-socket load generators (connect-load.ts, provision-load.ts): one TCP
// connection per item, at most `concurrency` of them between their first packet and their outcome,
// MQTT packets read with mqtt-packet's parser, no client library (the generator's own cost stays
// small next to the broker's). An exchange ends once, with 'ok' or a failure cause; failures are
// counted here, what an outcome means is the caller's.
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { nowMs } from './time.js'

const HOST = '127.0.0.1'

export interface Exchange {
  readonly sock: net.Socket
  /** When the first packet was written (nowMs). */
  readonly sentAt: number
  /** True once the exchange has its outcome (packets may still come). */
  readonly done: boolean
  /** Ends the exchange: 'ok' or a failure cause (`timeout`, `closed`, `socket-ECONNRESET`…); once. */
  settle(outcome: string): void
}

export interface SocketLoadOptions<T> {
  port: number
  items: readonly T[]
  concurrency: number
  /** An exchange without an outcome after this long fails with "timeout". */
  timeoutMs: number
  /** The packet written as soon as the connection is up (built before the clock starts). */
  first(item: T): Buffer
  onPacket(p: Packet, x: Exchange, item: T): void
  /** An exchange has its outcome: true keeps its connection (someone else closes it), false destroys it. */
  keep(outcome: string, x: Exchange, item: T): boolean
  /** A connection closed, with or before its outcome. */
  onClose?(sock: net.Socket): void
}

export interface SocketLoadResult {
  /** Failures by cause. */
  failures: Record<string, number>
  /** When the first packet of all was written (undefined: none was). */
  firstSentAt: number | undefined
}

/** Runs one exchange per item; resolves when each has its outcome. */
export function runSocketLoad<T>(o: SocketLoadOptions<T>): Promise<SocketLoadResult> {
  const total = o.items.length
  const result: SocketLoadResult = { failures: {}, firstSentAt: undefined }
  let next = 0
  let inFlight = 0
  let settled = 0

  return new Promise((resolve) => {
    function launchMore() {
      while (inFlight < o.concurrency && next < total) exchange(o.items[next++] as T)
      if (settled === total) resolve(result)
    }

    function exchange(item: T) {
      inFlight++
      const sock = net.connect({ host: HOST, port: o.port, noDelay: true })
      const parser = mqttPacket.parser({ protocolVersion: 4 })
      const x = {
        sock,
        sentAt: 0,
        done: false,
        settle(outcome: string) {
          if (x.done) return
          x.done = true
          clearTimeout(timer)
          inFlight--
          settled++
          if (outcome !== 'ok') result.failures[outcome] = (result.failures[outcome] ?? 0) + 1
          if (!o.keep(outcome, x, item)) sock.destroy()
          launchMore()
        },
      }
      const timer = setTimeout(() => x.settle('timeout'), o.timeoutMs)
      sock.once('connect', function sendFirst() {
        x.sentAt = nowMs()
        result.firstSentAt ??= x.sentAt
        sock.write(o.first(item))
      })
      sock.on('data', (chunk) => parser.parse(chunk))
      parser.on('packet', (p: Packet) => o.onPacket(p, x, item))
      parser.on('error', () => x.settle('bad-packet'))
      // errors after the outcome (the broker going away) do not change it
      sock.on('error', (err: NodeJS.ErrnoException) => x.settle(`socket-${err.code ?? 'error'}`))
      sock.on('close', () => {
        o.onClose?.(sock)
        x.settle('closed')
      })
    }

    launchMore()
  })
}
