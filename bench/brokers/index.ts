// One entry point for every broker kind: the stack starts a target through here.
import type { BrokerKind, RunningBroker, StoreKind } from '../lib/target.js'
import { startAedes } from './aedes.js'
import { startFleetHub } from './fleethub.js'
import { type MosquittoUser, mosquittoVersion, startMosquitto } from './mosquitto.js'

export type { MosquittoUser } from './mosquitto.js'

export interface StartOptions {
  store: StoreKind | 'none'
  redisUrl?: string
  cpuProfDir?: string
  /** FleetHub's node id (a cluster's nodes need distinct ones; unset: random). */
  nodeId?: string
  /** Users for brokers that take a password file (Mosquitto); the others authenticate their own way. */
  users?: readonly MosquittoUser[]
  /** More FLEETHUB_* settings for FleetHub (the others have none). */
  fleethubEnv?: Record<string, string>
}

export function startBroker(kind: BrokerKind, opts: StartOptions): Promise<RunningBroker> {
  const common = {
    ...(opts.redisUrl ? { redisUrl: opts.redisUrl } : {}),
    ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}),
  }
  switch (kind) {
    case 'fleethub':
      return startFleetHub({
        ...common,
        ...(opts.nodeId ? { nodeId: opts.nodeId } : {}),
        ...(opts.fleethubEnv ? { env: opts.fleethubEnv } : {}),
      })
    case 'aedes':
      return startAedes(common)
    case 'mosquitto':
      return startMosquitto(opts.users ? { users: opts.users } : {})
  }
}

/** Why a broker cannot run on this machine, or undefined when it can. */
export function unavailable(kind: BrokerKind): string | undefined {
  if (kind === 'mosquitto' && !mosquittoVersion()) {
    return 'mosquitto is not installed (Debian package `mosquitto`): skipped'
  }
  return undefined
}
