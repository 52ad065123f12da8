// Commands (docs/commands.md): request/response with acknowledgement then result, timeouts, queued
// delivery for offline devices, cross-node routing, idempotency, and key rollover.
import type { Plugin } from '../../broker/plugin-host.js'
import type { CredentialCache } from '../auth/cache.js'
import { createDeviceSide } from './device.js'
import { createRollover } from './rollover.js'
import { commandRoutes } from './routes.js'
import { createCommandService } from './service.js'

export function commandsPlugin(): Plugin {
  return {
    name: 'commands',
    dependencies: ['auth', 'acl', 'presence'],
    async register({ host, registry, broker, config, log, metrics }) {
      const commands = await createCommandService({
        store: registry.store.commands,
        presence: registry.store.presence,
        registry,
        devices: host.use<CredentialCache>('auth.cache'),
        broker,
        config: {
          maxTimeoutMs: config.commandMaxTimeoutMs,
          retentionMs: config.commandRetentionMs,
          queueMax: config.commandQueueMax,
        },
        log,
        metrics,
      })
      host.onClose(() => commands.close())
      host.provide('commands', commands)
      const rollover = createRollover({
        commands,
        registry,
        presence: registry.store.presence,
        broker,
        allowInsecure: config.allowInsecureRollover,
      })
      const device = createDeviceSide(commands, broker, log)
      host.handle('cmd/res', device.onAnswer)
      host.addHook('sessionSubscribed', device.onSubscribed)
      host.addHook('sessionReady', device.onReady)
      host.addRoutes(commandRoutes(commands, rollover))
    },
  }
}
