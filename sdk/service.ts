// A backend service over MQTT: user name `service:{name}`, password an API token (PROTOCOL.md,
// "Backend services over MQTT"). It reads device traffic across the fleet; it never publishes on
// device topics: services drive devices through the HTTP API, which the same client calls when it
// is given `apiUrl` (commands: sdk/api.ts).
import { randomBytes } from 'node:crypto'
import type { MqttClient } from 'mqtt'
import type { CommandState } from '../registry/commands.js'
import { EVENT_KINDS, type EventKind, IOT_PREFIX, splitIotTopic } from '../registry/topics.js'
import { type ApiClient, createApiClient } from './api.js'
import type { QoS } from './channel.js'
import { type ConnectionOptions, openClient } from './connect.js'
import { isJsonObject } from './json.js'
import { decodeJson } from './payload.js'
import { type MessageHandler, routeMessages, type TopicRouter } from './router.js'

export interface ServiceOptions extends ConnectionOptions {
  name: string
  /** An API token. */
  token: string
  /** Default `service:{name}:{random}`, which no device id can be, so two instances never take each other over. */
  clientId?: string
  /** The HTTP API's base URL (e.g. `http://hub.example:8080`), for `invoke` and the other command calls. */
  apiUrl?: string
}

/** `value` is the decoded JSON, or undefined when the payload is not JSON (e.g. a compact binary frame). */
export type TelemetryHandler = (deviceId: string, value: unknown, raw: Buffer) => void
/** `event` is the decoded JSON, or undefined when the payload is not JSON. */
export type EventHandler = (deviceId: string, kind: string, event: unknown) => void

/** A command's state change, as FleetHub publishes it on `$iot/{id}/events/command`. */
export interface CommandEvent {
  id: string
  name: string
  state: CommandState
  at: string
  /** The device's final status (succeeded and failed). */
  status?: number
  body?: unknown
}
export type CommandEventHandler = (deviceId: string, event: CommandEvent) => void

export interface ServiceSubscribeOptions {
  qos?: QoS
}

/** Removes the handler, and unsubscribes when it was the last one on its filter. */
export type Unsubscribe = () => Promise<void>

/** The command calls of the HTTP API (they reject with a TypeError unless `apiUrl` was given). */
export interface ServiceClient extends ApiClient {
  readonly name: string
  readonly mqtt: MqttClient
  /** Subscribes `$iot/+/telemetry` (default QoS 0: the next sample supersedes a lost one). */
  onTelemetry(handler: TelemetryHandler, opts?: ServiceSubscribeOptions): Promise<Unsubscribe>
  /** Subscribes `$iot/+/events/{kind}`, or every kind with `#` (default QoS 1: events are few and matter). */
  onEvents(kind: EventKind | '#', handler: EventHandler, opts?: ServiceSubscribeOptions): Promise<Unsubscribe>
  /** Subscribes `$iot/+/events/command` (QoS 1): every state change of every command. */
  onCommandEvents(handler: CommandEventHandler, opts?: ServiceSubscribeOptions): Promise<Unsubscribe>
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

function isCommandEvent(v: unknown): v is CommandEvent {
  return isJsonObject(v) && typeof v.id === 'string' && typeof v.name === 'string' && typeof v.state === 'string'
}

/** The API calls, or stand-ins that say `apiUrl` is missing. */
function apiOf(opts: ServiceOptions): ApiClient {
  if (opts.apiUrl !== undefined) return createApiClient({ url: opts.apiUrl, token: opts.token })
  const missing = () => Promise.reject(new TypeError('connectService needs apiUrl for the HTTP API'))
  return { invoke: missing, command: missing, cancel: missing, rolloverKey: missing }
}

export async function connectService(opts: ServiceOptions): Promise<ServiceClient> {
  const api = apiOf(opts) // a bad apiUrl throws before anything connects
  const clientId = opts.clientId ?? `service:${opts.name}:${randomBytes(6).toString('hex')}`
  const { client, ready } = openClient(opts, { clientId, username: `service:${opts.name}`, password: opts.token })
  const router = routeMessages(client, opts.onError)
  await ready

  function onEvents(kind: EventKind | '#', handler: EventHandler, sub: ServiceSubscribeOptions = {}) {
    if (kind !== '#' && !(EVENT_KINDS as readonly unknown[]).includes(kind)) {
      return Promise.reject(new TypeError(`${String(kind)} is not an event kind (${EVENT_KINDS.join(', ')}, or #)`))
    }
    return subscribeRoute(client, router, `${IOT_PREFIX}+/${EVENTS}${kind}`, sub.qos ?? 1, function event(topic, raw) {
      const split = splitIotTopic(topic)
      if (!split || !topic.startsWith(EVENTS, split.restAt)) return
      handler(split.deviceId, topic.slice(split.restAt + EVENTS.length), decodeJson(raw))
    })
  }

  return {
    ...api,
    name: opts.name,
    mqtt: client,
    onTelemetry(handler, sub = {}) {
      return subscribeRoute(client, router, `${IOT_PREFIX}+/telemetry`, sub.qos ?? 0, function telemetry(topic, raw) {
        const split = splitIotTopic(topic)
        if (split) handler(split.deviceId, decodeJson(raw), raw)
      })
    },
    onEvents,
    onCommandEvents(handler, sub) {
      return onEvents(
        'command',
        function commandEvent(deviceId, _kind, event) {
          if (isCommandEvent(event)) handler(deviceId, event)
        },
        sub,
      )
    },
    async end(force = false) {
      await client.endAsync(force)
    },
  }
}
