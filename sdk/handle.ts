// Everything the SDK does for one device id on a connection: its topics, its twin and its remote
// configuration (and the command helpers to come). A device client is the handle of its own id; a
// gateway gets one per child from `forChild`.
import type { MqttClient } from 'mqtt'
import { createDeviceChannel, type DeviceChannel } from './channel.js'
import { type ConfigHandler, createRemoteConfig, type SystemHandler } from './remote-config.js'
import type { TopicRouter } from './router.js'
import { createTwin, type TwinClient, type TwinSettings } from './twin.js'

export interface DeviceHandle extends DeviceChannel {
  readonly twin: TwinClient
  /** Applies the desired `config` section and reports it back; see sdk/README.md. */
  onConfig(handler: ConfigHandler): Promise<() => void>
  /** Applies the desired `system` section and reports it back; see sdk/README.md. */
  onSystem(handler: SystemHandler): Promise<() => void>
}

export function createDeviceHandle(
  client: MqttClient,
  router: TopicRouter,
  deviceId: string,
  settings: TwinSettings,
): DeviceHandle {
  const channel = createDeviceChannel(client, router, deviceId)
  const twin = createTwin(channel, settings)
  const remote = createRemoteConfig(twin.tracker)
  return { ...channel, twin: twin.client, onConfig: remote.onConfig, onSystem: remote.onSystem }
}
