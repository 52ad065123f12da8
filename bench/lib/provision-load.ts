// The provisioning load generator: raw TCP sockets and mqtt-packet, like connect-load.ts, so the
// generator's own cost stays small next to the broker's. Each device speaks the bootstrap flow of
// docs/provisioning.md: CONNECT (client id = registration id, user name `$provision/{enrollment}`,
// a single-use token as password), on CONNACK 0 one QoS 1 PUBLISH `{"rid":"r"}` to
// `$provision/{id}/register`, then it reads the answer the broker sends on `$provision/{id}/res`
// without being subscribed, and the broker closes the connection. At most `concurrency` devices are
// between their CONNECT and their answer at any time. TCP only.
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { connectPacket, type Identity, publishPacket } from './packets.js'
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

const HOST = '127.0.0.1'
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

/** Provisions every device and resolves when each has an outcome and the broker closed the answered ones. */
export function runProvisionLoad(opts: ProvisionLoadOptions): Promise<ProvisionLoadResult> {
  const devices = devicePackets(opts.identities)
  const total = devices.length
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
  const open = result.open
  let firstSentAt: number | undefined
  let lastAnswerAt: number | undefined
  let next = 0
  let inFlight = 0
  let settled = 0

  return new Promise((resolve) => {
    function fail(cause: string) {
      result.failures[cause] = (result.failures[cause] ?? 0) + 1
    }

    function finish() {
      result.windowMs = firstSentAt !== undefined && lastAnswerAt !== undefined ? lastAnswerAt - firstSentAt : 0
      resolve(result)
    }

    function launchMore() {
      while (inFlight < opts.concurrency && next < total) provisionOne(devices[next++] as DevicePackets)
      if (settled === total) finish()
    }

    function provisionOne(d: DevicePackets) {
      inFlight++
      const sock = net.connect({ host: HOST, port: opts.port, noDelay: true })
      const parser = mqttPacket.parser({ protocolVersion: 4 })
      let sentAt = 0
      let done = false
      const settle = (outcome: 'ok' | string) => {
        if (done) return
        done = true
        clearTimeout(timer)
        inFlight--
        settled++
        if (outcome === 'ok') {
          result.ok++
          result.okIds.push(d.registrationId)
        } else fail(outcome)
        // the broker closes an answered connection itself; anything else the generator closes
        if (outcome === 'ok' || outcome.startsWith('status-') || outcome === 'bad-answer') {
          if (!sock.destroyed) open.add(sock)
        } else sock.destroy()
        launchMore()
      }
      const timer = setTimeout(() => settle('timeout'), opts.timeoutMs)
      sock.once('connect', function sendConnect() {
        sentAt = nowMs()
        firstSentAt ??= sentAt
        sock.write(d.connect)
      })
      sock.on('data', (chunk) => parser.parse(chunk))
      parser.on('packet', function onPacket(p: Packet) {
        if (p.cmd === 'puback') {
          result.pubacks++
          return
        }
        if (done) return
        if (p.cmd === 'connack') {
          result.connackMs.push(nowMs() - sentAt)
          if (p.returnCode === 0) sock.write(d.register)
          else settle(`connack-${p.returnCode}`)
          return
        }
        if (p.cmd === 'publish' && p.topic === d.responseTopic) {
          const at = nowMs()
          lastAnswerAt = at
          result.latenciesMs.push(at - sentAt)
          settle(judge(p.payload as Buffer, d.registrationId))
        }
      })
      parser.on('error', () => settle('bad-packet'))
      sock.on('error', (err: NodeJS.ErrnoException) => settle(`socket-${err.code ?? 'error'}`))
      sock.on('close', () => {
        open.delete(sock)
        settle('closed')
      })
    }

    if (total === 0) finish()
    else launchMore()
  })
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
