// fan-in: 10 publishers → 1 subscriber, QoS 0. Many devices reporting to one backend reader.
import { ids } from '../lib/identities.js'
import type { BrokerKind } from '../lib/target.js'
import { throughputScenario } from '../lib/throughput-scenario.js'

const PUBLISHERS = 10

/** The topics, in one place: FleetHub's real model, or plain topics of the same shape. */
function mapping(kind: BrokerKind) {
  return kind === 'fleethub'
    ? // each device publishes its own telemetry; one service reads every device's telemetry
      { topic: (id: string) => `$iot/${id}/telemetry`, filter: '$iot/+/telemetry' }
    : { topic: (id: string) => `bench/${id}/telemetry`, filter: 'bench/+/telemetry' }
}

export const fanIn = throughputScenario({
  name: 'fan-in',
  title: 'Fan-in: 10 publishers → 1 subscriber, QoS 0',
  summary: '10 publishers → 1 wildcard subscriber, QoS 0 (msg/s received)',
  description:
    '10 devices publish their telemetry (64-byte payloads, QoS 0) and one subscriber reads all of it ' +
    'through a wildcard (`$iot/+/telemetry`, a service on FleetHub; `bench/+/telemetry` elsewhere). Each ' +
    'publisher keeps at most 300 messages between write and delivery. Figure: messages received per second.',
  qos: 0,
  window: 300,
  unit: 'msg/s',
  async plan(who, kind) {
    const m = mapping(kind)
    const devices = await who.devices(ids('p', PUBLISHERS))
    return {
      publishers: devices.map((identity) => ({ identity, topic: m.topic(identity.clientId) })),
      subscribers: [{ identity: who.service('bench-svc-0001'), filters: [m.filter] }],
      routesOf: () => devices.map((_, i) => i),
      fanout: 1,
    }
  },
})
