// Writes batched. A stream corked on its first write sends everything written to it until it is
// uncorked in one writev, one system call, instead of one per write. MQTT client connections are
// corked for the rest of the current tick (mqtt-packet writes a PUBLISH in five writes). Redis
// connections (ioredis writes each command on its own, and a registration sends a dozen) are corked
// for the rest of the event-loop turn, until the check phase: the commands of every socket read in
// one poll phase leave together. Measured against per-tick corking (docs/benchmarks.md):
// provision-storm 0.73 against 0.79 ms of broker CPU per registration, twin-reported saturated
// about 9 % more patches/s.
import { type Duplex, Writable } from 'node:stream'

function uncork(conn: Duplex) {
  conn.uncork()
}

// one shared function for every connection: sockets and WebSocket streams all write through
// Writable.prototype.write
function corkedWrite(this: Duplex, ...args: Parameters<Duplex['write']>) {
  if (this.writableCorked === 0) {
    this.cork()
    process.nextTick(uncork, this)
  }
  return Writable.prototype.write.apply(this, args)
}

/** Makes `conn` batch the writes of one tick; for streams that lack writev, teaches them one. */
export function autoCork(conn: Duplex, writev?: (chunks: Buffer[], cb: (err?: Error | null) => void) => void): void {
  conn.write = corkedWrite as Duplex['write']
  if (writev) {
    ;(conn as unknown as { _writev: unknown })._writev = function writevChunks(
      chunks: { chunk: Buffer | string }[],
      cb: (err?: Error | null) => void,
    ) {
      writev(
        chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk) : c.chunk)),
        cb,
      )
    }
  }
}

// for Redis connections: uncorked by setImmediate, after the poll phase's callbacks
function corkedWriteTurn(this: Duplex, ...args: Parameters<Duplex['write']>) {
  if (this.writableCorked === 0) {
    this.cork()
    setImmediate(uncork, this)
  }
  return Writable.prototype.write.apply(this, args)
}

/** An ioredis client whose connection, and each one it reconnects with, batches a turn's commands. */
export function autoCorkRedis<C extends { stream: Duplex; on(event: 'connect', listener: () => void): unknown }>(
  client: C,
): C {
  client.on('connect', () => {
    client.stream.write = corkedWriteTurn as Duplex['write']
  })
  return client
}
