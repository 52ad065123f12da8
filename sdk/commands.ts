// Device commands for one device id (docs/commands.md, "The device's side"): FleetHub sends
// `{rid, name, body, deadline}` on `$iot/{id}/cmd/req`; the device acknowledges at once (202), runs
// the command's handler, and answers once on `cmd/res`. A gateway does this on a child's topics.
//
// Nothing is dispatched before `listen()`: requests that come earlier (a persistent session's,
// right after the CONNACK) wait in the connection's unclaimed box, so a handler registered a
// moment later still gets its command instead of a 404.
import { isCommandName } from '../registry/commands.js'
import { deviceTopic } from '../registry/topics.js'
import type { DeviceChannel } from './channel.js'
import {
  type CommandOutcome,
  E_BAD_REQUEST,
  E_UNKNOWN_COMMAND,
  encodeAnswer,
  failure,
  outcomeOfError,
  outcomeOfResult,
} from './command-answer.js'
import type { ConnectionWatch } from './connection.js'
import { decodeEnvelope, type Encoding } from './envelope.js'
import { CommandError } from './errors.js'
import { isJsonObject, type JsonObject } from './json.js'
import { createRecentIds } from './recent.js'
import type { Unclaimed } from './unclaimed.js'

export interface CommandContext {
  /** The command id (FleetHub's record id). */
  rid: string
  name: string
  /** The device the command is for: a child's id on a gateway's child handle. */
  deviceId: string
  /** When the answer is due (unix ms, FleetHub's clock); an answer after it is dropped as late. */
  deadline: number | undefined
  /**
   * Aborts at the deadline (reason: a TimeoutError DOMException) or when the client ends. A handler
   * that then throws gets no answer: FleetHub times the command out (504) by itself.
   */
  signal: AbortSignal
}

/**
 * Runs one command. Return (or resolve with) a plain body, answered 200, or `{status?, body?}`;
 * throw a `CommandError` to answer a failure of your choosing. Any other throw is answered 500
 * `{code: 'E_HANDLER', message}`.
 */
export type CommandHandler = (body: unknown, ctx: CommandContext) => unknown

export interface CommandsClient {
  /** Handles the command `name` (one handler per name); returns its remover. Does not subscribe. */
  handle(name: string, handler: CommandHandler): () => void
  /** Handles every command without a handler of its own (never the built-in `$` ones); returns its remover. */
  handleAny(handler: CommandHandler): () => void
  /**
   * Starts taking commands: subscribes `$iot/{id}/cmd/req` (QoS 1, again after every reconnect).
   * Register the handlers first: FleetHub delivers queued commands as soon as the device subscribes.
   */
  listen(): Promise<void>
}

export interface CommandSettings {
  connection: ConnectionWatch
  encoding: Encoding
  onError: (err: Error) => void
  unclaimed: Unclaimed
}

/** An answer that cannot be sent is tried again after the reconnect, this many times in all. */
const SEND_ATTEMPTS = 5

interface Entry {
  handler: CommandHandler
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err))

