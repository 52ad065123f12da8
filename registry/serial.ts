// Calls that must not overlap per key (one device's command deliveries, the answers to one command,
// its OTA reports): each runs after the one before it with the same key has settled, whether that
// one succeeded or failed. Keys with nothing running take no memory.
export interface KeyedSerial {
  /** Runs `fn` after the earlier calls with `key`; settles as `fn` does. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T>
  /** Is a call with `key` running or waiting? */
  busy(key: string): boolean
}

export function createKeyedSerial(): KeyedSerial {
  const tails = new Map<string, Promise<void>>()
  return {
    run(key, fn) {
      const run = (tails.get(key) ?? Promise.resolve()).then(fn)
      const tail = run.then(
        () => {},
        () => {},
      )
      tails.set(key, tail)
      void tail.then(() => tails.get(key) === tail && tails.delete(key))
      return run
    },
    busy: (key) => tails.has(key),
  }
}
