// Re-sync after a reconnect: desired changes made while a device was offline are not lost. Once
// the device is subscribed to its `twin/desired` (by SUBSCRIBE, or restored with its persistent
// session), it gets the whole desired document once, as `{version, desired}`, if it has not seen
// the current version. Sending it only once the subscription exists means it cannot be lost to a
// race with the SUBSCRIBE.
import type { BrokerPort, Session } from '../../broker/session.js'
import { devicesSubscribedTo, deviceTopic } from '../../registry/topics.js'
import type { TwinService } from '../../registry/twins.js'

const DESIRED = 'twin/desired'

export function createSync(twins: TwinService, broker: BrokerPort) {
  // devices already brought up to date in a session (a second SUBSCRIBE does not resend)
  const synced = new WeakMap<Session, Set<string>>()

  async function syncDevice(session: Session, deviceId: string): Promise<void> {
    let done = synced.get(session)
    if (!done) {
      done = new Set()
      synced.set(session, done)
    }
    if (done.has(deviceId)) return
    done.add(deviceId)
    const twin = await twins.get(deviceId)
    if (twin.desired.version <= twin.desiredSeen) return
    const message = { version: twin.desired.version, desired: twin.desired.doc }
    await broker.publish(deviceTopic(deviceId, DESIRED), JSON.stringify(message), { qos: 1 })
  }

  return {
    async onSubscribed(session: Session, topics: readonly string[]): Promise<void> {
      await Promise.all(devicesSubscribedTo(session.principal, topics, DESIRED).map((id) => syncDevice(session, id)))
    },
    async onReady(session: Session): Promise<void> {
      if (session.principal.kind !== 'device') return
      const restored = broker.subscriptionsOf(session.clientId)
      if (restored.length > 0)
        await Promise.all(
          devicesSubscribedTo(session.principal, restored, DESIRED).map((id) => syncDevice(session, id)),
        )
    },
  }
}
