// The command routes: invoke (wait for the result or the acknowledgement; queue for an offline
// device), look a command up, cancel it, and key rollover.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { CommandRecord } from '../../registry/commands.js'
import { errors } from '../../registry/errors.js'
import type { RolloverService } from './rollover.js'
import type { CommandService } from './service.js'

const ErrorRef = Type.Unsafe({ $ref: 'Error' })
const Any = Type.Unknown()
const Record_ = Type.Object(
  {
    id: Type.String(),
    deviceId: Type.String(),
    name: Type.String(),
    body: Type.Optional(Any),
    state: Type.String({
      description: 'queued, delivered, acknowledged, succeeded, failed, timed_out, expired or cancelled',
    }),
    createdAt: Type.String(),
    updatedAt: Type.String(),
    timeoutMs: Type.Integer(),
    deadline: Type.Optional(Type.Integer({ description: 'when the answer is due (unix ms)' })),
    expiresAt: Type.Optional(Type.Integer({ description: 'when a queued command expires (unix ms)' })),
    ack: Type.Optional(Type.Object({ at: Type.String() })),
    result: Type.Optional(Type.Object({ status: Type.Integer(), body: Type.Optional(Any), at: Type.String() })),
    history: Type.Array(Type.Object({ state: Type.String(), at: Type.String() })),
  },
  { title: 'Command' },
)
const Params = Type.Object({ id: Type.String(), name: Type.String() })
const errorsOf = { 400: ErrorRef, 401: ErrorRef, 404: ErrorRef }

/** What a request answers for a record in its final (or acknowledged) state. */
function reply(r: CommandRecord): { code: number; body: unknown } {
  switch (r.state) {
    case 'succeeded':
    case 'failed':
      return { code: 200, body: { id: r.id, status: r.result?.status, body: r.result?.body } }
    case 'acknowledged':
    case 'queued':
    case 'delivered':
      return { code: 202, body: { id: r.id, state: r.state } }
    case 'timed_out':
    case 'expired': {
      const e = new errors.COMMAND_TIMEOUT(r.id)
      return { code: 504, body: { error: { code: e.code, message: e.message }, id: r.id } }
    }
    default: {
      const e = new errors.COMMAND_FINISHED(r.id, r.state)
      return { code: 409, body: { error: { code: e.code, message: e.message }, id: r.id } }
    }
  }
}

export function commandRoutes(commands: CommandService, rollover: RolloverService): FastifyPluginAsyncTypebox {
  return async function commandsRoutes(app) {
    // a POST with no body means an empty one
    app.addHook('preValidation', async function emptyBody(req) {
      req.body ??= {}
    })
    app.post(
      '/devices/:id/commands/:name',
      {
        schema: {
          summary: 'Run a command on a device: answers with its result, or 202 once acknowledged (ack: true) or queued',
          tags: ['commands'],
          params: Params,
          headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 128 })) }),
          body: Type.Object(
            {
              body: Type.Optional(Any),
              timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
              ack: Type.Optional(Type.Boolean()),
              queue: Type.Optional(Type.Object({ ttlMs: Type.Integer({ minimum: 1, maximum: 30 * 86_400_000 }) })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ id: Type.String(), status: Type.Optional(Type.Integer()), body: Type.Optional(Any) }),
            202: Type.Object({ id: Type.String(), state: Type.String() }),
            409: Any,
            429: ErrorRef,
            504: Any,
            ...errorsOf,
          },
        },
      },
      async function invokeCommand(req, res) {
        const b = req.body
        const { record } = await commands.invoke(req.params.id, req.params.name, {
          ...(b.body !== undefined ? { body: b.body } : {}),
          ...(b.timeoutMs !== undefined ? { timeoutMs: b.timeoutMs } : {}),
          ...(b.ack !== undefined ? { ack: b.ack } : {}),
          ...(b.queue !== undefined ? { queue: b.queue } : {}),
          ...(req.headers['idempotency-key'] !== undefined ? { idempotencyKey: req.headers['idempotency-key'] } : {}),
        })
        const out = reply(record)
        return res.status(out.code).send(out.body)
      },
    )

    app.get(
      '/devices/:id/commands/:rid',
      {
        schema: {
          summary: 'A command record: its state, its history and the device’s answers',
          tags: ['commands'],
          params: Type.Object({ id: Type.String(), rid: Type.String() }),
          response: { 200: Record_, ...errorsOf },
        },
      },
      async function getCommand(req) {
        return commands.get(req.params.id, req.params.rid)
      },
    )

    app.delete(
      '/devices/:id/commands/:rid',
      {
        schema: {
          summary: 'Cancel a command that has not finished (a queued one is never delivered)',
          tags: ['commands'],
          params: Type.Object({ id: Type.String(), rid: Type.String() }),
          response: { 200: Record_, 409: ErrorRef, ...errorsOf },
        },
      },
      async function cancelCommand(req) {
        return commands.cancel(req.params.id, req.params.rid)
      },
    )

    app.post(
      '/devices/:id/keys/rollover',
      {
        schema: {
          summary: 'Give the device a new primary key with the $changeKey command; switch only after it confirms',
          tags: ['commands', 'devices'],
          params: Type.Object({ id: Type.String() }),
          body: Type.Object(
            { timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ id: Type.String(), state: Type.String(), keysRotatedAt: Type.String() }),
            403: ErrorRef,
            409: ErrorRef,
            502: ErrorRef,
            504: ErrorRef,
            ...errorsOf,
          },
        },
      },
      async function rolloverKey(req) {
        return rollover.run(req.params.id, req.body.timeoutMs)
      },
    )
  }
}
