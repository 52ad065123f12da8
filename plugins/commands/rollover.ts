// Key rollover as a command (as Azure IoT Suite's ChangeKey): a new key goes to the device with the
// built-in command `$changeKey` (`body: {key}`); the registry switches the primary key to it only
// after the device's success answer. Until then the old key keeps working, and on failure or
// timeout nothing changes. The new key travels to the device, so this is refused for a device
// connected without TLS unless FLEETHUB_ALLOW_INSECURE_ROLLOVER is set. The key is never stored
// in the command record.
import type { BrokerPort } from '../../broker/session.js'
import { generateKey } from '../../registry/credentials.js'
import { errors } from '../../registry/errors.js'
import type { PresenceStore } from '../../registry/ports.js'
import type { RegistryService } from '../../registry/service.js'
import type { CommandService } from './service.js'

export const CHANGE_KEY = '$changeKey'
const SECURE = new Set(['tls', 'wss'])

export type RolloverService = ReturnType<typeof createRollover>

export function createRollover(deps: {
  commands: CommandService
  registry: RegistryService
  presence: PresenceStore
  broker: BrokerPort
  allowInsecure: boolean
}) {
  const { commands, registry, presence, broker } = deps

  /** How the key would travel: the device's own connection, or its gateway's for a child. */
  async function transportOf(deviceId: string, parentId: string | undefined): Promise<string | undefined> {
    for (const id of parentId === undefined ? [deviceId] : [deviceId, parentId]) {
      const local = broker.localSession(id)
      if (local) return local.transport
      const p = await presence.get(id)
      if (p?.online) return p.transport
    }
    return undefined
  }

  return {
    async run(deviceId: string, timeoutMs?: number): Promise<{ id: string; state: string; keysRotatedAt: string }> {
      const device = await registry.getRecord(deviceId)
      if (!device) throw new errors.DEVICE_NOT_FOUND(deviceId)
      const transport = await transportOf(deviceId, device.parentId)
      if (!deps.allowInsecure && transport !== undefined && !SECURE.has(transport)) {
        throw new errors.FORBIDDEN(
          `device ${deviceId} is connected over ${transport}: key rollover sends the new key to the device, so it needs TLS (or FLEETHUB_ALLOW_INSECURE_ROLLOVER=true)`,
        )
      }
      const key = generateKey()
      const { record } = await commands.invoke(deviceId, CHANGE_KEY, {
        builtIn: true,
        body: { key: '(not stored)' },
        secretBody: { key },
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      })
      if (record.state === 'timed_out' || record.state === 'expired') throw new errors.COMMAND_TIMEOUT(record.id)
      if (record.state !== 'succeeded') {
        throw new errors.ROLLOVER_FAILED(
          `the device did not take the new key (command ${record.id} ${record.state}${record.result ? `, status ${record.result.status}` : ''}): nothing changed`,
        )
      }
      const rotated = await registry.replacePrimaryKey(deviceId, key)
      return { id: record.id, state: record.state, keysRotatedAt: rotated.keysRotatedAt }
    },
  }
}
