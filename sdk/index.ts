// The FleetHub device and service SDK (Node.js, on mqtt.js).

export type { CommandRecord, CommandRequest, CommandState } from '../registry/commands.js'
export { createCodec, FrameError, isCompactFrame } from '../registry/compact.js'
export type { FieldSpec, Model, ModelDefinition, ModelInput } from '../registry/models.js'
export {
  DOWNLINK_KINDS,
  type DownlinkKind,
  EVENT_KINDS,
  type EventKind,
  UPLINK_KINDS,
  type UplinkKind,
} from '../registry/topics.js'
export {
  type ApiClient,
  type ApiClientOptions,
  type CommandAnswered,
  type CommandPending,
  createApiClient,
  type InvokeOptions,
  type InvokeResult,
  type RolloverResult,
} from './api.js'
export { CHANGE_KEY, type KeyChangeHandler } from './change-key.js'
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
export {
  type CommandOutcome,
  E_ANSWER_TOO_LARGE,
  E_BAD_REQUEST,
  E_HANDLER,
  E_UNKNOWN_COMMAND,
  MAX_ANSWER_BODY,
} from './command-answer.js'
export type { CommandContext, CommandHandler, CommandsClient } from './commands.js'
export type { ConnectionOptions, ErrorListener } from './connect.js'
export {
  type DesiredHandler,
  type DesiredInfo,
  type DesiredSnapshot,
  LAST_DESIRED_VERSION,
} from './desired.js'
export { connectDevice, type DeviceAuth, type DeviceClient, type DeviceOptions, deviceToken } from './device.js'
export type { Encoding } from './envelope.js'
export {
  ApiError,
  CommandError,
  DesiredHandlerError,
  RequestError,
  RequestTimeoutError,
} from './errors.js'
export { FLEET_USAGE, type FleetOptions, type FleetSummary, parseFleetArgs, runProvisionedFleet } from './fleet.js'
export type { DeviceHandle } from './handle.js'
export { diffPatch, isJsonObject, type Json, type JsonObject, jsonEqual, mergePatch } from './json.js'
export type { CompactSender, ModelBound, ModelsClient } from './models.js'
export {
  DEFAULT_FIRMWARE_VERSION,
  type OtaAgent,
  type OtaAgentOptions,
  type OtaDevice,
  type OtaHealthInfo,
  startOtaAgent,
} from './ota-agent.js'
export { fakeImage, type OtaDiskState, type Slot } from './ota-disk.js'
export { DownloadError, downloadResumable } from './ota-download.js'
export {
  type InstallNotice,
  type Manifest,
  OTA_ERRORS,
  OTA_STATES,
  type OtaErrorCode,
  type OtaNotice,
  type OtaState,
  type OtaStatus,
  parseManifest,
  parseNotice,
} from './ota-protocol.js'
export { dropConnection, OTA_FAILURES, type OtaFailure } from './ota-simulation.js'
export { checkInstall, parsePublicKey, verifyManifest } from './ota-verify.js'
export { decodeJson, encodeJson } from './payload.js'
export { deriveDeviceKey, type Provisioned, type ProvisionOptions, provision } from './provision.js'
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
  DEFAULT_REBOOT_MS,
  DEFAULT_REPORTING_INTERVAL_SEC,
  fakeReading,
  runSampleDevice,
  type SampleDeviceOptions,
  type SampleDeviceSummary,
  type SampleReading,
} from './sample-device.js'
export { AIR_MODEL, AIR_READING } from './sample-model.js'
export {
  type CommandEvent,
  type CommandEventHandler,
  connectService,
  type EventHandler,
  type ServiceClient,
  type ServiceOptions,
  type ServiceSubscribeOptions,
  type TelemetryHandler,
  type Unsubscribe,
} from './service.js'
export { DEFAULT_SIMULATE_URL, parseSimulateArgs, SIMULATE_USAGE, type SimulateOptions } from './simulate.js'
export type { SimulateOtaOptions } from './simulate-ota.js'
export type { ReportOptions, TwinClient, TwinSideView, TwinState } from './twin.js'
