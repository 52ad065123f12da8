// The twin helpers of one device id (docs/twins.md, "The device side"): read the twin, report
// state, and follow desired state. Requests go through a requester on `twin/res`; desired messages
// feed a tracker that applies them in order and acknowledges them.
import type { DeviceChannel } from './channel.js'
import {
  createDesiredTracker,
  type DesiredHandler,
  type DesiredSnapshot,
  type DesiredTracker,
  LAST_DESIRED_VERSION,
} from './desired.js'
import { decodeEnvelope } from './envelope.js'
import { isJsonObject, type JsonObject, mergePatch, withoutMeta } from './json.js'
import { createRequester, type RequestOptions, type RequestSettings } from './requests.js'

/** One side of the twin as FleetHub shows it: the document with `$version` and `$metadata`. */
export interface TwinSideView extends JsonObject {
  $version: number
  $metadata: JsonObject
}

export interface TwinState {
  desired: TwinSideView
  reported: TwinSideView
}

export interface ReportOptions extends RequestOptions {
  /** Apply only while reported is at this version; otherwise the report fails with status 412. */
  ifVersion?: number
}

export interface TwinClient {
  /** Reads desired and reported state (and counts as having seen the current desired version). */
  get(opts?: RequestOptions): Promise<TwinState>
  /** Merges `patch` into reported state (RFC 7396: null deletes); resolves with the new reported version. */
  report(patch: JsonObject, opts?: ReportOptions): Promise<number>
  /**
   * Calls `handler` with the whole desired document after each version, in order; resolves once
   * subscribed and the current document has been handed over. Returns the handler's remover.
   */
  onDesired(handler: DesiredHandler): Promise<() => void>
  /** A copy of the desired document the SDK holds (once `onDesired`, `onConfig` or `onSystem` started it). */
  desired(): DesiredSnapshot | undefined
}

export interface TwinSettings extends RequestSettings {
  /** Report `$lastDesiredVersion` once the handlers of a version have succeeded. */
  autoAck: boolean
}

export interface Twin {
  client: TwinClient
  /** For helpers built on desired state (remote configuration). */
  tracker: DesiredTracker
}

function isSideView(v: unknown): v is TwinSideView {
  return isJsonObject(v) && typeof v.$version === 'number'
}

export function createTwin(channel: DeviceChannel, settings: TwinSettings): Twin {
  const requester = createRequester(channel, 'twin/res', settings)
  // the reported document as far as this SDK knows it: read by get, advanced by its own reports
  let reported: JsonObject | undefined
  let listening = false

  async function get(opts?: RequestOptions): Promise<TwinState> {
    const answer = await requester.request('twin/get', {}, opts)
    const body = answer.body
    if (!isJsonObject(body) || !isSideView(body.desired) || !isSideView(body.reported)) {
      throw new Error(`FleetHub answered twin/get of ${channel.deviceId} without desired and reported`)
    }
    reported = withoutMeta(body.reported)
    return { desired: body.desired, reported: body.reported }
  }

  async function report(patch: JsonObject, opts: ReportOptions = {}): Promise<number> {
    if (!isJsonObject(patch)) throw new TypeError('a reported patch is a JSON object')
    const { ifVersion } = opts
    if (ifVersion !== undefined && !(Number.isInteger(ifVersion) && ifVersion >= 1)) {
      throw new TypeError('ifVersion must be a whole number from 1')
    }
    const answer = await requester.request(
      'twin/reported',
      ifVersion === undefined ? { patch } : { patch, ifVersion },
      opts,
    )
    if (typeof answer.version !== 'number') {
      throw new Error(`FleetHub answered twin/reported of ${channel.deviceId} without a version`)
    }
    const { [LAST_DESIRED_VERSION]: ack, ...rest } = patch
    if (reported) reported = mergePatch(reported, rest)
    if (typeof ack === 'number') tracker.acknowledged(ack)
    return answer.version
  }

  const tracker = createDesiredTracker({
    async prepare() {
      if (!listening) {
        listening = true
        channel.onDownlink('twin/desired', function desiredMessage({ payload }) {
          const d = decodeEnvelope(payload)
          if (d.ok) tracker.receive(d.value)
          else settings.onError(new Error(`a desired message of ${channel.deviceId} that does not decode: ${d.error}`))
        })
      }
      await requester.ready()
    },
    async subscribe() {
      const r = await channel.subscribeDownlink(['twin/desired'])
      if (r.refused.length > 0) {
        throw new Error(`FleetHub refused the subscription to twin/desired of ${channel.deviceId}`)
      }
    },
    async fetch() {
      const state = await get()
      return { version: state.desired.$version, desired: withoutMeta(state.desired) }
    },
    report: (patch) => report(patch),
    reported: () => (reported ? structuredClone(reported) : undefined),
    autoAck: settings.autoAck,
    onError: settings.onError,
  })

  settings.connection.onReconnect(function resyncUnacknowledged() {
    tracker.reconnected()
  })

  return {
    tracker,
    client: {
      get,
      report,
      desired: () => tracker.state(),
      onDesired(handler) {
        if (typeof handler !== 'function') return Promise.reject(new TypeError('onDesired needs a handler function'))
        return tracker.add(async function desiredHandler(u) {
          const info = u.patch
            ? { version: u.version, patch: u.patch, full: u.full }
            : { version: u.version, full: u.full }
          await handler(u.desired, info)
          return undefined
        })
      },
    },
  }
}
