// Presence: every device session's start and end is written to the presence store and published
// for services on `$iot/{id}/events/connected` and `…/disconnected`. Each event carries the device's
// sequence number (so consumers can order events that arrive through different nodes) and `online`,
// the device's presence after the event: a session that was taken over ends with `online: true`.
// Nodes heart-beat into the store, so a device on a node that died is not shown as connected.
import type { Plugin } from '../../broker/plugin-host.js'
import type { Session } from '../../broker/session.js'
import { eventTopic } from '../../registry/topics.js'

export interface PresencePluginOptions {
  heartbeatMs?: number
}

export interface PresenceEvent {
  deviceId: string
  seq: number
  online: boolean
  node: string
  session: string
  at: string
  transport?: string
}

export function presencePlugin(opts: PresencePluginOptions = {}): Plugin {
  return {
    name: 'presence',
    register({ host, registry, broker, log }) {
      const presence = registry.store.presence
      const node = broker.nodeId
      const heartbeatMs = opts.heartbeatMs ?? 5000

      const beat = () =>
        presence
          .heartbeat(node, heartbeatMs * 3)
          .catch((err: unknown) => log.warn({ err }, 'presence heartbeat failed'))
      const timer = setInterval(beat, heartbeatMs)
      timer.unref()
      void beat()
      host.onClose(async () => {
        clearInterval(timer)
        await presence.leave(node)
      })

      async function announce(e: PresenceEvent, kind: 'connected' | 'disconnected'): Promise<void> {
        await broker.publish(eventTopic(e.deviceId, kind), JSON.stringify(e), { qos: 1 })
      }

      // the start of a session while it is being written: its end is written only after it
      const starting = new WeakMap<Session, Promise<void>>()

      host.addHook('sessionReady', function presenceUp(s: Session) {
        if (s.principal.kind !== 'device') return
        const deviceId = s.principal.deviceId
        const at = new Date(s.connectedAt).toISOString()
        const up = presence
          .connected(deviceId, { node, session: s.id, at, transport: s.transport })
          .then((seq) =>
            announce({ deviceId, seq, online: true, node, session: s.id, at, transport: s.transport }, 'connected'),
          )
          .finally(() => starting.delete(s))
        starting.set(
          s,
          up.catch(() => {}),
        )
        return up
      })

      host.addHook('sessionGone', async function presenceDown(s: Session) {
        if (s.principal.kind !== 'device') return
        const deviceId = s.principal.deviceId
        await starting.get(s)
        const at = new Date().toISOString()
        const { seq, online } = await presence.disconnected(deviceId, { session: s.id, at })
        await announce({ deviceId, seq, online, node, session: s.id, at }, 'disconnected')
      })
    },
  }
}
