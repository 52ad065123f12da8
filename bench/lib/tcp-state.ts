// Whether the broker has closed one of our connections, from the kernel's table (/proc/net/tcp).
// A client that stopped reading never sees the close itself: the broker's FIN waits behind the
// unsent data that fills our receive window, so our end still says ESTABLISHED. The broker's end
// of the same loopback connection already says FIN_WAIT1 (closed, data pending), or is gone.
import { readFileSync } from 'node:fs'

/** States from include/net/tcp_states.h. */
const STATES: Record<string, string> = {
  '01': 'established',
  '02': 'syn-sent',
  '03': 'syn-recv',
  '04': 'fin-wait-1',
  '05': 'fin-wait-2',
  '06': 'time-wait',
  '07': 'close',
  '08': 'close-wait',
  '09': 'last-ack',
  '0A': 'listen',
  '0B': 'closing',
}

const hexPort = (port: number) => `:${port.toString(16).toUpperCase().padStart(4, '0')}`

/** The state of the loopback connection from `localPort` to `remotePort`, or `gone`. */
export function tcpState(localPort: number, remotePort: number): string {
  const local = hexPort(localPort)
  const remote = hexPort(remotePort)
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/)
      if (f[1]?.endsWith(local) && f[2]?.endsWith(remote)) return STATES[f[3] ?? ''] ?? `state-${f[3]}`
    }
  }
  return 'gone'
}

/** True once the broker's end (`brokerPort` → `clientPort`) is closing or gone, or ours saw the close. */
export function closedByBroker(clientPort: number, brokerPort: number): boolean {
  const theirs = tcpState(brokerPort, clientPort)
  if (theirs !== 'established') return true
  const ours = tcpState(clientPort, brokerPort)
  return ours === 'close-wait' || ours === 'gone'
}
