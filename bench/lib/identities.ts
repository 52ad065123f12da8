// Who the generator's clients are on each broker. On FleetHub every client is a real principal, so
// authentication and ACLs are on the measured path: a device created through the HTTP API that
// connects with its key, or a service (`service:bench`, the admin token) where a subscriber reads
// other devices' topics. Vanilla Aedes and Mosquitto run without authentication: the same client
// ids, no credentials.
import { createDevices } from './devices.js'
import type { Identity } from './packets.js'
import type { RunningBroker } from './target.js'

export interface Identities {
  /** Devices with these ids: created (keys and all) on FleetHub, anonymous elsewhere. */
  devices(ids: readonly string[]): Promise<Identity[]>
  /** A backend service client that may read any device's topics. */
  service(clientId: string): Identity
}

/** HTTP creations in flight: enough to keep the API busy, few enough not to queue for long. */
const CREATE_PARALLEL = 32
export const SERVICE_USER = 'service:bench'

/** `bench-p-0001`…: a role letter and a zero-padded number, valid device ids that sort. */
export function ids(role: string, n: number, width = 4): string[] {
  return Array.from({ length: n }, (_, i) => `bench-${role}-${String(i + 1).padStart(width, '0')}`)
}

export function identitiesFor(broker: RunningBroker): Identities {
  const api = broker.api
  if (!api) {
    return {
      devices: async (list) => list.map((clientId) => ({ clientId })),
      service: (clientId) => ({ clientId }),
    }
  }
  return {
    async devices(list) {
      const { devices } = await createDevices(api.url, api.adminToken, list, CREATE_PARALLEL)
      return devices.map((d) => ({ clientId: d.id, username: d.id, password: d.key }))
    },
    service: (clientId) => ({ clientId, username: SERVICE_USER, password: api.adminToken }),
  }
}
