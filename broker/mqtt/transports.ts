// The MQTT listeners: TCP, WebSocket on /mqtt (ws 8 with createWebSocketStream), and TLS and WSS
// when a certificate and key are configured. Each accepted connection goes to `handle` with its
// transport name; everything MQTT happens behind it.
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { createWebSocketStream, WebSocketServer } from 'ws'
import type { Config } from '../config.js'
import type { Logger } from '../log.js'
import type { Transport } from '../session.js'

export type ConnectionHandler = (
  conn: Duplex,
  req: http.IncomingMessage | undefined,
  transport: Transport,
  /** How to send several chunks at once, for streams that cannot by themselves (WebSocket). */
  writev?: (chunks: Buffer[], cb: (err?: Error | null) => void) => void,
) => void

export interface MqttListeners {
  readonly ports: { mqtt: number; ws: number; mqtts?: number; wss?: number }
  /** Stops accepting new connections (open ones stay until the broker closes them). */
  stopAccepting(): Promise<void>
}

/** Fixed header (1 byte) and the longest remaining-length field (4 bytes) [MQTT-2.2.3]. */
const MQTT_HEADER_MAX = 5

export function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

function webSocketServer(
  server: http.Server,
  transport: Transport,
  maxPacketSize: number,
  handle: ConnectionHandler,
  log: Logger,
): WebSocketServer {
  const wss = new WebSocketServer({
    server,
    path: '/mqtt',
    // one MQTT packet may span frames, but no single message needs more than a whole packet
    maxPayload: maxPacketSize + MQTT_HEADER_MAX,
    handleProtocols: (protocols) => {
      for (const p of ['mqtt', 'mqttv3.1']) if (protocols.has(p)) return p
      return false
    },
  })
  wss.on('connection', function onWebSocket(ws, req) {
    const stream = createWebSocketStream(ws)
    // one WebSocket message for all MQTT packets written in one tick
    const writev = (chunks: Buffer[], cb: (err?: Error | null) => void) =>
      ws.send(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), cb)
    handle(stream, req, transport, writev)
  })
  wss.on('error', (err) => log.warn({ err, transport }, 'WebSocket server error'))
  return wss
}

function plainHttp(_req: http.IncomingMessage, res: http.ServerResponse) {
  res.writeHead(426, { 'content-type': 'text/plain' })
  res.end('MQTT over WebSocket lives at /mqtt\n')
}

export async function startMqttListeners(
  config: Config,
  handle: ConnectionHandler,
  log: Logger,
): Promise<MqttListeners> {
  const servers: net.Server[] = []
  const sockets: WebSocketServer[] = []

  const tcp = net.createServer({ noDelay: true }, (socket) => handle(socket, undefined, 'tcp'))
  servers.push(tcp)
  const ws = http.createServer(plainHttp)
  sockets.push(webSocketServer(ws, 'ws', config.maxPacketSize, handle, log))
  servers.push(ws)

  const ports: { mqtt: number; ws: number; mqtts?: number; wss?: number } = {
    mqtt: await listen(tcp, config.mqttPort, config.host),
    ws: await listen(ws, config.wsPort, config.host),
  }

  if (config.tlsCert && config.tlsKey) {
    const cert = readFileSync(config.tlsCert)
    const key = readFileSync(config.tlsKey)
    const secure = tls.createServer({ cert, key }, (socket) => {
      socket.setNoDelay(true)
      handle(socket, undefined, 'tls')
    })
    secure.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'))
    servers.push(secure)
    const wssServer = https.createServer({ cert, key }, plainHttp)
    wssServer.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'))
    sockets.push(webSocketServer(wssServer, 'wss', config.maxPacketSize, handle, log))
    servers.push(wssServer)
    ports.mqtts = await listen(secure, config.mqttsPort, config.host)
    ports.wss = await listen(wssServer, config.wssPort, config.host)
  }

  return {
    ports,
    async stopAccepting() {
      for (const s of sockets) s.close()
      await Promise.all(servers.map(close))
    },
  }
}
