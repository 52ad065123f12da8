// The FleetHub device and service SDK (Node.js, on mqtt.js).

export {
  DOWNLINK_KINDS,
  type DownlinkKind,
  EVENT_KINDS,
  type EventKind,
  UPLINK_KINDS,
  type UplinkKind,
} from '../registry/topics.js'
export {
  type DeviceChannel,
  type DownlinkHandler,
  type DownlinkMessage,
  isDownlinkKind,
  isUplinkKind,
  type PublishOptions,
  type QoS,
  type SubscribeOptions,
  type SubscribeResult,
} from './channel.js'
export type { ConnectionOptions, ErrorListener } from './connect.js'
export {
  type DesiredHandler,
  type DesiredInfo,
  type DesiredSnapshot,
  LAST_DESIRED_VERSION,
} from './desired.js'
export { connectDevice, type DeviceAuth, type DeviceClient, type DeviceOptions, deviceToken } from './device.js'
export type { Encoding } from './envelope.js'
export { DesiredHandlerError, RequestError, RequestTimeoutError } from './errors.js'
export type { DeviceHandle } from './handle.js'
export { diffPatch, isJsonObject, type Json, type JsonObject, jsonEqual, mergePatch } from './json.js'
export { decodeJson, encodeJson } from './payload.js'
export type {
  ConfigHandler,
  LogLevel,
  SectionHandler,
  SectionInfo,
  SystemHandler,
  SystemProperties,
} from './remote-config.js'
export type { Answer, RequestOptions } from './requests.js'
export { createTopicRouter, type MessageHandler, type TopicRouter, topicMatches } from './router.js'
export {
  DEFAULT_REPORTING_INTERVAL_SEC,
  fakeReading,
  runSampleDevice,
  type SampleDeviceOptions,
  type SampleDeviceSummary,
  type SampleReading,
} from './sample-device.js'
export {
  connectService,
  type EventHandler,
  type ServiceClient,
  type ServiceOptions,
  type ServiceSubscribeOptions,
  type TelemetryHandler,
  type Unsubscribe,
} from './service.js'
export { DEFAULT_SIMULATE_URL, parseSimulateArgs, SIMULATE_USAGE, type SimulateOptions } from './simulate.js'
export type { ReportOptions, TwinClient, TwinSideView, TwinState } from './twin.js'
