// The provisioning routes: enrollments (CRUD, key rotation), the registrations each admitted, the
// configured hubs, and the route another hub's bootstrap service registers devices here through.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { decodeCursor, pageAnswer } from '../../broker/http/pages.js'
import { DEVICE_ID_PATTERN, TAG_KEY_PATTERN } from '../../registry/ids.js'
import type { EnrollmentInput, EnrollmentPatch } from '../../registry/provisioning.js'
import { MAX_PAGE } from '../../registry/query.js'
import type { ProvisioningService } from './service.js'

const ErrorRef = Type.Unsafe({ $ref: 'Error' })
const errorsOf = { 400: ErrorRef, 401: ErrorRef, 404: ErrorRef }
const IdParams = Type.Object({ id: Type.String() })
const TagValue = Type.Union([Type.String({ maxLength: 256 }), Type.Number(), Type.Boolean()])
const TagsSchema = Type.Record(Type.String({ pattern: TAG_KEY_PATTERN }), TagValue)
const Desired = Type.Record(Type.String(), Type.Unknown(), { description: 'initial desired twin of each device' })

const Allocation = Type.Object(
  {
    policy: Type.Union([Type.Literal('static'), Type.Literal('hashed'), Type.Literal('tag'), Type.Literal('webhook')]),
    hub: Type.Optional(Type.String({ description: 'static: the hub' })),
    hubs: Type.Optional(Type.Array(Type.String(), { description: 'hashed, tag: the hubs to choose from' })),
    tag: Type.Optional(Type.String({ description: 'tag: the device tag hubs are matched on' })),
    url: Type.Optional(Type.String({ description: 'webhook: the URL asked for each registration' })),
    timeoutMs: Type.Optional(Type.Integer({ description: 'webhook: how long it may take (default 5000)' })),
  },
  { additionalProperties: false },
)
const Reprovision = Type.Union([Type.Literal('reassign'), Type.Literal('keep')], {
  description: 'a known device registering again: pick its hub again (reassign) or keep it',
})
const Status = Type.Union([Type.Literal('enabled'), Type.Literal('disabled')])

const Enrollment = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.Literal('individual'), Type.Literal('group')]),
  registrationId: Type.Optional(Type.String()),
  status: Status,
  tags: TagsSchema,
  desired: Desired,
  modelId: Type.Optional(Type.String()),
  allocation: Allocation,
  reprovision: Reprovision,
  createdAt: Type.String(),
  updatedAt: Type.String(),
})

const EnrollmentBody = Type.Object(
  {
    id: Type.String({ pattern: DEVICE_ID_PATTERN }),
    kind: Type.Union([Type.Literal('individual'), Type.Literal('group')]),
    registrationId: Type.Optional(Type.String({ description: 'individual: the registration id (default: id)' })),
    status: Type.Optional(Status),
    tags: Type.Optional(TagsSchema),
    desired: Type.Optional(Desired),
    modelId: Type.Optional(Type.String({ description: 'the model devices of this enrollment implement' })),
    allocation: Type.Optional(Allocation),
    reprovision: Type.Optional(Reprovision),
  },
  { additionalProperties: false },
)

const EnrollmentPatchBody = Type.Object(
  {
    status: Type.Optional(Status),
    tags: Type.Optional(TagsSchema),
    desired: Type.Optional(Desired),
    modelId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    allocation: Type.Optional(Allocation),
    reprovision: Type.Optional(Reprovision),
  },
  { additionalProperties: false, minProperties: 1 },
)

const Step = Type.Object({ at: Type.String(), hub: Type.String(), enrollmentId: Type.String(), node: Type.String() })
const Registration = Type.Object({
  registrationId: Type.String(),
  deviceId: Type.String(),
  enrollmentId: Type.String(),
  hub: Type.String(),
  assignedAt: Type.String(),
  firstAt: Type.String(),
  count: Type.Integer(),
  history: Type.Array(Step),
})

const Hub = Type.Object({
  name: Type.String(),
  mqtt: Type.String(),
  ws: Type.Optional(Type.String()),
  mqtts: Type.Optional(Type.String()),
  weight: Type.Number(),
  tags: Type.Record(Type.String(), Type.String()),
  remote: Type.Boolean({ description: 'a separate hub, registered through its HTTP API' }),
})

const HubRegistrationBody = Type.Object(
  {
    verifier: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'verifier of the device key' }),
    tags: TagsSchema,
    desired: Desired,
    modelId: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
)

