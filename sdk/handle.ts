// Everything the SDK does for one device id on a connection: its topics, its twin, its remote
// configuration and its commands. A device client is the handle of its own id; a gateway gets one
// per child from `forChild`.
import type { MqttClient } from 'mqtt'
import { createDeviceChannel, type DeviceChannel } from './channel.js'
import { type CommandHandler, type CommandSettings, type CommandsClient, createCommands } from './commands.js'
import { createModels, type ModelsClient } from './models.js'
import { type ConfigHandler, createRemoteConfig, type SystemHandler } from './remote-config.js'
import type { TopicRouter } from './router.js'
import { createTwin, type TwinClient, type TwinSettings } from './twin.js'

export interface DeviceHandle extends DeviceChannel {
  readonly twin: TwinClient
  /** Handlers for the commands sent to this device id; see sdk/README.md. */
  readonly commands: CommandsClient
  /** Model binding, self-description and compact frames; see sdk/README.md. */
  readonly models: ModelsClient
  /** Applies the desired `config` section and reports it back; see sdk/README.md. */
  onConfig(handler: ConfigHandler): Promise<() => void>
  /** Applies the desired `system` section and reports it back; see sdk/README.md. */
  onSystem(handler: SystemHandler): Promise<() => void>
}

export type HandleSettings = TwinSettings & CommandSettings

/** `builtIns`: the SDK's handlers of FleetHub's `$` commands for this id (only the device's own has any). */
export function createDeviceHandle(
  client: MqttClient,
  router: TopicRouter,
  deviceId: string,
  settings: HandleSettings,
  builtIns?: ReadonlyMap<string, CommandHandler>,
): DeviceHandle {
  const channel = createDeviceChannel(client, router, deviceId)
  const twin = createTwin(channel, settings)
  const remote = createRemoteConfig(twin.tracker)
  const commands = createCommands(channel, settings, builtIns)
  const models = createModels(channel, settings)
  return { ...channel, twin: twin.client, commands, models, onConfig: remote.onConfig, onSystem: remote.onSystem }
}
