// A backend service over MQTT: user name `service:{name}`, password an API token (PROTOCOL.md,
// "Backend services over MQTT"). It reads device traffic across the fleet; it never publishes on
// device topics (services drive devices through the HTTP API).
import { randomBytes } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import { EVENT_KINDS, type EventKind, IOT_PREFIX, splitIotTopic } from '../registry/topics.js'
import type { QoS } from './channel.js'
import { type ConnectionOptions, openClient } from './connect.js'
import { decodeJson } from './payload.js'
import { type MessageHandler, routeMessages, type TopicRouter } from './router.js'

export interface ServiceOptions extends ConnectionOptions {
  name: string
  /** An API token. */
  token: string
  /** Default `service:{name}:{random}`, which no device id can be, so two instances never take each other over. */
  clientId?: string
}

/** `value` is the decoded JSON, or undefined when the payload is not JSON (e.g. a compact binary frame). */
export type TelemetryHandler = (deviceId: string, value: unknown, raw: Buffer) => void
/** `event` is the decoded JSON, or undefined when the payload is not JSON. */
export type EventHandler = (deviceId: string, kind: string, event: unknown) => void

export interface ServiceSubscribeOptions {
  qos?: QoS
}

/** Removes the handler, and unsubscribes when it was the last one on its filter. */
export type Unsubscribe = () => Promise<void>

export interface ServiceClient {
  readonly name: string
  readonly mqtt: MqttClient
  /** Subscribes `$iot/+/telemetry` (default QoS 0: the next sample supersedes a lost one). */
  onTelemetry(handler: TelemetryHandler, opts?: ServiceSubscribeOptions): Promise<Unsubscribe>
  /** Subscribes `$iot/+/events/{kind}`, or every kind with `#` (default QoS 1: events are few and matter). */
  onEvents(kind: EventKind | '#', handler: EventHandler, opts?: ServiceSubscribeOptions): Promise<Unsubscribe>
  end(force?: boolean): Promise<void>
}

const EVENTS = 'events/'

/** Adds the route, then subscribes; a refused or failed SUBSCRIBE takes the route away again. */
async function subscribeRoute(
  client: MqttClient,
  router: TopicRouter,
  filter: string,
  qos: QoS,
  handler: MessageHandler,
): Promise<Unsubscribe> {
  const remove = router.add(filter, handler)
  try {
    await client.subscribeAsync(filter, { qos })
  } catch (err) {
    remove()
    throw err
  }
  return async function unsubscribe() {
    remove()
    if (!router.has(filter)) await client.unsubscribeAsync(filter)
  }
}

export async function connectService(opts: ServiceOptions): Promise<ServiceClient> {
  const clientId = opts.clientId ?? `service:${opts.name}:${randomBytes(6).toString('hex')}`
  const { client, ready } = openClient(opts, { clientId, username: `service:${opts.name}`, password: opts.token })
  const router = routeMessages(client, opts.onError)
  await ready

  return {
    name: opts.name,
    mqtt: client,
    onTelemetry(handler, sub = {}) {
      return subscribeRoute(client, router, `${IOT_PREFIX}+/telemetry`, sub.qos ?? 0, function telemetry(topic, raw) {
        const split = splitIotTopic(topic)
        if (split) handler(split.deviceId, decodeJson(raw), raw)
      })
    },
    onEvents(kind, handler, sub = {}) {
      if (kind !== '#' && !(EVENT_KINDS as readonly unknown[]).includes(kind)) {
        return Promise.reject(new TypeError(`${String(kind)} is not an event kind (${EVENT_KINDS.join(', ')}, or #)`))
      }
      return subscribeRoute(
        client,
        router,
        `${IOT_PREFIX}+/${EVENTS}${kind}`,
        sub.qos ?? 1,
        function event(topic, raw) {
          const split = splitIotTopic(topic)
          if (!split || !topic.startsWith(EVENTS, split.restAt)) return
          handler(split.deviceId, topic.slice(split.restAt + EVENTS.length), decodeJson(raw))
        },
      )
    },
    async end(force = false) {
      await client.endAsync(force)
    },
  }
}
