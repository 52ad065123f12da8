// Writes batched per event-loop turn. A stream corked for the rest of the current tick on its first
// write sends everything written to it in that tick in one writev, one system call, instead of one
// per write: MQTT client connections (mqtt-packet writes a PUBLISH in five writes) and the Redis
// connections (ioredis writes each command on its own, and a registration sends a dozen).
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

/** An ioredis client whose connection, and each one it reconnects with, batches a tick's commands. */
export function autoCorkRedis<C extends { stream: Duplex; on(event: 'connect', listener: () => void): unknown }>(
  client: C,
): C {
  client.on('connect', () => autoCork(client.stream))
  return client
}
