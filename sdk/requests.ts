// Requests from a device to FleetHub, answered on a downlink topic and matched by `rid`: the layer
// under the twin helpers (`twin/get`, `twin/reported` answered on `twin/res`), which the command
// helpers reuse. One requester per answer topic of a device id; it listens through the connection's
// router, so a message is still dispatched once whatever else listens.
import type { DownlinkKind, UplinkKind } from '../registry/topics.js'
import type { DeviceChannel } from './channel.js'
import type { ConnectionWatch } from './connection.js'
import { createRidSource, decodeEnvelope, type Encoding, encodeRequest } from './envelope.js'
import { RequestError, RequestTimeoutError } from './errors.js'
import { isJsonObject } from './json.js'

export interface RequestSettings {
  connection: ConnectionWatch
  encoding: Encoding
  /** Default timeout of each request. */
  timeoutMs: number
  onError: (err: Error) => void
}

export interface RequestOptions {
  /** How long to wait for the answer, the wait for a reconnect included. Default: the client's `requestTimeoutMs`. */
  timeoutMs?: number
}

/** A 2xx answer: `status` and whatever else FleetHub put in it (`body`, `version`…). */
export interface Answer {
  rid: string
  status: number
  body?: unknown
  [field: string]: unknown
}

export interface Requester {
  /** Sends `{rid, ...fields}` to `$iot/{id}/{kind}` at QoS 1; resolves with a 2xx answer, rejects otherwise. */
  request(kind: UplinkKind, fields: Record<string, unknown>, opts?: RequestOptions): Promise<Answer>
  /** Subscribes the answer topic, once per connection. */
  ready(): Promise<void>
}

interface Pending {
  resolve(answer: Answer): void
  reject(err: Error): void
}

export function assertTimeout(ms: unknown, what: string): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1)
    throw new TypeError(`${what} must be whole milliseconds >= 1`)
  return ms
}

/** The error an answer with a non-2xx status stands for. */
function errorOf(answer: Answer): RequestError {
  const body = isJsonObject(answer.body) ? answer.body : {}
  const code = typeof body.code === 'string' ? body.code : 'FLEETHUB_ERR_UNKNOWN'
  const message = typeof body.message === 'string' ? body.message : `FleetHub answered ${answer.status}`
  return new RequestError(answer.status, code, message, answer.rid)
}

export function createRequester(channel: DeviceChannel, answers: DownlinkKind, settings: RequestSettings): Requester {
  const nextRid = createRidSource()
  const pending = new Map<string, Pending>()
  let subscribed: Promise<void> | undefined
  let subscribedIn = -1

  channel.onDownlink(answers, function answer({ payload, topic }) {
    const d = decodeEnvelope(payload)
    const value = d.ok ? d.value : undefined
    const rid = isJsonObject(value) ? value.rid : undefined
    if (typeof rid !== 'string' || !isJsonObject(value) || typeof value.status !== 'number') {
      // FleetHub answers without rid only when the request did not decode, which this SDK never sends
      settings.onError(new Error(`an answer on ${topic} that matches no request: ${payload.toString('utf8', 0, 200)}`))
      return
    }
    // an unknown rid is an answer that came after its request timed out: nobody waits for it
    const p = pending.get(rid)
    if (!p) return
    const a = value as Answer
    if (a.status >= 200 && a.status < 300) p.resolve(a)
    else p.reject(errorOf(a))
  })

  settings.connection.onEnd(function failPending(err) {
    for (const p of [...pending.values()]) p.reject(err)
  })

  // After a reconnect mqtt.js sends the packets queued while offline before it resubscribes, so an
  // early request could be answered before the answer topic is back: subscribe again explicitly,
  // once per connection, and send only after the SUBACK.
  function ready(): Promise<void> {
    const generation = settings.connection.generation()
    if (subscribed && subscribedIn === generation) return subscribed
    subscribedIn = generation
    const attempt = channel.subscribeDownlink([answers]).then(function granted(r) {
      if (r.refused.length > 0) {
        throw new Error(
          `FleetHub refused the subscription to ${answers} of ${channel.deviceId} (not this device, nor its child)`,
        )
      }
    })
    attempt.catch(function retryNextTime() {
      if (subscribed === attempt) subscribed = undefined
    })
    subscribed = attempt
    return attempt
  }

  return {
    ready,
    request(kind, fields, opts = {}) {
      let timeoutMs: number
      try {
        timeoutMs = assertTimeout(opts.timeoutMs ?? settings.timeoutMs, 'timeoutMs')
      } catch (err) {
        return Promise.reject(err)
      }
      const rid = nextRid()
      let payload: Buffer
      try {
        payload = encodeRequest(rid, fields, settings.encoding)
      } catch (err) {
        return Promise.reject(err)
      }
      const online = settings.connection.whenConnected()
      return new Promise<Answer>(function send(resolve, reject) {
        const settle = (fn: () => void) => {
          if (!pending.delete(rid)) return
          clearTimeout(timer)
          online.cancel()
          fn()
        }
        pending.set(rid, {
          resolve: (a) => settle(() => resolve(a)),
          reject: (err) => settle(() => reject(err)),
        })
        const timer = setTimeout(() => settle(() => reject(new RequestTimeoutError(kind, rid, timeoutMs))), timeoutMs)
        online.done
          .then(ready)
          .then(() => channel.publishRaw(kind, payload, { qos: 1 }))
          .catch((err: unknown) => settle(() => reject(err instanceof Error ? err : new Error(String(err)))))
      })
    },
  }
}
