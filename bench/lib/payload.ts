// The 64-byte payload of every generated message: JSON (device telemetry is JSON by convention)
// with fixed-width hex fields at fixed offsets, so writing and reading one costs a few table look-ups:
//   {"p":"PPPP","s":"SSSSSSSS","t":"TTTTTTTTTTTTTTTT","x":"xxxxxxx"}
// p: publisher index, s: sequence number of that publisher, t: send time (performance.now(), the
// bits of the float64), so a subscriber in the same process computes latency with no clock skew.
export const PAYLOAD_SIZE = 64
const TEMPLATE = Buffer.from('{"p":"0000","s":"00000000","t":"0000000000000000","x":"xxxxxxx"}')
if (TEMPLATE.length !== PAYLOAD_SIZE) throw new Error(`payload template is ${TEMPLATE.length} bytes`)

const P_AT = 6
const S_AT = 17
const T_AT = 32

const HEX = Buffer.from('0123456789abcdef')
const NIBBLE = new Int8Array(256).fill(-1)
for (let i = 0; i < 16; i++) NIBBLE[HEX[i] as number] = i

export function payloadTemplate(): Buffer {
  return Buffer.from(TEMPLATE)
}

function writeHex(buf: Buffer, at: number, value: number, digits: number): void {
  for (let i = digits - 1; i >= 0; i--) {
    buf[at + i] = HEX[value & 15] as number
    value >>>= 4
  }
}

function readHex(buf: Buffer, at: number, digits: number): number {
  let v = 0
  for (let i = 0; i < digits; i++) {
    const n = NIBBLE[buf[at + i] as number] as number
    if (n < 0) return -1
    v = v * 16 + n
  }
  return v
}

const f64 = new Float64Array(1)
const f64Bytes = new Uint8Array(f64.buffer)

/** The 16 hex digits of a send time, computed once per batch and copied into each payload. */
export function timeHex(ms: number): Buffer {
  f64[0] = ms
  const out = Buffer.allocUnsafe(16)
  for (let i = 0; i < 8; i++) {
    const b = f64Bytes[7 - i] as number // big-endian reading order
    out[i * 2] = HEX[b >> 4] as number
    out[i * 2 + 1] = HEX[b & 15] as number
  }
  return out
}

/** Fills in publisher, sequence and send time of a payload that starts at `at` in `buf`. */
export function stamp(buf: Buffer, at: number, publisher: number, seq: number, time: Buffer): void {
  writeHex(buf, at + P_AT, publisher, 4)
  writeHex(buf, at + S_AT, seq, 8)
  time.copy(buf, at + T_AT)
}

export interface Stamp {
  publisher: number
  seq: number
  sentAt: number
}

/** Reads a payload at [start, end); false when it is not one of ours (wrong size or digits). */
export function readStamp(buf: Buffer, start: number, end: number, out: Stamp): boolean {
  if (end - start !== PAYLOAD_SIZE) return false
  const p = readHex(buf, start + P_AT, 4)
  const s = readHex(buf, start + S_AT, 8)
  if (p < 0 || s < 0) return false
  for (let i = 0; i < 8; i++) {
    const hi = NIBBLE[buf[start + T_AT + i * 2] as number] as number
    const lo = NIBBLE[buf[start + T_AT + i * 2 + 1] as number] as number
    if (hi < 0 || lo < 0) return false
    f64Bytes[7 - i] = (hi << 4) | lo
  }
  out.publisher = p
  out.seq = s
  out.sentAt = f64[0] as number
  return true
}
