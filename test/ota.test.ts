// Firmware updates end to end, with real MQTT devices (tiny scripts here, not the SDK agent) and
// real HTTP: upload and resumable download, signatures, staged jobs advancing wave by wave, halts,
// confirmation and rollback, refused reports, offline devices, approval, pause/resume/cancel, on the
// memory store and on Redis, and a job that goes on after its node stops and another takes over.
import { createHash, generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { verifyManifest } from '../registry/ota.js'
import {
  ADMIN_TOKEN,
  connect,
  createDevice,
  inbox,
  mqttUrl,
  serviceOpts,
  sleep,
  startTestApp,
  waitFor,
} from './helpers/app.js'
import {
  api,
  type Device,
  devices,
  executionOf,
  FILE,
  fakeDevice,
  hostedPackage,
  jobReaches,
  type Mode,
  type Notify,
  otaEnv,
  SHA,
  watchJobs,
} from './helpers/ota.js'
import { api as nodeApi, startNode } from './helpers/process.js'
import { startRedis } from './helpers/redis.js'

async function suite(t: Test, env: Record<string, string>) {
  const app = await startTestApp(t, otaEnv(t, env))
  const call = api(app)
  const http = `http://127.0.0.1:${app.ports.http}`

  await t.test('upload, resumable download with Range, hash and signature', async (t) => {
    const p = await hostedPackage(app, '2.0.0', { models: ['acme.air'], tags: { hw: 'b' } })
    t.match(p, { state: 'ready', size: FILE.length, sha256: SHA, source: 'hosted' })
    const key = await call('GET', '/ota/signing-key')
    t.equal(key.body.alg, 'Ed25519')
    t.equal(verifyManifest(p.manifest, p.signature, key.body.publicKey), true, 'verifies with the published key')
    t.equal(verifyManifest(p.manifest, p.signature, key.body.publicKeyPem), true)
    const other = generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString()
    t.equal(verifyManifest(p.manifest, p.signature, other), false, 'fails with another key')
    t.match(JSON.parse(p.manifest), {
      v: 1,
      packageId: p.id,
      version: '2.0.0',
      size: FILE.length,
      sha256: SHA,
      models: ['acme.air'],
      tags: { hw: 'b' },
    })

    const url = `${http}/ota/packages/${p.id}/file`
    const whole = await fetch(url)
    t.equal(whole.status, 200, 'no token needed')
    t.equal(whole.headers.get('accept-ranges'), 'bytes')
    t.equal(whole.headers.get('etag'), `"${SHA}"`)
    t.equal(
      createHash('sha256')
        .update(Buffer.from(await whole.arrayBuffer()))
        .digest('hex'),
      SHA,
    )
    // a download cut at 40000 bytes resumes from there
    const first = Buffer.from(await (await fetch(url, { headers: { range: 'bytes=0-39999' } })).arrayBuffer())
    const rest = await fetch(url, { headers: { range: 'bytes=40000-' } })
    t.equal(rest.status, 206)
    t.equal(rest.headers.get('content-range'), `bytes 40000-99999/${FILE.length}`)
    t.equal(rest.headers.get('content-length'), '60000')
    const joined = Buffer.concat([first, Buffer.from(await rest.arrayBuffer())])
    t.equal(createHash('sha256').update(joined).digest('hex'), SHA, 'the resumed file hashes right')
    const tail = await fetch(url, { headers: { range: 'bytes=-10' } })
    t.same(Buffer.from(await tail.arrayBuffer()), FILE.subarray(-10))
    const past = await fetch(url, { headers: { range: `bytes=${FILE.length}-` } })
    t.equal(past.status, 416)
    t.equal(past.headers.get('content-range'), `bytes */${FILE.length}`)
    const changed = await fetch(url, { headers: { range: 'bytes=10-', 'if-range': '"other"' } })
    t.equal(changed.status, 200, 'If-Range with another ETag gets the whole file')
    await changed.arrayBuffer()
    const head = await fetch(url, { method: 'HEAD' })
    t.equal(head.headers.get('content-length'), String(FILE.length))
    t.equal((await fetch(`${http}/ota/packages/nope/file`)).status, 404)
    t.equal((await fetch(`${http}/packages`)).status, 401, 'the rest of the API still needs the token')

    // what an upload is checked against
    const declared = await call('POST', '/packages', { name: 'fw', version: '3', sha256: 'a'.repeat(64) })
    const wrong = await call('PUT', `/packages/${declared.body.id}/file`, FILE, {
      'content-type': 'application/octet-stream',
    })
    t.equal(wrong.status, 400)
    t.equal(wrong.body.error.code, 'FLEETHUB_ERR_PACKAGE_FILE_MISMATCH')
    t.match(await call('GET', `/packages/${declared.body.id}`), { body: { state: 'awaiting_file' } })
    const big = await call('PUT', `/packages/${declared.body.id}/file`, Buffer.alloc(200_001), {
      'content-type': 'application/octet-stream',
    })
    t.equal(big.status, 413)
    const json = await call('PUT', `/packages/${declared.body.id}/file`, { a: 1 })
    t.equal(json.status, 415)
    const again = await call('PUT', `/packages/${p.id}/file`, FILE, { 'content-type': 'application/octet-stream' })
    t.equal(again.status, 409, 'a package’s file is written once')
    const ext = await call('POST', '/packages', { name: 'fw', version: '4', url: 'https://cdn.example/fw.bin' })
    t.equal(ext.status, 400, 'an external package needs size and sha256')
    const ext2 = await call('POST', '/packages', {
      name: 'fw',
      version: '4',
      url: 'https://cdn.example/fw.bin',
      size: 5,
      sha256: 'B'.repeat(64),
    })
    t.match(ext2.body, { state: 'ready', source: 'external', sha256: 'b'.repeat(64) })
    t.equal(verifyManifest(ext2.body.manifest, ext2.body.signature, key.body.publicKey), true)
    const list = await call('GET', '/packages?limit=2')
    t.equal(list.body.items.length, 2)
    t.type(list.body.next, 'string')
    t.equal((await call('DELETE', `/packages/${ext2.body.id}`)).status, 204)
    t.equal((await call('GET', `/packages/${ext2.body.id}`)).status, 404)
  })

  await t.test('a job over 20 devices advances wave by wave; the twin shows the firmware', async (t) => {
    const w = await watchJobs(t, app, 'svc-waves')
    const ds = await devices(t, app, 'wave', Array(20).fill('ok'), { fleet: 'waves' })
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { where: "tags.fleet = 'waves'" },
      rollout: { waveSize: 5, successThreshold: 1, failureThreshold: 0.2 },
    })
    t.equal(job.status, 201)
    const done = await jobReaches(app, job.body.id, 'completed')
    t.same(done.totals, { succeeded: 20 })
    t.equal(done.waves, 4)
    t.equal(done.wave, 4)
    const evs = await waitFor('completed event', () => {
      const all = w.events(job.body.id)
      return all.some((e) => e.event === 'completed') ? all : undefined
    })
    t.same(
      evs.filter((e) => e.event === 'wave_started').map((e) => e.wave),
      [1, 2, 3, 4],
    )
    t.ok(evs.some((e) => e.event === 'completed'))
    // each wave starts only after the previous one succeeded
    const order = evs.filter((e) => e.event === 'wave_started' || e.state === 'succeeded')
    const waveAt = (n: number) => order.findIndex((e) => e.event === 'wave_started' && e.wave === n)
    t.equal(order.slice(0, waveAt(2)).filter((e) => e.state === 'succeeded').length, 5)
    t.equal(order.slice(0, waveAt(3)).filter((e) => e.state === 'succeeded').length, 10)
    const n = ds[7] as Device
    const install = n.got[0] as Notify
    t.match(install, { action: 'install', jobId: job.body.id, version: '2.0.0', size: FILE.length, sha256: SHA })
    t.equal(install.url, `${http}/ota/packages/${p.id}/file`)
    t.equal(install.manifest, p.manifest)
    t.equal(install.signature, p.signature)
    const firmware = await waitFor(
      'firmware in the twin',
      async () => (await call('GET', `/devices/${n.id}/twin`)).body.reported.firmware,
    )
    t.match(firmware, { version: '2.0.0', jobId: job.body.id })
    const mine = await call('GET', `/devices/${n.id}/ota`)
    t.match(mine.body.execution, { jobId: job.body.id, state: 'succeeded', version: '2.0.0' })
    t.same(
      mine.body.execution.history.map((h: { state: string }) => h.state),
      [
        'pending',
        'notified',
        'downloading',
        'downloaded',
        'verified',
        'installing',
        'rebooting',
        'confirming',
        'succeeded',
      ],
    )
    const page = await call('GET', `/jobs/${job.body.id}/devices?limit=15`)
    t.equal(page.body.items.length, 15)
    const page2 = await call('GET', `/jobs/${job.body.id}/devices?after=${page.body.next}`)
    t.equal(page2.body.items.length, 5)
    t.equal(page2.body.next, undefined)
    t.equal((await call('DELETE', `/packages/${p.id}`)).status, 204, 'a completed job no longer holds its package')
  })

  await t.test('the failure threshold halts the job, says why and which devices', async (t) => {
    const w = await watchJobs(t, app, 'svc-halt')
    const modes: Mode[] = [...Array(5).fill('ok'), 'fail', 'ok', 'fail', 'fail', 'ok', ...Array(10).fill('ok')]
    const ds = await devices(t, app, 'halt', modes)
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 5, successThreshold: 1, failureThreshold: 3 },
    })
    const halted = await jobReaches(app, job.body.id, 'halted')
    t.match(halted.halt, { threshold: 'failure', failures: 3, limit: 3 })
    t.same([...halted.halt.devices].sort(), ['halt-05', 'halt-07', 'halt-08'])
    t.equal(halted.totals.failed, 3)
    await waitFor('halted event', () =>
      w.events(job.body.id).some((e) => e.event === 'halted' && e.reason.threshold === 'failure'),
    )
    await sleep(300)
    const later = await call('GET', `/jobs/${job.body.id}`)
    t.equal(later.body.state, 'halted')
    t.equal(later.body.totals.pending, 10, 'the later waves were never notified')
    t.equal((ds[15] as Device).got.length, 0)
    t.equal((await call('DELETE', `/packages/${p.id}`)).status, 409, 'a halted job keeps its package')
    t.equal((await call('POST', `/jobs/${job.body.id}/resume`)).status, 409, 'a halted job does not resume')
    const cancelled = await call('POST', `/jobs/${job.body.id}/cancel`)
    t.equal(cancelled.body.state, 'cancelled')
    await waitFor('pending executions cancelled', async () => {
      const j = await call('GET', `/jobs/${job.body.id}`)
      return j.body.totals.cancelled === 10
    })
  })

  await t.test('a wave that cannot reach its success threshold halts the job', async (t) => {
    const ds = await devices(t, app, 'succ', ['ok', 'fail', 'ok', 'ok'])
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 2, successThreshold: 1 },
    })
    const halted = await jobReaches(app, job.body.id, 'halted')
    t.match(halted.halt, { threshold: 'success', wave: 1, devices: ['succ-01'] })
  })

  await t.test('no confirmation in time: failed, told to roll back, rolled back; the twin follows', async (t) => {
    const [d] = await devices(t, app, 'noconf', ['noconfirm'])
    const dev = d as Device
    const errs = await connect(mqttUrl(app), serviceOpts('svc-noconf'))
    t.teardown(() => errs.endAsync(true))
    const evs = inbox(errs)
    await errs.subscribeAsync(`$iot/${dev.id}/events/ota`, { qos: 1 })
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: [dev.id] },
      rollout: { confirmWithinMs: 300 },
    })
    await waitFor('rollback instruction', () => dev.got.find((n) => n.action === 'rollback'))
    t.match(
      dev.got.find((n) => n.action === 'rollback'),
      { jobId: job.body.id, reason: 'confirmation_timeout' },
    )
    const e = await waitFor('rolled back', async () => {
      const x = await executionOf(app, job.body.id, dev.id)
      return x?.state === 'rolled_back' ? x : undefined
    })
    t.match(e, { error: 'confirmation_timeout', version: '1.0.0' })
    t.match(e.history.map((h: { state: string }) => h.state).slice(-3), ['rebooting', 'failed', 'rolled_back'])
    const firmware = await waitFor(
      'firmware in the twin',
      async () => (await call('GET', `/devices/${dev.id}/twin`)).body.reported.firmware,
    )
    t.match(firmware, { version: '1.0.0', jobId: job.body.id })
    const failed = await evs.next((m) => JSON.parse(m.payload.toString()).state === 'failed')
    t.match(JSON.parse(failed?.payload.toString() ?? '{}'), {
      jobId: job.body.id,
      deviceId: dev.id,
      state: 'failed',
      previous: 'rebooting',
      error: 'confirmation_timeout',
    })
    const done = await jobReaches(app, job.body.id, 'halted')
    t.match(done.totals, { rolled_back: 1 }, 'a rollback counts as a failure of the wave')
  })

  await t.test('succeeded without confirming is recorded as failed (unconfirmed) and rolled back', async (t) => {
    const [d] = await devices(t, app, 'unconf', ['unconfirmed'])
    const dev = d as Device
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', { packageId: p.id, target: { deviceIds: [dev.id] } })
    await waitFor('rollback instruction', () => dev.got.find((n) => n.action === 'rollback'))
    t.match(
      dev.got.find((n) => n.action === 'rollback'),
      { reason: 'unconfirmed' },
    )
    const e = await waitFor('rolled back', async () => {
      const x = await executionOf(app, job.body.id, dev.id)
      return x?.state === 'rolled_back' ? x : undefined
    })
    t.equal(e.error, 'unconfirmed')
    t.ok(e.history.some((h: { state: string; error?: string }) => h.state === 'failed' && h.error === 'unconfirmed'))
  })

  await t.test('impossible transitions, unknown jobs and bad payloads are refused and counted', async (t) => {
    const [d] = await devices(t, app, 'bad', ['silent'])
    const dev = d as Device
    const other = (await devices(t, app, 'bystander', ['silent']))[0] as Device
    const svc = await connect(mqttUrl(app), serviceOpts('svc-bad'))
    t.teardown(() => svc.endAsync(true))
    const errs = inbox(svc)
    await svc.subscribeAsync(`$iot/${dev.id}/events/error`, { qos: 1 })
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', { packageId: p.id, target: { deviceIds: [dev.id] } })
    await waitFor('notified', () => dev.got.length > 0)
    const send = (m: unknown) =>
      dev.client.publishAsync(`$iot/${dev.id}/ota/status`, typeof m === 'string' ? m : JSON.stringify(m), { qos: 1 })
    const refusal = async () => {
      const m = await errs.next(() => true)
      return JSON.parse(m?.payload.toString() ?? '{}')
    }
    await send({ jobId: 'job-nope', state: 'downloading' })
    t.match(await refusal(), { kind: 'ota-status', reason: 'unknown_job', jobId: 'job-nope' })
    await send('{not json')
    t.match(await refusal(), { reason: 'invalid' })
    await send({ jobId: job.body.id, state: 'teleported' })
    t.match(await refusal(), { reason: 'invalid', error: /state must be/ })
    await send({ jobId: job.body.id, state: 'installing' })
    await send({ jobId: job.body.id, state: 'downloaded' })
    t.match(await refusal(), { reason: 'backwards', jobId: job.body.id })
    // a device that is not part of the job
    await other.client.publishAsync(
      `$iot/${other.id}/ota/status`,
      JSON.stringify({ jobId: job.body.id, state: 'downloading' }),
      { qos: 1 },
    )
    await send({ jobId: job.body.id, state: 'failed', error: 'install_failed' })
    await waitFor('failed', async () => (await executionOf(app, job.body.id, dev.id))?.state === 'failed')
    await send({ jobId: job.body.id, state: 'confirming', version: '2.0.0' })
    t.match(await refusal(), { reason: 'finished' })
    const e = await executionOf(app, job.body.id, dev.id)
    t.equal(e.state, 'failed', 'refused reports never moved the state')
    t.equal(e.error, 'install_failed')
    const metrics = await (await fetch(`http://127.0.0.1:${app.ports.http}/metrics`)).text()
    for (const reason of ['unknown_job', 'invalid', 'backwards', 'finished', 'not_in_job']) {
      t.match(metrics, new RegExp(`fleethub_ota_reports_refused_total\\{reason="${reason}"\\} [1-9]`), reason)
    }
    t.equal((await call('GET', '/jobs/job-nope')).status, 404)
    t.equal((await call('POST', '/jobs/job-nope/cancel')).status, 404)
  })

  await t.test('an offline device gets its notification when it connects', async (t) => {
    const id = 'offline-1'
    const keys = await createDevice(app, id)
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', { packageId: p.id, target: { deviceIds: [id] } })
    await waitFor('notified', async () => (await executionOf(app, job.body.id, id))?.state === 'notified')
    await sleep(100)
    const dev = await fakeDevice(mqttUrl(app), id, keys.primary, 'ok')
    t.teardown(() => dev.close())
    const done = await jobReaches(app, job.body.id, 'completed')
    t.same(done.totals, { succeeded: 1 })
    t.equal(dev.got.filter((n) => n.action === 'install').length, 1, 'notified once, on its subscription')
  })

  await t.test('a device deleted during a job is cancelled in it, not counted as a failure', async (t) => {
    const ds = await devices(t, app, 'gone', ['hold', 'silent', 'ok'])
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 2, successThreshold: 0.5, failureThreshold: 1 },
    })
    await waitFor(
      'the first wave notified',
      async () => (await executionOf(app, job.body.id, 'gone-01'))?.state === 'notified',
    )
    t.equal((await call('DELETE', '/devices/gone-01')).status, 204)
    await waitFor('cancelled', async () => (await executionOf(app, job.body.id, 'gone-01'))?.state === 'cancelled')
    t.equal((await executionOf(app, job.body.id, 'gone-01')).error, 'device_deleted')
    ;(ds[0] as Device).release()
    const done = await jobReaches(app, job.body.id, 'completed')
    t.same(done.totals, { cancelled: 1, succeeded: 2 }, 'not a failure: the job did not halt')
  })

  await t.test('a job needing approval runs only once another operator approves it', async (t) => {
    const ds = await devices(t, app, 'appr', ['ok'])
    const p = await hostedPackage(app)
    const body = { packageId: p.id, target: { deviceIds: [(ds[0] as Device).id] }, requireApproval: true }
    const anonymous = await call('POST', '/jobs', body)
    t.equal(anonymous.status, 400)
    t.equal(anonymous.body.error.code, 'FLEETHUB_ERR_OPERATOR_REQUIRED')
    const job = await call('POST', '/jobs', body, { 'x-fleethub-operator': 'alice' })
    t.match(job.body, { state: 'awaiting_approval', createdBy: 'alice' })
    await sleep(200)
    t.equal((ds[0] as Device).got.length, 0, 'nothing is sent before approval')
    const self = await call('POST', `/jobs/${job.body.id}/approve`, undefined, { 'x-fleethub-operator': 'alice' })
    t.equal(self.status, 403)
    t.equal(self.body.error.code, 'FLEETHUB_ERR_SAME_OPERATOR')
    const nobody = await call('POST', `/jobs/${job.body.id}/approve`)
    t.equal(nobody.status, 400)
    const ok = await call('POST', `/jobs/${job.body.id}/approve`, undefined, { 'x-fleethub-operator': 'bob' })
    t.match(ok.body, { state: 'scheduled', approvedBy: 'bob' })
    const twice = await call('POST', `/jobs/${job.body.id}/approve`, undefined, { 'x-fleethub-operator': 'carol' })
    t.equal(twice.status, 409)
    await jobReaches(app, job.body.id, 'completed')
  })

  await t.test('pause stops new notifications, resume goes on, cancel stops devices not installing', async (t) => {
    const ds = await devices(t, app, 'pause', ['hold', 'hold', 'ok', 'ok', 'ok', 'ok'])
    const p = await hostedPackage(app)
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 2 },
    })
    await waitFor('wave 1 downloading', async () => {
      const j = await call('GET', `/jobs/${job.body.id}`)
      return j.body.totals.downloading === 2
    })
    const paused = await call('POST', `/jobs/${job.body.id}/pause`)
    t.equal(paused.body.state, 'paused')
    t.equal((await call('POST', `/jobs/${job.body.id}/pause`)).status, 409)
    for (const d of ds.slice(0, 2)) d.release()
    await waitFor('wave 1 done', async () => (await call('GET', `/jobs/${job.body.id}`)).body.totals.succeeded === 2)
    await sleep(300)
    t.equal((ds[2] as Device).got.length, 0, 'paused: wave 2 is not notified')
    t.equal((await call('GET', `/jobs/${job.body.id}`)).body.state, 'paused')
    t.equal((await call('POST', `/jobs/${job.body.id}/resume`)).body.state, 'running')
    await jobReaches(app, job.body.id, 'completed')

    const ds2 = await devices(t, app, 'cancel', ['hold', 'noconfirm', 'ok'])
    const job2 = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds2.map((d) => d.id) },
      rollout: { waveSize: 2, confirmWithinMs: 1500 },
    })
    await waitFor('wave 1 under way', async () => {
      const [a, b] = await Promise.all([
        executionOf(app, job2.body.id, 'cancel-00'),
        executionOf(app, job2.body.id, 'cancel-01'),
      ])
      return a?.state === 'downloading' && b?.state === 'rebooting'
    })
    const c = await call('POST', `/jobs/${job2.body.id}/cancel`)
    t.equal(c.body.state, 'cancelled')
    await waitFor('cancel sent', () => (ds2[0] as Device).got.some((n) => n.action === 'cancel'))
    t.equal((await executionOf(app, job2.body.id, 'cancel-00')).state, 'cancelled')
    t.equal((await executionOf(app, job2.body.id, 'cancel-01')).state, 'rebooting', 'an installing device goes on')
    t.equal((await executionOf(app, job2.body.id, 'cancel-02')).state, 'cancelled', 'never notified')
    t.equal((ds2[2] as Device).got.length, 0)
    t.equal((await call('POST', `/jobs/${job2.body.id}/cancel`)).status, 409)
    // the cancelled job's device in flight still has its confirmation deadline
    await waitFor('rolled back after the cancel', async () => {
      return (await executionOf(app, job2.body.id, 'cancel-01')).state === 'rolled_back'
    })
    t.match((ds2[1] as Device).got.at(-1), { action: 'rollback', reason: 'confirmation_timeout' })
  })

  await t.test('startAt delays the start; ratePerMinute spreads the notifications', async (t) => {
    const ds = await devices(t, app, 'rate', ['ok', 'ok', 'ok', 'ok'])
    const p = await hostedPackage(app)
    const startAt = new Date(Date.now() + 800).toISOString()
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      startAt,
      rollout: { ratePerMinute: 120 },
    })
    await sleep(300)
    t.equal((await call('GET', `/jobs/${job.body.id}`)).body.state, 'scheduled', 'not before startAt')
    const done = await jobReaches(app, job.body.id, 'completed')
    t.ok(Date.parse(done.startedAt) >= Date.parse(startAt), 'started at startAt')
    const items = (await call('GET', `/jobs/${job.body.id}/devices`)).body.items as { notifiedAt: number }[]
    const times = items.map((e) => e.notifiedAt).sort((a, b) => a - b)
    // 2 a second: the 4 notifications take about 1.5 s
    t.ok(
      (times[3] as number) - (times[0] as number) >= 1000,
      `spread over ${(times[3] as number) - (times[0] as number)} ms`,
    )
  })

  await t.test('jobs are validated', async (t) => {
    const p = await hostedPackage(app)
    const bad = async (body: object, code = 400) => {
      const r = await call('POST', '/jobs', body)
      t.equal(r.status, code, JSON.stringify(body))
      return r
    }
    await bad({ packageId: 'nope', target: { deviceIds: ['x'] } }, 404)
    await bad({ packageId: p.id, target: {} })
    await bad({ packageId: p.id, target: { where: 'tags.x = ' } })
    await bad({ packageId: p.id, target: { deviceIds: ['x'] }, rollout: { waveSize: 2, wavePercent: 10 } })
    await bad({
      packageId: p.id,
      target: { deviceIds: ['x'] },
      rollout: { maintenanceWindow: { start: '25:00', end: '01:00' } },
    })
    await bad({ packageId: p.id, target: { deviceIds: ['x'] }, rollout: { successThreshold: 2 } })
    const waiting = await call('POST', '/packages', { name: 'fw', version: '9' })
    const notReady = await bad({ packageId: waiting.body.id, target: { deviceIds: ['x'] } }, 409)
    t.equal(notReady.body.error.code, 'FLEETHUB_ERR_PACKAGE_NOT_READY')
  })

  await t.test('incompatible, unknown and out-of-window devices', async (t) => {
    const keys = await createDevice(app, 'compat-b', { tags: { hw: 'b' } })
    await createDevice(app, 'compat-a', { tags: { hw: 'a' } })
    const dev = await fakeDevice(mqttUrl(app), 'compat-b', keys.primary, 'ok')
    t.teardown(() => dev.close())
    const p = await hostedPackage(app, '2.0.0', { tags: { hw: 'b' } })
    const job = await call('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ['compat-a', 'compat-b', 'compat-nope'] },
    })
    const done = await jobReaches(app, job.body.id, 'completed')
    t.same(done.totals, { succeeded: 1, skipped: 2 })
    t.equal(done.devices, 1)
    t.match(await executionOf(app, job.body.id, 'compat-a'), { state: 'skipped', error: 'incompatible' })
    t.match(await executionOf(app, job.body.id, 'compat-nope'), { state: 'skipped', error: 'device_not_found' })

    // a maintenance window that is not now: the job starts but notifies no one
    const h = new Date().getUTCHours()
    const start = `${String((h + 2) % 24).padStart(2, '0')}:00`
    const end = `${String((h + 3) % 24).padStart(2, '0')}:00`
    const p2 = await hostedPackage(app, '3.0.0')
    const closed = await call('POST', '/jobs', {
      packageId: p2.id,
      target: { deviceIds: ['compat-b'] },
      rollout: { maintenanceWindow: { start, end } },
    })
    await jobReaches(app, closed.body.id, 'running')
    await sleep(300)
    t.match((await call('GET', `/jobs/${closed.body.id}`)).body.totals, { pending: 1 })
    await call('POST', `/jobs/${closed.body.id}/cancel`)
  })
}

