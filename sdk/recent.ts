// The command ids a device has taken lately. FleetHub sends each command at QoS 1, and QoS 1 may
// deliver a message twice (a persistent session resends what was not acknowledged before the
// link dropped); remembering the ids runs each command once. Bounded: the oldest are forgotten.

export interface RecentIds {
  /** Remembers `id`; false when it was already remembered (a duplicate). */
  add(id: string): boolean
  has(id: string): boolean
  readonly size: number
}

export const DEFAULT_RECENT_IDS = 1024

export function createRecentIds(max = DEFAULT_RECENT_IDS): RecentIds {
  if (!Number.isInteger(max) || max < 1) throw new TypeError('max must be a whole number >= 1')
  // a Set iterates in insertion order, so its first entry is the oldest
  const ids = new Set<string>()
  return {
    add(id) {
      if (ids.has(id)) return false
      ids.add(id)
      if (ids.size > max) ids.delete(ids.values().next().value as string)
      return true
    },
    has: (id) => ids.has(id),
    get size() {
      return ids.size
    },
  }
}
