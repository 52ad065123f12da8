// `npm run bench -- floor`: what one wake-up of an idle Node.js process costs on this machine, the
// floor under every paced figure of the bench. A TCP echo server with nothing else in it (a child
// process pinned to the broker's CPU, as a broker is) answers 100-byte messages sent at a fixed rate
// over 10 connections from this process (on the generator's CPU); its CPU time per message and its
// event-loop busy time per message are measured at each rate. A broker at a paced rate wakes up a
// few times per operation (a command: the HTTP request, the device's answer, each Redis reply), and
// pays this each time; saturated, one wake-up serves many operations and the cost is shared.
import { spawn } from 'node:child_process'
import net from 'node:net'
import { procCpu } from './lib/cpu-time.js'
import { BROKER_CPU, GENERATOR_CPU, onCpu, pinSelf } from './lib/pinning.js'
import { freePort } from './lib/ports.js'
import { sleep } from './lib/time.js'

const RATES = [250, 1000, 4000, 16000] as const
const CONNECTIONS = 10
const MESSAGE = Buffer.alloc(100, 0x78)
const WARM_UP_MS = 2000
const MEASURE_MS = 5000

// the echo server: answers every chunk, and reports its event-loop busy time (ms) on request
const SERVER = `
const net = require('node:net')
const port = Number(process.argv[1])
let base = performance.eventLoopUtilization()
net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => {})
  s.on('data', (d) => (d.length === 1 && d[0] === 0x3f ? s.write(String(performance.eventLoopUtilization(base).active) + '\\n') : s.write(d)))
}).listen(port, '127.0.0.1', () => process.stdout.write('ready\\n'))
`

interface Row {
  rate: number
  sent: number
  cpuUsPerMessage: number
  busyUsPerMessage: number
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => resolve(s))
    s.once('error', reject)
  })
}

/** The server's event-loop busy time so far (ms), asked on a connection of its own. */
async function busyMs(port: number): Promise<number> {
  const s = await connect(port)
  return new Promise((resolve) => {
    s.once('data', (d) => {
      s.destroy()
      resolve(Number(d.toString().trim()))
    })
    s.write('?')
  })
}

/** Sends `rate` messages per second for `ms`, due by the clock, round-robin over the connections. */
async function paced(socks: net.Socket[], rate: number, ms: number): Promise<number> {
  const t0 = performance.now()
  let sent = 0
  for (;;) {
    const elapsed = performance.now() - t0
    const due = Math.floor((Math.min(elapsed, ms) * rate) / 1000)
    while (sent < due) (socks[sent++ % socks.length] as net.Socket).write(MESSAGE)
    if (elapsed >= ms) return sent
    await sleep(1)
  }
}

export async function runFloor(): Promise<number> {
  pinSelf(GENERATOR_CPU)
  const port = await freePort()
  const { cmd, args } = onCpu(BROKER_CPU, process.execPath, ['-e', SERVER, String(port)])
  const server = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve())
      server.once('exit', (code) => reject(new Error(`the echo server exited (${code})`)))
    })
    const cpu = procCpu(server.pid as number)
    const socks = await Promise.all(Array.from({ length: CONNECTIONS }, () => connect(port)))
    for (const s of socks) s.resume()
    const rows: Row[] = []
    for (const rate of RATES) {
      await paced(socks, rate, WARM_UP_MS)
      const cpu0 = cpu() ?? 0
      const busy0 = await busyMs(port)
      const sent = await paced(socks, rate, MEASURE_MS)
      await sleep(50)
      const cpuSec = (cpu() ?? 0) - cpu0
      const busy = (await busyMs(port)) - busy0
      rows.push({ rate, sent, cpuUsPerMessage: (cpuSec * 1e6) / sent, busyUsPerMessage: (busy * 1000) / sent })
      process.stderr.write(`${rate}/s done\n`)
    }
    for (const s of socks) s.destroy()
    const lines = [
      '| messages/s | messages | echo server CPU µs/message | event-loop busy µs/message |',
      '| ---: | ---: | ---: | ---: |',
      ...rows.map(
        (r) =>
          `| ${r.rate.toLocaleString('en-US')} | ${r.sent.toLocaleString('en-US')} | ${r.cpuUsPerMessage.toFixed(0)} | ${r.busyUsPerMessage.toFixed(0)} |`,
      ),
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
    return 0
  } finally {
    server.kill('SIGKILL')
  }
}
