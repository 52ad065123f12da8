// The plugin host: capabilities register hooks and handlers here instead of touching Aedes.
// Authorization follows mosquitto's plugin chain: each hook answers allow, deny or defer; the first
// answer that is not defer wins; when all defer, the answer is deny. Hooks take one context object,
// so fields can be added later without breaking plugins.

import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { RegistryService } from '../registry/service.js'
import type { Config } from './config.js'
import type { DeviceFields } from './http/devices.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { BrokerPort, ConnectContext, Principal, Session, UplinkMessage } from './session.js'

export type Decision = 'allow' | 'deny' | 'defer'
/** What a whole chain answers: defer is not an answer. */
export type Verdict = 'allow' | 'deny'

/** A principal to accept, an Error to refuse with (its CONNACK code from errors.ts), undefined to defer. */
export type AuthenticateHook = (ctx: ConnectContext) => Promise<Principal | Error | undefined>
/** Synchronous on the hot path; a promise only where a look-up is unavoidable (gateway children). */
export type AuthorizeHook = (session: Session, topic: string) => Decision | Promise<Decision>
export type SessionHook = (session: Session) => void | Promise<void>
/** After a SUBACK: the topics the client was granted (refused ones are left out). */
export type SubscribedHook = (session: Session, topics: readonly string[]) => void | Promise<void>
/** Handles one uplink message; returns nothing when it is done at once (no promise on the hot path). */
export type UplinkHandler = (msg: UplinkMessage) => Promise<void> | undefined

export interface HookTypes {
  authenticate: AuthenticateHook
  authorizePublish: AuthorizeHook
  authorizeSubscribe: AuthorizeHook
  /** After CONNACK: the session is live. */
  sessionReady: SessionHook
  /** After the session ended (any reason). */
  sessionGone: SessionHook
  sessionSubscribed: SubscribedHook
}

/** The ports this node listens on (after `listen`: port 0 picks one). */
export interface ListenPorts {
  mqtt: number
  ws: number
  http: number
  mqtts?: number
  wss?: number
}

export interface PluginContext {
  readonly config: Config
  readonly log: Logger
  readonly metrics: Metrics
  readonly registry: RegistryService
  readonly broker: BrokerPort
  readonly host: PluginHost
}

export interface Plugin {
  readonly name: string
  readonly dependencies?: readonly string[]
  register(ctx: PluginContext): void | Promise<void>
}

type Hooks = { [K in keyof HookTypes]: HookTypes[K][] }

export class PluginHost {
  readonly hooks: Hooks = {
    authenticate: [],
    authorizePublish: [],
    authorizeSubscribe: [],
    sessionReady: [],
    sessionGone: [],
    sessionSubscribed: [],
  }
  /** HTTP routes of capabilities, mounted behind the API token. */
  readonly routes: FastifyPluginAsyncTypebox[] = []
  /** HTTP routes without the API token (each says in its plugin's docs why that is safe). */
  readonly publicRoutes: FastifyPluginAsyncTypebox[] = []
  /** Fields of `GET /devices/{id}` that capabilities add. */
  readonly deviceFields: DeviceFields[] = []
  /** Called once the listeners are up, with their real ports. */
  readonly listening: ((ports: ListenPorts) => void)[] = []
  private readonly handlers = new Map<string, UplinkHandler>()
  private readonly services = new Map<string, unknown>()
  private readonly closers: { name: string; fn: () => Promise<void> | void }[] = []
  private readonly stoppers: { name: string; fn: () => Promise<void> | void }[] = []
  private readonly registered = new Set<string>()
  private current = 'core'

  async register(plugin: Plugin, ctx: Omit<PluginContext, 'host'>): Promise<void> {
    if (this.registered.has(plugin.name)) throw new Error(`plugin ${plugin.name} is registered twice`)
    for (const dep of plugin.dependencies ?? []) {
      if (!this.registered.has(dep)) throw new Error(`plugin ${plugin.name} needs ${dep}, registered before it`)
    }
    this.current = plugin.name
    try {
      await plugin.register({ ...ctx, host: this, log: ctx.log.child({ plugin: plugin.name }) })
    } finally {
      this.current = 'core'
    }
    this.registered.add(plugin.name)
  }

  addHook<K extends keyof HookTypes>(name: K, fn: HookTypes[K]): void {
    ;(this.hooks[name] as HookTypes[K][]).push(fn)
  }

  /** Claims a reserved uplink kind (`twin/get`, `cmd/res`…); one owner per kind. */
  handle(kind: string, handler: UplinkHandler): void {
    if (this.handlers.has(kind)) throw new Error(`uplink ${kind} already has a handler`)
    this.handlers.set(kind, handler)
  }

  onListening(fn: (ports: ListenPorts) => void): void {
    this.listening.push(fn)
  }

  addRoutes(routes: FastifyPluginAsyncTypebox): void {
    this.routes.push(routes)
  }

  addPublicRoutes(routes: FastifyPluginAsyncTypebox): void {
    this.publicRoutes.push(routes)
  }

  addDeviceFields(fields: DeviceFields): void {
    this.deviceFields.push(fields)
  }

  handlerFor(kind: string): UplinkHandler | undefined {
    return this.handlers.get(kind)
  }

  provide<T>(name: string, service: T): void {
    if (this.services.has(name)) throw new Error(`service ${name} is provided twice`)
    this.services.set(name, service)
  }

  use<T>(name: string): T {
    if (!this.services.has(name)) throw new Error(`no service ${name}: register its plugin first`)
    return this.services.get(name) as T
  }

  /** Runs first when the node stops, while clients, the bus and the stores still work. */
  onStopping(fn: () => Promise<void> | void): void {
    this.stoppers.push({ name: this.current, fn })
  }

  /** Runs the stopping handlers (all at once); failures are reported, not thrown. */
  async stopping(report: (name: string, err: unknown) => void): Promise<void> {
    await Promise.all(
      this.stoppers.map(async (c) => {
        try {
          await c.fn()
        } catch (err) {
          report(c.name, err)
        }
      }),
    )
  }

  onClose(fn: () => Promise<void> | void): void {
    this.closers.push({ name: this.current, fn })
  }

  /** Runs the close handlers in reverse order of registration; failures are reported, not thrown. */
  async close(report: (name: string, err: unknown) => void): Promise<void> {
    for (const c of [...this.closers].reverse()) {
      try {
        await c.fn()
      } catch (err) {
        report(c.name, err)
      }
    }
  }
}

/** Runs an authorization chain; a throwing hook counts as deny (never as a crash). */
export function decide(chain: readonly AuthorizeHook[], session: Session, topic: string): Verdict | Promise<Verdict> {
  for (let i = 0; i < chain.length; i++) {
    let d: Decision | Promise<Decision>
    try {
      d = (chain[i] as AuthorizeHook)(session, topic)
    } catch {
      return 'deny'
    }
    if (d === 'defer') continue
    if (typeof d === 'string') return d
    return finishAsync(d, chain, i + 1, session, topic)
  }
  return 'deny'
}

async function finishAsync(
  pending: Promise<Decision>,
  chain: readonly AuthorizeHook[],
  from: number,
  session: Session,
  topic: string,
): Promise<Verdict> {
  let d: Decision
  try {
    d = await pending
  } catch {
    return 'deny'
  }
  if (d !== 'defer') return d
  for (let i = from; i < chain.length; i++) {
    try {
      d = await (chain[i] as AuthorizeHook)(session, topic)
    } catch {
      return 'deny'
    }
    if (d !== 'defer') return d
  }
  return 'deny'
}
