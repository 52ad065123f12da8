// Every syntax error is the registry's INVALID_QUERY (HTTP 400), with the 1-based column of the
// offending character or token in the message and on the error, so a client can point at it.
import { type CodedError, errors } from '../errors.js'

export interface QueryError extends CodedError {
  /** 1-based position in the query text (UTF-16 code units); one past the end for "ran out". */
  column: number
}

export function queryError(message: string, column: number, hint?: string): QueryError {
  const text = `${message} at column ${column}${hint ? ` (${hint})` : ''}`
  return Object.assign(new errors.INVALID_QUERY(text), { column }) as QueryError
}

/** User text quoted into a message, cut short so an error never echoes a whole hostile query. */
export function quoteForMessage(text: string): string {
  return `'${text.length > 40 ? `${text.slice(0, 40)}…` : text}'`
}
