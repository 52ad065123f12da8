// aedes-persistence-redis ships no types; this is the part FleetHub uses.
declare module 'aedes-persistence-redis' {
  import type { Redis, RedisOptions } from 'ioredis'

  interface AedesPersistenceRedisOptions extends RedisOptions {
    conn?: Redis
    maxSessionDelivery?: number
    packetTTL?: () => number
  }
  // biome-ignore lint/suspicious/noExplicitAny: Aedes's persistence interface is untyped
  function persistence(opts?: AedesPersistenceRedisOptions): any
  export default persistence
}
