// The byte pipe under one generator client: a TCP socket, or a WebSocket (ws 8) carrying MQTT in
// binary messages (one message may hold several MQTT packets [MQTT-6.0.0]). Both expose the same
// small surface, so the MQTT code above does not care which it is.
//
// TCP reads can be paced: a paced wire stops reading after each read and starts again on the next
// pacer tick (every few ms). A fast generator would otherwise wake up and read once per message
// (brokers write each PUBLISH on its own, with TCP_NODELAY), and those wake-ups, not the broker,
// would cap the figures. The kernel buffers what arrives in between; the broker sees no difference.
import net from 'node:net'
import WebSocket from 'ws'
import type { Transport } from './target.js'

export interface Wire {
  /** Queues bytes; false once more than the high-water mark is waiting (wait for onDrain). */
  write(data: Buffer): boolean
  /** Bytes handed to write that the kernel has not taken yet. */
  pending(): number
  /** Each chunk is valid only during the call (TCP reads share one buffer): copy what you keep. */
  onData(listener: (chunk: Buffer) => void): void
  onDrain(listener: () => void): void
  /** Called once, when the connection is gone (`why`: an error code, or `closed`). */
  onClose(listener: (why: string) => void): void
  /** Stops reading until resume(): the peer's writes back up into the kernel buffers, then into the peer. */
  pause(): void
  resume(): void
  /** The local TCP port, to find this connection in /proc/net/tcp. */
  localPort(): number | undefined
  end(last?: Buffer): void
  destroy(): void
}

export interface WireOptions {
  transport: Transport
  port: number
  timeoutMs: number
  /** Read at most once per this many ms (0: read whenever data arrives). */
  paceReadsMs?: number
}

const HOST = '127.0.0.1'
/** Bytes queued in user space before write() says "wait" (Node's default for sockets). */
const HIGH_WATER = 16 * 1024

/**
 * One read buffer for every TCP client of the generator (net's `onread`): the kernel copies into it
 * and the listener runs at once, before the next read, so sharing is safe and no chunk is allocated
 * and pushed through a stream per read. Listeners must copy what they keep.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

/** Restarts parked readers together, one timer for all of them. */
class ReadPacer {
  private parked: (() => void)[] = []
  private timer: NodeJS.Timeout | undefined
  private readonly ms: number
  constructor(ms: number) {
    this.ms = ms
  }
  park(resume: () => void): void {
    this.parked.push(resume)
    this.timer ??= setTimeout(() => this.release(), this.ms)
  }
  private release(): void {
    this.timer = undefined
    const parked = this.parked
    this.parked = []
    for (const resume of parked) resume()
  }
}

const pacers = new Map<number, ReadPacer>()
function pacerFor(ms: number): ReadPacer {
  let p = pacers.get(ms)
  if (!p) {
    p = new ReadPacer(ms)
    pacers.set(ms, p)
  }
  return p
}

/** Pause/resume shared by both transports: a user pause wins over the pacer's restarts. */
function readControl(stop: () => void, start: () => void, paceMs: number) {
  const pacer = paceMs > 0 ? pacerFor(paceMs) : undefined
  let userPaused = false
  let parked = false
  const restart = () => {
    parked = false
    if (!userPaused) start()
  }
  return {
    /** After a read: park until the next tick when paced. */
    afterRead() {
      if (!pacer || parked || userPaused) return
      parked = true
      stop()
      pacer.park(restart)
    },
    pause() {
      userPaused = true
      stop()
    },
    resume() {
      userPaused = false
      if (!parked) start()
    },
  }
}

function tcpWire(sock: net.Socket, setListener: (l: (chunk: Buffer) => void) => void, paceMs: number): Wire {
  let closed: ((why: string) => void) | undefined
  let why = 'closed'
  sock.on('error', (err: NodeJS.ErrnoException) => {
    why = err.code ?? 'error'
  })
  sock.on('close', () => closed?.(why))
  const control = readControl(
    () => sock.pause(),
    () => sock.resume(),
    paceMs,
  )
  return {
    write: (data) => sock.write(data),
    pending: () => sock.writableLength,
    onData(l) {
      setListener((chunk) => {
        l(chunk)
        control.afterRead()
      })
    },
    onDrain: (l) => sock.on('drain', l),
    onClose(l) {
      closed = l
    },
    pause: control.pause,
    resume: control.resume,
    localPort: () => sock.localPort,
    end: (last) => (last ? sock.end(last) : sock.end()),
    destroy: () => sock.destroy(),
  }
}

