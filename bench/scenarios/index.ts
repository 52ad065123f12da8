// The scenarios `npm run bench -- <scenario>` knows, by name, in the order `all` runs them. A new
// scenario is one file in this folder and one line here.
import type { Scenario } from '../lib/scenario.js'
import { commandRtt } from './command-rtt.js'
import { compactDecode } from './compact-decode.js'
import { connectRate } from './connect-rate.js'
import { connectStorm } from './connect-storm.js'
import { fanIn } from './fan-in.js'
import { fanOut } from './fan-out.js'
import { idleMemory } from './idle-memory.js'
import { latency } from './latency.js'
import { overload } from './overload.js'
import { pairsQos0, pairsQos1 } from './pairs.js'
import { provisionStorm } from './provision-storm.js'
import { twinQuery } from './twin-query.js'
import { twinReported } from './twin-reported.js'

export const SCENARIOS: readonly Scenario[] = [
  fanIn,
  pairsQos0,
  pairsQos1,
  fanOut,
  connectStorm,
  idleMemory,
  latency,
  overload,
  compactDecode,
  twinReported,
  twinQuery,
  commandRtt,
  provisionStorm,
  connectRate,
]

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name)
}
