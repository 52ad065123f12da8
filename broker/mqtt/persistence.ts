// Aedes persistence, tuned for devices that use clean sessions (FleetHub's default) and fixed where
// it is wrong in a cluster. Every CONNECT used to cost seven Redis commands; a clean one now costs
// three, and nothing is lost:
// - the stored outgoing queue of a clean session is always empty (Aedes queues only for persistent
//   sessions, and a clean CONNECT has just deleted any), so it is not read, and a PUBACK from a
//   clean session has nothing stored to clear (Aedes looked it up anyway);
// - the incoming QoS 2 store is cleared when a clean session ends only if that session stored
//   something in it (it is still cleared at every clean CONNECT, for sessions that died elsewhere);
// - wills (Redis): aedes-persistence-redis keys a will by the node that stored it, and the delete at
//   CONNECT looked for `will:undefined:{id}`, so the will a crashed node left for a device was
//   published later even when the device had reconnected elsewhere; and that delete scanned the
//   list of all wills. Each will's node is now recorded by client id, so a CONNECT deletes the
//   device's will wherever it was stored, with one GET when there is none.
// - the empty outgoing queue of a clean session is not drained through a stream pipeline (below).
import { syncBuiltinESMExports } from 'node:module'
import stream, { Readable } from 'node:stream'
import type { Redis } from 'ioredis'

const kStoredIncoming = Symbol('fleethub.storedIncoming')

interface PersistenceClient {
  id: string
  clean?: boolean
  closed?: boolean
  brokerId?: string
  [kStoredIncoming]?: true
}

// biome-ignore lint/suspicious/noExplicitAny: Aedes's persistence interface is untyped
type Persistence = any

function bind<T>(p: Persistence, name: string): T {
  return p[name].bind(p) as T
}

const kSkips = Symbol('fleethub.skipsEmptyQueue')

/** A clean session's outgoing queue: nothing, and the same object every time. */
const NOTHING_QUEUED: Readable = Readable.from([])

/**
 * At every CONNECT Aedes drains the session's stored outgoing queue through
 * `pipeline(persistence.outgoingStream(client), transform, done)` (aedes/lib/handlers/connect.js,
 * `emptyQueue`), a step FleetHub cannot reach. For a clean session the queue is NOTHING_QUEUED,
 * and building that pipeline and tearing it down (an AbortController and its DOMException,
 * end-of-stream listeners on both streams) cost about 8 % of a provisioning registration's CPU,
 * a whole connection's life (CPU profile of provision-storm on Redis). So `stream.pipeline` is
 * wrapped: given NOTHING_QUEUED it calls back at once, as the pipeline would have with no error;
 * any other call goes to Node's own function unchanged. Aedes imports it as an ES module binding,
 * hence syncBuiltinESMExports.
 */
function skipEmptyQueuePipelines(): void {
  const original = stream.pipeline
  if ((original as { [kSkips]?: true })[kSkips]) return
  const pipeline = function pipelineUnlessNothingQueued(this: unknown, ...args: unknown[]) {
    if (args[0] === NOTHING_QUEUED) {
      const done = args[args.length - 1]
      if (typeof done === 'function') process.nextTick(done as () => void)
      return args[args.length - 2]
    }
    return (original as (...a: unknown[]) => unknown).apply(this, args)
  }
  // keeps what util.promisify and others read off the function
  Object.defineProperties(pipeline, Object.getOwnPropertyDescriptors(original))
  Object.defineProperty(pipeline, kSkips, { value: true })
  stream.pipeline = pipeline as unknown as typeof stream.pipeline
  syncBuiltinESMExports()
}
export function tuneSessions(p: Persistence): Persistence {
  skipEmptyQueuePipelines()
  const outgoingStream = bind<(c: PersistenceClient) => Readable>(p, 'outgoingStream')
  p.outgoingStream = function outgoingOfPersistentSessions(client: PersistenceClient) {
    return client.clean ? NOTHING_QUEUED : outgoingStream(client)
  }
  const outgoingClearMessageId = bind<(c: PersistenceClient, packet: unknown) => Promise<unknown>>(
    p,
    'outgoingClearMessageId',
  )
  p.outgoingClearMessageId = function clearOutgoingOfPersistentSessions(client: PersistenceClient, packet: unknown) {
    // Aedes never stores a clean session's outgoing QoS 1 messages (deliverQoS writes them at
    // once), yet every PUBACK looked one up: four Redis commands per acknowledged message for nothing
    return client.clean ? Promise.resolve(undefined) : outgoingClearMessageId(client, packet)
  }
  const incomingStorePacket = bind<(c: PersistenceClient, packet: unknown) => Promise<unknown>>(
    p,
    'incomingStorePacket',
  )
  p.incomingStorePacket = function noteStoredIncoming(client: PersistenceClient, packet: unknown) {
    client[kStoredIncoming] = true
    return incomingStorePacket(client, packet)
  }
  if (typeof p.cleanIncoming === 'function') {
    const cleanIncoming = bind<(c: PersistenceClient) => Promise<void>>(p, 'cleanIncoming')
    p.cleanIncoming = async function cleanIncomingIfUsed(client: PersistenceClient) {
      if (client.closed && !client[kStoredIncoming]) return
      await cleanIncoming(client)
    }
  }
  return p
}

/** Records which node holds each client's will (Redis persistence only). */
export function trackWillOwners(p: Persistence, redis: Redis, node: string): Persistence {
  const ownerKey = (id: string) => `willowner:${id}`
  const putWill = bind<(c: PersistenceClient, packet: unknown) => Promise<unknown>>(p, 'putWill')
  const delWill = bind<(c: { id: string; brokerId: string }) => Promise<unknown>>(p, 'delWill')
  p.putWill = async function putWillAndOwner(client: PersistenceClient, packet: unknown) {
    const r = await putWill(client, packet)
    await redis.set(ownerKey(client.id), node)
    return r
  }
  p.delWill = async function delWillWherever(client: PersistenceClient) {
    const key = ownerKey(client.id)
    if (client.brokerId) {
      // a specific node's will (a dead node's, or this client's own at close)
      const r = await delWill({ id: client.id, brokerId: client.brokerId })
      if ((await redis.get(key)) === client.brokerId) await redis.del(key)
      return r
    }
    const owner = await redis.get(key)
    if (!owner) return null
    const r = await delWill({ id: client.id, brokerId: owner })
    await redis.del(key)
    return r
  }
  return p
}
