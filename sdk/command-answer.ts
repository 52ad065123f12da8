// What a device answers for a command (docs/commands.md, "The device's side"): the handler's
// outcome turned into one final `{status, body?}`, encoded in the device's envelope encoding. Kept
// apart from the dispatcher so the rules can be read (and tested) on their own.
import { type Encoding, encodeRequest } from './envelope.js'
import { CommandError } from './errors.js'
import { isJsonObject } from './json.js'

/** A final answer; `body` is sent as its JSON form. */
export interface CommandOutcome {
  status: number
  body?: unknown
}

/** Largest answer body FleetHub takes (serialized JSON); a bigger one would be dropped as invalid. */
export const MAX_ANSWER_BODY = 64 * 1024

export const E_HANDLER = 'E_HANDLER'
export const E_UNKNOWN_COMMAND = 'E_UNKNOWN_COMMAND'
export const E_BAD_REQUEST = 'E_BAD_REQUEST'
export const E_ANSWER_TOO_LARGE = 'E_ANSWER_TOO_LARGE'

const isStatus = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 100 && v <= 599

/**
 * Is a handler's return value the `{status?, body?}` form rather than a plain body? Only an object
 * with nothing but those keys, and a status that is one (so a body such as `{status: 'ok'}` or
 * `{status: 3}` stays a body). To answer a body that looks like the form, wrap it: `{ body: value }`.
 */
function isResultForm(v: unknown): v is CommandOutcome {
  if (!isJsonObject(v)) return false
  const keys = Object.keys(v)
  if (keys.length === 0 || !keys.every((k) => k === 'status' || k === 'body')) return false
  return !('status' in v) || isStatus(v.status)
}

/** The answer for what a handler returned (or resolved with). */
export function outcomeOfResult(returned: unknown): CommandOutcome {
  if (!isResultForm(returned)) return returned === undefined ? { status: 200 } : { status: 200, body: returned }
  const status = returned.status ?? 200
  if (status === 202) {
    // a second 202 would be dropped as a duplicate acknowledgement and the command would time out
    return failure(500, E_HANDLER, 'the handler answered 202, which is the acknowledgement the SDK already sent')
  }
  return returned.body === undefined ? { status } : { status, body: returned.body }
}

/** The answer for what a handler threw (or rejected with). */
export function outcomeOfError(err: unknown): CommandOutcome {
  if (err instanceof CommandError)
    return err.body === undefined ? { status: err.status } : { status: err.status, body: err.body }
  return failure(500, E_HANDLER, err instanceof Error ? err.message : String(err))
}

export function failure(status: number, code: string, message: string): CommandOutcome {
  return { status, body: { code, message } }
}

/**
 * Encodes the answer envelope `{rid, status, body?}`. A body without a JSON form (a BigInt, a
 * cycle) or over FleetHub's limit becomes a 500 the device can still send, instead of an answer
 * FleetHub would drop (leaving the command to time out).
 */
export function encodeAnswer(rid: string, outcome: CommandOutcome, encoding: Encoding): Buffer {
  const fields: Record<string, unknown> = { status: outcome.status }
  if (outcome.body !== undefined) fields.body = outcome.body
  let problem: CommandOutcome
  try {
    const size = outcome.body === undefined ? 0 : Buffer.byteLength(JSON.stringify(outcome.body) ?? '')
    if (size <= MAX_ANSWER_BODY) return encodeRequest(rid, fields, encoding)
    problem = failure(500, E_ANSWER_TOO_LARGE, `the answer body is ${size} bytes; FleetHub takes ${MAX_ANSWER_BODY}`)
  } catch (err) {
    problem = failure(500, E_HANDLER, `the answer body has no JSON form: ${(err as Error).message}`)
  }
  return encodeRequest(rid, { status: problem.status, body: problem.body }, encoding)
}
