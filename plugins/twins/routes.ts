// The twin routes: GET /devices/{id}/twin (ETag = desired version), PATCH /devices/{id}/twin/desired
// (If-Match: 412 when desired has moved on), PATCH /devices/{id}/tags, and PATCH /twins/desired
// (one desired patch for every device a query selects, a page per request).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { decodeCursor, encodeCursor } from '../../broker/http/pages.js'
import { errors } from '../../registry/errors.js'
import { TAG_KEY_PATTERN } from '../../registry/ids.js'
import { MAX_PAGE } from '../../registry/query.js'
import type { TwinApi } from './api.js'

const ErrorRef = Type.Unsafe({ $ref: 'Error' })
const Doc = Type.Object({}, { additionalProperties: true, description: 'a JSON object with $version and $metadata' })
const TwinView = Type.Object(
  {
    desired: Doc,
    reported: Doc,
    tags: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
    pending: Type.Optional(
      Type.Object({}, { additionalProperties: true, description: 'desired values not reported yet' }),
    ),
    converged: Type.Boolean({ description: 'reported shows every desired value' }),
  },
  { title: 'Twin' },
)
const Params = Type.Object({ id: Type.String() })
const errorsOf = { 400: ErrorRef, 401: ErrorRef, 404: ErrorRef }

/** The version in an If-Match header: `"3"`, `W/"3"` or `3`; `*` means any. */
function ifMatchVersion(header: string | undefined): number | undefined {
  if (header === undefined || header.trim() === '*') return undefined
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header)
  if (!m) throw new errors.BAD_REQUEST('If-Match must be the ETag of the twin, e.g. "3"')
  return Number(m[1])
}

export function twinRoutes(api: TwinApi): FastifyPluginAsyncTypebox {
  return async function twins(app) {
    // no addSchema here: a schema added in this context would bring back fastify's default
    // (coercing) validator instead of the strict one set on the server
    app.get(
      '/devices/:id/twin',
      {
        schema: {
          summary: 'The twin: desired and reported state with versions, tags, and what is still pending',
          tags: ['twins'],
          params: Params,
          response: { 200: TwinView, ...errorsOf },
        },
      },
      async function getTwin(req, reply) {
        const view = await api.view(req.params.id)
        reply.header('etag', `"${(view.desired as { $version: number }).$version}"`)
        return view
      },
    )

    app.patch(
      '/devices/:id/twin/desired',
      {
        schema: {
          summary: 'Change desired state (JSON merge patch); the device is told at once, or when it is back',
          tags: ['twins'],
          params: Params,
          headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
          body: Type.Object({}, { additionalProperties: true }),
          response: { 200: TwinView, 412: ErrorRef, 413: ErrorRef, ...errorsOf },
        },
      },
      async function patchDesired(req, reply) {
        const view = await api.patchDesired(req.params.id, req.body, ifMatchVersion(req.headers['if-match']))
        reply.header('etag', `"${(view.desired as { $version: number }).$version}"`)
        return view
      },
    )

    app.patch(
      '/twins/desired',
      {
        schema: {
          summary:
            'Change desired state on every device a query selects, a page at a time (remote configuration across a fleet)',
          tags: ['twins'],
          querystring: Type.Object(
            {
              where: Type.String({ minLength: 1, maxLength: 2000, description: 'the devices (docs/queries.md)' }),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 })),
              cursor: Type.Optional(Type.String({ maxLength: 400, description: 'nextCursor of the previous page' })),
            },
            { additionalProperties: false },
          ),
          body: Type.Object({}, { additionalProperties: true }),
          response: {
            200: Type.Object({
              matched: Type.Integer({ description: 'devices of this page' }),
              updated: Type.Integer(),
              failed: Type.Array(
                Type.Object({ id: Type.String(), error: Type.Object({ code: Type.String(), message: Type.String() }) }),
              ),
              nextCursor: Type.Optional(Type.String({ description: 'more devices match: send it as cursor' })),
            }),
            413: ErrorRef,
            ...errorsOf,
          },
        },
      },
      async function patchDesiredWhere(req) {
        const { where, limit, cursor } = req.query
        const r = await api.patchDesiredWhere(where, req.body, limit ?? 100, cursor ? decodeCursor(cursor) : undefined)
        const { next, ...rest } = r
        return next === undefined ? rest : { ...rest, nextCursor: encodeCursor(next) }
      },
    )

    app.patch(
      '/devices/:id/tags',
      {
        schema: {
          summary: 'Change tags (JSON merge patch: null deletes); services see it on events/twin',
          tags: ['twins'],
          params: Params,
          body: Type.Record(
            Type.String({ pattern: TAG_KEY_PATTERN }),
            Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]),
          ),
          response: {
            200: Type.Object({
              tags: Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()])),
            }),
            ...errorsOf,
          },
        },
      },
      async function patchTags(req) {
        return { tags: await api.patchTags(req.params.id, req.body) }
      },
    )
  }
}
