// The composition root: the only place that picks concrete adapters and wires them together.
// Nothing listens or connects at import time; startApp does, and close() undoes it in reverse.
import './v8-flags.js'
import './quiet-debug.js'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { aclPlugin } from '../plugins/acl/index.js'
import { authPlugin } from '../plugins/auth/index.js'
import { commandsPlugin } from '../plugins/commands/index.js'
import { enforcementPlugin } from '../plugins/enforcement/index.js'
import { modelsPlugin } from '../plugins/models/index.js'
import { otaPlugin } from '../plugins/ota/index.js'
import { presencePlugin } from '../plugins/presence/index.js'
import { provisioningPlugin } from '../plugins/provisioning/index.js'
import { twinsPlugin } from '../plugins/twins/index.js'
import { createMemoryStore } from '../registry/memory/store.js'
import type { RegistryStore } from '../registry/ports.js'
import { createRedisStore } from '../registry/redis/store.js'
import { createRegistryService, type RegistryService } from '../registry/service.js'
import type { Config } from './config.js'
import { createHttpServer, type HttpServer } from './http/server.js'
import { startIdleGc } from './idle-gc.js'
import { createLogger, type Logger } from './log.js'
import { createMetrics, type Metrics } from './metrics.js'
import { type MqttBackend, memoryBackend, redisBackend } from './mqtt/backend.js'
import { createMqttBroker, type MqttBroker } from './mqtt/broker.js'
import { type ListenPorts, type Plugin, PluginHost } from './plugin-host.js'
import type { BrokerPort } from './session.js'

export type Ports = ListenPorts

export interface App {
  readonly config: Config
  readonly ports: Ports
  readonly adminToken: string
  readonly log: Logger
  readonly metrics: Metrics
  readonly registry: RegistryService
  readonly broker: BrokerPort
  readonly http: HttpServer
  readonly host: PluginHost
  /** Graceful stop: stop accepting, close clients, flush and close the stores. Idempotent. */
  close(): Promise<void>
}

export interface StartOptions {
  /** Replaces the JSON logger (tests pass a silent one). */
  log?: Logger
  /** Plugins registered after the core ones (embedding and tests). */
  plugins?: Plugin[]
}

function packageVersion(): string {
  const url = new URL('../../package.json', import.meta.url)
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version
}

/** The capabilities every node runs, in dependency order. */
function corePlugins(adminToken: string): Plugin[] {
  return [
    authPlugin({ adminToken }),
    aclPlugin(),
    presencePlugin(),
    enforcementPlugin(),
    twinsPlugin(),
    modelsPlugin(),
    commandsPlugin(),
    provisioningPlugin(),
    otaPlugin(),
  ]
}

export async function startApp(config: Config, opts: StartOptions = {}): Promise<App> {
  const log = opts.log ?? createLogger(config.logLevel, config.nodeId)
  const metrics = createMetrics()
  const hot = { messagesIn: 0, messagesOut: 0 }
  metrics.bindHotCounters(hot)
  const onStoreError = (err: Error) => log.warn({ err: err.message }, 'store error')

  const cleanups: (() => Promise<void>)[] = []
  const undo = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {})
  }
  try {
    const store: RegistryStore = config.redisUrl
      ? await createRedisStore({ url: config.redisUrl, prefix: config.redisPrefix, onError: onStoreError })
      : createMemoryStore({ onError: (err) => log.error({ err }, 'registry event listener failed') })
    cleanups.push(() => store.close())
    const registry = createRegistryService({ store, node: config.nodeId })

    const backend: MqttBackend = config.redisUrl
      ? await redisBackend({
          url: config.redisUrl,
          prefix: config.redisPrefix,
          node: config.nodeId,
          onError: onStoreError,
        })
      : await memoryBackend((err) => log.error({ err }, 'message bus listener failed'))
    const host = new PluginHost()
    // plugins close after the MQTT side (whose last sessions still run their hooks)
    cleanups.push(() => host.close((name, err) => log.error({ err, plugin: name }, 'plugin close failed')))
    const mqtt: MqttBroker = await createMqttBroker({ config, host, log, metrics, backend, hot })
    cleanups.push(() => mqtt.close())

    const adminToken = config.adminToken ?? randomBytes(24).toString('base64url')
    if (!config.adminToken) {
      // printed once, on purpose: set FLEETHUB_ADMIN_TOKEN to choose your own
      log.warn({ adminToken }, 'no FLEETHUB_ADMIN_TOKEN set: generated an admin token for this run')
    }
    const ctx = { config, log, metrics, registry, broker: mqtt.port }
    for (const p of [...corePlugins(adminToken), ...(opts.plugins ?? [])]) await host.register(p, ctx)

    // the other nodes must know this one before it takes clients, or they would keep messages from it
    const peers = await backend.join([...(await store.presence.liveNodes())])
    if (peers.length > 0) log.info({ peers }, 'joined the cluster')
    const mqttPorts = await mqtt.listen()
    let httpUp = false
    const http = await createHttpServer({
      registry,
      metrics,
      log,
      adminToken,
      version: packageVersion(),
      routes: host.routes,
      publicRoutes: host.publicRoutes,
      deviceFields: host.deviceFields,
      async health() {
        const checks: Record<string, boolean> = { mqtt: !mqtt.aedes.closed, http: httpUp }
        if (store.kind === 'redis')
          checks.redis = await store.ping().then(
            () => true,
            () => false,
          )
        return { ok: Object.values(checks).every(Boolean), checks }
      },
    })
    cleanups.push(() => http.close())
    await http.listen({ port: config.httpPort, host: config.host })
    httpUp = true
    const address = http.server.address()
    const ports: Ports = {
      mqtt: mqttPorts.mqtt,
      ws: mqttPorts.ws,
      http: typeof address === 'object' && address ? address.port : config.httpPort,
      ...(mqttPorts.mqtts !== undefined ? { mqtts: mqttPorts.mqtts, wss: mqttPorts.wss } : {}),
    }
    for (const fn of host.listening) fn(ports)
    cleanups.push(async () => stopIdleGc())
    const stopIdleGc = startIdleGc()
    log.info({ ...ports, store: store.kind, node: config.nodeId }, 'listening')

    let closing: Promise<void> | undefined
    return {
      config,
      ports,
      adminToken,
      log,
      metrics,
      registry,
      broker: mqtt.port,
      http,
      host,
      close() {
        closing ??= (async () => {
          httpUp = false
          await host.stopping((name, err) => log.error({ err, plugin: name }, 'plugin stop failed'))
          await undo()
          log.info('stopped')
        })()
        return closing
      },
    }
  } catch (err) {
    await undo()
    throw err
  }
}
