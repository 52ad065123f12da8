// Aedes hooks built from the plugin host. Each one is guarded: a synchronous throw inside an Aedes
// hook kills the process, so every body runs in try/catch and every promise ends in the callback.
// The publish path (authorizePublish, authorizeForward, published) answers synchronously from the
// session in memory; it awaits only for a gateway's first look-up of a child.
import { randomUUID } from 'node:crypto'
import type { AedesPublishPacket, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes'
import { CONNACK, connackCodeOf, errors, isCoded } from '../../registry/errors.js'
import { IOT_PREFIX, PROVISION_REGISTER, SYS_PREFIX, splitIotTopic, uplinkKindAt } from '../../registry/topics.js'
import type { Logger } from '../log.js'
import type { AuthFailureReason, Metrics } from '../metrics.js'
import { decide, type PluginHost } from '../plugin-host.js'
import type { ConnectContext, Principal, Session, Transport } from '../session.js'
import { noteForwarded } from './delivery.js'

export const kSession = Symbol('fleethub.session')
export const kMeta = Symbol('fleethub.meta')
/** Marks a PUBLISH that was refused: it is dropped (acknowledged, never delivered). */
export const kDropped = Symbol('fleethub.dropped')

export interface ConnectionMeta {
  transport: Transport
  /** Where the peer's address can be read when it is needed. */
  socket: { remoteAddress?: string | undefined } | undefined
  /** Set by preConnect when the CONNECT must be refused with "identifier rejected". */
  refuse?: string
  will?: PublishPacket
}

/** Longest a device's PUBACK waits for the answer to its request (createHooks' holdForAnswer). */
export const HOLD_MS = 20

/** A client's writes held until the answer to its request is written (createHooks' holdForAnswer). */
interface Hold {
  readonly client: FleetClient
  readonly conn: { cork(): void; uncork(): void }
}
const kHolding = Symbol('fleethub.holding')
/** The hold a request started, on its packet. */
export const kHold = Symbol('fleethub.hold')

export type FleetClient = Client & { [kSession]?: Session; [kMeta]?: ConnectionMeta; [kHolding]?: Hold }
export type FleetPacket = PublishPacket & { [kDropped]?: true; [kHold]?: Hold }

/** Ends a hold (once: the request's end and the bound both call it). */
export function releaseHold(hold: Hold): void {
  if (hold.client[kHolding] !== hold) return
  hold.client[kHolding] = undefined
  hold.conn.uncork()
}

/** A session: one small object per connection, fields filled only when used. */
class ClientSession implements Session {
  readonly id = randomUUID()
  readonly clientId: string
  readonly principal: Principal
  readonly connectedAt: number
  readonly startedAt: number
  logged = 0
  private readonly meta: ConnectionMeta
  private map: Map<string, unknown> | undefined

  constructor(clientId: string, principal: Principal, meta: ConnectionMeta, at: number, mono: number) {
    this.clientId = clientId
    this.principal = principal
    this.meta = meta
    this.connectedAt = at
    this.startedAt = mono
  }

  get transport(): Transport {
    return this.meta.transport
  }

  get remoteAddress(): string | undefined {
    return this.meta.socket?.remoteAddress
  }

  get data(): Map<string, unknown> {
    this.map ??= new Map()
    return this.map
  }
}

// once-per-session log flags
const LOGGED_PUBLISH_DENIED = 1
const LOGGED_SUBSCRIBE_DENIED = 2
const LOGGED_HANDLER_ERROR = 4

export interface HookDeps {
  host: PluginHost
  log: Logger
  metrics: Metrics
  /** Plain counters for the hot path, read by /metrics at scrape time. */
  hot: { messagesIn: number; messagesOut: number }
  /** Tracks async work (session hooks) so shutdown can wait for it. */
  track(p: Promise<unknown>): void
}

type RefusalError = Error & { returnCode?: number; reason?: AuthFailureReason }

function refusal(err: Error, reason: AuthFailureReason): RefusalError {
  return Object.assign(err, { returnCode: connackCodeOf(err), reason })
}

function reasonOf(err: Error): AuthFailureReason {
  const r = (err as { reason?: AuthFailureReason }).reason
  return r ?? (isCoded(err) ? 'bad_credentials' : 'error')
}

export function createHooks(deps: HookDeps) {
  const { host, log, metrics, hot } = deps

  function preConnect(client: FleetClient, packet: ConnectPacket, callback: (e: Error | null, ok: boolean) => void) {
    try {
      const meta = client[kMeta] ?? { transport: 'tcp', socket: undefined }
      client[kMeta] = meta
      if (packet.clientId === '') {
        // [MQTT-3.1.3-7] a zero-byte client id needs CleanSession=1; the device id is the user name
        if (packet.clean && typeof packet.username === 'string' && packet.username !== '') {
          packet.clientId = packet.username
        } else {
          meta.refuse = 'an empty client id needs CleanSession=1 and a user name' // [MQTT-3.1.3-8]
        }
      }
      if (packet.will) meta.will = packet.will as PublishPacket
      callback(null, true)
    } catch (err) {
      log.error({ err }, 'preConnect failed')
      callback(err as Error, false)
    }
  }

  async function runAuthenticate(ctx: ConnectContext): Promise<Principal | Error> {
    for (const hook of host.hooks.authenticate) {
      const r = await hook(ctx)
      if (r !== undefined) return r
    }
    return refusal(new errors.BAD_CREDENTIALS(), 'bad_credentials')
  }

  function newSession(
    client: FleetClient,
    principal: Principal,
    meta: ConnectionMeta,
    started: { at: number; mono: number },
  ): Session {
    return new ClientSession(client.id, principal, meta, started.at, started.mono)
  }

  function authenticate(
    client: FleetClient,
    username: string | undefined,
    password: Buffer | undefined,
    callback: (e: RefusalError | null, ok: boolean | null) => void,
  ) {
    const meta = client[kMeta] as ConnectionMeta
    const fail = (err: RefusalError) => {
      err.returnCode ??= connackCodeOf(err)
      const reason = reasonOf(err)
      metrics.authFailures.inc({ reason })
      log.info({ clientId: client.id, username, remote: meta.socket?.remoteAddress, reason }, 'connect refused')
      callback(err, null)
    }
    try {
      if (meta.refuse) return fail(refusal(new errors.IDENTIFIER_REJECTED(meta.refuse), 'identifier_rejected'))
      const ctx: ConnectContext = {
        clientId: client.id,
        username,
        password,
        clean: client.clean,
        transport: meta.transport,
        // read when asked, as the session's: getpeername is a system call (1 % of a registration)
        get remoteAddress() {
          return meta.socket?.remoteAddress
        },
      }
      const started = { at: Date.now(), mono: performance.now() }
      runAuthenticate(ctx).then(
        function authenticated(result) {
          if (result instanceof Error) return fail(result as RefusalError)
          const session = newSession(client, result, meta, started)
          const will = meta.will
          meta.will = undefined
          if (will) {
            // a will is published when the session dies, perhaps by another node: check it now
            const d = decide(host.hooks.authorizePublish, session, will.topic)
            if (d !== 'allow' || will.topic.startsWith(SYS_PREFIX)) {
              return fail(refusal(new errors.NOT_AUTHORIZED(), 'disabled'))
            }
          }
          client[kSession] = session
          callback(null, true)
        },
        function authenticateFailed(err: Error) {
          log.error({ err, clientId: client.id }, 'authentication failed with an error')
          fail(Object.assign(err, { returnCode: CONNACK.SERVER_UNAVAILABLE, reason: 'error' as const }))
        },
      )
    } catch (err) {
      fail(refusal(err as Error, 'error'))
    }
  }

  function refusePublish(session: Session | undefined, packet: FleetPacket) {
    packet[kDropped] = true
    metrics.rejected.inc({ reason: 'publish_denied' })
    if (session && !(session.logged & LOGGED_PUBLISH_DENIED)) {
      session.logged |= LOGGED_PUBLISH_DENIED
      log.info(
        { clientId: session.clientId, topic: packet.topic },
        'publish refused (dropped; logged once per session)',
      )
    }
  }

  /**
   * A device's QoS 1 publish that a handler acts on (a twin report, a command answer, telemetry)
   * is usually answered within a Redis round trip, but Aedes wrote its PUBACK at once, in a write of
   * its own: at 10,000 twin reports/s those writes were a tenth of the CPU. The connection's writes are held from the request until its
   * handler is done, so the PUBACK and the answer leave together. One hold per connection at a time
   * (a device that keeps sending is held for one request at most), and never longer than HOLD_MS.
   */
  function holdForAnswer(client: FleetClient, session: Session, packet: FleetPacket) {
    const p = session.principal
    const topic = packet.topic
    if (client[kHolding] || p.kind !== 'device' || !topic.startsWith(p.prefix)) return
    const kind = uplinkKindAt(topic, p.prefix.length)
    if (!kind || !host.handlerFor(kind)) return
    const hold: Hold = { client, conn: client.conn }
    client[kHolding] = hold
    packet[kHold] = hold
    hold.conn.cork()
    holds.add(hold)
  }

  /** Holds started in this sweep period and the one before: the bound of HOLD_MS. */
  const holds = {
    current: new Set<Hold>(),
    previous: new Set<Hold>(),
    timer: undefined as NodeJS.Timeout | undefined,
    add(hold: Hold) {
      holds.current.add(hold)
      holds.timer ??= setInterval(holds.sweep, HOLD_MS / 2).unref()
    },
    sweep() {
      for (const h of holds.previous) releaseHold(h)
      holds.previous = holds.current
      holds.current = new Set()
      if (holds.previous.size === 0) {
        clearInterval(holds.timer)
        holds.timer = undefined
      }
    },
  }

  function authorizePublish(client: FleetClient | null, packet: FleetPacket, callback: (e?: Error | null) => void) {
    try {
      if (client === null) return callback(null) // a will of a dead node, checked at its CONNECT
      const session = client[kSession]
      if (!session || packet.topic.startsWith(SYS_PREFIX)) {
        refusePublish(session, packet)
        return callback(null)
      }
      const d = decide(host.hooks.authorizePublish, session, packet.topic)
      if (d === 'allow') {
        if (packet.qos === 1) holdForAnswer(client, session, packet)
        return callback(null)
      }
      if (d === 'deny') {
        refusePublish(session, packet)
        return callback(null)
      }
      d.then(
        (late) => {
          if (late !== 'allow') refusePublish(session, packet)
          callback(null)
        },
        () => {
          refusePublish(session, packet)
          callback(null)
        },
      )
    } catch (err) {
      log.error({ err }, 'authorizePublish failed')
      refusePublish(undefined, packet)
      callback(null)
    }
  }

  function authorizeSubscribe(
    client: FleetClient,
    sub: Subscription,
    callback: (e: Error | null, s?: Subscription | null) => void,
  ) {
    const refuse = (session: Session | undefined) => {
      metrics.rejected.inc({ reason: 'subscribe_denied' })
      if (session && !(session.logged & LOGGED_SUBSCRIBE_DENIED)) {
        session.logged |= LOGGED_SUBSCRIBE_DENIED
        log.info({ clientId: session.clientId, topic: sub.topic }, 'subscribe refused (logged once per session)')
      }
      callback(null, null) // SUBACK 0x80, the connection stays
    }
    try {
      const session = client[kSession]
      if (!session || sub.topic.startsWith(SYS_PREFIX)) return refuse(session)
      const d = decide(host.hooks.authorizeSubscribe, session, sub.topic)
      if (d === 'allow') return callback(null, sub)
      if (d === 'deny') return refuse(session)
      d.then(
        (late) => (late === 'allow' ? callback(null, sub) : refuse(session)),
        () => refuse(session),
      )
    } catch (err) {
      log.error({ err }, 'authorizeSubscribe failed')
      refuse(undefined)
    }
  }

  function authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket {
    hot.messagesOut++
    if (!client.connected) noteForwarded(client, packet)
    return packet
  }

  function published(packet: AedesPublishPacket, client: FleetClient | null, callback: (e?: Error | null) => void) {
    if (client === null || client === undefined) return callback(null)
    hot.messagesIn++
    const topic = packet.topic
    if (topic.charCodeAt(0) !== 36 /* $ */) return callback(null)
    try {
      const session = client[kSession]
      if (!session) return callback(null)
      let deviceId: string
      let kind: string | undefined
      const p = session.principal
      if (p.kind === 'provision') {
        // the ACL let through only its register topic
        if (topic !== p.registerTopic) return callback(null)
        deviceId = p.registrationId
        kind = PROVISION_REGISTER
      } else if (!topic.startsWith(IOT_PREFIX)) {
        return callback(null)
      } else if (p.kind === 'device' && topic.startsWith(p.prefix)) {
        deviceId = p.deviceId
        kind = uplinkKindAt(topic, p.prefix.length)
      } else {
        const split = splitIotTopic(topic)
        if (!split) return callback(null)
        deviceId = split.deviceId
        kind = uplinkKindAt(topic, split.restAt)
      }
      const handler = kind && host.handlerFor(kind)
      if (!handler) return callback(null)
      const qos = packet.qos
      const pending = handler({
        session,
        deviceId,
        kind: kind as string,
        topic,
        payload: packet.payload as Buffer,
        qos,
      })
      if (pending === undefined) return callback(null)
      // a node that stops waits for handlers in flight before it closes the bus (their PUBACK is sent)
      handling++
      pending.then(
        () => {
          handled()
          callback(null)
        },
        (err: Error) => {
          handled()
          metrics.rejected.inc({ reason: 'handler_error' })
          if (!(session.logged & LOGGED_HANDLER_ERROR)) {
            session.logged |= LOGGED_HANDLER_ERROR
            log.error({ err, clientId: session.clientId, topic }, 'uplink handler failed (logged once per session)')
          }
          callback(null)
        },
      )
    } catch (err) {
      log.error({ err, topic }, 'published hook failed')
      callback(null)
    }
  }

  /** Uplink handlers in flight, and who waits for there to be none. */
  let handling = 0
  let idle: (() => void)[] = []
  function handled() {
    if (--handling > 0 || idle.length === 0) return
    const waiting = idle
    idle = []
    for (const w of waiting) w()
  }

  /** Resolves once no uplink handler is running (a stopping node waits for it before the bus closes). */
  function handlersIdle(): Promise<void> {
    return handling === 0 ? Promise.resolve() : new Promise((resolve) => idle.push(resolve))
  }

  function runSessionHooks(name: 'sessionReady' | 'sessionGone', session: Session): void {
    for (const hook of host.hooks[name]) guarded(name, session, () => hook(session))
  }

  function runSubscribedHooks(session: Session, topics: readonly string[]): void {
    for (const hook of host.hooks.sessionSubscribed) guarded('sessionSubscribed', session, () => hook(session, topics))
  }

  /** Runs a session hook: a throw or a rejection is logged, never fatal. */
  function guarded(name: string, session: Session, call: () => void | Promise<void>): void {
    let r: void | Promise<void>
    try {
      r = call()
    } catch (err) {
      log.error({ err, clientId: session.clientId }, `${name} hook failed`)
      return
    }
    if (r) {
      deps.track(
        r.catch((err: unknown) => {
          log.error({ err, clientId: session.clientId }, `${name} hook failed`)
        }),
      )
    }
  }

  return {
    preConnect,
    authenticate,
    authorizePublish,
    authorizeSubscribe,
    authorizeForward,
    published,
    runSessionHooks,
    runSubscribedHooks,
    handlersIdle,
  }
}
