// TypeBox schemas of the HTTP API: they validate requests, shape responses (so nothing outside them,
// such as key verifiers, is ever serialized) and feed the OpenAPI description at /docs.
import { Type } from 'typebox'
import { DEVICE_ID_PATTERN, MAX_TAG_VALUE_LENGTH, MAX_TAGS, TAG_KEY_PATTERN } from '../../registry/ids.js'
import { MAX_MODEL_KEY, MODEL_REF_PATTERN } from '../../registry/models.js'
import { MAX_PAGE } from '../../registry/query.js'

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ examples: ['FLEETHUB_ERR_DEVICE_NOT_FOUND'] }),
      message: Type.String(),
    }),
  },
  { $id: 'Error', description: 'Every error answer' },
)

export const DeviceId = Type.String({ pattern: DEVICE_ID_PATTERN, description: 'device id' })
const TagValue = Type.Union([Type.String({ maxLength: MAX_TAG_VALUE_LENGTH }), Type.Number(), Type.Boolean()])
export const Tags = Type.Record(Type.String({ pattern: TAG_KEY_PATTERN }), TagValue, {
  maxProperties: MAX_TAGS,
  description: 'service-side metadata; the device never sees it',
})
const TagsPatch = Type.Record(Type.String({ pattern: TAG_KEY_PATTERN }), Type.Union([TagValue, Type.Null()]), {
  maxProperties: MAX_TAGS,
  description: 'JSON merge patch of the tags: null deletes a tag',
})
const Status = Type.Union([Type.Literal('enabled'), Type.Literal('disabled')])

export const Device = Type.Object(
  {
    id: Type.String(),
    status: Status,
    tags: Tags,
    parentId: Type.Optional(Type.String({ description: 'the gateway this device connects through' })),
    modelId: Type.Optional(Type.String()),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    keysRotatedAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Device' },
)

export const Presence = Type.Object(
  {
    connected: Type.Boolean(),
    since: Type.Optional(Type.String({ format: 'date-time' })),
    node: Type.Optional(Type.String({ description: 'the node holding the session' })),
    lastDisconnectAt: Type.Optional(Type.String({ format: 'date-time' })),
    seq: Type.Integer({ description: 'sequence number of the last presence event' }),
  },
  { $id: 'Presence' },
)

export const ModelBinding = Type.Object(
  {
    id: Type.String({ description: 'model id' }),
    version: Type.Integer({ minimum: 1 }),
    key: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_MODEL_KEY, description: 'registered models only' })),
    source: Type.Union([Type.Literal('registry'), Type.Literal('key'), Type.Literal('self')], {
      description: "registry: the device's modelId; key: the device sent the model's key; self: it described itself",
    }),
    at: Type.String({ format: 'date-time' }),
  },
  { $id: 'ModelBinding', description: 'the model the device is bound to (docs/models.md)' },
)

export const DeviceWithPresence = Type.Object(
  { ...Device.properties, presence: Presence, model: Type.Optional(ModelBinding) },
  { $id: 'DeviceWithPresence' },
)

export const Keys = Type.Object(
  {
    primary: Type.String({ description: '32 random bytes, base64url; shown once' }),
    secondary: Type.String({ description: '32 random bytes, base64url; shown once' }),
  },
  { $id: 'Keys' },
)

export const CreateDeviceBody = Type.Object(
  {
    id: DeviceId,
    tags: Type.Optional(Tags),
    parentId: Type.Optional(DeviceId),
    modelId: Type.Optional(Type.String({ pattern: MODEL_REF_PATTERN })),
  },
  { additionalProperties: false },
)

export const PatchDeviceBody = Type.Object(
  {
    status: Type.Optional(Status),
    tags: Type.Optional(TagsPatch),
  },
  { additionalProperties: false, minProperties: 1 },
)

export const ListQuery = Type.Object(
  {
    status: Type.Optional(Status),
    parentId: Type.Optional(DeviceId),
    cursor: Type.Optional(Type.String({ maxLength: 400, description: 'nextCursor of the previous page' })),
    where: Type.Optional(
      Type.String({
        maxLength: 2000,
        description: "a query, e.g. tags.building = '109' AND reported.fw < '2.0' (docs/queries.md)",
      }),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 100 })),
  },
  {
    // tag.{key}={value}: exact match on a tag, compared as text
    patternProperties: {
      [`^tag\\.${TAG_KEY_PATTERN.slice(1, -1)}$`]: Type.String({ maxLength: MAX_TAG_VALUE_LENGTH }),
    },
    additionalProperties: false,
  },
)

export const DeviceList = Type.Object({
  items: Type.Array(DeviceWithPresence),
  nextCursor: Type.Optional(
    Type.String({ description: 'present when more devices may follow (a page can hold fewer than limit)' }),
  ),
})

export const IdParams = Type.Object({ id: Type.String() })
