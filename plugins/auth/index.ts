// Authentication at CONNECT. Devices: user name = client id = device id, password = a key or a
// signed token (registry/credentials.ts). Services: user name `service:{name}`, password = an API
// token. Refusals never say which part was wrong: unknown device, wrong key and bad or expired token
// all get CONNACK 4; a disabled device with good credentials gets 5. User names starting with
// `$provision/` are left to the provisioning plugin.

import type { AuthFailureReason } from '../../broker/metrics.js'
import type { Plugin } from '../../broker/plugin-host.js'
import type { ConnectContext, DevicePrincipal, Principal, ServicePrincipal } from '../../broker/session.js'
import { checkPassword, secretMatcher } from '../../registry/credentials.js'
import { errors } from '../../registry/errors.js'
import { isDeviceId, SERVICE_PREFIX, serviceNameOf } from '../../registry/ids.js'
import { PROVISION_PREFIX } from '../../registry/provisioning.js'
import { devicePrefix } from '../../registry/topics.js'
import { isDeviceEvent } from '../../registry/types.js'
import { type CachedDevice, CredentialCache } from './cache.js'

export interface AuthPluginOptions {
  /** The admin API token; services presenting it get the admin role. */
  adminToken: string
  /** How long "no such device" is remembered. */
  negativeTtlMs?: number
}

function refuse(err: Error, reason: AuthFailureReason): Error {
  return Object.assign(err, { reason })
}

export function authPlugin(opts: AuthPluginOptions): Plugin {
  return {
    name: 'auth',
    register({ host, registry, config, metrics }) {
      const isAdminToken = secretMatcher(opts.adminToken)
      const cache = new CredentialCache({
        max: config.authCacheSize,
        negativeTtlMs: opts.negativeTtlMs ?? 5000,
        load: (id) => registry.getRecord(id),
        onLookup: (result) => metrics.authCache.inc(result),
      })
      host.provide('auth.cache', cache)
      const unsubscribe = registry.store.events.subscribe(function evictOnRegistryEvent(e) {
        if (isDeviceEvent(e)) cache.evict(e.deviceId)
      })
      host.onClose(unsubscribe)
      host.onClose(registry.store.events.onGap(() => cache.clear()))

      async function authenticateService(ctx: ConnectContext, name: string): Promise<Principal | Error> {
        const password = ctx.password?.toString('utf8') ?? ''
        if (!isAdminToken(password)) return refuse(new errors.BAD_CREDENTIALS(), 'bad_credentials')
        // a service must not take over a device's session by borrowing its client id [MQTT-3.1.4-2]
        if (isDeviceId(ctx.clientId) && (await cache.get(ctx.clientId))) {
          return refuse(new errors.IDENTIFIER_REJECTED('the client id belongs to a device'), 'identifier_rejected')
        }
        const p: ServicePrincipal = { kind: 'service', name, role: 'admin' }
        return p
      }

      function admit(id: string, password: string, device: CachedDevice | undefined): Principal | Error {
        if (!device) return refuse(new errors.BAD_CREDENTIALS(), 'unknown_device')
        const check = checkPassword(id, password, device.verifiers, Math.floor(Date.now() / 1000))
        if (check === 'expired') return refuse(new errors.BAD_CREDENTIALS(), 'expired_token')
        if (check !== 'ok') return refuse(new errors.BAD_CREDENTIALS(), 'bad_credentials')
        if (device.status !== 'enabled') return refuse(new errors.NOT_AUTHORIZED(), 'disabled')
        const p: DevicePrincipal = {
          kind: 'device',
          deviceId: id,
          prefix: devicePrefix(id),
          rev: device.rev,
          ...(device.parentId !== undefined ? { parentId: device.parentId } : {}),
        }
        return p
      }

      async function authenticateDevice(ctx: ConnectContext, id: string): Promise<Principal | Error> {
        if (ctx.clientId !== id) {
          return refuse(new errors.IDENTIFIER_REJECTED('the client id must be the device id'), 'identifier_rejected')
        }
        const password = ctx.password?.toString('utf8') ?? ''
        const verdict = admit(id, password, await cache.get(id))
        if (!(verdict instanceof Error)) return verdict
        const again = await cache.recheck(id)
        return again ? admit(id, password, again.device) : verdict
      }

      host.addHook('authenticate', async function authenticateClient(ctx) {
        const username = ctx.username
        if (username === undefined || username === '') return refuse(new errors.BAD_CREDENTIALS(), 'bad_credentials')
        // the provisioning plugin answers for these (plugins/provisioning)
        if (username.startsWith(PROVISION_PREFIX)) return undefined
        if (username.startsWith(SERVICE_PREFIX)) {
          const name = serviceNameOf(username)
          return name ? authenticateService(ctx, name) : refuse(new errors.BAD_CREDENTIALS(), 'bad_credentials')
        }
        if (!isDeviceId(username)) return refuse(new errors.BAD_CREDENTIALS(), 'unknown_device')
        return authenticateDevice(ctx, username)
      })
    },
  }
}
