// A map bounded by count that forgets the least recently used entry first. A Map iterates in
// insertion order, so a read re-inserts its entry at the end and the first entry is the oldest.
export class Lru<K, V> {
  private readonly map = new Map<K, V>()
  private readonly max: number

  constructor(max: number) {
    this.max = max
  }

  get size(): number {
    return this.map.size
  }

  get(key: K): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }

  set(key: K, value: V): void {
    if (this.max <= 0) return
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K)
  }

  delete(key: K): void {
    this.map.delete(key)
  }

  /** Drops every entry `drop` picks (a full scan: for rare events, not per request). */
  deleteWhere(drop: (value: V, key: K) => boolean): void {
    for (const [k, v] of this.map) if (drop(v, k)) this.map.delete(k)
  }
}
