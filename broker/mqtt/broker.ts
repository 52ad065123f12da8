// The MQTT side of a node: an Aedes broker with FleetHub's hooks, its backend (memory or Redis), the
// listeners, and the BrokerPort that plugins use.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { Aedes, type AedesPublishPacket, type PublishPacket } from 'aedes'
import { autoCork } from '../../registry/cork.js'
import type { Config } from '../config.js'
import type { Logger } from '../log.js'
import type { Metrics, RejectReason } from '../metrics.js'
import type { PluginHost } from '../plugin-host.js'
import type { BrokerPort, Session, Transport } from '../session.js'
import { createAdmission } from './admission.js'
import type { MqttBackend } from './backend.js'
import { isLocalOnly } from './bus/cluster.js'
import { wrapDeliveries } from './delivery.js'
import { guardParser } from './guard.js'
import {
  createHooks,
  type FleetClient,
  type FleetPacket,
  kDropped,
  kHold,
  kMeta,
  kSession,
  releaseHold,
} from './hooks.js'
import { installTakeover } from './takeover.js'
import { type MqttListeners, startMqttListeners } from './transports.js'
import { encodePublish0 } from './wire.js'

export interface MqttBrokerDeps {
  config: Config
  host: PluginHost
  log: Logger
  metrics: Metrics
  backend: MqttBackend
  hot: { messagesIn: number; messagesOut: number }
}

export interface MqttBroker {
  readonly port: BrokerPort
  readonly aedes: Aedes
  listen(): Promise<MqttListeners['ports']>
  /** Stops accepting, closes every client, waits for session hooks, closes the backend. */
  close(): Promise<void>
}

/** Client errors that are just the network going away: not worth a log line or a metric. */
const ORDINARY = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT'])

function rejectReasonOf(err: Error): RejectReason {
  const r = (err as { reason?: string }).reason
  if (r === 'packet_too_large' || r === 'invalid_utf8') return r
  return /not allowed|invalid|malformed|cannot parse|too short|must|protocol|not supported|levels/i.test(err.message)
    ? 'malformed_packet'
    : 'protocol_error'
}

