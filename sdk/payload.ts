// JSON payload coding. Decoding never throws: a payload that is not JSON (a compact binary frame, a
// broken device) is `undefined`, which no JSON text can produce, so callers can tell the two apart.

export function encodeJson(value: unknown): Buffer {
  const text = JSON.stringify(value)
  // JSON.stringify answers undefined for undefined, functions and symbols: nothing to send
  if (text === undefined) throw new TypeError('the value has no JSON form')
  return Buffer.from(text)
}

export function decodeJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'))
  } catch {
    return undefined
  }
}
