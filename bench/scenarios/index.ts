// The scenarios `npm run bench -- <scenario>` knows, by name. A new scenario is one file in this
// folder and one line here.
import type { Scenario } from '../lib/scenario.js'
import { connectRate } from './connect-rate.js'

export const SCENARIOS: readonly Scenario[] = [connectRate]

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name)
}
