// Input guards on each connection's MQTT parser (mqtt-packet, pinned), which by itself buffers a
// packet of any announced length and decodes strings without checking them:
// - a packet whose announced length exceeds the limit closes the connection as soon as its fixed
//   header is read, before any of it is buffered;
// - a string (client id, topic, user name) that is not well-formed UTF-8 or holds U+0000 closes the
//   connection [MQTT-1.5.3-1] [MQTT-1.5.3-2].
// The extra work on the hot path is one comparison per packet and one indexOf per string; the
// strict UTF-8 check runs only when the decoder had to substitute a character.
import { isUtf8 } from 'node:buffer'

export class PacketTooLargeError extends Error {
  readonly reason = 'packet_too_large'
}

export class InvalidUtf8Error extends Error {
  readonly reason = 'invalid_utf8'
}

interface BufferList {
  length: number
  toString(enc: string, start: number, end: number): string
  slice(start: number, end: number): Buffer
}

/** The parts of mqtt-packet's Parser these guards wrap (see node_modules/mqtt-packet/parser.js). */
interface ParserInternals {
  packet: { length: number; cmd?: string }
  error: Error | null
  _list: BufferList
  _pos: number
  _parseLength(): boolean
  _parseNum(): number
  _parseString(): string | null
  _emitError(err: Error): void
}

export function guardParser(parserObject: unknown, maxPacketSize: number): void {
  const parser = parserObject as ParserInternals
  const parseLength = parser._parseLength
  const emitError = parser._emitError

  parser._emitError = function emitFirstError(err: Error) {
    // a guard's error is the one worth reporting; the parser's follow-up complaint is not
    if (this.error) return
    emitError.call(this, err)
  }

  parser._parseLength = function parseLengthWithLimit() {
    const complete = parseLength.call(this)
    if (complete && this.packet.length > maxPacketSize) {
      this._emitError(
        new PacketTooLargeError(
          `${this.packet.cmd ?? 'packet'} of ${this.packet.length} bytes exceeds ${maxPacketSize}`,
        ),
      )
      return false
    }
    return complete
  }

  parser._parseString = function parseStrictString() {
    const length = this._parseNum()
    const end = length + this._pos
    if (length === -1 || end > this._list.length || end > this.packet.length) return null
    const result = this._list.toString('utf8', this._pos, end)
    if (
      (result.indexOf('\uFFFD') !== -1 && !isUtf8(this._list.slice(this._pos, end))) ||
      result.indexOf('\u0000') !== -1
    ) {
      this._emitError(new InvalidUtf8Error('a string in the packet is not well-formed UTF-8'))
      return null
    }
    this._pos += length
    return result
  }
}
