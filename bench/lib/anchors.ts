// The figures the issue gives for this machine (Mosquitto 2.0, vanilla Aedes 1.2 in memory, Aedes
// 1.2 with aedes-persistence-redis + mqemitter-redis), shown as "issue anchors" next to what a run
// measures side by side. They are a sanity check of the bench, not what the targets are judged on:
// targets use ratios measured in the same run.

/** The anchor rows: the targets they belong to. */
export type AnchorTarget = 'mosquitto' | 'aedes/memory' | 'aedes/redis'

type Anchors = Partial<Record<AnchorTarget, number | string>>

const ISSUE_ANCHORS: Record<string, Record<string, Anchors>> = {
  'fan-in': { deliveriesPerSec: { mosquitto: 110_000, 'aedes/memory': 57_000, 'aedes/redis': 12_000 } },
  'pairs-qos0': { deliveriesPerSec: { mosquitto: 73_000, 'aedes/memory': 32_000, 'aedes/redis': 10_000 } },
  'pairs-qos1': { deliveriesPerSec: { mosquitto: 38_000, 'aedes/memory': 22_000, 'aedes/redis': 9_000 } },
  'fan-out': { deliveriesPerSec: { mosquitto: 152_000, 'aedes/memory': 62_000, 'aedes/redis': 74_000 } },
  'connect-storm': { connectsPerSec: { mosquitto: 2_000, 'aedes/memory': 460, 'aedes/redis': 120 } },
  'idle-memory': { kibPerConnection: { mosquitto: 0.7, 'aedes/memory': 13.5, 'aedes/redis': 16 } },
  latency: { latencyP50Ms: { mosquitto: 0.22, 'aedes/memory': 0.71, 'aedes/redis': 2.75 } },
  overload: {
    survived: {
      'aedes/memory': 'crashed under open-loop QoS 0: RangeError: Maximum call stack size exceeded (mqemitter)',
    },
  },
}

export function issueAnchor(scenario: string, metric: string, target: string): number | string | undefined {
  return ISSUE_ANCHORS[scenario]?.[metric]?.[target as AnchorTarget]
}
