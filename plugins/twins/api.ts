// Twin operations with their notifications: every accepted desired change goes to the device on
// `$iot/{id}/twin/desired` as `{version, patch}`, and every change of either side or of the tags to
// services on `$iot/{id}/events/twin` as `{side, version, patch}`. Used by the HTTP routes and the
// device's own requests alike.
import type { BrokerPort } from '../../broker/session.js'
import { errorBody, errors, statusOf } from '../../registry/errors.js'
import type { Tags } from '../../registry/ids.js'
import type { RegistryService } from '../../registry/service.js'
import { deviceTopic, eventTopic } from '../../registry/topics.js'
import { type JsonObject, sideView, type TwinRecord } from '../../registry/twin.js'
import type { TwinService } from '../../registry/twins.js'
import { pendingOf } from '../../registry/where/index.js'

export interface TwinView {
  desired: JsonObject
  reported: JsonObject
  tags: Tags
  /** What desired asks for that reported does not show yet (absent when converged). */
  pending?: JsonObject
  converged: boolean
}

export function viewOf(twin: TwinRecord, tags: Tags): TwinView {
  const pending = pendingOf(twin.desired.doc, twin.reported.doc) as JsonObject | undefined
  const v: TwinView = { desired: sideView(twin.desired), reported: sideView(twin.reported), tags, converged: !pending }
  if (pending) v.pending = pending
  return v
}

export type TwinApi = ReturnType<typeof createTwinApi>

export function createTwinApi(deps: { twins: TwinService; registry: RegistryService; broker: BrokerPort }) {
  const { twins, registry, broker } = deps

  async function device(deviceId: string) {
    const d = await registry.getRecord(deviceId)
    if (!d) throw new errors.DEVICE_NOT_FOUND(deviceId)
    return d
  }

  function event(deviceId: string, side: 'desired' | 'reported' | 'tags', version: number, patch: unknown) {
    return broker.publish(eventTopic(deviceId, 'twin'), JSON.stringify({ side, version, patch }), { qos: 1 })
  }

  const api = {
    twins,

    async view(deviceId: string): Promise<TwinView> {
      const [d, twin] = await Promise.all([device(deviceId), twins.get(deviceId)])
      return viewOf(twin, d.tags)
    },

    /** An operator's change of desired state; `ifVersion` from If-Match. */
    async patchDesired(deviceId: string, patch: unknown, ifVersion?: number): Promise<TwinView> {
      const d = await device(deviceId)
      const r = await twins.patch(deviceId, 'desired', patch, ifVersion)
      const current = await twins.get(deviceId)
      // QoS 0 on purpose: a device that misses it (its connection broke) gets the whole document
      // when it is back, so nothing piles up for persistent sessions either
      await broker.publish(
        deviceTopic(deviceId, 'twin/desired'),
        JSON.stringify({ version: r.version, patch: r.patch }),
      )
      await event(deviceId, 'desired', r.version, r.patch)
      // the desired side as this write left it (others may have written since)
      return viewOf({ ...current, desired: r.side }, d.tags)
    },

    /**
     * Applies one desired patch to a page of the devices a query selects (an operator changing
     * configuration across a fleet). Each device's write is its own; one failing does not stop the
     * others. `after`: the last device id of the previous page.
     */
    async patchDesiredWhere(where: string, patch: unknown, limit: number, after?: string) {
      const page = await registry.listDevices({ where, limit, ...(after !== undefined ? { after } : {}) })
      const failed: { id: string; error: { code: string; message: string } }[] = []
      let updated = 0
      for (const d of page.items) {
        try {
          await api.patchDesired(d.id, patch)
          updated++
        } catch (err) {
          // a patch the twin refuses (too large, invalid) fails for every device: stop at the first
          if (statusOf(err) === 400 || statusOf(err) === 413) throw err
          failed.push({ id: d.id, error: errorBody(err).error })
        }
      }
      return { matched: page.items.length, updated, failed, ...(page.next !== undefined ? { next: page.next } : {}) }
    },

    /** A device's report; the device exists (it is connected). */
    async patchReported(deviceId: string, patch: unknown, ifVersion?: number): Promise<number> {
      const r = await twins.patch(deviceId, 'reported', patch, ifVersion)
      await event(deviceId, 'reported', r.version, r.patch)
      return r.version
    },

    async patchTags(deviceId: string, patch: Record<string, string | number | boolean | null>): Promise<Tags> {
      const d = await registry.updateDevice(deviceId, { tags: patch })
      const rev = (await registry.getRecord(deviceId))?.rev ?? 0
      await event(deviceId, 'tags', rev, patch)
      return d.tags
    },
  }
  return api
}
