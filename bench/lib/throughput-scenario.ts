// The four closed-loop throughput scenarios differ only in their topology, QoS and window: this
// builds the Scenario around a plan function, with the same headline, columns and run steps.
import { type Identities, identitiesFor } from './identities.js'
import type { PubSubPlan } from './pubsub.js'
import { medianColumn } from './report.js'
import type { Metric, Scenario } from './scenario.js'
import type { BrokerKind } from './target.js'
import { runThroughput, windows } from './throughput.js'

export interface ThroughputScenarioSpec {
  name: string
  title: string
  summary: string
  description: string
  qos: 0 | 1
  /** Messages in flight per publisher. */
  window: number
  /** What the headline counts: messages received (`msg/s`) or deliveries (`deliveries/s`). */
  unit: string
  plan(who: Identities, kind: BrokerKind): Promise<PubSubPlan>
}

export function throughputScenario(spec: ThroughputScenarioSpec): Scenario {
  const headline: Metric = { key: 'deliveriesPerSec', title: spec.unit, unit: spec.unit, better: 'higher', digits: 0 }
  return {
    name: spec.name,
    title: spec.title,
    summary: spec.summary,
    description: spec.description,
    inAll: true,
    brokers: ['fleethub', 'aedes', 'mosquitto'],
    transports: ['tcp', 'ws'],
    headline: [headline],
    columns: [
      medianColumn(spec.unit, (r) => r.figures.deliveriesPerSec),
      medianColumn('publishes/s', (r) => r.figures.publishesPerSec),
      medianColumn('p50 ms', (r) => r.figures.latencyP50Ms, 2),
      medianColumn('p99 ms', (r) => r.figures.latencyP99Ms, 2),
      medianColumn('lost', (r) => r.figures.lost),
      medianColumn('dup', (r) => r.figures.duplicates),
      medianColumn('reordered', (r) => r.figures.outOfOrder),
      medianColumn('broker µs/msg', (r) => r.figures.brokerCpuUsPerDelivery, 1),
      medianColumn('broker RSS MiB', (r) => r.figures.brokerRssMiB),
      medianColumn('broker CPU %', (r) => r.cpu.broker),
      medianColumn('generator CPU %', (r) => r.cpu.generator),
      medianColumn('redis CPU %', (r) => r.cpu.redis),
      medianColumn('others CPU %', (r) => r.cpu.others),
    ],
    async run(ctx) {
      const stack = await ctx.startStack()
      try {
        const plan = await spec.plan(identitiesFor(stack.broker), stack.broker.kind)
        const m = await runThroughput(stack, plan, {
          transport: ctx.options.transport,
          qos: spec.qos,
          window: spec.window,
          ...windows(ctx.options.quick),
        })
        if (!stack.broker.alive()) throw new Error('the broker died during the measurement')
        ctx.record(m)
        const f = m.figures as Record<string, number>
        ctx.progress(
          `${Math.round(f.deliveriesPerSec as number)} ${spec.unit}, lost ${f.lost}, dup ${f.duplicates}, ` +
            `CPU % broker ${Math.round(m.cpu.broker ?? 0)} generator ${Math.round(m.cpu.generator ?? 0)}` +
            (m.cpu.redis !== undefined ? ` redis ${Math.round(m.cpu.redis)}` : ''),
        )
      } catch (err) {
        throw stack.explain(err)
      } finally {
        await stack.stop()
      }
    },
  }
}
