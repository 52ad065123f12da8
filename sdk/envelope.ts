// Request envelopes as the device sends them: `{rid, …}` in JSON or MessagePack (plain maps, the
// broker's own codec in registry/envelope.ts), and the rids that tie answers to requests.
import { randomBytes } from 'node:crypto'
import { decodeEnvelope, type Encoding, encodeEnvelope } from '../registry/envelope.js'

export type { Encoding }
export { decodeEnvelope }

export const ENCODINGS: readonly Encoding[] = ['json', 'msgpack']

/**
 * Encodes `{rid, ...fields}`. MessagePack gets the value's JSON form, so both encodings mean the
 * same thing: JSON drops `undefined` properties and writes dates as strings, while MessagePack
 * would send them as values the broker refuses.
 */
export function encodeRequest(rid: string, fields: Record<string, unknown>, encoding: Encoding): Buffer {
  const envelope = { rid, ...fields }
  if (encoding === 'json') return encodeEnvelope(envelope, 'json')
  return encodeEnvelope(JSON.parse(JSON.stringify(envelope)), 'msgpack')
}

/**
 * Rids unique on this connection and unlikely to meet an answer meant for an earlier run of the
 * same device (whose requests may still be answered after a restart): a random prefix and a counter.
 */
export function createRidSource(): () => string {
  const prefix = randomBytes(4).toString('hex')
  let n = 0
  return function nextRid() {
    n = (n + 1) % Number.MAX_SAFE_INTEGER
    return `${prefix}-${n.toString(36)}`
  }
}
