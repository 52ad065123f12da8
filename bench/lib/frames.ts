// Splits the bytes a client receives into MQTT packets without building objects: the generator
// reads every delivery of every subscriber, and mqtt-packet's parser (an object and a topic string
// per packet) would make the generator, not the broker, the limit at high rates.

/** Called per packet: the first byte (type and flags) and the body's bounds in `buf`. */
export type FrameListener = (first: number, buf: Buffer, start: number, end: number) => void

export class MalformedFrame extends Error {}

export interface FrameReader {
  push(chunk: Buffer): void
}

export function frameReader(onFrame: FrameListener): FrameReader {
  let rest: Buffer | undefined
  return {
    push(chunk) {
      const buf = rest ? Buffer.concat([rest, chunk]) : chunk
      rest = undefined
      let pos = 0
      while (pos < buf.length) {
        // remaining length: 1 to 4 bytes, 7 bits each [MQTT-2.2.3]
        let len = 0
        let mul = 1
        let i = pos + 1
        let complete = false
        while (i < buf.length && i - pos <= 4) {
          const b = buf[i++] as number
          len += (b & 0x7f) * mul
          mul *= 128
          if (b < 0x80) {
            complete = true
            break
          }
        }
        if (!complete) {
          if (i - pos > 4) throw new MalformedFrame('remaining length longer than 4 bytes')
          break // the rest of the header is in the next chunk
        }
        if (i + len > buf.length) break
        onFrame(buf[pos] as number, buf, i, i + len)
        pos = i + len
      }
      // a partial packet waits for the next chunk; copied, since the chunk's memory is reused
      if (pos < buf.length) rest = Buffer.from(buf.subarray(pos))
    },
  }
}

export const PUBLISH = 3
export const PUBACK = 4
export const CONNACK = 2
export const SUBACK = 9
export const PINGRESP = 13

export function packetType(first: number): number {
  return first >> 4
}
