// The errors of the SDK: an answer to a device request with a non-2xx status, no answer in time, a
// desired-state handler that failed, a command handler's deliberate failure, and an HTTP API error.

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

/**
 * Thrown by a command handler to answer with a failure of its choosing, e.g.
 * `throw new CommandError(503, { code: 'E_BUSY' })`. Any other throw is answered 500 `E_HANDLER`.
 */
export class CommandError extends Error {
  readonly status: number
  readonly body: unknown

  constructor(status: number, body?: unknown) {
    // a failure is what FleetHub records as `failed`: a client (4xx) or device (5xx) error
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new TypeError('a CommandError status is a whole number from 400 to 599')
    }
    const said = (body as { message?: unknown } | undefined)?.message
    super(typeof said === 'string' ? said : `the command failed with status ${status}`)
    this.name = 'CommandError'
    this.status = status
    this.body = body
  }
}

/** The HTTP API answered with an error status; `code` is its FLEETHUB_ERR_* code. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  /** The command the error is about, when FleetHub names it (a 504 timeout, a 409 for a finished command). */
  readonly commandId: string | undefined
  /** The answer's parsed body (undefined when it was not JSON). */
  readonly body: unknown

  constructor(status: number, code: string, message: string, body: unknown, commandId?: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.body = body
    this.commandId = commandId
  }
}
