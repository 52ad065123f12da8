// Device twins and remote configuration (docs/twins.md): desired and reported state with versions,
// merge patches, re-sync on reconnect, the device's requests over MQTT and the operator's routes.
import type { Plugin } from '../../broker/plugin-host.js'
import { createTwinService } from '../../registry/twins.js'
import { createTwinApi } from './api.js'
import { createDeviceHandlers, type TwinFrames } from './device.js'
import { twinRoutes } from './routes.js'
import { createSync } from './sync.js'

export function twinsPlugin(): Plugin {
  return {
    name: 'twins',
    dependencies: ['acl'],
    register({ host, registry, broker, config }) {
      const twins = createTwinService({
        store: registry.store.twins,
        limits: { maxBytes: config.twinMaxBytes, maxDepth: config.twinMaxDepth, maxKeyLength: 128 },
      })
      const api = createTwinApi({ twins, registry, broker })
      host.provide('twins', api)
      const frames: TwinFrames = {}
      host.provide('twins.frames', frames)
      const device = createDeviceHandlers(api, broker, frames)
      host.handle('twin/get', device.get)
      host.handle('twin/reported', device.reported)
      const sync = createSync(twins, broker)
      host.addHook('sessionSubscribed', sync.onSubscribed)
      host.addHook('sessionReady', sync.onReady)
      host.addRoutes(twinRoutes(api))
    },
  }
}
