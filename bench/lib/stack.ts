// The system under test for one run: the store (a fresh redis-server when the target uses Redis)
// and the broker in front of it. A run always starts from an empty store, so runs are comparable.
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
  /** CPU readers of the processes of the stack, by role. */
  cpuReaders(): Record<string, CpuReader>
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
}

export async function startStack(target: Target, opts: StackOptions = {}): Promise<Stack> {
  const redis = target.store === 'redis' ? await startRedis() : undefined
  let broker: RunningBroker
  try {
    broker = await startBroker(target.broker, {
      store: target.store,
      ...(redis ? { redisUrl: redis.url } : {}),
      ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}),
      ...(opts.users ? { users: opts.users } : {}),
      ...(opts.env ? { fleethubEnv: opts.env } : {}),
    })
  } catch (err) {
    await redis?.stop()
    throw err
  }
  const brokerCpu = procCpu(broker.pid)
  return {
    target,
    broker,
    ...(redis ? { redis } : {}),
    brokerCpu,
    cpuReaders() {
      const readers: Record<string, CpuReader> = { broker: brokerCpu }
      if (redis) readers.redis = procCpu(redis.pid)
      return readers
    },
    explain(err) {
      const e = err instanceof Error ? err : new Error(String(err))
      const exit = broker.exitStatus()
      const { last } = broker.problems()
      const notes = [
        ...(exit ? [`the broker had exited (${exit})`] : []),
        ...(last.length > 0 ? ['its last warnings and errors:', ...last.slice(-10).map((l) => `  ${l}`)] : []),
      ]
      if (notes.length > 0) e.message = `${e.message}\n${notes.join('\n')}`
      return e
    },
    async stop() {
      await broker.stop()
      await redis?.stop()
    },
  }
}