export function createCommands(
  channel: DeviceChannel,
  settings: CommandSettings,
  builtIns: ReadonlyMap<string, CommandHandler> = new Map(),
): CommandsClient {
  const { deviceId } = channel
  const topic = deviceTopic(deviceId, 'cmd/req')
  const handlers = new Map<string, Entry>()
  let fallback: Entry | undefined
  const recent = createRecentIds()
  const running = new Set<AbortController>()
  let ended = false
  let listening = false
  let subscribed: Promise<void> | undefined
  let subscribedIn = -1

  settings.connection.onEnd(function abortRunning(err) {
    ended = true
    for (const c of [...running]) c.abort(err)
  })

  settings.connection.onReconnect(function resubscribe() {
    // mqtt.js resubscribes by itself, but it forgets every topic of a resubscription in which one
    // was refused (a gateway's removed child): ask again, once per connection (a no-op when it has it)
    if (listening) subscribe().catch(settings.onError)
  })

  function subscribe(): Promise<void> {
    const generation = settings.connection.generation()
    if (subscribed && subscribedIn === generation) return subscribed
    subscribedIn = generation
    const attempt = channel.subscribeDownlink(['cmd/req']).then(function granted(r) {
      if (r.refused.length > 0) {
        throw new Error(`FleetHub refused the subscription to cmd/req of ${deviceId} (not this device, nor its child)`)
      }
    })
    attempt.catch(function retryNextTime() {
      if (subscribed === attempt) subscribed = undefined
    })
    subscribed = attempt
    return attempt
  }

  /**
   * Publishes an answer at QoS 1. mqtt.js keeps a QoS 1 publish made while offline and sends it
   * after the reconnect, but fails one made while it is replaying its store when the link drops
   * again: that one is sent again after the next reconnect, while it can still be on time.
   */
  async function send(rid: string, outcome: CommandOutcome, deadline: number | undefined): Promise<void> {
    const payload = encodeAnswer(rid, outcome, settings.encoding)
    for (let attempt = 1; ; attempt++) {
      try {
        await channel.publishRaw('cmd/res', payload, { qos: 1 })
        return
      } catch (err) {
        if (ended) return // FleetHub times the command out
        const due = deadline !== undefined && Date.now() > deadline
        if (attempt >= SEND_ATTEMPTS || due) {
          settings.onError(
            new Error(`answer ${outcome.status} to command ${rid} of ${deviceId} not sent: ${messageOf(err)}`),
          )
          return
        }
        try {
          await settings.connection.whenConnected().done
        } catch {
          return // ended while waiting
        }
      }
    }
  }

  function handlerFor(name: string): CommandHandler | undefined {
    // `$` names are FleetHub's own (key rollover): only the SDK's built-ins may answer them
    if (name.startsWith('$')) return builtIns.get(name)
    return (handlers.get(name) ?? fallback)?.handler
  }

  async function run(rid: string, request: JsonObject): Promise<void> {
    const { name, body } = request
    const deadline =
      typeof request.deadline === 'number' && Number.isFinite(request.deadline) ? request.deadline : undefined
    if (typeof name !== 'string' || name === '') {
      return send(rid, failure(400, E_BAD_REQUEST, 'the request has no command name'), deadline)
    }
    const handler = handlerFor(name)
    if (!handler) return send(rid, failure(404, E_UNKNOWN_COMMAND, `no handler for command ${name}`), deadline)

    const controller = new AbortController()
    running.add(controller)
    let due = false
    const timer =
      deadline === undefined
        ? undefined
        : setTimeout(
            function deadlinePassed() {
              due = true
              controller.abort(new DOMException(`command ${name} passed its deadline`, 'TimeoutError'))
            },
            Math.max(0, deadline - Date.now()),
          )
    // received and started. Not waited for: mqtt.js sends publishes in the order they are made, so
    // the result goes out behind it anyway, without waiting a round trip for its PUBACK
    void send(rid, { status: 202 }, deadline)
    let outcome: CommandOutcome
    try {
      outcome = outcomeOfResult(await handler(body, { rid, name, deviceId, deadline, signal: controller.signal }))
    } catch (err) {
      // a failure past the deadline (the handler gave up on its signal, most likely) would only
      // race FleetHub's own timeout with a vaguer answer; a late success is still sent, since the
      // two clocks may disagree and FleetHub drops it if it is late by its own
      if (due) return
      outcome = outcomeOfError(err)
      if (!(err instanceof CommandError)) {
        settings.onError(new Error(`command ${name} (${rid}) of ${deviceId} failed: ${messageOf(err)}`, { cause: err }))
      }
    } finally {
      clearTimeout(timer)
      running.delete(controller)
    }
    await send(rid, outcome, deadline)
  }

  function receive(payload: Buffer): void {
    const d = decodeEnvelope(payload)
    const request = d.ok && isJsonObject(d.value) ? d.value : undefined
    const rid = request?.rid
    if (!request || typeof rid !== 'string' || rid === '') {
      settings.onError(new Error(`a command request of ${deviceId} without a rid: ${payload.toString('utf8', 0, 200)}`))
      return
    }
    // QoS 1 may deliver a command twice (a persistent session resends what it had not seen
    // acknowledged): it runs once, and its answers, already on their way at QoS 1, are not repeated
    if (!recent.add(rid)) return
    run(rid, request).catch(settings.onError)
  }

  function checkHandler(handler: unknown): void {
    if (typeof handler !== 'function') throw new TypeError('a command handler must be a function')
  }

  return {
    handle(name, handler) {
      if (typeof name === 'string' && name.startsWith('$')) {
        throw new TypeError(`${name}: names starting with $ are FleetHub's built-in commands, which the SDK handles`)
      }
      if (typeof name !== 'string' || !isCommandName(name)) {
        throw new TypeError('a command name is 1-64 characters from letters, digits and _.:-')
      }
      checkHandler(handler)
      if (handlers.has(name)) throw new Error(`command ${name} of ${deviceId} already has a handler`)
      const entry: Entry = { handler }
      handlers.set(name, entry)
      return function removeHandler() {
        if (handlers.get(name) === entry) handlers.delete(name)
      }
    },
    handleAny(handler) {
      checkHandler(handler)
      if (fallback) throw new Error(`the commands of ${deviceId} already have a handleAny handler`)
      const entry: Entry = { handler }
      fallback = entry
      return function removeFallback() {
        if (fallback === entry) fallback = undefined
      }
    },
    listen() {
      if (!listening) {
        listening = true
        channel.onDownlink('cmd/req', ({ payload }) => receive(payload))
        for (const m of settings.unclaimed.take(topic)) receive(m.payload)
      }
      return subscribe()
    },
  }
}
