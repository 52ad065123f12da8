// Commands from a service over FleetHub's HTTP API (docs/http-api.md, "Commands"): invoke one and get
// its result, look a command up, cancel it, roll a device's key over. Node's fetch, the admin token
// as a bearer token. An error status rejects with an ApiError carrying the status and the
// FLEETHUB_ERR_* code; a failure the device itself answers (say 503) is a result, not an error.
import type { CommandRecord, CommandRequest } from '../registry/commands.js'
import { ApiError } from './errors.js'
import { isJsonObject } from './json.js'

export interface ApiClientOptions {
  /** The HTTP API's base URL, e.g. `http://hub.example:8080`. */
  url: string
  /** The admin API token. */
  token: string
  /** Another fetch (a wrapper with retries, a test double). Default: the global fetch. */
  fetch?: typeof fetch
}

export interface InvokeOptions extends CommandRequest {
  /** Stops waiting for the HTTP answer (the command itself goes on: `cancel` it). */
  signal?: AbortSignal
}

/** The device's final answer: `succeeded` for a 2xx status, `failed` for any other. */
export interface CommandAnswered {
  id: string
  state: 'succeeded' | 'failed'
  status: number
  body?: unknown
}

/** Acknowledged (with `ack: true`) or queued (with `queue`, the device being offline). */
export interface CommandPending {
  id: string
  state: 'acknowledged' | 'queued'
}

export type InvokeResult = CommandAnswered | CommandPending

export interface RolloverResult {
  id: string
  state: 'succeeded'
  keysRotatedAt: string
}

export interface ApiClient {
  /** `POST /devices/{id}/commands/{name}`. */
  invoke(deviceId: string, name: string, opts?: InvokeOptions): Promise<InvokeResult>
  /** `GET /devices/{id}/commands/{rid}`. */
  command(deviceId: string, rid: string, opts?: { signal?: AbortSignal }): Promise<CommandRecord>
  /** `DELETE /devices/{id}/commands/{rid}`: 409 `FLEETHUB_ERR_COMMAND_FINISHED` once it has finished. */
  cancel(deviceId: string, rid: string, opts?: { signal?: AbortSignal }): Promise<CommandRecord>
  /** `POST /devices/{id}/keys/rollover`: the device gets a new primary key with `$changeKey`. */
  rolloverKey(deviceId: string, opts?: { timeoutMs?: number; signal?: AbortSignal }): Promise<RolloverResult>
}

/** The ApiError for an error answer: `{error: {code, message}, id?}` as FleetHub sends it. */
function apiErrorOf(status: number, body: unknown): ApiError {
  const error = isJsonObject(body) && isJsonObject(body.error) ? body.error : {}
  const code = typeof error.code === 'string' ? error.code : 'FLEETHUB_ERR_UNKNOWN'
  const message = typeof error.message === 'string' ? error.message : `FleetHub answered ${status}`
  const id = isJsonObject(body) && typeof body.id === 'string' ? body.id : undefined
  return new ApiError(status, code, message, body, id)
}

/** The typed result of an invoke answer (200 with the device's answer, 202 pending). */
function invokeResultOf(status: number, body: unknown): InvokeResult {
  const b = isJsonObject(body) ? body : {}
  if (typeof b.id !== 'string') throw new Error(`FleetHub answered ${status} without a command id`)
  if (status === 202) {
    if (b.state !== 'acknowledged' && b.state !== 'queued') throw new Error(`FleetHub answered 202 ${String(b.state)}`)
    return { id: b.id, state: b.state }
  }
  if (typeof b.status !== 'number') throw new Error(`FleetHub answered ${status} without the device's status`)
  const state = b.status >= 200 && b.status < 300 ? 'succeeded' : 'failed'
  return b.body === undefined
    ? { id: b.id, state, status: b.status }
    : { id: b.id, state, status: b.status, body: b.body }
}

export function createApiClient(opts: ApiClientOptions): ApiClient {
  let base: URL
  try {
    base = new URL(opts.url)
  } catch {
    throw new TypeError(`not a URL: ${opts.url}`)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new TypeError('the API URL is http:// or https://')
  if (typeof opts.token !== 'string' || opts.token === '') throw new TypeError('the API needs a token')
  const doFetch = opts.fetch ?? fetch
  const prefix = base.href.replace(/\/+$/, '')
  const seg = encodeURIComponent

  /** One call; resolves with the status and parsed body of a 2xx answer, rejects with an ApiError otherwise. */
  async function call(
    method: string,
    path: string,
    body: unknown,
    extra: { headers?: Record<string, string>; signal?: AbortSignal | undefined } = {},
  ): Promise<{ status: number; body: unknown }> {
    const headers: Record<string, string> = { authorization: `Bearer ${opts.token}`, ...extra.headers }
    const init: RequestInit = { method, headers }
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      init.body = JSON.stringify(body)
    }
    if (extra.signal) init.signal = extra.signal
    const res = await doFetch(`${prefix}${path}`, init)
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text === '' ? undefined : JSON.parse(text)
    } catch {
      parsed = undefined // a proxy's HTML page, say: the status still tells
    }
    if (!res.ok) throw apiErrorOf(res.status, parsed)
    return { status: res.status, body: parsed }
  }

  return {
    async invoke(deviceId, name, o = {}) {
      const payload: Record<string, unknown> = {}
      if (o.body !== undefined) payload.body = o.body
      if (o.timeoutMs !== undefined) payload.timeoutMs = o.timeoutMs
      if (o.ack !== undefined) payload.ack = o.ack
      if (o.queue !== undefined) payload.queue = o.queue
      const headers: Record<string, string> = {}
      if (o.idempotencyKey !== undefined) headers['idempotency-key'] = o.idempotencyKey
      const r = await call('POST', `/devices/${seg(deviceId)}/commands/${seg(name)}`, payload, {
        headers,
        signal: o.signal,
      })
      return invokeResultOf(r.status, r.body)
    },
    async command(deviceId, rid, o = {}) {
      return (await call('GET', `/devices/${seg(deviceId)}/commands/${seg(rid)}`, undefined, o)).body as CommandRecord
    },
    async cancel(deviceId, rid, o = {}) {
      return (await call('DELETE', `/devices/${seg(deviceId)}/commands/${seg(rid)}`, undefined, o))
        .body as CommandRecord
    },
    async rolloverKey(deviceId, o = {}) {
      const payload = o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }
      return (await call('POST', `/devices/${seg(deviceId)}/keys/rollover`, payload, o)).body as RolloverResult
    },
  }
}
