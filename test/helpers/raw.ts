// A raw MQTT connection for tests that send what mqtt.js refuses to: malformed or oversized packets,
// invalid UTF-8, forbidden flag combinations.
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

export interface RawClient {
  send(packet: Packet): void
  sendBytes(buf: Buffer): void
  /** Waits for the next packet of a kind, or undefined after `ms`. */
  next(cmd: string, ms?: number): Promise<Packet | undefined>
  /** Every packet received so far, in order. */
  readonly log: Packet[]
  /** Resolves true when the broker closes the connection within `ms`. */
  closedWithin(ms: number): Promise<boolean>
  end(): void
}

export function rawConnect(port: number): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    const got: Packet[] = []
    const log: Packet[] = []
    let closed = false
    const onClose: (() => void)[] = []
    sock.on('data', (d) => parser.parse(d))
    parser.on('packet', (p) => {
      got.push(p)
      log.push(p)
    })
    parser.on('error', () => {})
    sock.on('error', () => {})
    sock.on('close', () => {
      closed = true
      for (const f of onClose.splice(0)) f()
    })
    sock.once('connect', () =>
      resolve({
        log,
        send(packet) {
          sock.write(mqttPacket.generate(packet))
        },
        sendBytes(buf) {
          sock.write(buf)
        },
        async next(cmd, ms = 2000) {
          const until = Date.now() + ms
          while (Date.now() < until) {
            const i = got.findIndex((p) => p.cmd === cmd)
            if (i >= 0) return got.splice(i, 1)[0]
            if (closed) return undefined
            await new Promise((r) => setTimeout(r, 10))
          }
          return undefined
        },
        closedWithin(ms) {
          if (closed) return Promise.resolve(true)
          return new Promise((r) => {
            const timer = setTimeout(() => r(false), ms)
            onClose.push(() => {
              clearTimeout(timer)
              r(true)
            })
          })
        },
        end() {
          sock.destroy()
        },
      }),
    )
    sock.once('error', reject)
  })
}

export function connectPacket(clientId: string, username?: string, password?: string, clean = true): Packet {
  const p: Record<string, unknown> = {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean,
    clientId,
    keepalive: 30,
  }
  if (username !== undefined) p.username = username
  if (password !== undefined) p.password = Buffer.from(password)
  return p as unknown as Packet
}

function mqttString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

/** A CONNECT built byte by byte, for what mqtt-packet refuses to generate (client id given raw). */
export function rawConnectBytes(opts: {
  clientId: Buffer | string
  username?: string
  password?: string
  clean: boolean
}): Buffer {
  let flags = opts.clean ? 0x02 : 0
  if (opts.username !== undefined) flags |= 0x80
  if (opts.password !== undefined) flags |= 0x40
  const body = Buffer.concat([
    mqttString('MQTT'),
    Buffer.from([4, flags, 0, 30]),
    mqttString(opts.clientId),
    ...(opts.username !== undefined ? [mqttString(opts.username)] : []),
    ...(opts.password !== undefined ? [mqttString(opts.password)] : []),
  ])
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body])
}

export function remainingLength(n: number): Buffer {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return Buffer.from(out)
}

/** A QoS 0 PUBLISH built byte by byte, so its topic can be any bytes at all. */
export function rawPublishBytes(topic: Buffer | string, payload: Buffer | string, firstByte = 0x30): Buffer {
  const body = Buffer.concat([mqttString(topic), typeof payload === 'string' ? Buffer.from(payload) : payload])
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body])
}
