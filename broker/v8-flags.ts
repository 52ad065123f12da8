// V8 settings for a broker. Imported first by the command and the composition root, before the
// broker allocates anything.
//
// No allocation-site pretenuring. V8 watches where objects are made; once most objects from one
// place in the code outlive two young-generation collections, it makes every later object from
// there directly in the old generation. A broker's request path passes that test during any
// burst (a connection storm, a saturated minute: everything in flight survives), and the decision
// stays after the burst. From then on every packet, payload and envelope it parses is made old and
// dies old, so the old generation fills with garbage and V8 runs a full collection every few
// seconds. Each costs tens of milliseconds of CPU; at a steady 10,000 twin reports/s those
// collections were what stretched the p99 round trip to about 100 ms (docs/benchmarks.md).
// Without pretenuring those objects die young, as they do before a burst. Objects that really
// live long are still moved to the old generation, by the two collections they survive.
//
// A flag given on the node command line (`--allocation-site-pretenuring`) wins over this.
import v8 from 'node:v8'

/** The V8 flags a broker process sets at start, each one V8 knows (test/v8-flags.test.ts). */
export const BROKER_V8_FLAGS = ['--no-allocation-site-pretenuring'] as const

function flagName(flag: string): string {
  return flag
    .replace(/^--(no-)?/, '')
    .replace(/=.*$/, '')
    .replaceAll('_', '-')
}

const given = new Set(process.execArgv.map(flagName))
for (const flag of BROKER_V8_FLAGS) if (!given.has(flagName(flag))) v8.setFlagsFromString(flag)
