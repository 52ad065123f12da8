// Connecting and closing many generator clients, with bounded parallelism and time-outs.
import { type BenchClient, connectClient, type Identity } from './mqtt-client.js'
import { forEachLimit } from './pool.js'
import type { RunningBroker, Transport } from './target.js'
import { sleep } from './time.js'

const CONNECT_PARALLEL = 50
const CONNECT_TIMEOUT_MS = 10_000
const SUBSCRIBE_TIMEOUT_MS = 10_000
const CLOSE_WAIT_MS = 2_000

export function portOf(broker: RunningBroker, transport: Transport): number {
  if (transport === 'tcp') return broker.mqttPort
  if (broker.wsPort === undefined) throw new Error(`${broker.kind} offers no WebSocket listener on loopback`)
  return broker.wsPort
}

export async function connectAll(
  broker: RunningBroker,
  transport: Transport,
  identities: readonly Identity[],
  paceReadsMs = 0,
): Promise<BenchClient[]> {
  const port = portOf(broker, transport)
  const clients: BenchClient[] = new Array(identities.length)
  try {
    await forEachLimit(identities, CONNECT_PARALLEL, async function connectOne(identity, i) {
      clients[i] = await connectClient({ transport, port, identity, timeoutMs: CONNECT_TIMEOUT_MS, paceReadsMs })
    })
  } catch (err) {
    closeAll(clients.filter(Boolean))
    throw err
  }
  return clients
}

/** Subscribes each client to its filters; throws when the broker refuses one (0x80). */
export async function subscribeAll(
  clients: readonly BenchClient[],
  filtersOf: (i: number) => readonly string[],
  qos: 0 | 1,
): Promise<void> {
  await forEachLimit(clients, CONNECT_PARALLEL, async function subscribeOne(client, i) {
    const filters = filtersOf(i)
    const granted = await client.subscribe(filters, qos, SUBSCRIBE_TIMEOUT_MS)
    const refused = filters.filter((_, k) => granted[k] === 0x80)
    if (refused.length > 0) throw new Error(`${client.clientId}: SUBSCRIBE ${refused.join(', ')} refused`)
  })
}

/** DISCONNECT on every client, a short wait for the closes, then whatever is left is destroyed. */
export async function closeAll(clients: readonly BenchClient[]): Promise<void> {
  for (const c of clients) c?.disconnect()
  for (let waited = 0; waited < CLOSE_WAIT_MS && clients.some((c) => c && !c.isClosed); waited += 50) await sleep(50)
  for (const c of clients) c?.destroy()
}
