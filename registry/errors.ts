// The one error registry (after fastify's lib/errors.js): every expected failure has a code, a
// message template and an HTTP status. Mappers below turn an error into a CONNACK return code or an
// envelope status, so no other module decides those numbers. "Not found" in stores is `undefined`;
// these errors are for the callers' answers.
import createError, { type FastifyErrorConstructor } from '@fastify/error'

function define(code: string, message: string, statusCode: number): FastifyErrorConstructor {
  return createError(`FLEETHUB_ERR_${code}`, message, statusCode)
}

export const errors = {
  BAD_REQUEST: define('BAD_REQUEST', '%s', 400),
  INVALID_DEVICE_ID: define(
    'INVALID_DEVICE_ID',
    'device id must be 1-128 characters from letters, digits and -._:@, not starting with service:',
    400,
  ),
  INVALID_TAGS: define('INVALID_TAGS', 'invalid tags: %s', 400),
  // a `where` query that does not parse; the message names the column (registry/where/)
  INVALID_QUERY: define('INVALID_QUERY', 'invalid query: %s', 400),
  INVALID_CURSOR: define('INVALID_CURSOR', 'the cursor is not one this server issued', 400),
  PARENT_NOT_FOUND: define('PARENT_NOT_FOUND', 'parent device %s does not exist', 400),
  UNAUTHORIZED: define('UNAUTHORIZED', 'a valid bearer token is required', 401),
  FORBIDDEN: define('FORBIDDEN', '%s', 403),
  DEVICE_NOT_FOUND: define('DEVICE_NOT_FOUND', 'device %s does not exist', 404),
  ROUTE_NOT_FOUND: define('ROUTE_NOT_FOUND', 'no route %s %s', 404),
  DEVICE_EXISTS: define('DEVICE_EXISTS', 'device %s already exists', 409),
  CONFLICT: define('CONFLICT', '%s', 409),
  PRECONDITION_FAILED: define('PRECONDITION_FAILED', '%s', 412),
  DEVICE_OFFLINE: define(
    'DEVICE_OFFLINE',
    'device %s is not connected (send queue: {ttlMs} to queue the command)',
    409,
  ),
  QUEUE_FULL: define('QUEUE_FULL', 'device %s already has %s queued commands', 429),
  COMMAND_TIMEOUT: define('COMMAND_TIMEOUT', 'no answer from the device by the deadline (command %s)', 504),
  COMMAND_NOT_FOUND: define('COMMAND_NOT_FOUND', 'no command %s for device %s', 404),
  COMMAND_FINISHED: define('COMMAND_FINISHED', 'command %s is already %s', 409),
  ROLLOVER_FAILED: define('ROLLOVER_FAILED', '%s', 502),
  INVALID_PATCH: define('INVALID_PATCH', 'invalid patch: %s', 400),
  // models (registry/models.ts): the message of a ModelError says what and where
  INVALID_MODEL: define('INVALID_MODEL', 'invalid model: %s', 400),
  MODEL_NOT_FOUND: define('MODEL_NOT_FOUND', 'model %s does not exist', 404),
  MODEL_KEY_NOT_FOUND: define('MODEL_KEY_NOT_FOUND', 'no registered model has key %s', 404),
  MODEL_NOT_BOUND: define('MODEL_NOT_BOUND', 'device %s is bound to no registered or self-described model', 404),
  MODEL_EXISTS: define('MODEL_EXISTS', 'model %s already exists: models are immutable, register a new version', 409),
  MODEL_KEYS_EXHAUSTED: define('MODEL_KEYS_EXHAUSTED', 'all %s model keys are taken: no model can be registered', 507),
  // firmware updates (registry/ota.ts, plugins/ota/)
  PACKAGE_NOT_FOUND: define('PACKAGE_NOT_FOUND', 'package %s does not exist', 404),
  PACKAGE_IN_USE: define('PACKAGE_IN_USE', 'package %s is used by a job that is not completed or cancelled', 409),
  PACKAGE_NOT_READY: define('PACKAGE_NOT_READY', '%s', 409),
  PACKAGE_FILE_MISMATCH: define('PACKAGE_FILE_MISMATCH', '%s', 400),
  RANGE_NOT_SATISFIABLE: define('RANGE_NOT_SATISFIABLE', 'the range is outside the file (%s bytes)', 416),
  JOB_NOT_FOUND: define('JOB_NOT_FOUND', 'job %s does not exist', 404),
  JOB_STATE: define('JOB_STATE', '%s', 409),
  OPERATOR_REQUIRED: define('OPERATOR_REQUIRED', 'name yourself with the X-FleetHub-Operator header to %s', 400),
  SAME_OPERATOR: define('SAME_OPERATOR', 'job %s was created by %s: another operator must approve it', 403),
  TWIN_TOO_LARGE: define('TWIN_TOO_LARGE', '%s', 413),
  PAYLOAD_TOO_LARGE: define('PAYLOAD_TOO_LARGE', '%s', 413),
  UNSUPPORTED_MEDIA_TYPE: define('UNSUPPORTED_MEDIA_TYPE', '%s', 415),
  INTERNAL: define('INTERNAL', 'internal error', 500),
  UNAVAILABLE: define('UNAVAILABLE', '%s', 503),
  // CONNECT refusals: the message never says which part of the credentials was wrong
  BAD_CREDENTIALS: define('BAD_CREDENTIALS', 'bad user name or password', 401),
  NOT_AUTHORIZED: define('NOT_AUTHORIZED', 'not authorized', 403),
  IDENTIFIER_REJECTED: define('IDENTIFIER_REJECTED', 'identifier rejected: %s', 400),
  CONFIG: define('CONFIG', '%s', 500),
} as const

export type ErrorCode = keyof typeof errors

export interface CodedError extends Error {
  code: string
  statusCode?: number
}

export function isCoded(err: unknown): err is CodedError {
  return err instanceof Error && typeof (err as CodedError).code === 'string'
}

export function hasCode(err: unknown, code: ErrorCode): boolean {
  return isCoded(err) && err.code === `FLEETHUB_ERR_${code}`
}

/** MQTT 3.1.1 CONNACK return codes [MQTT-3.2.2.3]. */
export const CONNACK = {
  ACCEPTED: 0,
  UNACCEPTABLE_PROTOCOL: 1,
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const

/** The CONNACK return code for a refusal; anything unexpected is "server unavailable". */
export function connackCodeOf(err: unknown): number {
  if (hasCode(err, 'BAD_CREDENTIALS')) return CONNACK.BAD_USERNAME_OR_PASSWORD
  if (hasCode(err, 'NOT_AUTHORIZED')) return CONNACK.NOT_AUTHORIZED
  if (hasCode(err, 'IDENTIFIER_REJECTED')) return CONNACK.IDENTIFIER_REJECTED
  return CONNACK.SERVER_UNAVAILABLE
}

/** The HTTP-style status an error carries into an HTTP answer or a request/response envelope. */
export function statusOf(err: unknown): number {
  if (isCoded(err) && err.code.startsWith('FLEETHUB_ERR_') && typeof err.statusCode === 'number') {
    return err.statusCode
  }
  return 500
}

/** The `{"error":{"code","message"}}` body; unexpected errors never leak their message. */
export function errorBody(err: unknown): { error: { code: string; message: string } } {
  if (isCoded(err) && err.code.startsWith('FLEETHUB_ERR_')) {
    return { error: { code: err.code, message: err.message } }
  }
  return { error: { code: 'FLEETHUB_ERR_INTERNAL', message: 'internal error' } }
}
