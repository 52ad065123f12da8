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
export { connectDevice, type DeviceAuth, type DeviceClient, type DeviceOptions, deviceToken } from './device.js'
export { decodeJson, encodeJson } from './payload.js'
export { createTopicRouter, type MessageHandler, type TopicRouter, topicMatches } from './router.js'
export {
  connectService,
  type EventHandler,
  type ServiceClient,
  type ServiceOptions,
  type ServiceSubscribeOptions,
  type TelemetryHandler,
  type Unsubscribe,
} from './service.js'
