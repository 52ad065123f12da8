// The key a device connects with, which key rollover (`$changeKey`) replaces while it runs. FleetHub
// switches its primary key only once the device's 200 has reached it; if that answer is late or
// lost, FleetHub keeps the old key and the device's new one is refused. So the old key stays as a
// fallback until the new one has been used to connect: a reconnect refused with one key tries the
// other.

export interface Keyring {
  /** The key to connect with now. */
  current(): string
  /** Switches to a new key; the one in use stays as the fallback. */
  adopt(key: string): void
  /** FleetHub refused the current key: true when the other one is worth a try (now current). */
  refused(): boolean
  /**
   * A connection was accepted with the current key: once that is the newest key, the fallback is
   * dropped. Answers true when it is not (the new key was refused and the old one still works).
   */
  accepted(): boolean
}

export function createKeyring(initial: string): Keyring {
  let current = initial
  let fallback: string | undefined
  let newest = initial
  // keys refused since the last accepted connection: trying them again would go round in circles
  const refusedKeys = new Set<string>()

  return {
    current: () => current,
    adopt(key) {
      if (key === current) return
      fallback = current
      current = key
      newest = key
      refusedKeys.clear()
    },
    refused() {
      refusedKeys.add(current)
      if (fallback === undefined || refusedKeys.has(fallback)) return false
      ;[current, fallback] = [fallback, current]
      return true
    },
    accepted() {
      refusedKeys.clear()
      if (current !== newest) return true
      fallback = undefined
      return false
    },
  }
}
