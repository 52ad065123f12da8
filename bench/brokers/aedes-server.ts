// Vanilla Aedes, the anchor FleetHub is built on: the same pinned aedes package with its defaults,
// no authentication, no hooks. Plain TCP, and WebSocket on /mqtt through ws 8's
// createWebSocketStream. With `--redis URL`: aedes-persistence-redis and mqemitter-redis (on the
// one ioredis copy the project pins), as their READMEs set them up.
// Run by the bench as a child process; prints one JSON line {"msg":"listening","mqtt":…,"ws":…}.
// Nothing here catches errors: a crash under load is what the bench reports.

import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { Aedes, type AedesOptions } from 'aedes'
import persistenceRedis from 'aedes-persistence-redis'
import { Redis } from 'ioredis'
import { createWebSocketStream, WebSocketServer } from 'ws'

const require = createRequire(import.meta.url)

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port))
  })
}

function redisOptions(url: string): AedesOptions {
  const mqemitterRedis = require('mqemitter-redis') as (opts: object) => unknown
  return {
    mq: mqemitterRedis({ connectionString: url }),
    persistence: persistenceRedis({ conn: new Redis(url) }),
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { redis: { type: 'string' } } })
  const broker = await Aedes.createBroker(values.redis ? redisOptions(values.redis) : {})
  const tcp = net.createServer({ noDelay: true }, (socket) => broker.handle(socket))
  const web = http.createServer()
  const wss = new WebSocketServer({ server: web, path: '/mqtt' })
  wss.on('connection', function onWebSocket(ws, req) {
    broker.handle(createWebSocketStream(ws), req)
  })
  const ports = { mqtt: await listen(tcp), ws: await listen(web) }
  process.stdout.write(`${JSON.stringify({ msg: 'listening', ...ports })}\n`)
  process.once('SIGTERM', function stopBroker() {
    tcp.close()
    web.close()
    broker.close(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  })
}

await main()
