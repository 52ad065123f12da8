// A bounded credential cache for CONNECT, so a reconnect storm does not hammer the store. Entries
// are dropped by registry events (on every node), negative answers live a few seconds only, and a
// store read that overlaps an event for the same device is not cached. A CONNECT refused on a
// cached answer asks again (`recheck`): the change that would let it in may have been made on
// another node a moment ago, its event still on the way.
import { decodeVerifiers, type VerifierBytes } from '../../registry/credentials.js'
import type { DeviceRecord, DeviceStatus } from '../../registry/types.js'

export interface CachedDevice {
  status: DeviceStatus
  /** The record's revision. */
  rev: number
  verifiers: VerifierBytes
  parentId?: string
}

interface Entry {
  device: CachedDevice | undefined
  /** Negative entries expire (ms since epoch); positive ones live until evicted. */
  expiresAt: number
  /** When it was read from the store (ms since epoch). */
  loadedAt: number
}

/** A cached answer is read again on a refusal at most this often (ms), so wrong keys cannot flood the store. */
export const RECHECK_MS = 1000

export interface CredentialCacheOptions {
  max: number
  negativeTtlMs: number
  load(id: string): Promise<DeviceRecord | undefined>
  onLookup?(result: 'hit' | 'miss'): void
}

export function toCached(r: DeviceRecord): CachedDevice {
  const c: CachedDevice = { status: r.status, rev: r.rev, verifiers: decodeVerifiers(r.verifiers) }
  if (r.parentId !== undefined) c.parentId = r.parentId
  return c
}

export class CredentialCache {
  private readonly entries = new Map<string, Entry>()
  /** Loads in flight, shared by concurrent CONNECTs of one id; `stale` is set by an event. */
  private readonly loading = new Map<string, { promise: Promise<CachedDevice | undefined>; stale: boolean }>()

  private readonly opts: CredentialCacheOptions

  constructor(opts: CredentialCacheOptions) {
    this.opts = opts
  }

  get size(): number {
    return this.entries.size
  }

  async get(id: string): Promise<CachedDevice | undefined> {
    const hit = this.entries.get(id)
    if (hit && (hit.device !== undefined || hit.expiresAt > Date.now())) {
      // refresh its place in the LRU order
      this.entries.delete(id)
      this.entries.set(id, hit)
      this.opts.onLookup?.('hit')
      return hit.device
    }
    this.opts.onLookup?.('miss')
    const inFlight = this.loading.get(id)
    if (inFlight) return inFlight.promise
    const slot = { promise: this.load(id), stale: false }
    this.loading.set(id, slot)
    return slot.promise
  }

  private async load(id: string): Promise<CachedDevice | undefined> {
    try {
      const r = await this.opts.load(id)
      const device = r && toCached(r)
      const slot = this.loading.get(id)
      if (this.opts.max > 0 && slot && !slot.stale) {
        const now = Date.now()
        this.entries.set(id, { device, expiresAt: device ? 0 : now + this.opts.negativeTtlMs, loadedAt: now })
        if (this.entries.size > this.opts.max) {
          const oldest = this.entries.keys().next().value as string
          this.entries.delete(oldest)
        }
      }
      return device
    } finally {
      this.loading.delete(id)
    }
  }

  /**
   * Reads a device again after a CONNECT was refused on its cached answer, unless that answer was
   * read less than RECHECK_MS ago; undefined when nothing was read again.
   */
  async recheck(id: string): Promise<{ device: CachedDevice | undefined } | undefined> {
    const entry = this.entries.get(id)
    if (!entry || Date.now() - entry.loadedAt < RECHECK_MS) return undefined
    this.evict(id)
    return { device: await this.get(id) }
  }

  /** Forgets a device (its registry entry changed somewhere in the cluster). */
  evict(id: string): void {
    this.entries.delete(id)
    const slot = this.loading.get(id)
    if (slot) slot.stale = true
  }

  clear(): void {
    this.entries.clear()
    for (const slot of this.loading.values()) slot.stale = true
  }
}
