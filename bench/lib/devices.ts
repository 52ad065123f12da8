// Creating the bench's devices through the HTTP API, as an operator's tooling would: the keys exist
// only in the creation answer, so this is also the only way for the generator to learn them.
// Requests go over keep-alive connections (lib/api-client.ts): with fetch, the generator, not the
// broker, capped creation at about 1,000–1,500 devices/s.
import { apiClient } from './api-client.js'
import { forEachLimit } from './pool.js'
import { nowMs } from './time.js'

export interface DeviceCredential {
  id: string
  key: string
}

export interface CreatedDevices {
  devices: DeviceCredential[]
  /** Wall time of the whole creation, in ms. */
  ms: number
}

/** More of a device than its id, as `POST /devices` takes it. */
export type DeviceFields = { tags?: Record<string, string | number | boolean>; modelId?: string }

/** `bench-00001`, `bench-00002`…: sorted, readable, valid device ids. */
export function benchDeviceIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `bench-${String(i + 1).padStart(5, '0')}`)
}

/** Creates the devices with at most `parallel` requests in flight; throws on the first failure. */
export async function createDevices(
  httpUrl: string,
  adminToken: string,
  ids: readonly string[],
  parallel: number,
  fieldsOf: (i: number) => DeviceFields = () => ({}),
): Promise<CreatedDevices> {
  const devices: DeviceCredential[] = new Array(ids.length)
  const client = apiClient({ url: httpUrl, adminToken }, parallel)
  const startedAt = nowMs()
  try {
    await forEachLimit(ids, parallel, async function createDevice(id, i) {
      const res = await client.request('POST', '/devices', { id, ...fieldsOf(i) })
      if (res.status !== 201) throw new Error(`POST /devices ${id} answered ${res.status}: ${res.body.slice(0, 200)}`)
      const key = (JSON.parse(res.body) as { keys?: { primary?: unknown } }).keys?.primary
      if (typeof key !== 'string') throw new Error(`POST /devices ${id}: no keys.primary in the answer`)
      devices[i] = { id, key }
    })
  } finally {
    client.close()
  }
  return { devices, ms: nowMs() - startedAt }
}
