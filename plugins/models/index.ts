// Device models (docs/models.md): the model registry and its routes, and each device's binding
// shown on `GET /devices/{id}`.
import type { Plugin } from '../../broker/plugin-host.js'
import { createModelRegistry } from '../../registry/model-registry.js'
import { modelField, modelRoutes } from './routes.js'

export function modelsPlugin(): Plugin {
  return {
    name: 'models',
    dependencies: ['acl', 'twins'],
    register({ host, registry, config }) {
      const models = createModelRegistry({ store: registry.store, events: registry.store.events, node: config.nodeId })
      host.onClose(() => models.close())
      host.provide('models', models)
      host.addDeviceFields(modelField(models))
      host.addRoutes(modelRoutes(models))
    },
  }
}
