// The V8 flags a broker sets at start (broker/v8-flags.ts): each is one this Node.js knows, and
// allocation-site pretenuring is really off. Each case runs in a fresh Node.js process.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { BROKER_V8_FLAGS } from '../broker/v8-flags.js'

const FLAGS = fileURLToPath(new URL('../broker/v8-flags.js', import.meta.url))

async function node(args: string[]): Promise<string> {
  // not tap's NODE_OPTIONS: its loaders change how the probe's code is compiled
  const env = { PATH: process.env.PATH }
  const { stdout } = await promisify(execFile)(process.execPath, args, { env, timeout: 60_000, maxBuffer: 8 << 20 })
  return stdout
}

t.test('every flag is one this V8 knows', async (t) => {
  const known = await node(['--v8-options'])
  for (const flag of BROKER_V8_FLAGS) {
    const name = flag.replace(/^--(no-)?/, '').replace(/=.*$/, '')
    t.match(known, new RegExp(`^\\s+--${name} `, 'm'), `${name} is a V8 option`)
  }
})

// Objects from one place in the code that all live long make V8 weigh that place for pretenuring
// (making its later objects directly in the old generation); V8 reports each such weighing when
// asked to trace them. With pretenuring off it weighs none.
const PROBE = `
  function make(i) { return { a: i, b: i + 1, c: null } }
  const keep = []
  for (let r = 0; r < 20; r++) for (let i = 0; i < 50000; i++) keep.push(make(i))
  console.log('kept ' + keep.length)
`

/** How many times V8 weighed an allocation site for pretenuring while the probe ran. */
async function weighings(args: string[]): Promise<number> {
  const out = await node(['--trace-pretenuring-statistics', ...args, '-e', PROBE])
  t.match(out, /kept 1000000/)
  return out.split('\n').filter((l) => l.includes('pretenuring: AllocationSite')).length
}

t.test('pretenuring is off in a process that imports the module', async (t) => {
  // the probe itself works: by default V8 weighs the site
  t.ok((await weighings([])) > 0, 'without the module, V8 weighs the site')
  t.equal(await weighings(['--import', FLAGS]), 0, 'with it, never')
})

t.test('a flag given on the command line wins', async (t) => {
  t.ok((await weighings(['--allocation-site-pretenuring', '--import', FLAGS])) > 0)
})
