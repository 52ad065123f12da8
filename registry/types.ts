// The registry's domain types. A DeviceRecord is what the stores keep; a Device is what callers see
// (never any key material).
import type { KeyVerifiers } from './credentials.js'
import type { Tags } from './ids.js'

export type DeviceStatus = 'enabled' | 'disabled'

/** A device as callers see it. */
export interface Device {
  id: string
  status: DeviceStatus
  tags: Tags
  /** The gateway this device is connected through, if any. */
  parentId?: string
  modelId?: string
  createdAt: string
  updatedAt: string
  keysRotatedAt: string
}

/** A device as the stores keep it: the public view plus what only the registry sees. */
export interface DeviceRecord extends Device {
  /** Revision for compare-and-set: +1 per accepted write. */
  rev: number
  verifiers: KeyVerifiers
}

export interface Presence {
  /** The device's presence after the last event: true while a session is open. */
  online: boolean
  /** Per-device sequence number: +1 per connected or disconnected event. */
  seq: number
  node?: string
  session?: string
  /** When the current (or last) session started. */
  since?: string
  /** How the current (or last) session is connected: tcp, tls, ws or wss. */
  transport?: string
  /** When the last session ended. */
  lastDisconnectAt?: string
}

export interface PresenceView {
  connected: boolean
  since?: string
  node?: string
  lastDisconnectAt?: string
  seq: number
}

export function toDevice(r: DeviceRecord): Device {
  const d: Device = {
    id: r.id,
    status: r.status,
    tags: r.tags,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    keysRotatedAt: r.keysRotatedAt,
  }
  if (r.parentId !== undefined) d.parentId = r.parentId
  if (r.modelId !== undefined) d.modelId = r.modelId
  return d
}

export interface DeviceQuery {
  status?: DeviceStatus
  /** Exact matches on tag values, compared as strings. */
  tags?: Record<string, string>
  parentId?: string
  /** Exclusive: the page starts after this device id. */
  after?: string
  limit: number
}

export interface DevicePage {
  items: DeviceRecord[]
  /** Set when more devices may follow: pass it as `after` for the next page. */
  next?: string
}

/** Registry events reach every node of a cluster, so each can kick sessions and evict caches. */
export type DeviceEventType =
  | 'device.created'
  | 'device.updated'
  | 'device.disabled'
  | 'device.deleted'
  | 'credential.revoked'
  /** The device's model binding or self-description changed (docs/models.md). */
  | 'model.bound'

export interface DeviceEvent {
  type: DeviceEventType
  deviceId: string
  /** The gateway of the device, when it has one (so a connected gateway learns its children). */
  parentId?: string
  /** The node that made the change. */
  origin: string
  at: string
  /**
   * The revision the change made (a deletion counts as the record's next one). A session whose
   * credentials were checked against this revision or a later one already saw the change.
   */
  rev?: number
}

/** A model version was registered: devices whose `modelId` names it may now resolve to it. */
export interface ModelCreatedEvent {
  type: 'model.created'
  modelId: string
  version: number
  origin: string
  at: string
}

export type RegistryEvent = DeviceEvent | ModelCreatedEvent
export type RegistryEventType = RegistryEvent['type']

export function isDeviceEvent(e: RegistryEvent): e is DeviceEvent {
  return e.type !== 'model.created'
}
