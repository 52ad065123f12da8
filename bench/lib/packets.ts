// MQTT 3.1.1 packets the generator sends. CONNECT, SUBSCRIBE and DISCONNECT come from mqtt-packet
// (rare, correctness matters more than cost); PUBLISH and PUBACK are laid out by hand into batch
// buffers, because they are what the generator writes hundreds of thousands of times a second.
import mqttPacket from 'mqtt-packet'
import { PAYLOAD_SIZE, payloadTemplate, stamp } from './payload.js'

export interface Identity {
  clientId: string
  username?: string
  password?: string
}

export function connectPacket(id: Identity, keepaliveSec: number): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: id.clientId,
    keepalive: keepaliveSec,
    ...(id.username !== undefined ? { username: id.username } : {}),
    ...(id.password !== undefined ? { password: Buffer.from(id.password) } : {}),
  })
}

export function subscribePacket(messageId: number, filters: readonly string[], qos: 0 | 1): Buffer {
  return mqttPacket.generate({
    cmd: 'subscribe',
    messageId,
    subscriptions: filters.map((topic) => ({ topic, qos })),
  })
}

export const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' })
export const PINGREQ = mqttPacket.generate({ cmd: 'pingreq' })

function remainingLength(n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

/** A PUBLISH laid out once; each message is a copy with its stamp (and packet id) filled in. */
export interface PublishLayout {
  readonly frame: Buffer
  readonly size: number
  /** Offset of the packet id (QoS 1), or -1. */
  readonly idAt: number
  readonly payloadAt: number
}

/** A PUBLISH frame with its fixed header and topic written, and room for a payload of `payloadSize`. */
function publishFrame(topic: Buffer, qos: 0 | 1, payloadSize: number): PublishLayout {
  const body = 2 + topic.length + (qos > 0 ? 2 : 0) + payloadSize
  const head = [0x30 | (qos << 1), ...remainingLength(body)]
  const frame = Buffer.alloc(head.length + body)
  Buffer.from(head).copy(frame, 0)
  frame.writeUInt16BE(topic.length, head.length)
  topic.copy(frame, head.length + 2)
  const idAt = qos > 0 ? head.length + 2 + topic.length : -1
  const payloadAt = head.length + 2 + topic.length + (qos > 0 ? 2 : 0)
  return { frame, size: frame.length, idAt, payloadAt }
}

export function publishLayout(topic: string, qos: 0 | 1): PublishLayout {
  const layout = publishFrame(Buffer.from(topic), qos, PAYLOAD_SIZE)
  payloadTemplate().copy(layout.frame, layout.payloadAt)
  return layout
}

/**
 * One PUBLISH with any payload, for the request/answer scenarios (twin patches, command answers),
 * whose payloads are JSON envelopes of varying size rather than the fixed stamped payload.
 */
export function publishPacket(topic: Buffer, payload: Buffer, qos: 0 | 1, packetId: number): Buffer {
  const { frame, idAt, payloadAt } = publishFrame(topic, qos, payload.length)
  if (idAt >= 0) frame.writeUInt16BE(packetId, idAt)
  payload.copy(frame, payloadAt)
  return frame
}

/** Writes one stamped PUBLISH at `at` in `buf`. */
export function putPublish(
  buf: Buffer,
  at: number,
  layout: PublishLayout,
  publisher: number,
  seq: number,
  time: Buffer,
  packetId: number,
): void {
  layout.frame.copy(buf, at)
  if (layout.idAt >= 0) buf.writeUInt16BE(packetId, at + layout.idAt)
  stamp(buf, at + layout.payloadAt, publisher, seq, time)
}

/** Writes a PUBACK for `packetId` at `at`; 4 bytes. */
export function putPuback(buf: Buffer, at: number, packetId: number): void {
  buf[at] = 0x40
  buf[at + 1] = 2
  buf.writeUInt16BE(packetId, at + 2)
}
