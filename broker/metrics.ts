// Prometheus metrics (prom-client), on a registry of this app's own (no global singletons), served
// at /metrics. Reasons are small fixed vocabularies, never device ids, so label sets stay bounded.
import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client'

export type AuthFailureReason =
  | 'bad_credentials'
  | 'unknown_device'
  | 'expired_token'
  | 'disabled'
  | 'identifier_rejected'
  | 'replayed_token'
  | 'error'

export type RejectReason =
  | 'publish_denied'
  | 'subscribe_denied'
  | 'packet_too_large'
  | 'invalid_utf8'
  | 'malformed_packet'
  | 'protocol_error'
  | 'handler_error'
  | 'slow_consumer'

/**
 * A labelled counter or gauge on the hot path (every CONNECT and disconnect): it counts in plain
 * numbers per label value, a Map look-up, where prom-client hashes a label object on every call
 * (about 1.5 % of a provisioning registration's CPU for four calls), and hands the numbers to
 * prom-client when /metrics is scraped.
 */
export class HotCounts<V extends string> {
  readonly counts = new Map<V, number>()
  inc(value: V): void {
    this.counts.set(value, (this.counts.get(value) ?? 0) + 1)
  }
  dec(value: V): void {
    this.counts.set(value, (this.counts.get(value) ?? 0) - 1)
  }
}

function hotMetric<V extends string>(
  registry: Registry,
  kind: 'counter' | 'gauge',
  opts: { name: string; help: string; label: string },
): HotCounts<V> {
  const hot = new HotCounts<V>()
  const config = { name: opts.name, help: opts.help, labelNames: [opts.label], registers: [registry] }
  if (kind === 'counter') {
    new Counter({
      ...config,
      collect() {
        this.reset()
        for (const [v, n] of hot.counts) this.inc({ [opts.label]: v }, n)
      },
    })
  } else {
    new Gauge({
      ...config,
      collect() {
        this.reset()
        for (const [v, n] of hot.counts) this.set({ [opts.label]: v }, n)
      },
    })
  }
  return hot
}

export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'fleethub_process_' })
  return {
    registry,
    connections: hotMetric<string>(registry, 'gauge', {
      name: 'fleethub_connections',
      help: 'MQTT sessions open on this node',
      label: 'kind',
    }),
    connects: hotMetric<string>(registry, 'counter', {
      name: 'fleethub_connects_total',
      help: 'accepted CONNECTs',
      label: 'kind',
    }),
    /** The hot path counts in plain numbers; these read them when /metrics is scraped. */
    bindHotCounters(hot: { messagesIn: number; messagesOut: number }) {
      new Counter({
        name: 'fleethub_messages_in_total',
        help: 'PUBLISH packets accepted from clients',
        registers: [registry],
        collect() {
          this.reset()
          this.inc(hot.messagesIn)
        },
      })
      new Counter({
        name: 'fleethub_messages_out_total',
        help: 'PUBLISH packets delivered to clients',
        registers: [registry],
        collect() {
          this.reset()
          this.inc(hot.messagesOut)
        },
      })
    },
    /** The admission gate (broker/mqtt/admission.ts), read when /metrics is scraped. */
    bindAdmission(gate: { inFlight: number; waiting: number; waits: number; unstuck: number }) {
      new Gauge({
        name: 'fleethub_inbound_in_flight',
        help: 'inbound packets this node is working on (each connection counted for at most 16)',
        registers: [registry],
        collect() {
          this.set(gate.inFlight)
        },
      })
      new Gauge({
        name: 'fleethub_connections_waiting',
        help: 'connections waiting to be read because FLEETHUB_MAX_IN_FLIGHT packets are in progress',
        registers: [registry],
        collect() {
          this.set(gate.waiting)
        },
      })
      new Counter({
        name: 'fleethub_admission_waits_total',
        help: 'times a connection waited to be read',
        registers: [registry],
        collect() {
          this.reset()
          this.inc(gate.waits)
        },
      })
      new Counter({
        name: 'fleethub_admission_unstuck_total',
        help: 'times every waiting connection was read because no packet finished for 50 ms',
        registers: [registry],
        collect() {
          this.reset()
          this.inc(gate.unstuck)
        },
      })
    },
    authFailures: new Counter({
      name: 'fleethub_auth_failures_total',
      help: 'refused CONNECTs by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    provisionings: hotMetric<string>(registry, 'counter', {
      name: 'fleethub_provisioning_registrations_total',
      help: 'provisioning registrations answered, by status (200: assigned)',
      label: 'status',
    }),
    rejected: new Counter({
      name: 'fleethub_rejected_total',
      help: 'refused or malformed client input by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    dropped: new Counter({
      name: 'fleethub_dropped_total',
      help: 'messages not delivered to a client, by reason (QoS 0 to a slow consumer)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    commands: new Counter({
      name: 'fleethub_commands_total',
      help: 'command records that reached a final state on this node, by state',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    framesDecoded: new Counter({
      name: 'fleethub_frames_decoded_total',
      help: 'compact frames decoded, by kind (telemetry, reported), where (inline, pool) and result (ok, error)',
      labelNames: ['kind', 'where', 'result'] as const,
      registers: [registry],
    }),
    readingsDecoded: new Counter({
      name: 'fleethub_readings_decoded_total',
      help: 'telemetry readings decoded from compact frames',
      registers: [registry],
    }),
    decodeErrors: new Counter({
      name: 'fleethub_decode_errors_total',
      help: 'compact frames refused, by model (id@version, or none) and reason',
      labelNames: ['model', 'reason'] as const,
      registers: [registry],
    }),
    decodeBackpressure: new Counter({
      name: 'fleethub_decode_backpressure_total',
      help: 'frames that waited because the decoder queue was full (their client was paused)',
      registers: [registry],
    }),
    decodeQueued: new Gauge({
      name: 'fleethub_decode_queued',
      help: 'compact frames waiting to be decoded or being decoded',
      registers: [registry],
    }),
    decodeInPool: new Gauge({
      name: 'fleethub_decode_in_pool',
      help: '1 while compact frames are decoded in the worker pool, 0 while inline',
      registers: [registry],
    }),
    commandAnswersDropped: new Counter({
      name: 'fleethub_command_answers_dropped_total',
      help: 'device answers to commands that were dropped, by reason (late, duplicate, unknown, invalid)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    otaReportsRefused: new Counter({
      name: 'fleethub_ota_reports_refused_total',
      help: 'device OTA status reports refused, by reason (invalid, unknown_job, not_in_job, finished, backwards, not_notified)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    otaTransitions: new Counter({
      name: 'fleethub_ota_transitions_total',
      help: 'OTA execution state changes, by the state reached',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    kicks: new Counter({
      name: 'fleethub_kicks_total',
      help: 'sessions closed because the registry changed (disable, delete, key rotation)',
      labelNames: ['event'] as const,
      registers: [registry],
    }),
    takeovers: new Counter({
      name: 'fleethub_cluster_takeovers_total',
      help: 'sessions closed because a client with the same id connected to another node later',
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'fleethub_http_requests_total',
      help: 'HTTP API requests',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    }),
    authCache: hotMetric<string>(registry, 'counter', {
      name: 'fleethub_auth_cache_total',
      help: 'CONNECT credential cache look-ups',
      label: 'result',
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
