// The OTA routes: packages (register, upload, list, delete), the signing key, jobs (create, approve,
// pause, resume, cancel, look at) and a device's update; and, without the token, the hosted file
// for devices (its id is random and its content signed: see docs/ota.md).

import type { Readable } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { errors } from '../../registry/errors.js'
import { MAX_PAGE } from '../../registry/query.js'
import { parseRange } from './files.js'
import type { OtaService } from './service.js'

const ErrorRef = Type.Unsafe({ $ref: 'Error' })
const Any = Type.Unknown()
const errorsOf = { 400: ErrorRef, 401: ErrorRef, 404: ErrorRef }
const OPERATOR = 'x-fleethub-operator'
const Id = Type.Object({ id: Type.String({ maxLength: 128 }) })
const Page = Type.Object({
  after: Type.Optional(Type.String({ maxLength: 256 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE })),
})
const OperatorHeader = Type.Object({
  'x-fleethub-operator': Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
})
const HHMM = '^([01][0-9]|2[0-3]):[0-5][0-9]$'
const TagValue = Type.String({ maxLength: 256 })

function operatorOf(req: FastifyRequest): string | undefined {
  const h = req.headers[OPERATOR]
  return typeof h === 'string' && h.trim() !== '' ? h.trim() : undefined
}

export function otaRoutes(ota: OtaService): FastifyPluginAsyncTypebox {
  return async function otaApi(app) {
    app.addHook('preValidation', async function emptyBody(req) {
      if (req.method === 'POST') req.body ??= {}
    })
    // an upload is the raw file: streamed to disk (and hashed) by the handler, never buffered
    app.addContentTypeParser('application/octet-stream', function rawFile(_req, payload, done) {
      done(null, payload)
    })

    app.post(
      '/packages',
      {
        schema: {
          summary:
            'Register a package: with url (external, size and sha256 required) it is signed at once; else upload its file',
          tags: ['ota'],
          body: Type.Object(
            {
              name: Type.String({ minLength: 1, maxLength: 128 }),
              version: Type.String({ minLength: 1, maxLength: 64 }),
              models: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 100 })),
              tags: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), TagValue)),
              size: Type.Optional(Type.Integer({ minimum: 0 })),
              sha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
              url: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
            },
            { additionalProperties: false },
          ),
          response: { 201: Any, ...errorsOf },
        },
      },
      async function createPackage(req, res) {
        return res.status(201).send(await ota.createPackage(req.body))
      },
    )

    app.put(
      '/packages/:id/file',
      {
        schema: {
          summary:
            'Upload a hosted package’s file (application/octet-stream); the hub hashes it and signs the manifest',
          tags: ['ota'],
          params: Id,
          response: { 200: Any, 409: ErrorRef, 413: ErrorRef, 415: ErrorRef, ...errorsOf },
        },
      },
      async function uploadPackage(req) {
        const type = req.headers['content-type']?.split(';')[0]?.trim()
        if (type !== 'application/octet-stream') {
          throw new errors.UNSUPPORTED_MEDIA_TYPE('upload the file as application/octet-stream')
        }
        return ota.upload(req.params.id, req.body as Readable)
      },
    )

    app.get(
      '/packages',
      {
        schema: {
          summary: 'Packages, in pages',
          tags: ['ota'],
          querystring: Page,
          response: { 200: Any, ...errorsOf },
        },
      },
      async function listPackages(req) {
        return ota.listPackages({
          limit: req.query.limit ?? 100,
          ...(req.query.after !== undefined ? { after: req.query.after } : {}),
        })
      },
    )

    app.get(
      '/packages/:id',
      { schema: { summary: 'A package', tags: ['ota'], params: Id, response: { 200: Any, ...errorsOf } } },
      async function getPackage(req) {
        return ota.getPackage(req.params.id)
      },
    )

    app.delete(
      '/packages/:id',
      {
        schema: {
          summary: 'Delete a package (refused while a job that is not completed or cancelled uses it)',
          tags: ['ota'],
          params: Id,
          response: { 204: Type.Null(), 409: ErrorRef, ...errorsOf },
        },
      },
      async function deletePackage(req, res) {
        await ota.deletePackage(req.params.id)
        return res.status(204).send(null)
      },
    )

    app.get(
      '/ota/signing-key',
      {
        schema: {
          summary: 'The public key devices verify package manifests with',
          tags: ['ota'],
          response: {
            200: Type.Object({ alg: Type.Literal('Ed25519'), publicKeyPem: Type.String(), publicKey: Type.String() }),
            401: ErrorRef,
          },
        },
      },
      async function signingKey() {
        return { alg: 'Ed25519' as const, publicKeyPem: ota.key.publicKeyPem, publicKey: ota.key.publicKeyRaw }
      },
    )

    app.post(
      '/jobs',
      {
        schema: {
          summary: 'Create an update job: a package, a target, a start time and a rollout policy',
          tags: ['ota'],
          headers: OperatorHeader,
          body: Type.Object(
            {
              packageId: Type.String({ minLength: 1, maxLength: 128 }),
              target: Type.Object(
                {
                  deviceIds: Type.Optional(
                    Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 100_000 }),
                  ),
                  where: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 })),
                },
                { additionalProperties: false },
              ),
              startAt: Type.Optional(Type.String({ format: 'date-time' })),
              requireApproval: Type.Optional(Type.Boolean()),
              rollout: Type.Optional(
                Type.Object(
                  {
                    waveSize: Type.Optional(Type.Integer({ minimum: 1 })),
                    wavePercent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
                    ratePerMinute: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
                    successThreshold: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
                    failureThreshold: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
                    deviceTimeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 30 * 86_400_000 })),
                    confirmWithinMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
                    maintenanceWindow: Type.Optional(
                      Type.Object(
                        { start: Type.String({ pattern: HHMM }), end: Type.String({ pattern: HHMM }) },
                        { additionalProperties: false },
                      ),
                    ),
                  },
                  { additionalProperties: false },
                ),
              ),
            },
            { additionalProperties: false },
          ),
          response: { 201: Any, 409: ErrorRef, ...errorsOf },
        },
      },
      async function createJob(req, res) {
        const operator = operatorOf(req)
        if (req.body.requireApproval && operator === undefined) {
          throw new errors.OPERATOR_REQUIRED('create a job that needs approval')
        }
        return res.status(201).send(await ota.createJob(req.body, operator ?? 'anonymous'))
      },
    )

    app.get(
      '/jobs',
      {
        schema: {
          summary: 'Jobs, oldest first',
          tags: ['ota'],
          querystring: Page,
          response: { 200: Any, ...errorsOf },
        },
      },
      async function listJobs(req) {
        return ota.listJobs({
          limit: req.query.limit ?? 100,
          ...(req.query.after !== undefined ? { after: req.query.after } : {}),
        })
      },
    )

    app.get(
      '/jobs/:id',
      {
        schema: {
          summary: 'A job: its state, totals by execution state, current wave, and why it halted',
          tags: ['ota'],
          params: Id,
          response: { 200: Any, ...errorsOf },
        },
      },
      async function getJob(req) {
        return ota.getJob(req.params.id)
      },
    )

    app.get(
      '/jobs/:id/devices',
      {
        schema: {
          summary: 'A job’s executions, one per device, in wave order',
          tags: ['ota'],
          params: Id,
          querystring: Type.Object({
            after: Type.Optional(Type.Integer({ minimum: 0 })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE })),
          }),
          response: { 200: Any, ...errorsOf },
        },
      },
      async function jobDevices(req) {
        return ota.executions(req.params.id, req.query.after, req.query.limit ?? 100)
      },
    )

    app.post(
      '/jobs/:id/approve',
      {
        schema: {
          summary: 'Approve a job that needs it: an operator other than its creator (X-FleetHub-Operator)',
          tags: ['ota'],
          params: Id,
          headers: OperatorHeader,
          response: { 200: Any, 403: ErrorRef, 409: ErrorRef, ...errorsOf },
        },
      },
      async function approveJob(req) {
        const operator = operatorOf(req)
        if (operator === undefined) throw new errors.OPERATOR_REQUIRED('approve a job')
        return ota.approve(req.params.id, operator)
      },
    )

    for (const action of ['pause', 'resume', 'cancel'] as const) {
      app.post(
        `/jobs/:id/${action}`,
        {
          schema: {
            summary:
              action === 'pause'
                ? 'Pause a running job: no new notifications; devices in flight go on'
                : action === 'resume'
                  ? 'Resume a paused job'
                  : 'Cancel a job: devices not yet installing are told to stop',
            tags: ['ota'],
            params: Id,
            response: { 200: Any, 409: ErrorRef, ...errorsOf },
          },
        },
        async function jobAction(req) {
          return ota[action](req.params.id)
        },
      )
    }

    app.get(
      '/devices/:id/ota',
      {
        schema: {
          summary: 'The device’s current (or last) update execution',
          tags: ['ota', 'devices'],
          params: Id,
          response: { 200: Any, ...errorsOf },
        },
      },
      async function deviceOta(req) {
        return ota.deviceOta(req.params.id)
      },
    )
  }
}

