// Where Aedes keeps sessions, retained messages and wills, and how messages cross nodes: in memory
// (Aedes's defaults) or in Redis (aedes-persistence-redis and mqemitter-redis on one ioredis copy).
// MQTT channels get a prefix, so a service's `#` subscription (a Redis PSUBSCRIBE) never matches
// FleetHub's own channels such as registry events.
import { createRequire } from 'node:module'
import persistenceRedis from 'aedes-persistence-redis'
import { Redis } from 'ioredis'

const require = createRequire(import.meta.url)

export interface MqttBackend {
  // biome-ignore lint/suspicious/noExplicitAny: Aedes's mq and persistence are untyped
  mq?: any
  // biome-ignore lint/suspicious/noExplicitAny: see above
  persistence?: any
  /** Closes what Aedes does not close itself (the persistence connection). */
  close(): Promise<void>
}

export interface RedisBackendOptions {
  url: string
  prefix: string
  onError: (err: Error) => void
}

/** mqemitter-redis's prefixed variant, which its typings leave out. */
// biome-ignore lint/suspicious/noExplicitAny: the emitter is handed to Aedes untyped
type PrefixedEmitter = new (prefix: string, opts: object) => any

export function memoryBackend(): MqttBackend {
  return { async close() {} }
}

export function redisBackend(opts: RedisBackendOptions): MqttBackend {
  const { MQEmitterRedisPrefix } = require('mqemitter-redis') as { MQEmitterRedisPrefix: PrefixedEmitter }
  const conn = new Redis(opts.url, { keyPrefix: `${opts.prefix}:aedes:`, enableAutoPipelining: true })
  const pubConn = new Redis(opts.url, { enableAutoPipelining: true })
  const subConn = new Redis(opts.url)
  for (const c of [conn, pubConn, subConn]) c.on('error', opts.onError)
  const mq = new MQEmitterRedisPrefix(`${opts.prefix}:mq:`, {
    pubConn,
    subConn,
    // [MQTT-4.7.1-3]: `a/#` also matches `a`
    matchEmptyLevels: true,
  })
  mq.state.on('error', opts.onError)
  const persistence = persistenceRedis({ conn })
  return {
    mq,
    persistence,
    async close() {
      // Aedes closes the mq (both pub/sub connections); the persistence connection is ours to end
      if (conn.status !== 'end') await conn.quit().catch(() => conn.disconnect())
    },
  }
}
