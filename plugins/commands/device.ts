// The device's side of commands: it subscribes to `$iot/{id}/cmd/req` (queued commands are then
// delivered, in order), and answers on `$iot/{id}/cmd/res` with `{rid, status, body?}`: 202 first
// (received and started), then one final status. A gateway does this on its children's topics.

import type { Logger } from '../../broker/log.js'
import type { BrokerPort, Session, UplinkMessage } from '../../broker/session.js'
import { decodeEnvelope, isPlainObject, ridOf } from '../../registry/envelope.js'
import { devicesSubscribedTo } from '../../registry/topics.js'
import type { CommandService } from './service.js'

const REQ = 'cmd/req'

const LOGGED_BAD_ANSWER = 1 << 8

export function createDeviceSide(commands: CommandService, broker: BrokerPort, log: Logger) {
  async function deliverAll(ids: string[]) {
    for (const id of ids) await commands.deliverQueued(id)
  }

  return {
    onSubscribed(session: Session, topics: readonly string[]) {
      return deliverAll(devicesSubscribedTo(session.principal, topics, REQ))
    },
    onReady(session: Session) {
      if (session.principal.kind !== 'device') return
      return deliverAll(devicesSubscribedTo(session.principal, broker.subscriptionsOf(session.clientId), REQ))
    },
    async onAnswer(m: UplinkMessage): Promise<void> {
      const d = decodeEnvelope(m.payload)
      let why: string
      if (!d.ok) why = await commands.reject(m.deviceId, 'invalid', d.error)
      else {
        const r = ridOf(d.value)
        if (r.rid === undefined) why = await commands.reject(m.deviceId, 'invalid', r.error)
        else {
          const e = d.value as Record<string, unknown>
          why = await commands.answer(m.deviceId, r.rid, e.status, isPlainObject(e) ? e.body : undefined)
          if (why === 'ok') return
        }
      }
      if (!(m.session.logged & LOGGED_BAD_ANSWER)) {
        m.session.logged |= LOGGED_BAD_ANSWER
        log.info(
          { clientId: m.session.clientId, deviceId: m.deviceId, why },
          'command answer dropped (logged once per session)',
        )
      }
    },
  }
}
