// The provisioning load generator, on socket-load.ts like connect-load.ts, so the generator's own
// cost stays small next to the broker's. Each device speaks the bootstrap flow of
// docs/provisioning.md: CONNECT (client id = registration id, user name `$provision/{enrollment}`,
// a single-use token as password), on CONNACK 0 one QoS 1 PUBLISH `{"rid":"r"}` to
// `$provision/{id}/register`, then it reads the answer the broker sends on `$provision/{id}/res`
// without being subscribed, and the broker closes the connection. At most `concurrency` devices are
// between their CONNECT and their answer at any time. TCP only.
import type net from 'node:net'
import { connectPacket, type Identity, publishPacket } from './packets.js'
import { runSocketLoad } from './socket-load.js'
import { nowMs } from './time.js'

export interface ProvisionLoadOptions {
  port: number
  /** One device per identity: client id = registration id, user name, token. */
  identities: readonly Identity[]
  concurrency: number
  /** A device without its answer after this long counts as a failure ("timeout"). */
  timeoutMs: number
}

export interface ProvisionLoadResult {
  /** Answers with status 200 whose deviceId is the registration id. */
  ok: number
  /** The registration ids answered 200, in answer order. */
  okIds: string[]
  /**
   * Failures by cause: `connack-4`, `status-409`, `bad-answer` (not JSON, another rid or deviceId),
   * `timeout`, `closed` (before the answer), `socket-ECONNRESET`, `bad-packet`.
   */
  failures: Record<string, number>
  /** CONNECT written → answer read, in ms, for every answer (200 or not). */
  latenciesMs: number[]
  /** CONNECT written → CONNACK read, in ms, for every CONNACK. */
  connackMs: number[]
  /** First CONNECT written → last answer read, in ms (0 when no answer came). */
  windowMs: number
  /** Answered connections the broker has not closed yet (see waitBrokerClosed). */
  open: Set<net.Socket>
  /** PUBACKs of the register PUBLISH (QoS 1) received before the connection closed. */
  pubacks: number
}

const REQUEST = Buffer.from('{"rid":"r"}')
/** The one packet id a device uses: it publishes once. */
const PACKET_ID = 1

/** CONNECT and PUBLISH packets are built before the clock starts: encoding is not what is measured. */
interface DevicePackets {
  registrationId: string
  connect: Buffer
  register: Buffer
  responseTopic: string
}

function devicePackets(identities: readonly Identity[]): DevicePackets[] {
  return identities.map((id) => ({
    registrationId: id.clientId,
    // no PINGREQ falls due: the exchange takes well under a minute
    connect: connectPacket(id, 60),
    register: publishPacket(Buffer.from(`$provision/${id.clientId}/register`), REQUEST, 1, PACKET_ID),
    responseTopic: `$provision/${id.clientId}/res`,
  }))
}

/** What an answer says, or why it is not the assignment asked for. */
function judge(payload: Buffer, registrationId: string): 'ok' | string {
  let answer: unknown
  try {
    answer = JSON.parse(payload.toString('utf8'))
  } catch {
    return 'bad-answer'
  }
  if (typeof answer !== 'object' || answer === null) return 'bad-answer'
  const a = answer as { rid?: unknown; status?: unknown; deviceId?: unknown; hub?: { mqtt?: unknown } }
  if (a.status !== 200) return `status-${String(a.status)}`
  if (a.rid !== 'r' || a.deviceId !== registrationId || typeof a.hub?.mqtt !== 'string') return 'bad-answer'
  return 'ok'
}

/** Provisions every device and resolves when each has an outcome. */
export async function runProvisionLoad(opts: ProvisionLoadOptions): Promise<ProvisionLoadResult> {
  const result: ProvisionLoadResult = {
    ok: 0,
    okIds: [],
    failures: {},
    latenciesMs: [],
    connackMs: [],
    windowMs: 0,
    open: new Set(),
    pubacks: 0,
  }
  let lastAnswerAt: number | undefined
  const run = await runSocketLoad({
    port: opts.port,
    items: devicePackets(opts.identities),
    concurrency: opts.concurrency,
    timeoutMs: opts.timeoutMs,
    first: (d) => d.connect,
    onPacket(p, x, d) {
      if (p.cmd === 'puback') {
        result.pubacks++
        return
      }
      if (x.done) return
      if (p.cmd === 'connack') {
        result.connackMs.push(nowMs() - x.sentAt)
        if (p.returnCode === 0) x.sock.write(d.register)
        else x.settle(`connack-${p.returnCode}`)
        return
      }
      if (p.cmd === 'publish' && p.topic === d.responseTopic) {
        const at = nowMs()
        lastAnswerAt = at
        result.latenciesMs.push(at - x.sentAt)
        x.settle(judge(p.payload as Buffer, d.registrationId))
      }
    },
    keep(outcome, x, d) {
      if (outcome === 'ok') {
        result.ok++
        result.okIds.push(d.registrationId)
      }
      // the broker closes an answered connection itself; anything else the generator closes
      const answered = outcome === 'ok' || outcome.startsWith('status-') || outcome === 'bad-answer'
      if (answered && !x.sock.destroyed) result.open.add(x.sock)
      return answered
    },
    onClose: (sock) => result.open.delete(sock),
  })
  result.failures = run.failures
  result.windowMs = run.firstSentAt !== undefined && lastAnswerAt !== undefined ? lastAnswerAt - run.firstSentAt : 0
  return result
}

/**
 * Waits (bounded) for the broker to close the answered connections, as it must after an answer;
 * returns how many it left open, and closes those.
 */
export async function waitBrokerClosed(result: ProvisionLoadResult, timeoutMs: number): Promise<number> {
  const deadline = nowMs() + timeoutMs
  while (result.open.size > 0 && nowMs() < deadline) await new Promise((r) => setTimeout(r, 20))
  const left = result.open.size
  for (const s of result.open) s.destroy()
  return left
}
