// Progress on stderr. On a terminal: one status line (step, scenario, target, run, elapsed) redrawn
// in place, with log lines printed above it. Elsewhere (CI, a pipe): plain lines only, no escapes.
import { nowMs } from './time.js'

export interface Step {
  index: number
  total: number
  scenario: string
  target: string
  run: number
  runs: number
}

export interface Progress {
  step(step: Step): void
  log(message: string): void
  done(): void
}

const REDRAW_MS = 500

function clock(ms: number): string {
  const s = Math.floor(ms / 1000)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const startedAt = nowMs()
  let current: Step | undefined
  let stepStartedAt = startedAt
  const prefix = () => (current ? `[${current.scenario} ${current.target} run ${current.run}] ` : '')

  if (!stream.isTTY) {
    return {
      step(step) {
        current = step
        stream.write(
          `[${step.index}/${step.total}] ${step.scenario} · ${step.target} · run ${step.run}/${step.runs} ` +
            `(${clock(nowMs() - startedAt)} elapsed)\n`,
        )
      },
      log: (message) => stream.write(`${prefix()}${message}\n`),
      done: () => {},
    }
  }

  let shown = false
  const status = () => {
    if (!current) return ''
    const c = current
    const line =
      `[${c.index}/${c.total}] ${c.scenario} · ${c.target} · run ${c.run}/${c.runs} · ` +
      `${clock(nowMs() - stepStartedAt)} in step · ${clock(nowMs() - startedAt)} total`
    return line.slice(0, Math.max(40, (stream.columns || 120) - 1))
  }
  const redraw = () => {
    stream.write(`\r\x1b[2K${status()}`)
    shown = true
  }
  const clear = () => {
    if (shown) stream.write('\r\x1b[2K')
    shown = false
  }
  const timer = setInterval(redraw, REDRAW_MS)
  timer.unref()
  return {
    step(step) {
      current = step
      stepStartedAt = nowMs()
      redraw()
    },
    log(message) {
      clear()
      stream.write(`${prefix()}${message}\n`)
      redraw()
    },
    done() {
      clearInterval(timer)
      clear()
    },
  }
}
