// Filling the registry with a large fleet before a measurement, by the fastest honest path each
// store offers (the HTTP API has no bulk route):
// - Redis: before the broker starts, the registry's own code, what the broker itself runs (the
//   Redis store adapter, RegistryService, TwinService from dist/registry), writes the devices, their
//   statuses and reported twins into the redis-server the broker will then use, many calls in flight
//   (ioredis pipelines them). The records, indexes and twins are exactly those the API would write.
// - memory: the store lives inside the broker process, so only its interfaces reach it: POST /devices
//   (with tags) and PATCH /devices/{id} over HTTP, many requests in flight, and the reported values
//   over MQTT, since only a device writes its reported twin: each reporting device connects with
//   its key, publishes its patch, waits for the 204 and disconnects, a batch at a time.
import { createRedisStore } from '../../registry/redis/store.js'
import { createRegistryService } from '../../registry/service.js'
import { DEFAULT_TWIN_LIMITS, type JsonObject } from '../../registry/twin.js'
import { createTwinService } from '../../registry/twins.js'
import { apiClient } from './api-client.js'
import { closeDeviceChannels, openDeviceChannels } from './device-channel.js'
import { createDevices } from './devices.js'
import { forEachLimit } from './pool.js'
import { fleetHubApi, type RunningBroker } from './target.js'
import { nowMs } from './time.js'

export interface SeedDevice {
  id: string
  tags: Record<string, string | number | boolean>
  disabled: boolean
  /** A merge patch of the reported twin, or undefined for a device that never reported. */
  reported: JsonObject | undefined
  /** Whether the caller needs the device's key (to connect it later). */
  keepKey: boolean
}

export interface SeedResult {
  ms: number
  /** Wall time of each step, in ms (creation, status changes, reports). */
  steps: Record<string, number>
  /** Keys of the devices with keepKey, by id. */
  keys: Map<string, string>
  /** How it was done, for the records. */
  method: string
}

/** Registry calls in flight while seeding Redis. */
const REDIS_PARALLEL = 256
/** HTTP requests in flight while seeding through the API. */
const HTTP_PARALLEL = 64
/** Devices connected at once to report their twins. */
const REPORT_BATCH = 1000
const ANSWER_TIMEOUT_MS = 30_000

/** Seeds Redis with the registry's own code; run it before the broker starts. */
export async function seedRedis(url: string, devices: readonly SeedDevice[]): Promise<SeedResult> {
  const startedAt = nowMs()
  const store = await createRedisStore({ url })
  const keys = new Map<string, string>()
  try {
    const registry = createRegistryService({ store, node: 'bench-seed' })
    const twins = createTwinService({ store: store.twins, limits: DEFAULT_TWIN_LIMITS })
    await forEachLimit(devices, REDIS_PARALLEL, async function seedOne(d) {
      const created = await registry.createDevice({ id: d.id, tags: d.tags })
      if (d.keepKey) keys.set(d.id, created.keys.primary)
      if (d.disabled) await registry.updateDevice(d.id, { status: 'disabled' })
      if (d.reported) await twins.patch(d.id, 'reported', d.reported)
    })
  } finally {
    await store.close()
  }
  const ms = nowMs() - startedAt
  return { ms, steps: { all: ms }, keys, method: `registry code on Redis, ${REDIS_PARALLEL} calls in flight` }
}

/** Seeds a running broker through its HTTP API and its devices' MQTT connections. */
export async function seedOverApi(broker: RunningBroker, devices: readonly SeedDevice[]): Promise<SeedResult> {
  const api = fleetHubApi(broker, 'seeding')
  const startedAt = nowMs()
  const ids = devices.map((d) => d.id)
  const created = await createDevices(api.url, api.adminToken, ids, HTTP_PARALLEL, (i) => ({
    tags: (devices[i] as SeedDevice).tags,
  }))
  const createMs = nowMs() - startedAt
  const client = apiClient(api, HTTP_PARALLEL)
  try {
    await forEachLimit(
      devices.filter((d) => d.disabled),
      HTTP_PARALLEL,
      async function disable(d) {
        const res = await client.request('PATCH', `/devices/${d.id}`, { status: 'disabled' })
        if (res.status !== 200)
          throw new Error(`PATCH /devices/${d.id} answered ${res.status}: ${res.body.slice(0, 200)}`)
      },
    )
  } finally {
    client.close()
  }
  const disableMs = nowMs() - startedAt - createMs
  const reporters = created.devices.flatMap((d, i) => {
    const patch = devices[i]?.reported
    return patch ? [{ clientId: d.id, username: d.id, password: d.key, patch }] : []
  })
  for (let at = 0; at < reporters.length; at += REPORT_BATCH) {
    await reportOnce(broker, reporters.slice(at, at + REPORT_BATCH))
  }
  const keys = new Map(created.devices.filter((_, i) => devices[i]?.keepKey).map((d) => [d.id, d.key]))
  const ms = nowMs() - startedAt
  return {
    ms,
    steps: { create: createMs, disable: disableMs, report: ms - createMs - disableMs },
    keys,
    method: `HTTP API (${HTTP_PARALLEL} requests in flight) and MQTT reports (${REPORT_BATCH} devices at a time)`,
  }
}

/** Connects the devices, has each report its patch, waits for every 204, disconnects them. */
async function reportOnce(
  broker: RunningBroker,
  reporters: readonly { clientId: string; username: string; password: string; patch: JsonObject }[],
): Promise<void> {
  const channels = await openDeviceChannels(broker, reporters, ['twin/res'])
  try {
    await Promise.all(
      channels.map(
        (c, i) =>
          new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`${c.deviceId}: no twin answer`)), ANSWER_TIMEOUT_MS)
            c.onEnvelope((e) => {
              clearTimeout(timer)
              if (e.status === 204) resolve()
              else reject(new Error(`${c.deviceId}: reported patch answered ${JSON.stringify(e)}`))
            })
            c.publish('twin/reported', [JSON.stringify({ rid: 'seed', patch: reporters[i]?.patch })])
          }),
      ),
    )
  } finally {
    await closeDeviceChannels(channels)
  }
}
