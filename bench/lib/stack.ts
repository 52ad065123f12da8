// The system under test for one run: the store (a fresh redis-server when the target uses Redis)
// and the broker in front of it. A run always starts from an empty store, so runs are comparable.
// A FleetHub run on Redis may add a second node sharing that redis-server (a two-node cluster); it
// is pinned to the broker's CPU too, so the cluster gets the same core a single node gets.
import { type MosquittoUser, startBroker } from '../brokers/index.js'
import { type CpuReader, procCpu } from './cpu-time.js'
import { type RedisServer, startRedis } from './redis.js'
import type { RunningBroker, Target } from './target.js'

export interface Stack {
  readonly target: Target
  readonly broker: RunningBroker
  readonly redis?: RedisServer
  /** CPU time of the broker (also used to tell when it has gone quiet). */
  readonly brokerCpu: CpuReader
  /** CPU readers of the processes of the stack, by role (`broker`, `broker2` once added, `redis`). */
  cpuReaders(): Record<string, CpuReader>
  /** Starts another FleetHub node on the same redis-server (FleetHub on Redis only); stopped with the stack. */
  addNode(): Promise<RunningBroker>
  /** Adds what the broker went through (exit, last warnings) to an error met while using it. */
  explain(err: unknown): Error
  /** Stops the broker, then the store. */
  stop(): Promise<void>
}

export interface StackOptions {
  cpuProfDir?: string
  /** Users for a password file (Mosquitto's connect storm). */
  users?: readonly MosquittoUser[]
  /** More FLEETHUB_* settings for a FleetHub broker. */
  env?: Record<string, string>
  /**
   * Runs once redis-server is up and before the broker starts (Redis targets only): fills the store
   * the way the broker will find it, e.g. with the registry's own code.
   */
  seed?: (redisUrl: string) => Promise<void>
}

/** Node ids of a two-node FleetHub cluster, so its logs and presence say which node did what. */
const NODE_IDS = ['bench-a', 'bench-b']

export async function startStack(target: Target, opts: StackOptions = {}): Promise<Stack> {
  const redis = target.store === 'redis' ? await startRedis() : undefined
  const common = {
    store: target.store,
    ...(redis ? { redisUrl: redis.url } : {}),
    ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}),
    ...(opts.env ? { fleethubEnv: opts.env } : {}),
  }
  let broker: RunningBroker
  try {
    if (redis && opts.seed) await opts.seed(redis.url)
    broker = await startBroker(target.broker, {
      ...common,
      ...(opts.users ? { users: opts.users } : {}),
      ...(target.broker === 'fleethub' && redis ? { nodeId: NODE_IDS[0] } : {}),
    })
  } catch (err) {
    await redis?.stop()
    throw err
  }
  const brokerCpu = procCpu(broker.pid)
  const nodes: RunningBroker[] = [broker]
  return {
    target,
    broker,
    ...(redis ? { redis } : {}),
    brokerCpu,
    cpuReaders() {
      const readers: Record<string, CpuReader> = { broker: brokerCpu }
      nodes.slice(1).forEach((n, i) => {
        readers[`broker${i + 2}`] = procCpu(n.pid)
      })
      if (redis) readers.redis = procCpu(redis.pid)
      return readers
    },
    async addNode() {
      if (target.broker !== 'fleethub' || !redis) throw new Error('a second node needs FleetHub on Redis')
      const node = await startBroker('fleethub', {
        ...common,
        nodeId: NODE_IDS[nodes.length] ?? `bench-${nodes.length}`,
      })
      nodes.push(node)
      return node
    },
    explain(err) {
      const e = err instanceof Error ? err : new Error(String(err))
      const notes: string[] = []
      for (const [i, n] of nodes.entries()) {
        const who = nodes.length > 1 ? `node ${i + 1}` : 'the broker'
        const exit = n.exitStatus()
        const { last } = n.problems()
        if (exit) notes.push(`${who} had exited (${exit})`)
        if (last.length > 0)
          notes.push(`${who}: its last warnings and errors:`, ...last.slice(-10).map((l) => `  ${l}`))
      }
      if (notes.length > 0) e.message = `${e.message}\n${notes.join('\n')}`
      return e
    },
    async stop() {
      for (const n of [...nodes].reverse()) await n.stop()
      await redis?.stop()
    },
  }
}

/**
 * Runs `fn` on a started stack, then stops it whatever happens; an error comes out with what the
 * broker went through added (Stack.explain).
 */
export async function usingStack<T>(stack: Stack, fn: (stack: Stack) => Promise<T>): Promise<T> {
  try {
    return await fn(stack)
  } catch (err) {
    throw stack.explain(err)
  } finally {
    await stack.stop()
  }
}
