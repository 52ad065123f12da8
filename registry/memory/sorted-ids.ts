// The memory adapter's ordered id index, for paged lists.

/** Sorted set of ids, in the byte order Redis uses for ZRANGEBYLEX (ids are ASCII). */
export class SortedIds {
  private ids: string[] = []

  private indexOf(id: string): number {
    let lo = 0
    let hi = this.ids.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.ids[mid] as string) < id) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  add(id: string): void {
    const i = this.indexOf(id)
    if (this.ids[i] !== id) this.ids.splice(i, 0, id)
  }

  remove(id: string): void {
    const i = this.indexOf(id)
    if (this.ids[i] === id) this.ids.splice(i, 1)
  }

  /** Ids after `after` (exclusive), in order. */
  *from(after: string | undefined): Generator<string> {
    let i = after === undefined ? 0 : this.indexOf(after)
    if (after !== undefined && this.ids[i] === after) i++
    for (; i < this.ids.length; i++) yield this.ids[i] as string
  }
}
