// fan-out: 1 publisher → 100 subscribers, QoS 0. One message to many devices (a broadcast).
import { ids } from '../lib/identities.js'
import { throughputScenario } from '../lib/throughput-scenario.js'

const SUBSCRIBERS = 100
/** A plain topic: outside `$`, every authenticated client (devices included) may use any topic. */
const TOPIC = 'bench/fanout'

export const fanOut = throughputScenario({
  name: 'fan-out',
  title: 'Fan-out: 1 publisher → 100 subscribers, QoS 0',
  summary: '1 publisher → 100 subscribers of one topic, QoS 0 (deliveries/s)',
  description:
    `One device publishes to the plain topic \`${TOPIC}\` (64-byte payloads, QoS 0) and 100 devices ` +
    'subscribe to it (on FleetHub all of them are devices with keys: plain topics are open to them). The ' +
    'publisher keeps at most 200 messages (20,000 deliveries) in flight. Figure: deliveries per second, ' +
    'all subscribers together.',
  qos: 0,
  window: 200,
  unit: 'deliveries/s',
  async plan(who) {
    const [publisher] = await who.devices(ids('p', 1))
    const subscribers = await who.devices(ids('s', SUBSCRIBERS))
    return {
      publishers: publisher ? [{ identity: publisher, topic: TOPIC }] : [],
      subscribers: subscribers.map((identity) => ({ identity, filters: [TOPIC] })),
      routesOf: () => [0],
      fanout: SUBSCRIBERS,
    }
  },
})
