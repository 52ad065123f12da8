// What a run measures: a broker kind with a store. FleetHub and vanilla Aedes run in memory or on
// Redis; Mosquitto has no Redis mode, so it runs once as the anchor, with store "none".
export type BrokerKind = 'fleethub' | 'aedes' | 'mosquitto'
export const BROKERS: readonly BrokerKind[] = ['fleethub', 'aedes', 'mosquitto']

export type StoreKind = 'memory' | 'redis'
export const STORES: readonly StoreKind[] = ['memory', 'redis']

export type Transport = 'tcp' | 'ws'
export const TRANSPORTS: readonly Transport[] = ['tcp', 'ws']

export interface Target {
  broker: BrokerKind
  store: StoreKind | 'none'
}

export function targetLabel(t: Target): string {
  return t.store === 'none' ? t.broker : `${t.broker}/${t.store}`
}

/** Every broker with every store asked for, Mosquitto once whatever the stores. */
export function planTargets(brokers: readonly BrokerKind[], stores: readonly StoreKind[]): Target[] {
  const targets: Target[] = []
  for (const broker of brokers) {
    if (broker === 'mosquitto') targets.push({ broker, store: 'none' })
    else for (const store of stores) targets.push({ broker, store })
  }
  return targets
}

/** A broker process under test, whatever its kind. */
export interface RunningBroker {
  readonly kind: BrokerKind
  /** The process whose CPU and memory are measured (taskset execs it, so this is the broker itself). */
  readonly pid: number
  readonly mqttPort: number
  /** MQTT over WebSocket on /mqtt; undefined when this broker does not offer it on loopback. */
  readonly wsPort: number | undefined
  /** FleetHub's HTTP API (device creation, /metrics) and admin token. */
  readonly api?: { url: string; adminToken: string }
  problems(): { count: number; last: string[] }
  exitStatus(): string | undefined
  alive(): boolean
  stop(): Promise<void>
}

/** FleetHub's HTTP API, for the scenarios that need it (FleetHub only): throws for any other broker. */
export function fleetHubApi(broker: RunningBroker, scenario: string): { url: string; adminToken: string } {
  if (!broker.api) throw new Error(`${scenario} needs FleetHub (its HTTP API)`)
  return broker.api
}
