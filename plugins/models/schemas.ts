// TypeBox schemas of the model routes: they shape answers and describe the definition format in the
// OpenAPI document. A posted definition is checked by validateDefinition (registry/models.ts), whose
// messages say what is wrong and where.
import { Type } from 'typebox'
import { FIELD_NAME_PATTERN, MAX_COMMANDS, MAX_FIELDS, MAX_MODEL_KEY, MODEL_ID_PATTERN } from '../../registry/models.js'

const Field = Type.Object(
  {
    name: Type.String({ pattern: FIELD_NAME_PATTERN }),
    type: Type.Union([
      Type.Literal('boolean'),
      Type.Literal('integer'),
      Type.Literal('number'),
      Type.Literal('string'),
    ]),
    unit: Type.Optional(Type.String({ maxLength: 32 })),
    description: Type.Optional(Type.String({ maxLength: 256 })),
    minimum: Type.Optional(Type.Number()),
    maximum: Type.Optional(Type.Number()),
    maxLength: Type.Optional(Type.Integer({ minimum: 0, description: 'strings' })),
    enum: Type.Optional(Type.Array(Type.Union([Type.String(), Type.Number()]), { minItems: 1, maxItems: 256 })),
    scale: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, description: 'numbers: compact frames carry round(value / scale)' }),
    ),
    writable: Type.Optional(Type.Boolean({ description: 'properties: settable through desired state' })),
  },
  { additionalProperties: false },
)
const Fields = Type.Array(Field, { maxItems: MAX_FIELDS })

const definitionProperties = {
  id: Type.String({ pattern: MODEL_ID_PATTERN }),
  version: Type.Integer({ minimum: 1, maximum: 1e9, description: 'a changed model is a new version' }),
  displayName: Type.Optional(Type.String({ maxLength: 128 })),
  description: Type.Optional(Type.String({ maxLength: 256 })),
  properties: Fields,
  telemetry: Fields,
  commands: Type.Array(
    Type.Object(
      {
        name: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }),
        description: Type.Optional(Type.String({ maxLength: 256 })),
        request: Type.Optional(Fields),
        response: Type.Optional(Fields),
      },
      { additionalProperties: false },
    ),
    { maxItems: MAX_COMMANDS },
  ),
}

export const ModelDefinition = Type.Object(definitionProperties, {
  additionalProperties: false,
  description: 'properties, telemetry and commands may be left out (empty); at least one field in all',
})

const modelProperties = {
  ...definitionProperties,
  key: Type.Integer({ minimum: 1, maximum: MAX_MODEL_KEY, description: 'what a device sends (2 bytes)' }),
  createdAt: Type.String({ format: 'date-time' }),
}

export const Model = Type.Object(modelProperties)

export const ModelPage = Type.Object({
  items: Type.Array(
    Type.Object({ ...modelProperties, versions: Type.Array(Type.Integer(), { description: 'ascending' }) }, {}),
  ),
  nextCursor: Type.Optional(Type.String({ description: 'present when more models follow' })),
})

export const DeviceModel = Type.Object({
  binding: Type.Unsafe({ $ref: 'ModelBinding' }),
  model: Type.Optional(Model),
  self: Type.Optional(Type.Object(definitionProperties, { description: 'the device’s description of itself' })),
})
