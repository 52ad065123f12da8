// The device's side of firmware updates: reports on `$iot/{id}/ota/status`, and once the device is
// subscribed to `$iot/{id}/ota/notify` (by SUBSCRIBE, or restored with its persistent session) the
// notification or rollback instruction it must not miss is sent again, once per session. Sending
// only once the subscription exists means nothing is lost to a race with the SUBSCRIBE.
import type { Logger } from '../../broker/log.js'
import type { BrokerPort, Session, UplinkMessage } from '../../broker/session.js'
import { createKeyedSerial } from '../../registry/serial.js'
import { devicesSubscribedTo } from '../../registry/topics.js'
import type { OtaService } from './service.js'

const NOTIFY = 'ota/notify'

export function createDeviceSide(ota: OtaService, broker: BrokerPort, log: Logger) {
  const resent = new WeakMap<Session, Set<string>>()
  /**
   * Per device, its reports in arrival order: Aedes acknowledges a QoS 1 PUBLISH before it is
   * handled and may handle a client's next one meanwhile, so without this `confirming` could
   * overtake `rebooting`.
   */
  const reports = createKeyedSerial()

  async function resendAll(session: Session, ids: string[]): Promise<void> {
    let done = resent.get(session)
    if (!done) {
      done = new Set()
      resent.set(session, done)
    }
    for (const id of ids) {
      if (done.has(id)) continue
      done.add(id)
      await ota.resend(id).catch((err: unknown) => log.error({ err, deviceId: id }, 'OTA: resend failed'))
    }
  }

  return {
    onSubscribed(session: Session, topics: readonly string[]) {
      return resendAll(session, devicesSubscribedTo(session.principal, topics, NOTIFY))
    },
    onReady(session: Session) {
      if (session.principal.kind !== 'device') return
      return resendAll(
        session,
        devicesSubscribedTo(session.principal, broker.subscriptionsOf(session.clientId), NOTIFY),
      )
    },
    onStatus(m: UplinkMessage): Promise<void> {
      return reports.run(m.deviceId, () => ota.onStatus(m.deviceId, m.payload))
    },
  }
}
