// Creating the bench's devices through the HTTP API, as an operator's tooling would: the keys exist
// only in the creation answer, so this is also the only way for the generator to learn them.
import { request } from './http.js'
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

const REQUEST_TIMEOUT_MS = 10_000

/** `bench-00001`, `bench-00002`…: sorted, readable, valid device ids. */
export function benchDeviceIds(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `bench-${String(i + 1).padStart(5, '0')}`)
}

async function createOne(httpUrl: string, adminToken: string, id: string): Promise<string> {
  const res = await request(`${httpUrl}/devices`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id }),
    timeoutMs: REQUEST_TIMEOUT_MS,
  })
  const text = await res.text()
  if (res.status !== 201) throw new Error(`POST /devices ${id} answered ${res.status}: ${text.slice(0, 200)}`)
  const key = (JSON.parse(text) as { keys?: { primary?: unknown } }).keys?.primary
  if (typeof key !== 'string') throw new Error(`POST /devices ${id}: no keys.primary in the answer`)
  return key
}

/** Creates the devices with at most `parallel` requests in flight; throws on the first failure. */
export async function createDevices(
  httpUrl: string,
  adminToken: string,
  ids: readonly string[],
  parallel: number,
): Promise<CreatedDevices> {
  const devices: DeviceCredential[] = new Array(ids.length)
  const startedAt = nowMs()
  await forEachLimit(ids, parallel, async function createDevice(id, i) {
    devices[i] = { id, key: await createOne(httpUrl, adminToken, id) }
  })
  return { devices, ms: nowMs() - startedAt }
}
