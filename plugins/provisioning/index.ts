// Provisioning (docs/provisioning.md): the bootstrap service. A device that knows only its
// enrollment's key (or a group key it derived its own from) connects with user name
// `$provision/{enrollmentId}`, client id = its registration id and a single-use token; publishes
// `{rid, payload?}` to `$provision/{registrationId}/register`; gets `{rid, status, deviceId, hub,
// assignedAt}` on `$provision/{registrationId}/res` (sent to it directly: it need not subscribe);
// then the connection is closed. It can do nothing else, and is closed after CONNECT_WINDOW_MS idle.
import type { Plugin } from '../../broker/plugin-host.js'
import type { ProvisionPrincipal, Session } from '../../broker/session.js'
import { decodeEnvelope, encodeEnvelope, isPlainObject, ridOf } from '../../registry/envelope.js'
import { errorBody, errors, statusOf } from '../../registry/errors.js'
import { enrollmentIdOf, type OwnEndpoints, PROVISION_PREFIX, parseHubs } from '../../registry/provisioning.js'
import { PROVISION_REGISTER } from '../../registry/topics.js'
import type { TwinApi } from '../twins/api.js'
import { provisioningRoutes } from './routes.js'
import { createProvisioningService } from './service.js'

/** How long a provisioning connection may stay without registering. */
const CONNECT_WINDOW_MS = 30_000

/** A desired document without its `$version` and `$metadata`. */
export function plainDesired(desired: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(desired)) if (!k.startsWith('$')) out[k] = v
  return out
}

function ownEndpoints(host: string, ports: { mqtt: number; ws: number; mqtts?: number }): OwnEndpoints {
  const h = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  return {
    mqtt: `mqtt://${h}:${ports.mqtt}`,
    ws: `ws://${h}:${ports.ws}/mqtt`,
    ...(ports.mqtts !== undefined ? { mqtts: `mqtts://${h}:${ports.mqtts}` } : {}),
  }
}

export function provisioningPlugin(): Plugin {
  return {
    name: 'provisioning',
    dependencies: ['auth', 'acl', 'twins'],
    register({ host, registry, broker, config, log, metrics }) {
      let hubs: ReturnType<typeof parseHubs>
      try {
        hubs = parseHubs(config.provisioningHubs)
      } catch (err) {
        throw new errors.CONFIG(`invalid FLEETHUB_PROVISIONING_HUBS: ${(err as Error).message}`)
      }
      const twins = host.use<TwinApi>('twins')
      const own: OwnEndpoints = ownEndpoints(config.host, { mqtt: config.mqttPort, ws: config.wsPort })
      host.onListening((ports) => Object.assign(own, ownEndpoints(config.host, ports)))

      const service = createProvisioningService({
        store: registry.store.provisioning,
        registry,
        hubs,
        own,
        node: config.nodeId,
        log,
        async provisionLocal(id, r) {
          const { created } = await registry.provisionDevice({
            id,
            verifier: r.verifier,
            tags: r.tags,
            ...(r.modelId !== undefined ? { modelId: r.modelId } : {}),
          })
          if (created && Object.keys(r.desired).length > 0) {
            try {
              await twins.patchDesired(id, r.desired)
            } catch (err) {
              // nothing half-registered: without its initial twin the device goes again
              await registry.deleteDevice(id).catch(() => {})
              throw err
            }
          }
          return { created }
        },
        async readLocal(id) {
          const record = await registry.getRecord(id)
          if (!record) return undefined
          const view = await twins.view(id)
          return { tags: record.tags, desired: plainDesired(view.desired as Record<string, unknown>) }
        },
      })
      host.provide('provisioning', service)

      host.addHook('authenticate', async function authenticateProvisioning(ctx) {
        const username = ctx.username
        if (username === undefined || !username.startsWith(PROVISION_PREFIX)) return undefined
        const enrollmentId = enrollmentIdOf(username)
        if (enrollmentId === undefined)
          return Object.assign(new errors.BAD_CREDENTIALS(), { reason: 'bad_credentials' })
        return service.authenticate(ctx.clientId, enrollmentId, ctx.password?.toString('utf8') ?? '')
      })

      /** Closes this session (not a newer one that took its client id over). */
      const close = (s: Session, reason: string) => {
        if (broker.localSession(s.clientId)?.id === s.id) broker.disconnectLocal(s.clientId, reason, { quiet: true })
      }
      const timers = new Map<string, NodeJS.Timeout>()
      host.addHook('sessionReady', function provisioningWindow(s: Session) {
        if (s.principal.kind !== 'provision') return
        const timer = setTimeout(() => close(s, 'provisioning: no registration in time'), CONNECT_WINDOW_MS)
        timer.unref()
        timers.set(s.id, timer)
      })
      host.addHook('sessionGone', function provisioningGone(s: Session) {
        const timer = timers.get(s.id)
        if (timer) clearTimeout(timer)
        timers.delete(s.id)
      })
      host.onClose(() => {
        for (const t of timers.values()) clearTimeout(t)
        timers.clear()
      })

      host.handle(PROVISION_REGISTER, async function registerDevice(m) {
        const session = m.session
        const p = session.principal as ProvisionPrincipal
        if (session.data.has('provisioning')) return // one registration per connection
        session.data.set('provisioning', true)
        const decoded = decodeEnvelope(m.payload)
        let answer: Record<string, unknown>
        if (!decoded.ok) {
          answer = { status: 400, error: { code: 'FLEETHUB_ERR_BAD_REQUEST', message: decoded.error } }
        } else {
          const r = ridOf(decoded.value)
          if (!('rid' in r) || r.rid === undefined) {
            answer = { status: 400, error: { code: 'FLEETHUB_ERR_BAD_REQUEST', message: r.error } }
          } else {
            const payload = isPlainObject(decoded.value) ? decoded.value.payload : undefined
            try {
              const a = await service.register(p, payload)
              answer = { rid: r.rid, status: 200, ...a }
            } catch (err) {
              const status = statusOf(err)
              if (status >= 500) log.warn({ err, registrationId: p.registrationId }, 'provisioning failed')
              answer = { rid: r.rid, status, ...errorBody(err) }
            }
          }
        }
        metrics.provisionings.inc(String(answer.status))
        // a storm of registrations is routine: successes at debug, refusals where operators look
        log[answer.status === 200 ? 'debug' : 'info'](
          { registrationId: p.registrationId, enrollmentId: p.enrollmentId, status: answer.status, hub: answer.hub },
          'provisioning answered',
        )
        if (broker.localSession(session.clientId)?.id !== session.id) return
        await broker.sendLocal(session.clientId, p.responseTopic, encodeEnvelope(answer, decoded.encoding))
        close(session, 'provisioning: answered')
      })

      host.addRoutes(provisioningRoutes(service))
    },
  }
}
