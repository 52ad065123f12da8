// Command requests that arrived before anything listened for them. A persistent session gets its
// waiting commands right after the CONNACK (before `connectDevice` has even resolved), and a
// gateway's session may hold its children's before `forChild(...).commands.listen()`; mqtt.js has
// acknowledged them by then, so a message no route takes would be lost for good. They wait here
// (bounded) until the commands of their device id listen.
import type { IPublishPacket } from 'mqtt'

export interface UnclaimedMessage {
  topic: string
  payload: Buffer
  packet: IPublishPacket
}

export interface Unclaimed {
  /** A message no route took; kept when it is a command request. */
  keep(topic: string, payload: Buffer, packet: IPublishPacket): void
  /** Hands over (and forgets) the messages kept for `topic`, oldest first. */
  take(topic: string): UnclaimedMessage[]
  readonly size: number
}

export const DEFAULT_UNCLAIMED_MAX = 256

export function createUnclaimed(onDropped: (m: UnclaimedMessage) => void, max = DEFAULT_UNCLAIMED_MAX): Unclaimed {
  const kept: UnclaimedMessage[] = []
  return {
    keep(topic, payload, packet) {
      if (!topic.endsWith('/cmd/req')) return
      kept.push({ topic, payload, packet })
      if (kept.length > max) onDropped(kept.shift() as UnclaimedMessage)
    },
    take(topic) {
      const mine: UnclaimedMessage[] = []
      for (let i = 0; i < kept.length; ) {
        if ((kept[i] as UnclaimedMessage).topic === topic) mine.push(...kept.splice(i, 1))
        else i++
      }
      return mine
    },
    get size() {
      return kept.length
    },
  }
}