const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 })),
    cursor: Type.Optional(Type.String({ maxLength: 400, description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
)

function pageOf(q: { limit?: number | undefined; cursor?: string | undefined }) {
  return {
    limit: q.limit ?? 100,
    ...(q.cursor !== undefined ? { after: decodeCursor(q.cursor) } : {}),
  }
}

const stripRev = <T extends { rev: number }>({ rev: _rev, ...r }: T) => r

export function provisioningRoutes(service: ProvisioningService): FastifyPluginAsyncTypebox {
  return async function provisioning(app) {
    app.post(
      '/enrollments',
      {
        schema: {
          summary: 'Create an enrollment; its key (a group key, or the device key) is in the answer, once',
          tags: ['provisioning'],
          body: EnrollmentBody,
          response: { 201: Type.Object({ enrollment: Enrollment, key: Type.String() }), 409: ErrorRef, ...errorsOf },
        },
      },
      async function createEnrollment(req, reply) {
        const created = await service.createEnrollment(req.body as EnrollmentInput)
        reply.header('location', `/enrollments/${encodeURIComponent(created.enrollment.id)}`)
        return reply.status(201).send(created)
      },
    )

    app.get(
      '/enrollments',
      {
        schema: {
          summary: 'List enrollments in id order, in pages',
          tags: ['provisioning'],
          querystring: PageQuery,
          response: { 200: Type.Object({ items: Type.Array(Enrollment), nextCursor: Type.Optional(Type.String()) }) },
        },
      },
      async function listEnrollments(req) {
        return pageAnswer(await service.listEnrollments(pageOf(req.query)))
      },
    )

    app.get(
      '/enrollments/:id',
      {
        schema: {
          summary: 'One enrollment (never its key)',
          tags: ['provisioning'],
          params: IdParams,
          response: { 200: Enrollment, ...errorsOf },
        },
      },
      async function getEnrollment(req) {
        return service.getEnrollment(req.params.id)
      },
    )

    app.patch(
      '/enrollments/:id',
      {
        schema: {
          summary: 'Change an enrollment: disable it, or change what it gives the devices it registers next',
          tags: ['provisioning'],
          params: IdParams,
          body: EnrollmentPatchBody,
          response: { 200: Enrollment, 409: ErrorRef, ...errorsOf },
        },
      },
      async function updateEnrollment(req) {
        return service.updateEnrollment(req.params.id, req.body as EnrollmentPatch)
      },
    )

    app.delete(
      '/enrollments/:id',
      {
        schema: {
          summary: 'Delete an enrollment; the devices it registered stay',
          tags: ['provisioning'],
          params: IdParams,
          response: { 204: Type.Null(), ...errorsOf },
        },
      },
      async function deleteEnrollment(req, reply) {
        await service.deleteEnrollment(req.params.id)
        return reply.status(204).send(null)
      },
    )

    app.post(
      '/enrollments/:id/keys/rotate',
      {
        schema: {
          summary: 'A new enrollment key; registered devices keep their hub keys, new registrations need the new one',
          tags: ['provisioning'],
          params: IdParams,
          response: { 200: Type.Object({ key: Type.String() }), ...errorsOf },
        },
      },
      async function rotateEnrollmentKey(req) {
        return { key: await service.rotateEnrollmentKey(req.params.id) }
      },
    )

    app.get(
      '/enrollments/:id/registrations',
      {
        schema: {
          summary: 'The devices an enrollment registered: when, where, and how often, in pages',
          tags: ['provisioning'],
          params: IdParams,
          querystring: PageQuery,
          response: {
            200: Type.Object({ items: Type.Array(Registration), nextCursor: Type.Optional(Type.String()) }),
            ...errorsOf,
          },
        },
      },
      async function listRegistrations(req) {
        const page = await service.listRegistrations(req.params.id, pageOf(req.query))
        return pageAnswer({ ...page, items: page.items.map(stripRev) })
      },
    )

    app.get(
      '/registrations/:id',
      {
        schema: {
          summary: 'One registration id: its device, hub and history',
          tags: ['provisioning'],
          params: IdParams,
          response: { 200: Registration, ...errorsOf },
        },
      },
      async function getRegistration(req) {
        return stripRev(await service.getRegistration(req.params.id))
      },
    )

    app.get(
      '/provisioning/hubs',
      {
        schema: {
          summary: 'The hubs devices are assigned to (FLEETHUB_PROVISIONING_HUBS), without their API tokens',
          tags: ['provisioning'],
          response: { 200: Type.Object({ items: Type.Array(Hub) }) },
        },
      },
      async function listHubs() {
        return { items: service.hubList() }
      },
    )

    app.put(
      '/provisioning/devices/:id',
      {
        schema: {
          summary: "Register a provisioned device on this hub (another hub's bootstrap service calls it)",
          tags: ['provisioning'],
          params: IdParams,
          body: HubRegistrationBody,
          response: {
            200: Type.Object({ created: Type.Boolean() }),
            201: Type.Object({ created: Type.Boolean() }),
            ...errorsOf,
          },
        },
      },
      async function registerHere(req, reply) {
        const { created } = await service.registerHere(req.params.id, req.body)
        return reply.status(created ? 201 : 200).send({ created })
      },
    )
  }
}
