// Helpers for the SDK tests: watching what an SDK device's mqtt.js client sends and receives.
import type { IPublishPacket, Packet } from 'mqtt'
import type { DeviceClient } from '../../sdk/index.js'

/** The PUBLISH packets a client sends or receives on topics ending in `suffix`. */
export function publishes(
  dev: DeviceClient,
  direction: 'packetsend' | 'packetreceive',
  suffix: string,
): IPublishPacket[] {
  const seen: IPublishPacket[] = []
  dev.mqtt.on(direction, (packet: Packet) => {
    if (packet.cmd === 'publish' && packet.topic.endsWith(suffix)) seen.push(packet)
  })
  return seen
}

export const payloadOf = (p: IPublishPacket) => (typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload)
