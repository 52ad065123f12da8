// Firmware updates (docs/ota.md): signed packages, staged rollouts with approval, device progress
// with health confirmation and rollback, driven by a scheduler that survives restarts.
import { readFileSync } from 'node:fs'
import type { Plugin } from '../../broker/plugin-host.js'
import { errors } from '../../registry/errors.js'
import { generateSigningKey, loadSigningKey } from '../../registry/ota.js'
import type { TwinApi } from '../twins/api.js'
import { createDeviceSide } from './device.js'
import { createPackageFiles } from './files.js'
import { otaPublicRoutes, otaRoutes } from './routes.js'
import { createOtaService } from './service.js'

export function otaPlugin(): Plugin {
  return {
    name: 'ota',
    dependencies: ['acl', 'twins'],
    register({ host, registry, broker, config, log, metrics }) {
      const key = config.otaSigningKey ? loadSigningKey(readFileSync(config.otaSigningKey)) : generateSigningKey()
      if (key.ephemeral) {
        log.warn(
          { publicKey: key.publicKeyRaw },
          'no FLEETHUB_OTA_SIGNING_KEY set: package manifests are signed with a key generated for this run (development only)',
        )
      }
      if (config.otaBaseUrl !== undefined && !/^https?:\/\/[^/]/.test(config.otaBaseUrl)) {
        throw new errors.CONFIG(
          `FLEETHUB_OTA_BASE_URL must be an http(s) URL, not ${JSON.stringify(config.otaBaseUrl)}`,
        )
      }
      const ota = createOtaService({
        store: registry.store.ota,
        registry,
        broker,
        twins: host.use<TwinApi>('twins'),
        files: createPackageFiles(config.otaDir, config.otaMaxPackageBytes),
        key,
        log,
        metrics,
        config: {
          tickMs: config.otaTickMs,
          host: config.host,
          httpPort: config.httpPort,
          ...(config.otaBaseUrl !== undefined ? { baseUrl: config.otaBaseUrl } : {}),
        },
      })
      host.provide('ota', ota)
      const device = createDeviceSide(ota, broker, log)
      host.handle('ota/status', device.onStatus)
      host.addHook('sessionSubscribed', device.onSubscribed)
      host.addHook('sessionReady', device.onReady)
      host.addRoutes(otaRoutes(ota))
      host.addPublicRoutes(otaPublicRoutes(ota))
      host.onListening((ports) => ota.setHttpPort(ports.http))
      // the node that deleted a device takes it out of its open jobs
      const unsubscribe = registry.store.events.subscribe(function deviceGone(e) {
        if (e.type !== 'device.deleted' || e.origin !== config.nodeId) return
        ota
          .deviceDeleted(e.deviceId)
          .catch((err: unknown) => log.error({ err, deviceId: e.deviceId }, 'OTA: a deleted device stays in its jobs'))
      })
      host.onClose(unsubscribe)
      ota.start()
      // the scheduler stops before the MQTT side closes, so no job moves while devices are let go
      host.onStopping(() => ota.close())
      host.onClose(() => ota.close()) // a start that failed has no stopping phase
    },
  }
}
