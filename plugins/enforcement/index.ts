// Live enforcement: disabling, deleting or rotating the keys of a device closes its live session on
// whichever node holds it. Registry events reach every node; each closes its own session. A CONNECT
// whose credential check began before such an event arrived is closed as soon as it is ready, so
// the race between a look-up and a revocation never leaves a revoked session open. Events carry the
// revision they made and sessions the revision they were admitted at: a session admitted with the
// new keys, before a revocation's event reached its node, is left alone.
// Gateways learn of children created or deleted while they are connected.
import type { Plugin } from '../../broker/plugin-host.js'
import type { DevicePrincipal, Session } from '../../broker/session.js'
import { isDeviceEvent, type RegistryEvent } from '../../registry/types.js'

/** How long a revocation is remembered for sessions still being set up (ms, monotonic clock). */
const RECENT_MS = 10_000

const REVOKING = new Set(['device.disabled', 'device.deleted', 'credential.revoked'])

/** Device records read per round trip when sessions are checked after lost events. */
const GAP_BATCH = 500

export function enforcementPlugin(): Plugin {
  return {
    name: 'enforcement',
    dependencies: ['auth'],
    register({ host, registry, broker, metrics, log }) {
      /** Recent revocations: when they arrived (monotonic clock) and the revision they made. */
      const revoked = new Map<string, { at: number; rev: number | undefined }>()

      function remember(deviceId: string, rev: number | undefined) {
        const now = performance.now()
        revoked.delete(deviceId)
        revoked.set(deviceId, { at: now, rev })
        // entries are in time order: drop the old ones from the front
        for (const [id, r] of revoked) {
          if (now - r.at < RECENT_MS) break
          revoked.delete(id)
        }
      }

      /** Whether a session was admitted before the change that made `rev` (unknown: assume so). */
      const admittedBefore = (p: DevicePrincipal, rev: number | undefined) => rev === undefined || p.rev < rev

      function onEvent(e: RegistryEvent) {
        if (!isDeviceEvent(e)) return
        if (REVOKING.has(e.type)) {
          remember(e.deviceId, e.rev)
          const s = broker.localSession(e.deviceId)
          if (
            s?.principal.kind === 'device' &&
            admittedBefore(s.principal, e.rev) &&
            broker.disconnectLocal(e.deviceId, e.type)
          ) {
            metrics.kicks.inc({ event: e.type })
          }
        }
        if (e.parentId !== undefined && (e.type === 'device.created' || e.type === 'device.deleted')) {
          const gw = broker.localSession(e.parentId)
          if (gw?.principal.kind === 'device') {
            const created = e.type === 'device.created'
            if (created) gw.principal.gateway = true
            gw.principal.children ??= new Map()
            gw.principal.children.set(e.deviceId, created)
          }
        }
      }
      host.onClose(registry.store.events.subscribe(onEvent))

      /**
       * Events may have been lost (Redis's subscription broke): each device session whose registry
       * entry changed since it was admitted, or is gone, is closed to be checked afresh when it
       * reconnects, and gateways forget what they knew of their children.
       */
      async function recheckSessions(): Promise<void> {
        const sessions = [...broker.localSessions()].filter((s) => s.principal.kind === 'device')
        for (let i = 0; i < sessions.length; i += GAP_BATCH) {
          const batch = sessions.slice(i, i + GAP_BATCH)
          const records = await registry.store.devices.getMany(batch.map((s) => s.clientId))
          batch.forEach((s, j) => {
            const p = s.principal as DevicePrincipal
            p.gateway = undefined
            p.children = undefined
            const r = records[j]
            if (r !== undefined && r.rev <= p.rev) return
            // a session that replaced it meanwhile was admitted after the read
            if (broker.localSession(s.clientId) !== s) return
            if (broker.disconnectLocal(s.clientId, 'registry changed while its events were lost')) {
              metrics.kicks.inc({ event: 'gap' })
            }
          })
        }
      }
      host.onClose(
        registry.store.events.onGap(() => {
          recheckSessions().catch((err: unknown) =>
            log.error({ err }, 'sessions not checked after lost registry events'),
          )
        }),
      )

      host.addHook('sessionReady', function closeIfRevokedMeanwhile(s: Session) {
        if (s.principal.kind !== 'device') return
        const r = revoked.get(s.principal.deviceId)
        if (r !== undefined && r.at > s.startedAt && admittedBefore(s.principal, r.rev)) {
          if (broker.disconnectLocal(s.clientId, 'revoked while connecting')) metrics.kicks.inc({ event: 'race' })
        }
      })
    },
  }
}
