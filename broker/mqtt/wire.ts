// Cheap writes to a client connection. mqtt-packet writes a PUBLISH in five stream writes (header,
// length, topic length, topic, payload); uncorked, each became a system call. Every connection is
// corked for the rest of the current tick on its first write (registry/cork.ts), so everything
// written to it in one tick leaves in one writev. QoS 0 deliveries, and QoS 1 ones to clean
// sessions, are encoded here in one buffer, and a QoS 0 message going to many subscribers is
// encoded once.
import mqttPacket from 'mqtt-packet'

// mqtt-packet's default is to build, on its first write, 65,536 two-byte buffers for message ids
// and lengths (about 6.5 MB of heap for the life of the process); corked writes make the per-write
// allocation it saves negligible.
;(mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = false

function varIntLength(n: number): number {
  return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4
}

/** A QoS 0 PUBLISH packet, in one buffer [MQTT-3.3]. */
export function encodePublish0(topic: string, payload: Buffer, retain: boolean): Buffer {
  return encodePublish(topic, payload, retain, 0)
}

/** A PUBLISH packet in one buffer [MQTT-3.3]: QoS 0, or QoS 1 with its packet identifier. */
export function encodePublish(topic: string, payload: Buffer, retain: boolean, messageId: number): Buffer {
  const topicLength = Buffer.byteLength(topic)
  const idLength = messageId > 0 ? 2 : 0
  const remaining = 2 + topicLength + idLength + payload.length
  const buf = Buffer.allocUnsafe(1 + varIntLength(remaining) + remaining)
  let i = 0
  buf[i++] = (idLength > 0 ? 0x32 : 0x30) | (retain ? 1 : 0)
  let n = remaining
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    buf[i++] = byte
  } while (n > 0)
  buf.writeUInt16BE(topicLength, i)
  i += 2
  i += buf.write(topic, i, 'utf8')
  if (idLength > 0) {
    buf.writeUInt16BE(messageId, i)
    i += 2
  }
  payload.copy(buf, i)
  return buf
}

interface Encodable {
  topic: string
  payload: Buffer
  retain: boolean
  brokerId?: string | null
  brokerCounter?: number
}

// The last message encoded: a message fanned out to many subscribers is delivered to all of them in
// one pass of the bus, so one slot is enough.
let lastId: string | null | undefined
let lastCounter: number | undefined
let lastRetain = false
let lastBuffer: Buffer | undefined

export function encodeOnce(p: Encodable): Buffer {
  if (p.brokerId && p.brokerId === lastId && p.brokerCounter === lastCounter && p.retain === lastRetain) {
    return lastBuffer as Buffer
  }
  const buf = encodePublish0(p.topic, p.payload, p.retain)
  lastId = p.brokerId
  lastCounter = p.brokerCounter
  lastRetain = p.retain
  lastBuffer = buf
  return buf
}
