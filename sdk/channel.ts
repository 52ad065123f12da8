// The topic helpers of one device id on a shared connection: a device's own, or a gateway's for one
// of its children (the broker lets a gateway use its registered children's topics). Later helpers
// (twin, commands) build on `publishRaw`, `subscribeDownlink` and `onDownlink`.
import type { IPublishPacket, MqttClient } from 'mqtt'
import { DOWNLINK_KINDS, type DownlinkKind, deviceTopic, UPLINK_KINDS, type UplinkKind } from '../registry/topics.js'
import { encodeJson } from './payload.js'
import type { TopicRouter } from './router.js'

/** MQTT quality of service (mqtt.js does not re-export mqtt-packet's type). */
export type QoS = 0 | 1 | 2

export interface PublishOptions {
  /** Default 0. With QoS 1 the broker acknowledges even a PUBLISH it refuses (and drops). */
  qos?: QoS
}

export interface SubscribeOptions {
  /** Default 1, so downlinks are not lost on the way. */
  qos?: QoS
}

export interface DownlinkMessage {
  /** The device the message is for (the child, on a gateway's child channel). */
  deviceId: string
  kind: DownlinkKind
  topic: string
  payload: Buffer
  packet: IPublishPacket
}

export type DownlinkHandler = (message: DownlinkMessage) => void

export interface SubscribeResult {
  granted: DownlinkKind[]
  /** Kinds the broker answered with SUBACK 0x80 (not this device's, or not a registered child). */
  refused: DownlinkKind[]
}

export interface DeviceChannel {
  readonly deviceId: string
  /** JSON-encodes `value` to `$iot/{id}/telemetry`. */
  publishTelemetry(value: unknown, opts?: PublishOptions): Promise<void>
  /** Publishes `payload` as it is to `$iot/{id}/{kind}`. */
  publishRaw(kind: UplinkKind, payload: Buffer | string, opts?: PublishOptions): Promise<void>
  /** Subscribes the exact downlink topics (default: all four); refusals are reported, not thrown. */
  subscribeDownlink(kinds?: readonly DownlinkKind[], opts?: SubscribeOptions): Promise<SubscribeResult>
  /** Calls `handler` for each message on `$iot/{id}/{kind}`; returns its remover. Does not subscribe. */
  onDownlink(kind: DownlinkKind, handler: DownlinkHandler): () => void
}

export function isUplinkKind(kind: unknown): kind is UplinkKind {
  return (UPLINK_KINDS as readonly unknown[]).includes(kind)
}

export function isDownlinkKind(kind: unknown): kind is DownlinkKind {
  return (DOWNLINK_KINDS as readonly unknown[]).includes(kind)
}

/**
 * Checks that an id is one topic level, so it cannot reach another device's topics. The full id
 * rules live in registry/ids.ts, which the SDK does not import (it pulls in the server's error
 * classes); the broker refuses any other id at CONNECT.
 */
export function assertTopicLevel(id: unknown, what: string): string {
  if (typeof id !== 'string' || id === '' || id.length > 128 || /[/+#\0]/.test(id)) {
    throw new TypeError(`${what} must be 1-128 characters without / + # or NUL`)
  }
  return id
}

/** Is this a SUBACK refusal (mqtt.js rejects the whole subscribe when any topic gets 0x80)? */
function isRefusal(err: unknown): boolean {
  const granted = (err as { packet?: { granted?: unknown } }).packet?.granted
  return Array.isArray(granted) && granted.some((code) => typeof code === 'number' && (code & 0x80) !== 0)
}

export function createDeviceChannel(client: MqttClient, router: TopicRouter, deviceId: string): DeviceChannel {
  assertTopicLevel(deviceId, 'device id')

  async function publishRaw(kind: UplinkKind, payload: Buffer | string, opts: PublishOptions = {}): Promise<void> {
    if (!isUplinkKind(kind)) throw new TypeError(`${String(kind)} is not an uplink kind (${UPLINK_KINDS.join(', ')})`)
    await client.publishAsync(deviceTopic(deviceId, kind), payload, { qos: opts.qos ?? 0 })
  }

  async function subscribeOne(kind: DownlinkKind, qos: QoS): Promise<boolean> {
    try {
      await client.subscribeAsync(deviceTopic(deviceId, kind), { qos })
      return true
    } catch (err) {
      if (isRefusal(err)) return false
      throw err
    }
  }

  return {
    deviceId,
    publishRaw,
    publishTelemetry(value, opts) {
      let payload: Buffer
      try {
        payload = encodeJson(value)
      } catch (err) {
        return Promise.reject(err)
      }
      return publishRaw('telemetry', payload, opts)
    },
    async subscribeDownlink(kinds = DOWNLINK_KINDS, opts = {}) {
      for (const k of kinds) {
        if (!isDownlinkKind(k))
          throw new TypeError(`${String(k)} is not a downlink kind (${DOWNLINK_KINDS.join(', ')})`)
      }
      const unique = [...new Set(kinds)]
      // One SUBSCRIBE per topic: when any topic of a SUBSCRIBE is refused, mqtt.js forgets all of
      // that packet's topics for resubscribing after a reconnect, granted ones included.
      const answers = await Promise.all(unique.map((k) => subscribeOne(k, opts.qos ?? 1)))
      const result: SubscribeResult = { granted: [], refused: [] }
      unique.forEach((k, i) => {
        ;(answers[i] ? result.granted : result.refused).push(k)
      })
      return result
    },
    onDownlink(kind, handler) {
      if (!isDownlinkKind(kind)) throw new TypeError(`${String(kind)} is not a downlink kind`)
      return router.add(deviceTopic(deviceId, kind), function downlink(topic, payload, packet) {
        handler({ deviceId, kind, topic, payload, packet })
      })
    },
  }
}
