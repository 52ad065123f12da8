// Where Aedes keeps sessions, retained messages and wills, and how messages cross nodes: in memory
// (Aedes's persistence defaults) or in Redis (aedes-persistence-redis, and the bus's cluster link,
// on one ioredis copy). The bus replaces mqemitter and mqemitter-redis in both modes (bus/index.ts).
import { createRequire } from 'node:module'
import persistenceRedis from 'aedes-persistence-redis'
import { Redis } from 'ioredis'
import { autoCorkRedis } from '../../registry/cork.js'
import { type ClusterLink, createClusterLink } from './bus/cluster.js'
import { Bus } from './bus/index.js'
import { trackWillOwners, tuneSessions } from './persistence.js'

export interface MqttBackend {
  readonly mq: Bus
  // biome-ignore lint/suspicious/noExplicitAny: Aedes's persistence interface is untyped
  readonly persistence?: any
  /** Makes sure the nodes in `expected` know this one before it takes clients; returns its peers. */
  join(expected: readonly string[]): Promise<string[]>
  /** Closes what Aedes does not close itself (the persistence connection). */
  close(): Promise<void>
}

export interface RedisBackendOptions {
  url: string
  prefix: string
  node: string
  onError: (err: Error) => void
}

// the memory persistence Aedes would create itself, made here so it can be tuned (its typings do not
// describe the CommonJS factory it exports)
const memoryPersistence = createRequire(import.meta.url)('aedes-persistence') as () => unknown

export async function memoryBackend(onError: (err: Error) => void): Promise<MqttBackend> {
  return {
    mq: new Bus(onError),
    persistence: tuneSessions(memoryPersistence()),
    async join() {
      return []
    },
    async close() {},
  }
}

export async function redisBackend(opts: RedisBackendOptions): Promise<MqttBackend> {
  // no auto-pipelining, as in the registry's store (registry/redis/store.ts): measured, it costs
  // more than it saves (connect-storm 1,037-1,065 against 978-1,024 connects/s, alternating); the
  // connections that send commands are corked per event-loop turn instead, as the store's
  const conn = autoCorkRedis(new Redis(opts.url, { keyPrefix: `${opts.prefix}:aedes:` }))
  const pub = autoCorkRedis(new Redis(opts.url))
  const sub = new Redis(opts.url)
  for (const c of [conn, pub, sub]) c.on('error', opts.onError)
  const mq = new Bus(opts.onError)
  let link: ClusterLink
  try {
    link = await createClusterLink({ node: opts.node, prefix: opts.prefix, pub, sub, onError: opts.onError })
  } catch (err) {
    for (const c of [conn, pub, sub]) c.disconnect()
    throw err
  }
  mq.attach(link)
  return {
    mq,
    persistence: tuneSessions(trackWillOwners(persistenceRedis({ conn }), conn, opts.node)),
    join: (expected) => link.join(expected),
    async close() {
      // Aedes closes the bus (and with it the pub/sub connections); the persistence one is ours
      if (conn.status !== 'end') await conn.quit().catch(() => conn.disconnect())
    },
  }
}
