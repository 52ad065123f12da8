// A publishing client of the generator: its topic's PUBLISH layout, its sequence numbers, its QoS 1
// packet ids and PUBACKs. Messages go out in batches: many PUBLISH packets laid out in one buffer
// and written with one call, so the generator pays one syscall per batch, not per message.
import type { BenchClient } from './mqtt-client.js'
import { type PublishLayout, publishLayout, putPublish } from './packets.js'
import { timeHex } from './payload.js'
import { nowMs } from './time.js'

/** QoS 1 packet ids in use at most: the 16-bit id space, less a margin. */
export const MAX_PACKET_IDS = 65_000

export class Publisher {
  readonly index: number
  readonly client: BenchClient
  readonly qos: 0 | 1
  readonly layout: PublishLayout
  /** Messages written so far; also the next sequence number. */
  sent = 0
  /** PUBACKs received (QoS 1). */
  acked = 0
  /** PUBACKs whose packet id matched no message in flight (should stay 0). */
  strayAcks = 0
  /** Sequence number in flight under each packet id, -1 when the id is free (QoS 1). */
  private seqOfId: Int32Array | undefined
  private nextId = 1
  /** Acknowledged sequence numbers, when the caller needs to check each one was delivered. */
  readonly ackedSeqs: number[] | undefined
  onAck: (() => void) | undefined

  constructor(index: number, client: BenchClient, topic: string, qos: 0 | 1, keepAckedSeqs = false) {
    this.index = index
    this.client = client
    this.qos = qos
    this.layout = publishLayout(topic, qos)
    if (qos > 0) this.seqOfId = new Int32Array(65_536).fill(-1)
    if (keepAckedSeqs) this.ackedSeqs = []
    client.handlers.puback = (id) => this.onPuback(id)
  }

  get unacked(): number {
    return this.qos > 0 ? this.sent - this.acked : 0
  }

  private onPuback(id: number): void {
    const seqs = this.seqOfId
    if (!seqs || (seqs[id] as number) < 0) {
      this.strayAcks++
      return
    }
    this.ackedSeqs?.push(seqs[id] as number)
    seqs[id] = -1
    this.acked++
    this.onAck?.()
  }

  /** Packet ids free for new QoS 1 messages (unbounded for QoS 0). */
  idsFree(): number {
    return this.qos > 0 ? MAX_PACKET_IDS - this.unacked : Number.POSITIVE_INFINITY
  }

  private takeId(seq: number): number {
    const seqs = this.seqOfId as Int32Array
    // ids are reused in order; with at most MAX_PACKET_IDS in flight a free one is found quickly
    for (let tries = 0; tries < 65_535; tries++) {
      const id = this.nextId
      this.nextId = id === 65_535 ? 1 : id + 1
      if ((seqs[id] as number) < 0) {
        seqs[id] = seq
        return id
      }
    }
    throw new Error(`${this.client.clientId}: no free packet id`)
  }

  /** Writes `count` messages in one write; returns what write() returned (false: wait for drain). */
  writeBatch(count: number): boolean {
    const size = this.layout.size
    const buf = Buffer.allocUnsafe(count * size)
    const time = timeHex(nowMs())
    for (let i = 0; i < count; i++) {
      const seq = this.sent++
      const id = this.qos > 0 ? this.takeId(seq) : 0
      putPublish(buf, i * size, this.layout, this.index, seq, time, id)
    }
    return this.client.wire.write(buf)
  }
}