/** Device downloads: no token (devices have none); the id is random and the content signed. */
export function otaPublicRoutes(ota: OtaService): FastifyPluginAsyncTypebox {
  return async function otaDownloads(app) {
    app.get(
      '/ota/packages/:id/file',
      {
        schema: {
          summary: 'A hosted package file, with Range requests (devices resume downloads); no token needed',
          tags: ['ota'],
          params: Id,
          security: [],
        },
      },
      async function download(req, res) {
        const found = await ota.downloadable(req.params.id)
        if (!found) throw new errors.PACKAGE_NOT_FOUND(req.params.id)
        const { p, size } = found
        const etag = `"${p.sha256}"`
        res.header('accept-ranges', 'bytes')
        res.header('etag', etag)
        res.header('cache-control', 'private, max-age=0')
        const ifRange = req.headers['if-range']
        const range = ifRange === undefined || ifRange === etag ? parseRange(req.headers.range, size) : undefined
        if (range === 'unsatisfiable') {
          res.header('content-range', `bytes */${size}`)
          const e = new errors.RANGE_NOT_SATISFIABLE(size)
          return res.status(416).send({ error: { code: e.code, message: e.message } })
        }
        res.type('application/octet-stream')
        ota.downloading(req.raw.socket, res.raw)
        if (range === undefined) {
          res.header('content-length', size)
          return res.status(200).send(size === 0 ? Buffer.alloc(0) : ota.files.read(p.id, 0, size - 1))
        }
        res.header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        res.header('content-length', range.end - range.start + 1)
        return res.status(206).send(ota.files.read(p.id, range.start, range.end))
      },
    )
  }
}
