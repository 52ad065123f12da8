// Structured JSON logs (pino) to stdout: one object per line, so scripts can read them.
import { type Logger, pino } from 'pino'

export type { Logger }

export function createLogger(level: string, node: string): Logger {
  return pino({ level, base: { node }, timestamp: pino.stdTimeFunctions.isoTime })
}
