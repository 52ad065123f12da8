// The listeners of one store's registry events. Both stores deliver an event to this node's
// listeners before `publish` resolves, so the node that made a change has evicted its caches and
// closed the sessions it revokes by the time the change is answered; a CONNECT that follows it
// there sees the new state. Other nodes hear it through the store (Redis pub/sub) a little later.
import type { RegistryEvent } from './types.js'

export interface EventListeners {
  add(listener: (event: RegistryEvent) => void): () => void
  /** Calls every listener with one copy of the event; a throwing listener does not stop the others. */
  deliver(event: RegistryEvent): void
  addGap(listener: () => void): () => void
  /** Tells the gap listeners that events may have been lost. */
  gap(): void
}

export function createEventListeners(onError: (err: Error) => void): EventListeners {
  const listeners = new Set<(e: RegistryEvent) => void>()
  const gapListeners = new Set<() => void>()
  const call = <A extends unknown[]>(l: (...args: A) => void, ...args: A) => {
    try {
      l(...args)
    } catch (err) {
      onError(err as Error)
    }
  }
  return {
    add(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    deliver(event) {
      if (listeners.size === 0) return
      // events are flat: a frozen shallow copy keeps the publisher's object out of listeners' hands
      const copy = Object.freeze({ ...event })
      for (const l of listeners) call(l, copy)
    },
    addGap(listener) {
      gapListeners.add(listener)
      return () => gapListeners.delete(listener)
    },
    gap() {
      for (const l of gapListeners) call(l)
    },
  }
}
