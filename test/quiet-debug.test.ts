// `debug` loggers that are off cost nothing (broker/quiet-debug.ts), and `DEBUG` still turns them
// on: each case runs in a fresh Node.js process, as the broker's command does.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'

const QUIET = fileURLToPath(new URL('../broker/quiet-debug.js', import.meta.url))

/** Runs `script` (CommonJS, `QUIET` is the module's path) in a new process; its stdout and stderr. */
async function run(script: string, env: NodeJS.ProcessEnv) {
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    ['-e', `const QUIET = ${JSON.stringify(QUIET)};\n${script}`],
    { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 },
  )
  return { stdout, stderr }
}

// parses one PINGREQ with mqtt-packet, which logs through `debug` at every step
const PARSE = `
  const parser = require('mqtt-packet').parser()
  parser.on('packet', (p) => console.log('parsed ' + p.cmd))
  parser.parse(Buffer.from([0xc0, 0x00]))
`

t.test('a logger of a namespace DEBUG does not enable is an empty function', async (t) => {
  const { stdout, stderr } = await run(
    `import(QUIET).then(() => {
      const debug = require('debug')
      const log = debug('mqtt-packet:parser')
      const sub = log.extend('x')
      debug.enable('late:*')
      const late = debug('late:one')
      console.log(JSON.stringify({
        source: String(log), enabled: log.enabled, namespace: log.namespace,
        sub: [String(sub), sub.namespace], hasEnable: typeof debug.enable,
        names: debug.names.map(String), late: late.enabled, lateIsReal: String(late) !== '() => { }',
      }))
      ${PARSE}
    })`,
    { DEBUG: 'other:*' },
  )
  const [first, second] = stdout.trim().split('\n')
  t.same(JSON.parse(first as string), {
    source: '() => { }',
    enabled: false,
    namespace: 'mqtt-packet:parser',
    sub: ['() => { }', 'mqtt-packet:parser:x'],
    hasEnable: 'function',
    names: ['late:*'],
    late: true,
    lateIsReal: true,
  })
  t.equal(second, 'parsed pingreq')
  t.equal(stderr, '', 'nothing logged')
})

t.test('DEBUG at start still turns a namespace on', async (t) => {
  const { stdout, stderr } = await run(`import(QUIET).then(() => {${PARSE}})`, { DEBUG: 'mqtt-packet:*' })
  t.equal(stdout.trim(), 'parsed pingreq')
  t.match(stderr, /mqtt-packet:parser/, 'the parser logs')
  const other = await run(`import(QUIET).then(() => { require('debug')('other')('hello') })`, { DEBUG: 'other' })
  t.match(other.stderr, /other hello/)
})
