// pairs: 50 publisher/subscriber pairs, QoS 0 and QoS 1. Many independent device → reader streams.
import { type Identities, ids } from '../lib/identities.js'
import type { PubSubPlan } from '../lib/pubsub.js'
import type { BrokerKind } from '../lib/target.js'
import { throughputScenario } from '../lib/throughput-scenario.js'

const PAIRS = 50

/** The topics, in one place: FleetHub's real model, or plain topics of the same shape. */
function mapping(kind: BrokerKind) {
  return kind === 'fleethub'
    ? // device i publishes its telemetry; service client i reads exactly that device's telemetry
      (id: string) => `$iot/${id}/telemetry`
    : (id: string) => `bench/${id}/telemetry`
}

async function plan(who: Identities, kind: BrokerKind): Promise<PubSubPlan> {
  const topic = mapping(kind)
  const devices = await who.devices(ids('p', PAIRS))
  const readers = ids('svc', PAIRS)
  return {
    publishers: devices.map((identity) => ({ identity, topic: topic(identity.clientId) })),
    subscribers: devices.map((d, i) => ({ identity: who.service(readers[i] as string), filters: [topic(d.clientId)] })),
    routesOf: (sub) => [sub],
    fanout: 1,
  }
}

const DESCRIPTION =
  '50 devices each publish their telemetry (64-byte payloads) and 50 subscribers each read exactly one ' +
  'of them (a service subscribed to `$iot/{device}/telemetry` on FleetHub; `bench/{device}/telemetry` elsewhere), ' +
  'subscription at the same QoS. Each publisher keeps at most 40 messages between write and delivery'

export const pairsQos0 = throughputScenario({
  name: 'pairs-qos0',
  title: 'Pairs: 50 publisher/subscriber pairs, QoS 0',
  summary: '50 publisher → subscriber pairs, QoS 0 (msg/s received)',
  description: `${DESCRIPTION}. Figure: messages received per second, all pairs together.`,
  qos: 0,
  window: 40,
  unit: 'msg/s',
  plan,
})

export const pairsQos1 = throughputScenario({
  name: 'pairs-qos1',
  title: 'Pairs: 50 publisher/subscriber pairs, QoS 1',
  summary: '50 publisher → subscriber pairs, QoS 1 both ways (msg/s received)',
  description:
    `${DESCRIPTION} and at most 40 without PUBACK; subscribers acknowledge every message. ` +
    'Figure: messages received per second, all pairs together.',
  qos: 1,
  window: 40,
  unit: 'msg/s',
  plan,
})
