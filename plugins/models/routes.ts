// The model routes: register a model version, read models (latest, one version, by key, in pages),
// and a device's model. Versions are immutable: there is no PATCH or DELETE of a model.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { decodeCursor, pageAnswer } from '../../broker/http/pages.js'
import { errors } from '../../registry/errors.js'
import type { ModelRegistry } from '../../registry/model-registry.js'
import { isModelId, MAX_MODEL_KEY, modelRef } from '../../registry/models.js'
import { MAX_PAGE } from '../../registry/query.js'
import { DeviceModel, Model, ModelDefinition, ModelPage } from './schemas.js'

const ErrorRef = Type.Unsafe({ $ref: 'Error' })
const errorsOf = { 400: ErrorRef, 401: ErrorRef, 404: ErrorRef }
const IdParams = Type.Object({ id: Type.String() })

/** The body schema documents the format; the registry checks it (INVALID_MODEL says what and where). */
function checkedByTheRegistry() {
  return () => true
}

export function modelRoutes(models: ModelRegistry): FastifyPluginAsyncTypebox {
  return async function modelsRoutes(app) {
    app.post(
      '/models',
      {
        schema: {
          summary: 'Register a model version; it gets its key. Versions are immutable',
          tags: ['models'],
          body: ModelDefinition,
          response: { 201: Model, 409: ErrorRef, 413: ErrorRef, 507: ErrorRef, ...errorsOf },
        },
        validatorCompiler: checkedByTheRegistry,
      },
      async function createModel(req, reply) {
        const model = await models.create(req.body as unknown)
        reply.header('location', `/models/${encodeURIComponent(model.id)}?version=${model.version}`)
        return reply.status(201).send(model)
      },
    )

    app.get(
      '/models',
      {
        schema: {
          summary: 'List models in id order, each as its latest version with its versions, in pages',
          tags: ['models'],
          querystring: Type.Object(
            {
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 })),
              cursor: Type.Optional(Type.String({ maxLength: 400, description: 'nextCursor of the previous page' })),
            },
            { additionalProperties: false },
          ),
          response: { 200: ModelPage, ...errorsOf },
        },
      },
      async function listModels(req) {
        const { cursor, limit } = req.query
        const page = await models.list({
          ...(cursor !== undefined ? { after: decodeCursor(cursor, isModelId) } : {}),
          ...(limit !== undefined ? { limit } : {}),
        })
        return pageAnswer(page)
      },
    )

    app.get(
      '/models/:id',
      {
        schema: {
          summary: 'A model: its latest version, or ?version=N',
          tags: ['models'],
          params: IdParams,
          querystring: Type.Object(
            { version: Type.Optional(Type.Integer({ minimum: 1 })) },
            { additionalProperties: false },
          ),
          response: { 200: Model, ...errorsOf },
        },
      },
      async function getModel(req) {
        const { id } = req.params
        const { version } = req.query
        const model = await models.get(id, version)
        if (!model) throw new errors.MODEL_NOT_FOUND(version === undefined ? id : modelRef(id, version))
        return model
      },
    )

    app.get(
      '/models/:id/versions',
      {
        schema: {
          summary: 'The versions of a model, ascending',
          tags: ['models'],
          params: IdParams,
          response: { 200: Type.Object({ id: Type.String(), versions: Type.Array(Type.Integer()) }), ...errorsOf },
        },
      },
      async function modelVersions(req) {
        const versions = await models.versions(req.params.id)
        if (versions.length === 0) throw new errors.MODEL_NOT_FOUND(req.params.id)
        return { id: req.params.id, versions }
      },
    )

    app.get(
      '/model-keys/:key',
      {
        schema: {
          summary: 'The model version with this key (what a device sends in 2 bytes)',
          tags: ['models'],
          params: Type.Object({ key: Type.Integer({ minimum: 1, maximum: MAX_MODEL_KEY }) }),
          response: { 200: Model, ...errorsOf },
        },
      },
      async function modelByKey(req) {
        const model = await models.byKey(req.params.key)
        if (!model) throw new errors.MODEL_KEY_NOT_FOUND(req.params.key)
        return model
      },
    )

    app.get(
      '/devices/:id/model',
      {
        schema: {
          summary: 'How a device is bound to a model, with the model (registered or self-described)',
          tags: ['models', 'devices'],
          params: IdParams,
          response: { 200: DeviceModel, ...errorsOf },
        },
      },
      async function deviceModel(req) {
        return models.deviceModel(req.params.id)
      },
    )
  }
}

/** `GET /devices/{id}` shows the device's binding as `model`. */
export function modelField(models: ModelRegistry) {
  return async function deviceModelField(deviceId: string) {
    const binding = await models.binding(deviceId)
    return binding && { model: binding }
  }
}
