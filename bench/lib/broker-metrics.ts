// Reads the broker's Prometheus /metrics: the open-session gauge tells when a phase's connections are
// really gone, and the credential cache counters prove that a "cold" phase missed the cache and a
// "warm" one hit it (otherwise the two figures would not mean what their names say).
import { request } from './http.js'
import { nowMs, sleep } from './time.js'

const SCRAPE_TIMEOUT_MS = 5000

export async function scrapeMetrics(httpUrl: string): Promise<string> {
  const res = await request(`${httpUrl}/metrics`, { timeoutMs: SCRAPE_TIMEOUT_MS })
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`)
  return res.text()
}

/** The value of one sample, e.g. `fleethub_connections{kind="device"}`; 0 when it is absent. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== ' ' && rest[0] !== '{') continue // a longer metric name with this prefix
    if (!wanted.every((w) => rest.includes(w))) continue
    return Number(rest.slice(rest.lastIndexOf(' ') + 1))
  }
  return 0
}

export interface CacheCounts {
  hit: number
  miss: number
}

export async function authCacheCounts(httpUrl: string): Promise<CacheCounts> {
  const text = await scrapeMetrics(httpUrl)
  return {
    hit: sampleValue(text, 'fleethub_auth_cache_total', { result: 'hit' }),
    miss: sampleValue(text, 'fleethub_auth_cache_total', { result: 'miss' }),
  }
}

/** Waits until the broker reports no open device session; false when it still has some at the end. */
export async function waitForNoDeviceSessions(httpUrl: string, timeoutMs: number): Promise<boolean> {
  const until = nowMs() + timeoutMs
  while (nowMs() < until) {
    const open = sampleValue(await scrapeMetrics(httpUrl), 'fleethub_connections', { kind: 'device' })
    if (open === 0) return true
    await sleep(100)
  }
  return false
}

/**
 * prom-client's event-loop histogram (Node's monitorEventLoopDelay, 10 ms timer) records the time
 * between the timer's callbacks, so an idle loop reads 10 ms: the delay is what is left after it.
 */
export const LOOP_SAMPLING_MS = 10

export interface LoopDelay {
  /** Event-loop delay p99: prom-client's p99 less the sampling interval. */
  p99Ms: number
  /** prom-client's gauges as read. */
  rawP99Ms: number
  rawMinMs: number
  rawMaxMs: number
}

/**
 * The broker's event-loop delay since the previous scrape (a scrape resets the histogram). The
 * histogram's minimum is reported too: near the interval when idle, lower under load (libuv times a
 * repeating timer from its loop's cached clock, so a callback that ran late can be followed by one
 * that comes early).
 */
export function loopDelay(metrics: string): LoopDelay {
  const read = (q: string) => sampleValue(metrics, `fleethub_process_nodejs_eventloop_lag_${q}_seconds`) * 1000
  const rawP99Ms = read('p99')
  return { p99Ms: Math.max(0, rawP99Ms - LOOP_SAMPLING_MS), rawP99Ms, rawMinMs: read('min'), rawMaxMs: read('max') }
}
