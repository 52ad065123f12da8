// Device commands: a service asks a device to do something; the device acknowledges (202: received
// and started), then answers once (2xx done, 4xx/5xx failed). Every command is a record whose state
// only moves forward:
//
//   queued → delivered → acknowledged → succeeded | failed | timed_out | expired | cancelled
//
// (every command starts queued: a connected device's session takes it at once, an offline device's
// when it comes back, if the caller asked to queue; expired only from queued;
// cancelled from any state that is not final). A transition that does not fit (a late or duplicate
// answer) is refused by the store, so nothing is ever delivered twice.

export type CommandState =
  | 'queued'
  | 'delivered'
  | 'acknowledged'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'expired'
  | 'cancelled'

export const FINAL_STATES: ReadonlySet<CommandState> = new Set([
  'succeeded',
  'failed',
  'timed_out',
  'expired',
  'cancelled',
])

/** The states each state may move to. */
export const TRANSITIONS: Readonly<Record<CommandState, readonly CommandState[]>> = {
  queued: ['delivered', 'acknowledged', 'succeeded', 'failed', 'expired', 'cancelled'],
  delivered: ['acknowledged', 'succeeded', 'failed', 'timed_out', 'cancelled'],
  acknowledged: ['succeeded', 'failed', 'timed_out', 'cancelled'],
  succeeded: [],
  failed: [],
  timed_out: [],
  expired: [],
  cancelled: [],
}

export interface CommandRecord {
  /** The command id: the `rid` of its request and of the device's answers. */
  id: string
  deviceId: string
  name: string
  body?: unknown
  state: CommandState
  createdAt: string
  updatedAt: string
  /** How long the device has to answer once it has the command. */
  timeoutMs: number
  /** When the answer is due (unix ms): request + timeoutMs, or for an offline device delivery + timeoutMs. */
  deadline?: number
  /** When a command still queued expires (unix ms): its ttlMs for an offline device, else its deadline. */
  expiresAt?: number
  /** The device's answers. */
  ack?: { at: string }
  result?: { status: number; body?: unknown; at: string }
  /** Each state and when it was reached. */
  history: { state: CommandState; at: string }[]
}

/** What a caller asks for when it sends a command (the body of `POST /devices/{id}/commands/{name}`). */
export interface CommandRequest {
  /** Sent to the device as the command's `body` (JSON). */
  body?: unknown
  /** How long the device has to answer; default 30000, at most FLEETHUB_COMMAND_MAX_TIMEOUT_MS. */
  timeoutMs?: number
  /** Answer once the device has acknowledged (202) instead of waiting for its result. */
  ack?: boolean
  /** Keep the command for an offline device this long instead of failing with 409. */
  queue?: { ttlMs: number }
  /** A retried call with the same key (per device) gets the first call's command and answer. */
  idempotencyKey?: string
}

/** Command names a service may use; names starting with `$` are FleetHub's built-in commands. */
export const COMMAND_NAME_PATTERN = '^[A-Za-z0-9_.:\\-]{1,64}$'
const nameRe = new RegExp(COMMAND_NAME_PATTERN)

export function isCommandName(name: string): boolean {
  return nameRe.test(name)
}

export function canMove(from: CommandState, to: CommandState): boolean {
  return TRANSITIONS[from].includes(to)
}

/** The state a device's answer moves a command to. */
export function stateOfAnswer(status: number): CommandState {
  if (status === 202) return 'acknowledged'
  return status >= 200 && status < 300 ? 'succeeded' : 'failed'
}

/** A copy of the record moved to `to` at `at` (callers check canMove first). */
export function moved(
  r: CommandRecord,
  to: CommandState,
  at: string,
  patch: Partial<CommandRecord> = {},
): CommandRecord {
  return { ...r, ...patch, state: to, updatedAt: at, history: [...r.history, { state: to, at }] }
}
