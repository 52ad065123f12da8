// A realistic device model to start from (and the one FleetHub's tests and bench use): an air sensor
// with 10 telemetry fields, two properties and a command, and one reading of it.
import type { ModelDefinition } from '../registry/models.js'

export const AIR_MODEL: ModelDefinition = {
  id: 'acme.air',
  version: 1,
  properties: [
    { name: 'firmware', type: 'string', maxLength: 32 },
    { name: 'interval', type: 'integer', minimum: 1, maximum: 3600, writable: true },
  ],
  telemetry: [
    { name: 'temperature', type: 'number', unit: 'Cel', scale: 0.1, minimum: -40, maximum: 125 },
    { name: 'humidity', type: 'number', unit: '%RH', scale: 0.1, minimum: 0, maximum: 100 },
    { name: 'pressure', type: 'number', unit: 'hPa', scale: 0.1 },
    { name: 'co2', type: 'integer', unit: 'ppm' },
    { name: 'voc', type: 'integer', unit: 'ppb' },
    { name: 'pm25', type: 'integer', unit: 'ug/m3' },
    { name: 'pm10', type: 'integer', unit: 'ug/m3' },
    { name: 'battery', type: 'number', unit: 'V', scale: 0.01 },
    { name: 'rssi', type: 'integer', unit: 'dBm' },
    { name: 'door', type: 'string', enum: ['open', 'closed'] },
  ],
  commands: [{ name: 'calibrate', request: [{ name: 'offset', type: 'number' }] }],
}

/** One reading of every AIR_MODEL telemetry field. */
export const AIR_READING = {
  temperature: 21.5,
  humidity: 40.2,
  pressure: 1013.2,
  co2: 412,
  voc: 120,
  pm25: 8,
  pm10: 12,
  battery: 3.71,
  rssi: -67,
  door: 'closed',
}
