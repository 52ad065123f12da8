// The reserved topic space of the contract. All device traffic lives under `$iot/{deviceId}/`;
// `#` and `+` at the first level never match `$` topics [MQTT-4.7.2-1], so ordinary subscribers
// never see it by accident. The functions on the publish path allocate nothing.

export const IOT_PREFIX = '$iot/'
export const FLEET_PREFIX = '$fleet/'
export const SYS_PREFIX = '$SYS/'
/** The uplink kind of `$provision/{registrationId}/register` (docs/provisioning.md). */
export const PROVISION_REGISTER = 'provision/register'

/** Topics a device publishes (for itself, or a gateway for its children). */
export const UPLINK_KINDS = ['telemetry', 'twin/get', 'twin/reported', 'cmd/res', 'model', 'ota/status'] as const
/** Topics a device subscribes to. */
export const DOWNLINK_KINDS = ['twin/res', 'twin/desired', 'cmd/req', 'ota/notify'] as const
/** Event kinds published for services on `$iot/{id}/events/{kind}`. */
export const EVENT_KINDS = ['connected', 'disconnected', 'twin', 'command', 'ota', 'error', 'alert'] as const

export type UplinkKind = (typeof UPLINK_KINDS)[number]
export type DownlinkKind = (typeof DOWNLINK_KINDS)[number]
export type EventKind = (typeof EVENT_KINDS)[number]

export function deviceTopic(deviceId: string, kind: UplinkKind | DownlinkKind | 'telemetry/decoded'): string {
  return `${IOT_PREFIX}${deviceId}/${kind}`
}

export function eventTopic(deviceId: string, kind: EventKind): string {
  return `${IOT_PREFIX}${deviceId}/events/${kind}`
}

/** `$iot/{id}/` for a device: the prefix its own topics start with. */
export function devicePrefix(deviceId: string): string {
  return `${IOT_PREFIX}${deviceId}/`
}

function kindAt<K extends string>(kinds: readonly K[], topic: string, offset: number): K | undefined {
  const rest = topic.length - offset
  for (let i = 0; i < kinds.length; i++) {
    const k = kinds[i] as K
    if (k.length === rest && topic.startsWith(k, offset)) return k
  }
  return undefined
}

/** The uplink kind of `topic` whose device prefix ends at `offset`, e.g. `telemetry`. */
export function uplinkKindAt(topic: string, offset: number): UplinkKind | undefined {
  return kindAt(UPLINK_KINDS, topic, offset)
}

export function downlinkKindAt(topic: string, offset: number): DownlinkKind | undefined {
  return kindAt(DOWNLINK_KINDS, topic, offset)
}

/**
 * The device id of a `$iot/{id}/…` topic and where the rest starts, or undefined.
 * Only call it off the hot path (it allocates the id).
 */
export function splitIotTopic(topic: string): { deviceId: string; restAt: number } | undefined {
  if (!topic.startsWith(IOT_PREFIX)) return undefined
  const slash = topic.indexOf('/', IOT_PREFIX.length)
  if (slash <= IOT_PREFIX.length) return undefined
  return { deviceId: topic.slice(IOT_PREFIX.length, slash), restAt: slash + 1 }
}

/** Does a filter (split into levels, with + and #) match a topic (split into levels)? */
export function levelsMatch(filter: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i]
    if (f === '#') return true
    if (i >= topic.length) return false
    if (f !== '+' && f !== topic[i]) return false
  }
  return filter.length === topic.length
}

/** Does the MQTT filter match the topic? Wildcards at the first level never match `$` topics [MQTT-4.7.2-1]. */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true
  const f = filter.split('/')
  if ((f[0] === '#' || f[0] === '+') && topic.startsWith('$')) return false
  return levelsMatch(f, topic.split('/'))
}

/**
 * The devices whose `kind` downlink topic is among `topics` (what a client just subscribed to): a
 * device's own, and for a gateway its children's; none for a client that is not a device.
 */
export function devicesSubscribedTo(
  subscriber: { readonly kind: string; readonly deviceId?: string },
  topics: readonly string[],
  kind: DownlinkKind,
): string[] {
  const deviceId = subscriber.deviceId
  if (subscriber.kind !== 'device' || deviceId === undefined) return []
  const own = `${devicePrefix(deviceId)}${kind}`
  const out: string[] = []
  for (const t of topics) {
    if (t === own) out.push(deviceId)
    else {
      const split = splitIotTopic(t)
      if (split && t.length === split.restAt + kind.length && t.endsWith(`/${kind}`)) out.push(split.deviceId)
    }
  }
  return out
}
