// Kernel TCP counters from /proc/net/netstat. ListenOverflows counts connections dropped because a
// listener's accept queue was full: the client then retries its handshake a second later, so a
// connect rate taken while it grows partly measures TCP's retransmission timer. Machine-wide: other
// processes' listeners count too.
import { readFileSync } from 'node:fs'

export function tcpExt(name: string): number | undefined {
  let text: string
  try {
    text = readFileSync('/proc/net/netstat', 'utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n')
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const keys = (lines[i] as string).split(/\s+/)
    const values = (lines[i + 1] as string).split(/\s+/)
    if (keys[0] !== 'TcpExt:') continue
    const at = keys.indexOf(name)
    return at > 0 ? Number(values[at]) : undefined
  }
  return undefined
}
