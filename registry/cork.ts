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

/** A write that corks the stream on its first write and has `uncorkLater` uncork it. */
function corkingWrite(uncorkLater: (uncork: (conn: Duplex) => void, conn: Duplex) => void) {
  return function corkedWrite(this: Duplex, ...args: Parameters<Duplex['write']>) {
    if (this.writableCorked === 0) {
      this.cork()
      uncorkLater(uncork, this)
    }
    return Writable.prototype.write.apply(this, args)
  } as Duplex['write']
}

// one shared write per kind of connection (sockets, WebSocket streams and ioredis's sockets all
// write through Writable.prototype.write). MQTT client connections: uncorked at the end of the tick.
const corkedForTick = corkingWrite(process.nextTick)
// Redis connections: uncorked by setImmediate, after the poll phase's callbacks.
const corkedForTurn = corkingWrite(setImmediate)

/** Makes `conn` batch the writes of one tick; for streams that lack writev, teaches them one. */
export function autoCork(conn: Duplex, writev?: (chunks: Buffer[], cb: (err?: Error | null) => void) => void): void {
  conn.write = corkedForTick
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

/** An ioredis client whose connection, and each one it reconnects with, batches a turn's commands. */
export function autoCorkRedis<C extends { stream: Duplex; on(event: 'connect', listener: () => void): unknown }>(
  client: C,
): C {
  client.on('connect', () => {
    client.stream.write = corkedForTurn
  })
  return client
}