t.test('OTA on the memory store', async (t) => suite(t, {}))

t.test('OTA on Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('one node', async (t) => suite(t, { FLEETHUB_REDIS_URL: redis.url }))

  await t.test('a node stops in the middle of a job; the next node on the same Redis resumes it', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fh-ota-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const keyFile = path.join(dir, 'signing.pem')
    writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)
    const env = {
      ...otaEnv(t),
      FLEETHUB_OTA_DIR: dir,
      FLEETHUB_OTA_SIGNING_KEY: keyFile,
      FLEETHUB_REDIS_URL: redis.url,
      FLEETHUB_REDIS_PREFIX: 'restart',
    }
    const a = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'node-a' })
    const modes: Mode[] = ['ok', 'ok', 'hold', 'hold', 'ok', 'ok']
    const ds = await devices(t, a, 'rs', modes)
    const p = await hostedPackage(a)
    const job = await api(a)('POST', '/jobs', {
      packageId: p.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 2, deviceTimeoutMs: 60_000 },
    })
    await waitFor('wave 2 downloading', async () => {
      const j = await api(a)('GET', `/jobs/${job.body.id}`)
      return j.body.wave === 2 && j.body.totals.downloading === 2
    })
    await a.close()

    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'node-b' })
    const w = await watchJobs(t, b, 'svc-restart')
    const before = await api(b)('GET', `/jobs/${job.body.id}`)
    t.match(before.body, { state: 'running', wave: 2, totals: { succeeded: 2, downloading: 2, pending: 2 } })
    for (const d of ds) await d.reconnect(mqttUrl(b))
    for (const d of ds) d.release()
    const done = await jobReaches(b, job.body.id, 'completed', 10_000)
    t.same(done.totals, { succeeded: 6 }, 'every device counted once')
    await waitFor('completed event', () => w.events(job.body.id).some((e) => e.event === 'completed'))
    t.same(
      w
        .events(job.body.id)
        .filter((e) => e.event === 'wave_started')
        .map((e) => e.wave),
      [3],
      'node b went on from wave 2',
    )
    t.equal((ds[0] as Device).got.filter((n) => n.action === 'install').length, 1, 'wave 1 was not sent again')
    const key = await api(b)('GET', '/ota/signing-key')
    t.equal(
      verifyManifest(p.manifest, p.signature, key.body.publicKey),
      true,
      'both nodes sign with the configured key',
    )
    const file = await fetch(`http://127.0.0.1:${b.ports.http}/ota/packages/${p.id}/file`)
    t.equal(
      createHash('sha256')
        .update(Buffer.from(await file.arrayBuffer()))
        .digest('hex'),
      SHA,
    )
  })

  await t.test('a node is lost (killed) in the middle of a job; another takes its lease over', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fh-ota-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const keyFile = path.join(dir, 'signing.pem')
    writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string)
    const token = ADMIN_TOKEN
    const env = {
      FLEETHUB_OTA_DIR: dir,
      FLEETHUB_OTA_TICK_MS: '40',
      FLEETHUB_OTA_SIGNING_KEY: keyFile,
      FLEETHUB_REDIS_URL: redis.url,
      FLEETHUB_REDIS_PREFIX: 'loss',
      FLEETHUB_ADMIN_TOKEN: token,
    }
    // node a: a real `fleethub start` process, killed with SIGKILL (no lease released, nothing flushed)
    const a = await startNode({ ...env, FLEETHUB_NODE_ID: 'node-a' }, t.teardown)
    const call = (method: string, url: string, body?: unknown) => nodeApi(a, token, method, url, body)
    const modes: Mode[] = ['ok', 'ok', 'hold', 'hold', 'ok', 'ok']
    const ds: Device[] = []
    for (let i = 0; i < modes.length; i++) {
      const id = `loss-${i}`
      const created = await call('POST', '/devices', { id })
      ds.push(await fakeDevice(`mqtt://127.0.0.1:${a.ports.mqtt}`, id, created.json.keys.primary, modes[i] as Mode))
    }
    t.teardown(() => Promise.all(ds.map((d) => d.close())))
    const p = await call('POST', '/packages', { name: 'fw', version: '2.0.0' })
    const up = await fetch(`http://127.0.0.1:${a.ports.http}/packages/${p.json.id}/file`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: FILE,
    })
    t.equal(up.status, 200)
    const job = await call('POST', '/jobs', {
      packageId: p.json.id,
      target: { deviceIds: ds.map((d) => d.id) },
      rollout: { waveSize: 2, deviceTimeoutMs: 60_000 },
    })
    await waitFor('wave 2 downloading', async () => {
      const j = (await call('GET', `/jobs/${job.json.id}`)).json
      return j.wave === 2 && j.totals.downloading === 2
    })
    t.equal(await a.stop('SIGKILL'), null, 'node a is gone')

    const b = await startTestApp(t, { ...env, FLEETHUB_NODE_ID: 'node-b' })
    const w = await watchJobs(t, b, 'svc-loss')
    for (const d of ds) await d.reconnect(mqttUrl(b))
    for (const d of ds) d.release()
    const done = await jobReaches(b, job.json.id, 'completed', 15_000)
    t.same(done.totals, { succeeded: 6 }, 'every device counted once')
    await waitFor('completed event', () => w.events(job.json.id).some((e) => e.event === 'completed'))
    t.same(
      w
        .events(job.json.id)
        .filter((e) => e.event === 'wave_started')
        .map((e) => e.wave),
      [3],
      'node b went on from wave 2',
    )
    t.equal((ds[0] as Device).got.filter((n) => n.action === 'install').length, 1, 'wave 1 was not sent again')
  })
})
