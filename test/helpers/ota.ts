// Helpers of the OTA tests: the HTTP API, tiny MQTT devices that follow their update instructions
// in a chosen way (not the SDK agent), a hosted test package, and waiting for jobs and executions.
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { MqttClient } from 'mqtt'
import type { Test } from 'tap'
import type { App } from '../../broker/app.js'
import { ADMIN_TOKEN, connect, createDevice, deviceOpts, inbox, mqttUrl, serviceOpts, waitFor } from './app.js'

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
// biome-ignore lint/suspicious/noExplicitAny: test code reads whatever JSON the API and the events carry
export type Json = Record<string, any>

export function api(app: App) {
  return async (method: string, url: string, payload?: object | Buffer, headers: Record<string, string> = {}) => {
    const r = await app.http.inject({
      method: method as 'GET',
      url,
      headers: { ...auth, ...headers },
      ...(payload ? { payload } : {}),
    })
    return { status: r.statusCode, body: r.body ? (r.json() as Json) : {}, headers: r.headers }
  }
}

export type Mode = 'ok' | 'fail' | 'noconfirm' | 'unconfirmed' | 'hold' | 'silent'

export interface Notify {
  jobId: string
  action: string
  version?: string
  url?: string
  size?: number
  sha256?: string
  manifest?: string
  signature?: string
  confirmWithinMs?: number
  reason?: string
}

/** A device that follows its notifications as `mode` says; `hold` waits for release() after downloading. */
export async function fakeDevice(url: string, id: string, key: string, mode: Mode, from = '1.0.0') {
  let client: MqttClient
  const got: Notify[] = []
  let running = from
  let release!: () => void
  const released = new Promise<void>((r) => {
    release = r
  })
  const report = (m: object) =>
    client.publishAsync(`$iot/${id}/ota/status`, JSON.stringify(m), { qos: 1 }).catch(() => {})

  async function follow(n: Notify) {
    got.push(n)
    if (n.action === 'rollback') return report({ jobId: n.jobId, state: 'rolled_back', version: running })
    if (n.action !== 'install' || mode === 'silent') return
    const jobId = n.jobId
    await report({ jobId, state: 'downloading', progress: 0 })
    if (mode === 'hold') await released
    if (mode === 'fail') return report({ jobId, state: 'failed', error: 'hash_mismatch' })
    await report({ jobId, state: 'downloading', progress: 100 })
    for (const state of ['downloaded', 'verified', 'installing', 'rebooting']) await report({ jobId, state })
    if (mode === 'noconfirm') return
    if (mode === 'unconfirmed') return report({ jobId, state: 'succeeded', version: n.version })
    await report({ jobId, state: 'confirming', version: n.version })
    running = n.version as string
    await report({ jobId, state: 'succeeded', version: n.version })
  }

  async function attach(to: string) {
    client = await connect(to, deviceOpts(id, key))
    client.on('message', (topic, payload) => {
      if (topic === `$iot/${id}/ota/notify`) void follow(JSON.parse(payload.toString()) as Notify)
    })
    await client.subscribeAsync(`$iot/${id}/ota/notify`, { qos: 1 })
  }
  await attach(url)
  return {
    id,
    got,
    release,
    get running() {
      return running
    },
    get client() {
      return client
    },
    async reconnect(to: string) {
      await client.endAsync(true)
      await attach(to)
    },
    close: () => client.endAsync(true),
  }
}

export type Device = Awaited<ReturnType<typeof fakeDevice>>

export async function devices(t: Test, app: App, prefix: string, modes: Mode[], tags: Record<string, string> = {}) {
  const out: Device[] = []
  for (let i = 0; i < modes.length; i++) {
    const id = `${prefix}-${String(i).padStart(2, '0')}`
    const keys = await createDevice(app, id, { tags })
    out.push(await fakeDevice(mqttUrl(app), id, keys.primary, modes[i] as Mode))
  }
  t.teardown(() => Promise.all(out.map((d) => d.close())))
  return out
}

export const FILE = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 251))
export const SHA = createHash('sha256').update(FILE).digest('hex')

/** A hosted package with FILE uploaded. */
export async function hostedPackage(app: App, version = '2.0.0', extra: object = {}) {
  const call = api(app)
  const created = await call('POST', '/packages', { name: 'fw', version, ...extra })
  if (created.status !== 201) throw new Error(JSON.stringify(created.body))
  const up = await call('PUT', `/packages/${created.body.id}/file`, FILE, {
    'content-type': 'application/octet-stream',
  })
  if (up.status !== 200) throw new Error(JSON.stringify(up.body))
  return up.body
}

/** Collects the job events services see. */
export async function watchJobs(t: Test, app: App, name: string) {
  const svc = await connect(mqttUrl(app), serviceOpts(name))
  t.teardown(() => svc.endAsync(true))
  const box = inbox(svc)
  await svc.subscribeAsync('$fleet/jobs/+/events', { qos: 1 })
  return {
    box,
    events: (jobId: string) =>
      box.box
        .filter((m) => m.topic === `$fleet/jobs/${jobId}/events`)
        .map((m) => JSON.parse(m.payload.toString()) as Json),
  }
}

export async function jobReaches(app: App, id: string, state: string, ms = 8000) {
  const call = api(app)
  return waitFor(
    `job ${id} ${state}`,
    async () => {
      const j = await call('GET', `/jobs/${id}`)
      return j.body.state === state ? j.body : undefined
    },
    ms,
  )
}

export async function executionOf(app: App, jobId: string, deviceId: string): Promise<Json> {
  const all = await api(app)('GET', `/jobs/${jobId}/devices?limit=1000`)
  return (all.body.items as Json[]).find((e) => e.deviceId === deviceId) ?? {}
}

/** A node's OTA settings for tests: its own package directory, a fast scheduler, a small upload limit. */
export function otaEnv(t: Test, extra: Record<string, string> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fh-ota-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return { FLEETHUB_OTA_DIR: dir, FLEETHUB_OTA_TICK_MS: '40', FLEETHUB_OTA_MAX_PACKAGE_BYTES: '200000', ...extra }
}
