// What request helpers need to know about the connection, from one 'connect' listener per client
// however many device handles (a gateway's children) share it: which connection this is, when the
// client is connected again, and when it is ended for good (so pending requests fail at once
// instead of holding their timers).
import type { MqttClient } from 'mqtt'

export interface ConnectionWatch {
  /** Grows by one with every accepted CONNACK (after `watchConnection`), so a change means a reconnect. */
  generation(): number
  /** Resolves once the client is connected (at once when it is); `cancel` stops waiting. */
  whenConnected(): { done: Promise<void>; cancel(): void }
  /** Calls `fn` after every reconnect (accepted CONNACK after the first). */
  onReconnect(fn: () => void): void
  /** Calls `fn` when the client is ended (`end()`). */
  onEnd(fn: (err: Error) => void): void
  /** The client is being ended: fails the waiters and tells the `onEnd` listeners. */
  end(): void
}

const endedError = () => new Error('the client has ended')

export function watchConnection(client: MqttClient): ConnectionWatch {
  let generation = 0
  let ended = false
  const waiters = new Set<{ resolve(): void; reject(err: Error): void }>()
  const endListeners: ((err: Error) => void)[] = []
  const reconnectListeners: (() => void)[] = []
  client.on('connect', function connected() {
    generation++
    const ready = [...waiters]
    waiters.clear()
    for (const w of ready) w.resolve()
    for (const fn of reconnectListeners) fn()
  })
  return {
    generation: () => generation,
    whenConnected() {
      if (ended || client.disconnecting) return { done: Promise.reject(endedError()), cancel() {} }
      if (client.connected) return { done: Promise.resolve(), cancel() {} }
      let waiter = { resolve() {}, reject(_err: Error) {} }
      const done = new Promise<void>((resolve, reject) => {
        waiter = { resolve, reject }
        waiters.add(waiter)
      })
      return { done, cancel: () => waiters.delete(waiter) }
    },
    onReconnect(fn) {
      reconnectListeners.push(fn)
    },
    onEnd(fn) {
      endListeners.push(fn)
    },
    end() {
      if (ended) return
      ended = true
      const waiting = [...waiters]
      waiters.clear()
      for (const w of waiting) w.reject(endedError())
      for (const fn of endListeners) fn(endedError())
    },
  }
}
