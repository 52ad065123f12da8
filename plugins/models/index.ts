// Device models (docs/models.md): the model registry and its routes, each device's binding (shown on
// `GET /devices/{id}`) by its registry entry, its 2-byte key or its self-description, compact frames
// decoded inline or in worker threads, the decoded telemetry stream, and compact reported patches
// applied to the twin.
import type { Plugin } from '../../broker/plugin-host.js'
import { createModelRegistry } from '../../registry/model-registry.js'
import type { TwinFrames } from '../twins/device.js'
import { createDecoder } from './decoder.js'
import { createModelDevice } from './device.js'
import { modelField, modelRoutes } from './routes.js'

export function modelsPlugin(): Plugin {
  return {
    name: 'models',
    dependencies: ['acl', 'twins'],
    register({ host, registry, broker, config, log, metrics }) {
      const models = createModelRegistry({ store: registry.store, events: registry.store.events, node: config.nodeId })
      const decoder = createDecoder(
        {
          policy: config.decodePolicy,
          threads: config.decodeThreads,
          maxQueued: config.decodeQueueMax,
          batchFrames: config.decodeBatch,
        },
        log,
        metrics,
      )
      host.onClose(async () => {
        await decoder.close()
        models.close()
      })
      host.provide('models', models)
      const device = createModelDevice({ models, registry, decoder, broker, log, metrics })
      host.handle('model', device.model)
      host.handle('telemetry', device.telemetry)
      host.use<TwinFrames>('twins.frames').decode = device.reported
      host.addDeviceFields(modelField(models))
      host.addRoutes(modelRoutes(models))
    },
  }
}
