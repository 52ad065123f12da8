// What a report needs besides the raw results (the command, its duration, failures, notes), kept
// per invocation in bench/results/invocations/<id>.json, so `npm run bench -- report` can render
// the report of an earlier invocation again (after a change to the report code, say) without
// measuring anything.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { ReportInput } from './report-file.js'
import { RESULTS_DIR, RESULTS_FILE, type ResultRecord } from './results.js'

const DIR = path.join(RESULTS_DIR, 'invocations')

export type InvocationMeta = Omit<ReportInput, 'records' | 'scenarios'> & { id: string; scenarios: string[] }

export function saveInvocation(meta: InvocationMeta): void {
  mkdirSync(DIR, { recursive: true })
  writeFileSync(path.join(DIR, `${meta.id}.json`), `${JSON.stringify(meta, null, 1)}\n`)
}

/** The invocation `id`, or the latest one written. */
export function loadInvocation(id?: string): InvocationMeta {
  if (!existsSync(DIR)) throw new Error(`no invocation recorded in ${DIR} yet`)
  let file: string | undefined
  if (id) file = path.join(DIR, `${id}.json`)
  else {
    const all = readdirSync(DIR)
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.join(DIR, f))
    file = all.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
  }
  if (!file || !existsSync(file)) throw new Error(`no invocation ${id ?? ''} in ${DIR}`)
  return JSON.parse(readFileSync(file, 'utf8')) as InvocationMeta
}

/** The measurements of one invocation from the raw results file: kept ones, and how many were discarded. */
export function recordsOf(id: string): { records: ResultRecord[]; discarded: number } {
  const all = readFileSync(RESULTS_FILE, 'utf8')
    .split('\n')
    .filter((line) => line.includes(id))
    .map((line) => JSON.parse(line) as ResultRecord)
    .filter((r) => r.invocation === id)
  return { records: all.filter((r) => !r.discarded), discarded: all.filter((r) => r.discarded).length }
}
