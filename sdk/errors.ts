// The errors of the SDK's request/response helpers (twins now, commands next): an answer with a
// non-2xx status, no answer in time, and a desired-state handler that failed.

/** FleetHub answered a request with an error status (`code` is its FLEETHUB_ERR_* code). */
export class RequestError extends Error {
  readonly status: number
  readonly code: string
  readonly rid: string | undefined

  constructor(status: number, code: string, message: string, rid?: string) {
    super(message)
    this.name = 'RequestError'
    this.status = status
    this.code = code
    this.rid = rid
  }
}

/** No answer came within the request's timeout (the device may be offline, or the answer lost). */
export class RequestTimeoutError extends Error {
  readonly code = 'FLEETHUB_SDK_TIMEOUT'
  readonly timeoutMs: number
  readonly rid: string

  constructor(what: string, rid: string, timeoutMs: number) {
    super(`no answer to ${what} (rid ${rid}) within ${timeoutMs} ms`)
    this.name = 'RequestTimeoutError'
    this.timeoutMs = timeoutMs
    this.rid = rid
  }
}

/** A desired-state handler threw (or rejected) while applying `version`; nothing was reported for it. */
export class DesiredHandlerError extends Error {
  readonly version: number

  constructor(version: number, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    super(`applying desired version ${version} failed: ${reason}`, { cause })
    this.name = 'DesiredHandlerError'
    this.version = version
  }
}
