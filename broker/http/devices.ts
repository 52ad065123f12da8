// The device routes of the contract: create, list, get, patch, delete, rotate keys.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errors } from '../../registry/errors.js'
import type { RegistryService } from '../../registry/service.js'
import { decodeCursor, pageAnswer } from './pages.js'
import {
  CreateDeviceBody,
  Device,
  DeviceList,
  DeviceWithPresence,
  ErrorBody,
  IdParams,
  Keys,
  ListQuery,
  PatchDeviceBody,
} from './schemas.js'

const errorResponses = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody }

/**
 * Fields a capability adds to `GET /devices/{id}` (the models plugin adds `model`); undefined adds
 * none. Each field must be in the DeviceWithPresence schema, or the answer leaves it out.
 */
export type DeviceFields = (deviceId: string) => Promise<Record<string, unknown> | undefined>

export function deviceRoutes(registry: RegistryService, fields: readonly DeviceFields[]): FastifyPluginAsyncTypebox {
  return async function devices(app) {
    app.post(
      '/devices',
      {
        schema: {
          summary: 'Create a device; its keys are in this answer only',
          tags: ['devices'],
          body: CreateDeviceBody,
          response: { 201: Type.Object({ device: Device, keys: Keys }), 409: ErrorBody, ...errorResponses },
        },
      },
      async function createDevice(req, reply) {
        const created = await registry.createDevice(req.body)
        reply.header('location', `/devices/${encodeURIComponent(created.device.id)}`)
        return reply.status(201).send(created)
      },
    )

    app.get(
      '/devices',
      {
        schema: {
          summary: 'List devices, filtered by status, parent and tag.{key}={value}, in pages',
          tags: ['devices'],
          querystring: ListQuery,
          response: { 200: DeviceList, ...errorResponses },
        },
      },
      async function listDevices(req) {
        const q = req.query as Record<string, string | number | undefined>
        const tags: Record<string, string> = {}
        for (const k in q) if (k.startsWith('tag.')) tags[k.slice(4)] = String(q[k])
        const page = await registry.listDevices({
          ...(req.query.status ? { status: req.query.status } : {}),
          ...(req.query.parentId ? { parentId: req.query.parentId } : {}),
          ...(Object.keys(tags).length ? { tags } : {}),
          ...(req.query.cursor ? { after: decodeCursor(req.query.cursor) } : {}),
          ...(req.query.where !== undefined ? { where: req.query.where } : {}),
          limit: req.query.limit ?? 100,
        })
        return pageAnswer(page)
      },
    )

    app.get(
      '/devices/:id',
      {
        schema: {
          summary: 'One device with its presence (never its keys)',
          tags: ['devices'],
          params: IdParams,
          response: { 200: DeviceWithPresence, ...errorResponses },
        },
      },
      async function getDevice(req) {
        const [d, ...extra] = await Promise.all([
          registry.getDevice(req.params.id),
          ...fields.map((f) => f(req.params.id)),
        ])
        if (!d) throw new errors.DEVICE_NOT_FOUND(req.params.id)
        return Object.assign(d, ...extra)
      },
    )

    app.patch(
      '/devices/:id',
      {
        schema: {
          summary: 'Enable or disable a device, or patch its tags; disabling closes its session',
          tags: ['devices'],
          params: IdParams,
          body: PatchDeviceBody,
          response: { 200: Device, ...errorResponses },
        },
      },
      async function patchDevice(req) {
        return registry.updateDevice(req.params.id, req.body)
      },
    )

    app.delete(
      '/devices/:id',
      {
        schema: {
          summary: 'Delete a device; its session is closed',
          tags: ['devices'],
          params: IdParams,
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async function deleteDevice(req, reply) {
        await registry.deleteDevice(req.params.id)
        return reply.status(204).send(null)
      },
    )

    app.post(
      '/devices/:id/keys/rotate',
      {
        schema: {
          summary: 'New primary and secondary keys; the old ones stop working and the session is closed',
          tags: ['devices'],
          params: IdParams,
          response: { 200: Type.Object({ keys: Keys }), ...errorResponses },
        },
      },
      async function rotateKeys(req) {
        return { keys: await registry.rotateKeys(req.params.id) }
      },
    )
  }
}
