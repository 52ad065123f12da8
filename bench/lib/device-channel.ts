// A generator device speaking FleetHub's request/answer envelopes on its own `$iot/{id}/…` topics,
// as the SDK does: JSON payloads published at QoS 1, the downlink topics it needs subscribed at QoS 1,
// and every message it receives handed over parsed (one topic per device per scenario, so the
// topic itself is not needed). Used by the twin (device → broker → device) and command
// (HTTP → device → HTTP) scenarios; the telemetry scenarios keep their stamped fixed-size payloads.
import { closeAll, connectAll, subscribeAll } from './clients.js'
import type { BenchClient, Identity } from './mqtt-client.js'
import { publishPacket } from './packets.js'
import type { RunningBroker } from './target.js'

export type Envelope = Record<string, unknown>

export class DeviceChannel {
  readonly deviceId: string
  readonly client: BenchClient
  /** PUBACKs of this device's QoS 1 publishes. */
  acked = 0
  /** Received payloads that were not a JSON object (should stay 0). */
  malformed = 0
  private readonly topics = new Map<string, Buffer>()
  private nextId = 1

  constructor(client: BenchClient, deviceId: string) {
    this.client = client
    this.deviceId = deviceId
    client.handlers.puback = () => {
      this.acked++
    }
  }

  private topic(kind: string): Buffer {
    let t = this.topics.get(kind)
    if (!t) {
      t = Buffer.from(`$iot/${this.deviceId}/${kind}`)
      this.topics.set(kind, t)
    }
    return t
  }

  /** Publishes each payload on `$iot/{id}/{kind}` at QoS 1, all in one write; false: wait for drain. */
  publish(kind: string, payloads: readonly string[]): boolean {
    const topic = this.topic(kind)
    const frames = payloads.map((p) => {
      const id = this.nextId
      this.nextId = id === 65_535 ? 1 : id + 1
      return publishPacket(topic, Buffer.from(p), 1, id)
    })
    return this.client.wire.write(frames.length === 1 ? (frames[0] as Buffer) : Buffer.concat(frames))
  }

  /** Calls `handler` with every received payload parsed (`now`: when its chunk was read). */
  onEnvelope(handler: (e: Envelope, now: number) => void): void {
    this.client.handlers.message = (buf, start, end, now) => {
      let e: unknown
      try {
        e = JSON.parse(buf.toString('utf8', start, end))
      } catch {
        e = undefined
      }
      if (typeof e !== 'object' || e === null || Array.isArray(e)) this.malformed++
      else handler(e as Envelope, now)
    }
  }
}

/** Connects every device (TCP) and subscribes each to its own downlink topics `kinds` at QoS 1. */
export async function openDeviceChannels(
  broker: RunningBroker,
  identities: readonly Identity[],
  kinds: readonly string[],
): Promise<DeviceChannel[]> {
  const clients = await connectAll(broker, 'tcp', identities)
  try {
    await subscribeAll(clients, (i) => kinds.map((k) => `$iot/${identities[i]?.clientId}/${k}`), 1)
  } catch (err) {
    await closeAll(clients)
    throw err
  }
  return clients.map((c, i) => new DeviceChannel(c, identities[i]?.clientId ?? c.clientId))
}

export function closeDeviceChannels(channels: readonly DeviceChannel[]): Promise<void> {
  return closeAll(channels.map((c) => c.client))
}
