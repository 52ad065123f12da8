// What plugins know about a connection: who it is (principal) and where it came from (session).
// Plugins see this and the BrokerPort, never Aedes itself.

export type Transport = 'tcp' | 'tls' | 'ws' | 'wss'

export interface DevicePrincipal {
  readonly kind: 'device'
  readonly deviceId: string
  readonly parentId?: string
  /** `$iot/{deviceId}/`, precomputed for the publish path. */
  readonly prefix: string
  /** The registry revision of the device its credentials were checked against. */
  readonly rev: number
  /** Whether this device has children at all; undefined until first asked (kept correct by events). */
  gateway?: boolean
  /** A gateway's known answers to "is X my child?" (created on first use, bounded, kept correct by events). */
  children?: Map<string, boolean>
}

/** Roles of service principals. `admin` may read every device topic and every `$fleet` topic. */
export type ServiceRole = 'admin'

export interface ServicePrincipal {
  readonly kind: 'service'
  readonly name: string
  readonly role: ServiceRole
}

/** A device provisioning itself: it may only register (docs/provisioning.md). */
export interface ProvisionPrincipal {
  readonly kind: 'provision'
  readonly registrationId: string
  readonly enrollmentId: string
  /** `$provision/{registrationId}/register`, the one topic it may publish. */
  readonly registerTopic: string
  /** `$provision/{registrationId}/res`, the one topic it may subscribe to. */
  readonly responseTopic: string
}

export type Principal = DevicePrincipal | ServicePrincipal | ProvisionPrincipal

export interface Session {
  /** Unique per connection: tells a device's successive sessions apart. */
  readonly id: string
  readonly clientId: string
  readonly principal: Principal
  readonly transport: Transport
  /** The peer's address (read when asked: keeping it costs memory on every idle connection). */
  readonly remoteAddress: string | undefined
  /** When the credential check of its CONNECT began (ms since the epoch). */
  readonly connectedAt: number
  /** The same moment on the monotonic clock (`performance.now()`), to order it against revocations. */
  readonly startedAt: number
  /** Per-plugin data, keyed by plugin name (created on first use). */
  readonly data: Map<string, unknown>
  /** Bit flags of what was already logged for this session (each problem is logged once). */
  logged: number
}

export interface ConnectContext {
  readonly clientId: string
  readonly username: string | undefined
  readonly password: Buffer | undefined
  readonly clean: boolean
  readonly transport: Transport
  /** The peer's address (read when asked). */
  readonly remoteAddress: string | undefined
}

export interface UplinkMessage {
  readonly session: Session
  /** The device the topic belongs to (a gateway may publish for its children). */
  readonly deviceId: string
  readonly kind: string
  readonly topic: string
  readonly payload: Buffer
  readonly qos: 0 | 1 | 2
}

export interface PublishOptions {
  qos?: 0 | 1
  retain?: boolean
}

/** The only broker surface plugins see. */
export interface BrokerPort {
  readonly nodeId: string
  /** Publishes as the broker itself, to subscribers on every node. */
  publish(topic: string, payload: Buffer | string, opts?: PublishOptions): Promise<void>
  /** Listens to a topic filter on every node's traffic; resolves to an unsubscribe function. */
  subscribe(filter: string, listener: (topic: string, payload: Buffer) => void): Promise<() => Promise<void>>
  /** The live session of a client on this node. */
  localSession(clientId: string): Session | undefined
  /**
   * Sends one PUBLISH (QoS 0) straight to a client on this node, without a subscription or the
   * bus; resolves true once it is written, false when the client is not here.
   */
  sendLocal(clientId: string, topic: string, payload: Buffer | string): Promise<boolean>
  /** Closes a client's session if it is on this node; true when one was closed. */
  disconnectLocal(clientId: string, reason: string, opts?: { quiet?: boolean }): boolean
  /** Sessions on this node. */
  localSessions(): IterableIterator<Session>
  /** The topic filters a client on this node is subscribed to. */
  subscriptionsOf(clientId: string): string[]
}
