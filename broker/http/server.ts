// The HTTP management API (fastify + TypeBox): device routes behind a bearer token, and the public
// /healthz, /metrics and /docs (OpenAPI). Errors are `{"error":{"code","message"}}` from one mapper.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import {
  type FastifyPluginAsyncTypebox,
  type TypeBoxTypeProvider,
  TypeBoxValidatorCompiler,
} from '@fastify/type-provider-typebox'
import Fastify, { type FastifyRequest, LogController } from 'fastify'
import { Compile } from 'typebox/compile'
import { secretMatcher } from '../../registry/credentials.js'
import { errors } from '../../registry/errors.js'
import type { RegistryService } from '../../registry/service.js'
import type { Logger } from '../log.js'
import type { Metrics } from '../metrics.js'
import { type DeviceFields, deviceRoutes } from './devices.js'
import { createErrorHandler } from './errors.js'
import { Device, DeviceWithPresence, ErrorBody, Keys, ModelBinding, Presence } from './schemas.js'

export interface HealthReport {
  ok: boolean
  checks: Record<string, boolean>
}

export interface HttpDeps {
  registry: RegistryService
  metrics: Metrics
  log: Logger
  adminToken: string
  version: string
  health(): Promise<HealthReport>
  /** Extra authenticated routes (later capabilities add theirs here). */
  routes?: FastifyPluginAsyncTypebox[]
  /** Extra routes served without the token (device downloads). */
  publicRoutes?: FastifyPluginAsyncTypebox[]
  /** Fields capabilities add to `GET /devices/{id}`. */
  deviceFields?: DeviceFields[]
}

/** Is `schema` an object of plain strings only (most path parameters), which converting from text leaves as they are? */
function onlyStrings(schema: unknown): boolean {
  const s = schema as { type?: unknown; properties?: Record<string, { type?: unknown; anyOf?: unknown }> }
  if (s.type !== 'object' || !s.properties) return false
  return Object.values(s.properties).every((p) => p.type === 'string' && p.anyOf === undefined)
}

/**
 * TypeBox's compiler, without its per-request conversion (`Value.Convert`, a generic walk) where it
 * cannot change anything: parts whose properties are all strings are checked as they come.
 */
const validatorCompiler: typeof TypeBoxValidatorCompiler = (route) => {
  const full = TypeBoxValidatorCompiler(route)
  if (route.httpPart === 'body' || !onlyStrings(route.schema)) return full
  const check = Compile(route.schema)
  return (value) => (check.Check(value) ? { value } : full(value))
}

/** Largest request body; device documents are small. */
const BODY_LIMIT = 256 * 1024

export type HttpServer = Awaited<ReturnType<typeof createHttpServer>>

export async function createHttpServer(deps: HttpDeps) {
  const { metrics, log } = deps
  const app = Fastify({
    loggerInstance: log.child({ component: 'http' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  }).withTypeProvider<TypeBoxTypeProvider>()
  // TypeBox validates as declared: bodies are never coerced or stripped (an unknown field is a 400,
  // a null stays null), while query strings and path parameters are converted from text.
  app.setValidatorCompiler(validatorCompiler)

  // an empty JSON body (a POST with only a Content-Type) means "no body", not an error
  const json = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, function parseJson(req, body, done) {
    if (body === '' || (typeof body === 'string' && body.trim() === '')) return done(null, undefined)
    json(req, body as string, done)
  })

  app.setErrorHandler(createErrorHandler(log))
  app.setNotFoundHandler(function notFound(req, reply) {
    const e = new errors.ROUTE_NOT_FOUND(req.method, req.url.split('?')[0])
    return reply.status(404).send({ error: { code: e.code, message: e.message } })
  })
  app.addHook('onResponse', async function countRequest(req, reply) {
    metrics.httpRequests.inc({
      method: req.method,
      route: req.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
    })
  })

  for (const s of [ErrorBody, Device, Presence, ModelBinding, DeviceWithPresence, Keys]) app.addSchema(s)
  await app.register(swagger, {
    openapi: {
      info: { title: 'FleetHub HTTP API', version: deps.version, description: 'Device registry and fleet management' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })

  app.get('/healthz', { schema: { hide: true } }, async function healthz(_req, reply) {
    const report = await deps.health()
    return reply.status(report.ok ? 200 : 503).send(report)
  })
  app.get('/metrics', { schema: { hide: true } }, async function promMetrics(_req, reply) {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })

  for (const r of deps.publicRoutes ?? []) await app.register(r)

  const isAdminToken = secretMatcher(deps.adminToken)
  await app.register(async function authenticated(scoped) {
    scoped.addHook('onRequest', async function bearerToken(req: FastifyRequest) {
      const h = req.headers.authorization
      const token = h?.startsWith('Bearer ') ? h.slice(7).trim() : undefined
      if (!token || !isAdminToken(token)) throw new errors.UNAUTHORIZED()
    })
    await scoped.register(deviceRoutes(deps.registry, deps.deviceFields ?? []))
    for (const r of deps.routes ?? []) await scoped.register(r)
  })

  return app
}