function wsWire(ws: WebSocket): Wire {
  let closed: ((why: string) => void) | undefined
  let why = 'closed'
  let drainListener: (() => void) | undefined
  let waiting = 0
  ws.on('error', (err: NodeJS.ErrnoException) => {
    why = err.code ?? 'error'
  })
  ws.on('close', () => closed?.(why))
  // ws calls back once a message is on the socket: that is when its bytes stop waiting
  const sent = (size: number) => () => {
    const before = waiting
    waiting -= size
    if (before > HIGH_WATER && waiting <= HIGH_WATER) drainListener?.()
  }
  const socket = () => (ws as unknown as { _socket?: net.Socket })._socket
  // never paced: ws keeps parsed frames of a paused socket until more bytes arrive, so pausing it
  // between reads delays messages by hundreds of milliseconds
  const control = readControl(
    () => ws.pause(),
    () => ws.resume(),
    0,
  )
  return {
    write(data) {
      waiting += data.length
      ws.send(data, { binary: true }, sent(data.length))
      return waiting <= HIGH_WATER
    },
    pending: () => waiting,
    onData(l) {
      ws.on('message', (data: Buffer) => {
        l(data)
        control.afterRead()
      })
    },
    onDrain(l) {
      drainListener = l
    },
    onClose(l) {
      closed = l
    },
    pause: control.pause,
    resume: control.resume,
    localPort: () => socket()?.localPort,
    end(last) {
      if (last) ws.send(last, { binary: true })
      ws.close()
    },
    destroy: () => ws.terminate(),
  }
}

function openTcp(opts: WireOptions, done: (err: Error | undefined, wire?: Wire) => void): () => void {
  let listener: ((chunk: Buffer) => void) | undefined
  const sock = net.connect({
    host: HOST,
    port: opts.port,
    noDelay: true,
    onread: {
      buffer: READ_BUFFER,
      callback(nread: number, buf: Uint8Array) {
        listener?.(Buffer.from(buf.buffer, buf.byteOffset, nread))
        return true
      },
    },
  })
  const onError = (err: Error) => done(err)
  sock.once('error', onError)
  sock.once('connect', () => {
    sock.off('error', onError)
    done(
      undefined,
      tcpWire(
        sock,
        (l) => {
          listener = l
        },
        opts.paceReadsMs ?? 0,
      ),
    )
  })
  return () => sock.destroy()
}

function openWs(opts: WireOptions, done: (err: Error | undefined, wire?: Wire) => void): () => void {
  const ws = new WebSocket(`ws://${HOST}:${opts.port}/mqtt`, 'mqtt', { perMessageDeflate: false })
  const onError = (err: Error) => done(err)
  ws.once('error', onError)
  ws.once('open', () => {
    ws.off('error', onError)
    // the generator must not wait on Nagle either
    ;(ws as unknown as { _socket?: net.Socket })._socket?.setNoDelay(true)
    done(undefined, wsWire(ws))
  })
  return () => ws.terminate()
}

/** Opens the connection; rejects on error or after `timeoutMs`. */
export function openWire(opts: WireOptions): Promise<Wire> {
  return new Promise((resolve, reject) => {
    let settled = false
    const timer = setTimeout(() => {
      if (settled) return
      settled = true
      abort()
      reject(new Error(`${opts.transport} connection to port ${opts.port} timed out`))
    }, opts.timeoutMs)
    const abort = (opts.transport === 'tcp' ? openTcp : openWs)(opts, (err, wire) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (err || !wire) reject(err ?? new Error('no connection'))
      else resolve(wire)
    })
  })
}