export async function createMqttBroker(deps: MqttBrokerDeps): Promise<MqttBroker> {
  const { config, log, metrics } = deps
  const pending = new Set<Promise<unknown>>()
  const track = (p: Promise<unknown>) => {
    pending.add(p)
    p.finally(() => pending.delete(p))
  }
  const hooks = createHooks({ host: deps.host, log, metrics, hot: deps.hot, track })

  const aedes = await Aedes.createBroker({
    id: config.nodeId,
    mq: deps.backend.mq,
    persistence: deps.backend.persistence,
    // device ids are up to 128 characters, also for MQTT 3.1 clients
    maxClientsIdLength: 256,
    heartbeatInterval: 5000,
    preConnect: hooks.preConnect,
    authenticate: hooks.authenticate,
    authorizePublish: hooks.authorizePublish,
    authorizeSubscribe: hooks.authorizeSubscribe,
    authorizeForward: hooks.authorizeForward,
    published: hooks.published,
  } as ConstructorParameters<typeof Aedes>[0])

  // A refused PUBLISH is acknowledged as the protocol requires, then dropped here.
  const publish = aedes.publish as unknown as (p: PublishPacket, c: unknown, d?: (e?: Error) => void) => void
  ;(aedes as unknown as { publish: typeof publish }).publish = function publishUnlessDropped(packet, client, done) {
    const hold = (packet as FleetPacket)[kHold]
    if (
      (packet as FleetPacket)[kDropped] === true ||
      // Aedes's announcements of each client and subscription (bus/cluster.ts): a publish each for
      // nothing, at every CONNECT and disconnect
      isLocalOnly(packet.topic)
    ) {
      const cb = typeof client === 'function' ? client : done
      if (hold) releaseHold(hold)
      if (cb) cb()
      return
    }
    if (!hold) return publish.call(aedes, packet, client, done)
    // the request's handler is done: its answer is written, so the PUBACK can go with it
    publish.call(aedes, packet, client, function answered(err?: Error) {
      releaseHold(hold)
      done?.(err)
    })
  }

  // only nodes sharing Redis can hold one client id twice; alone, Aedes's own takeover is enough
  if (config.redisUrl) {
    installTakeover(aedes, {
      nodeId: config.nodeId,
      startOf: (client) => (client as FleetClient)[kSession]?.connectedAt ?? 0,
      hasPeers: () => deps.backend.mq.hasPeers(),
      onTakenOver(clientId, byNode) {
        metrics.takeovers.inc()
        log.debug({ clientId, byNode }, 'session taken over on another node')
      },
    })
  }

  aedes.on('clientReady', (client: FleetClient) => {
    const s = client[kSession]
    if (!s) return
    metrics.connections.inc(s.principal.kind)
    metrics.connects.inc(s.principal.kind)
    hooks.runSessionHooks('sessionReady', s)
  })
  aedes.on('clientDisconnect', (client: FleetClient) => {
    const s = client[kSession]
    if (!s) return
    metrics.connections.dec(s.principal.kind)
    hooks.runSessionHooks('sessionGone', s)
  })
  aedes.on('subscribe', (subs, client: FleetClient) => {
    const s = client[kSession]
    if (!s) return
    // Aedes sets a refused subscription's qos to 128 in the SUBACK
    const granted = subs.filter((sub) => (sub.qos as number) !== 128).map((sub) => sub.topic)
    if (granted.length > 0) hooks.runSubscribedHooks(s, granted)
  })
  const onClientError = (client: FleetClient, err: Error) => {
    const code = (err as NodeJS.ErrnoException).code
    if (code && ORDINARY.has(code)) return
    if (err.message === 'connection closed' || err.message === 'keep alive timeout') return
    // a refused CONNECT was answered, counted and logged by the authenticate hook already
    if ((err as { errorCode?: number }).errorCode !== undefined) return
    const reason = rejectReasonOf(err)
    metrics.rejected.inc({ reason })
    log.info(
      { clientId: client.id ?? undefined, remote: client[kMeta]?.socket?.remoteAddress, reason, error: err.message },
      'connection closed on bad input',
    )
  }
  aedes.on('clientError', onClientError)
  aedes.on('connectionError', onClientError)
  ;(aedes as unknown as NodeJS.EventEmitter).on('error', (err: Error) => log.error({ err }, 'broker error'))

  const deliveryEvents = {
    dropped() {
      metrics.dropped.inc({ reason: 'slow_consumer' })
    },
    cutOff(client: unknown, why: string) {
      const c = client as FleetClient
      metrics.rejected.inc({ reason: 'slow_consumer' })
      log.warn({ clientId: c.id, remote: c[kMeta]?.socket?.remoteAddress, why }, 'slow consumer cut off')
    },
  }

  const admission = createAdmission({ limit: config.maxInFlight })
  metrics.bindAdmission(admission)

  function handle(
    conn: Duplex,
    req: IncomingMessage | undefined,
    transport: Transport,
    writev?: (chunks: Buffer[], cb: (err?: Error | null) => void) => void,
  ) {
    try {
      autoCork(conn, writev)
      const client = aedes.handle(conn, req) as FleetClient
      admission.admit(client)
      client[kMeta] = { transport, socket: req ? req.socket : (conn as { remoteAddress?: string }) }
      guardParser((client as unknown as { _parser: unknown })._parser, config.maxPacketSize)
      wrapDeliveries(client, deliveryEvents)
    } catch (err) {
      log.error({ err }, 'could not take a connection')
      conn.destroy()
    }
  }

  let listeners: MqttListeners | undefined

  const port: BrokerPort = {
    nodeId: config.nodeId,
    publish(topic, payload, opts = {}) {
      return new Promise((resolve, reject) => {
        const packet = {
          cmd: 'publish',
          topic,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
          qos: opts.qos ?? 0,
          retain: opts.retain ?? false,
          dup: false,
        } as PublishPacket
        aedes.publish(packet, (err?: Error) => (err ? reject(err) : resolve()))
      })
    },
    subscribe(filter, listener) {
      const deliver = (packet: AedesPublishPacket, cb: () => void) => {
        try {
          listener(packet.topic, packet.payload as Buffer)
        } catch (err) {
          log.error({ err, filter }, 'broker listener failed')
        }
        cb()
      }
      return new Promise((resolve) => {
        aedes.subscribe(filter, deliver, () =>
          resolve(() => new Promise<void>((done) => aedes.unsubscribe(filter, deliver, () => done()))),
        )
      })
    },
    localSession(clientId) {
      return (aedes as unknown as { clients: Record<string, FleetClient> }).clients[clientId]?.[kSession]
    },
    sendLocal(clientId, topic, payload) {
      const client = (aedes as unknown as { clients: Record<string, FleetClient> }).clients[clientId]
      const conn = client?.conn
      if (!client || client.closed || !conn || conn.destroyed || conn.writableEnded) return Promise.resolve(false)
      const bytes = encodePublish0(topic, typeof payload === 'string' ? Buffer.from(payload) : payload, false)
      deps.hot.messagesOut++
      // resolves once the bytes are handed to the socket, so closing after it loses nothing
      return new Promise((resolve) => conn.write(bytes, (err?: Error | null) => resolve(!err)))
    },
    disconnectLocal(clientId, reason, opts) {
      const client = (aedes as unknown as { clients: Record<string, FleetClient> }).clients[clientId]
      if (!client) return false
      // routine closes (a provisioning connection after its answer) log at debug
      log[opts?.quiet ? 'debug' : 'info']({ clientId, reason }, 'closing session')
      client.close()
      return true
    },
    subscriptionsOf(clientId) {
      const client = (aedes as unknown as { clients: Record<string, { subscriptions: object }> }).clients[clientId]
      return client ? Object.keys(client.subscriptions) : []
    },
    *localSessions(): IterableIterator<Session> {
      const clients = (aedes as unknown as { clients: Record<string, FleetClient> }).clients
      for (const id in clients) {
        const s = clients[id]?.[kSession]
        if (s) yield s
      }
    },
  }

  return {
    port,
    aedes,
    async listen() {
      listeners = await startMqttListeners(config, handle, log)
      return listeners.ports
    },
    async close() {
      const stopped = listeners?.stopAccepting()
      // close the sessions while the bus still runs, devices first, so their last presence events
      // still reach services
      const clients = Object.values((aedes as unknown as { clients: Record<string, FleetClient> }).clients)
      const closeAll = (list: FleetClient[]) =>
        Promise.all(list.map((c) => new Promise<void>((resolve) => c.close(() => resolve()))))
      await closeAll(clients.filter((c) => c[kSession]?.principal.kind === 'device'))
      await Promise.allSettled([...pending, hooks.handlersIdle()])
      await closeAll(clients.filter((c) => c[kSession]?.principal.kind !== 'device'))
      await Promise.allSettled([...pending, hooks.handlersIdle()])
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      await Promise.allSettled([...pending, hooks.handlersIdle()])
      await deps.backend.close()
      if (stopped) await stopped
    },
  }
}
