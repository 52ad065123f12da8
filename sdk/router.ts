// Dispatches the messages of one MQTT connection to handlers by topic filter. Every helper of the
// SDK (downlinks, gateway children, service subscriptions, and the twin and command helpers to come)
// registers here instead of adding its own 'message' listener, so a message is matched once and a
// throwing handler is reported instead of breaking mqtt.js's packet loop.
import type { IPublishPacket, MqttClient } from 'mqtt'
import { topicMatches } from '../registry/topics.js'

export { topicMatches }

export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void

export interface TopicRouter {
  /** Calls `handler` for messages matching `filter` (MQTT wildcards allowed); returns its remover. */
  add(filter: string, handler: MessageHandler): () => void
  /** Whether any handler is still registered for exactly this filter. */
  has(filter: string): boolean
  /** Runs the matching handlers; returns how many ran. */
  dispatch(topic: string, payload: Buffer, packet: IPublishPacket): number
}

const hasWildcard = (filter: string) => filter.includes('+') || filter.includes('#')

export function createTopicRouter(onError: (err: unknown, topic: string) => void): TopicRouter {
  // exact topics (device downlinks) are a map look-up; only wildcard filters (services) are scanned
  const exact = new Map<string, Set<MessageHandler>>()
  const wild = new Map<string, Set<MessageHandler>>()
  const tableOf = (filter: string) => (hasWildcard(filter) ? wild : exact)

  function run(handlers: Set<MessageHandler>, topic: string, payload: Buffer, packet: IPublishPacket): number {
    let ran = 0
    for (const h of handlers) {
      ran++
      try {
        h(topic, payload, packet)
      } catch (err) {
        onError(err, topic)
      }
    }
    return ran
  }

  return {
    add(filter, handler) {
      const table = tableOf(filter)
      let set = table.get(filter)
      if (!set) {
        set = new Set()
        table.set(filter, set)
      }
      // a wrapper, so the same function added twice is removed once per add
      const entry: MessageHandler = (topic, payload, packet) => handler(topic, payload, packet)
      set.add(entry)
      return function removeRoute() {
        const current = table.get(filter)
        if (!current?.delete(entry)) return
        if (current.size === 0) table.delete(filter)
      }
    },
    has(filter) {
      return tableOf(filter).has(filter)
    },
    dispatch(topic, payload, packet) {
      let ran = 0
      const own = exact.get(topic)
      if (own) ran += run(own, topic, payload, packet)
      for (const [filter, handlers] of wild) {
        if (topicMatches(filter, topic)) ran += run(handlers, topic, payload, packet)
      }
      return ran
    },
  }
}

/**
 * A router fed by the client's 'message' events; a handler's throw goes to `onError`, and a message
 * no handler took goes to `onUnrouted` (the device keeps early command requests that way).
 */
export function routeMessages(
  client: MqttClient,
  onError?: (err: Error) => void,
  onUnrouted?: MessageHandler,
): TopicRouter {
  const router = createTopicRouter(function handlerFailed(err) {
    onError?.(err instanceof Error ? err : new Error(String(err)))
  })
  client.on('message', function dispatchMessage(topic, payload, packet) {
    if (router.dispatch(topic, payload, packet) === 0) onUnrouted?.(topic, payload, packet)
  })
  return router
}
