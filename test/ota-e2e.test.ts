// Issue 8, "Done when", end to end: an operator uploads a package the hub signs, and starts a staged
// job (with a second operator's approval) over 200 simulated devices: SDK device clients running the
// reference OTA agent in this process, on a hub backed by a real Redis. One device in ten fails, in
// four different ways (a corrupted download, a forged signature, a crash after the reboot, no
// confirmation), and a few more lose power halfway through their download and resume. The job
// advances wave by wave, halts when the failure threshold is crossed and says which devices; the
// failed devices roll back (by themselves, or told to by the hub); and the broker is restarted in
// the middle of it all on the same ports and Redis, losing nothing: every device's execution at the
// hub matches what its agent did, each counted once. A disagreement prints the hub's history and
// the device's log (connections, packets, agent steps) of each device concerned.

import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import t from 'tap'
import type { App } from '../broker/app.js'
import { connectDevice, type DeviceClient, type OtaAgent, type OtaFailure, startOtaAgent } from '../sdk/index.js'
import { ADMIN_TOKEN, serviceOpts, sleep, startTestApp, waitFor } from './helpers/app.js'
import { freePort, startRedis } from './helpers/redis.js'

const DEVICES = 200
const WAVE = 20
/** One device in ten fails; the way rotates from one block of ten to the next. */
const FAILING: OtaFailure[] = ['bad_hash', 'crash_after_reboot', 'bad_signature', 'no_confirm']
const MODEL = 'acme.air'
// well beyond the broker restart (a few seconds on a loaded machine): a device cannot confirm while
// no broker runs, and the hub's deadline keeps running
const CONFIRM_WITHIN_MS = 10_000
const FAILURE_LIMIT = 6
const HEALTH_CHECK_MS = 1000
const IMAGE = randomBytes(64 * 1024)

// biome-ignore lint/suspicious/noExplicitAny: the test reads whatever JSON the API and the events carry
type Json = Record<string, any>

/** What each simulated device is set up to do. */
function modeOf(i: number): OtaFailure | 'ok' {
  if (i % 10 === 3) return FAILING[Math.floor(i / 10) % FAILING.length] as OtaFailure
  if (i % 25 === 7) return 'power_loss' // recovers: not a failure
  return 'ok'
}

/** The hub's execution state and error a device's mode should end in. */
const EXPECTED: Record<OtaFailure | 'ok', { state: string; error?: string; version: string }> = {
  ok: { state: 'succeeded', version: '2.0.0' },
  power_loss: { state: 'succeeded', version: '2.0.0' },
  bad_hash: { state: 'failed', error: 'hash_mismatch', version: '1.0.0' },
  bad_signature: { state: 'failed', error: 'bad_signature', version: '1.0.0' },
  crash_after_reboot: { state: 'rolled_back', version: '1.0.0' },
  no_confirm: { state: 'rolled_back', version: '1.0.0' },
}

interface SimDevice {
  id: string
  mode: OtaFailure | 'ok'
  dev: DeviceClient
  agent: OtaAgent
  log: string[]
}

t.test('a staged rollout over 200 devices: waves, a halt, rollbacks and a broker restart', async (t) => {
  const redis = await startRedis()
  const work = mkdtempSync(path.join(tmpdir(), 'fh-ota-e2e-'))
  const signingKey = path.join(work, 'signing.pem')
  writeFileSync(
    signingKey,
    generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
  )
  // fixed ports, so the restarted broker is where the devices (and their download URLs) point
  const env = {
    FLEETHUB_MQTT_PORT: String(await freePort()),
    FLEETHUB_HTTP_PORT: String(await freePort()),
    FLEETHUB_REDIS_URL: redis.url,
    FLEETHUB_REDIS_PREFIX: 'e2e',
    FLEETHUB_NODE_ID: 'e2e-node',
    FLEETHUB_OTA_SIGNING_KEY: signingKey,
    FLEETHUB_OTA_DIR: path.join(work, 'packages'),
    FLEETHUB_OTA_TICK_MS: '50',
  }
  const url = `mqtt://127.0.0.1:${env.FLEETHUB_MQTT_PORT}`
  const sims: SimDevice[] = []
  const nodes: App[] = []
  let svc: mqtt.MqttClient | undefined
  // one teardown, in the order things depend on each other
  const noTeardown = { teardown() {} }
  t.teardown(async () => {
    await Promise.all(sims.map((s) => s.agent.stop()))
    await Promise.all(sims.map((s) => s.dev.end(true)))
    await svc?.endAsync(true)
    for (const n of nodes) await n.close()
    await redis.stop()
    rmSync(work, { recursive: true, force: true })
  })
  const start = async () => {
    const app = await startTestApp(noTeardown, env)
    nodes.push(app)
    return app
  }
  let app = await start()
  const call = async (method: string, route: string, payload?: object | Buffer, headers: Json = {}) => {
    const r = await app.http.inject({
      method: method as 'GET',
      url: route,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
      ...(payload ? { payload } : {}),
    })
    return { status: r.statusCode, body: (r.body ? r.json() : {}) as Json }
  }

  // a service watching the job's events through the restart: a persistent session, so the events
  // published while it reconnects wait for it in Redis
  const events: Json[] = []
  svc = await mqtt.connectAsync(url, {
    ...serviceOpts('e2e-watch'),
    clean: false,
    reconnectPeriod: 100,
    protocolVersion: 4,
  })
  svc.on('error', () => {})
  svc.on('message', (_topic, payload) => events.push(JSON.parse(payload.toString())))
  await svc.subscribeAsync('$fleet/jobs/+/events', { qos: 1 })

  // ---- the operator: a package, uploaded and signed by the hub ----
  const created = await call('POST', '/packages', { name: 'air-fw', version: '2.0.0', models: [MODEL] })
  t.equal(created.status, 201, 'the package is registered')
  const uploaded = await call('PUT', `/packages/${created.body.id}/file`, IMAGE, {
    'content-type': 'application/octet-stream',
  })
  t.match(uploaded.body, { state: 'ready', size: IMAGE.length }, 'the file is uploaded, hashed and signed')
  const { publicKey } = (await call('GET', '/ota/signing-key')).body
  t.type(publicKey, 'string', 'devices are flashed with the hub’s public key')

  // ---- 200 devices with the agent ----
  const ids = Array.from({ length: DEVICES }, (_, i) => `e2e-${String(i).padStart(3, '0')}`)
  const keys = new Map<string, string>()
  for (const id of ids) {
    keys.set(id, (await app.registry.createDevice({ id, tags: { fleet: 'e2e' }, modelId: MODEL })).keys.primary)
  }
  for (let b = 0; b < DEVICES; b += 25) {
    await Promise.all(
      ids.slice(b, b + 25).map(async (id, k) => {
        const i = b + k
        const mode = modeOf(i)
        const key = keys.get(id) as string
        const dev = await connectDevice({ url, deviceId: id, key, reconnectPeriodMs: 300, onError: () => {} })
        const log: string[] = []
        dev.mqtt.on('connect', () => log.push(`connected at ${new Date().toISOString()}`))
        dev.mqtt.on('close', () => log.push(`closed at ${new Date().toISOString()}`))
        dev.mqtt.on('packetreceive', (p) => {
          if (p.cmd === 'publish' || p.cmd === 'suback') log.push(`${p.cmd} at ${new Date().toISOString()}`)
        })
        dev.mqtt.on('packetsend', (p) => {
          if (p.cmd === 'subscribe') log.push(`subscribe at ${new Date().toISOString()}`)
        })
        const agent = await startOtaAgent(dev, {
          dir: path.join(work, 'devices', id),
          publicKey,
          model: MODEL,
          rebootMs: 30,
          retryDelayMs: 100,
          downloadRetries: 10,
          progressStep: 50,
          // a health check that takes a while, so a wave is in flight for a while
          healthCheck: () => sleep(HEALTH_CHECK_MS).then(() => true),
          ...(mode === 'ok' ? {} : { fail: mode }),
          log: (m) => log.push(m),
        })
        sims[i] = { id, mode, dev, agent, log }
      }),
    )
  }
  const failing = sims.filter((s) => EXPECTED[s.mode].state !== 'succeeded').map((s) => s.id)
  t.equal(failing.length, DEVICES / 10, '10 % of the devices will fail')

  // ---- a staged job, approved by another operator ----
  const job = await call(
    'POST',
    '/jobs',
    {
      packageId: created.body.id,
      target: { deviceIds: ids },
      requireApproval: true,
      rollout: {
        waveSize: WAVE,
        successThreshold: 0.8,
        failureThreshold: FAILURE_LIMIT,
        confirmWithinMs: CONFIRM_WITHIN_MS,
        deviceTimeoutMs: 45_000,
      },
    },
    { 'x-fleethub-operator': 'alice' },
  )
  t.equal(job.status, 201, 'the job is created')
  const jobId = job.body.id as string
  t.equal(job.body.state, 'awaiting_approval', 'and waits for approval')
  const approved = await call('POST', `/jobs/${jobId}/approve`, undefined, { 'x-fleethub-operator': 'bob' })
  t.equal(approved.status, 200, 'another operator approves it')

  const jobNow = async () => (await call('GET', `/jobs/${jobId}`)).body

  // ---- the broker restarts in the middle ----
  const mid = await waitFor(
    'wave 2 under way',
    async () => {
      const j = await jobNow()
      const { pending = 0, notified = 0, rebooting = 0 } = j.totals
      const wave2Notified = pending === DEVICES - 2 * WAVE && notified === 0
      return j.wave === 2 && wave2Notified && rebooting >= 5 && j.state === 'running' ? j : undefined
    },
    15_000,
  )
  t.comment(`restarting the broker at wave ${mid.wave}: ${JSON.stringify(mid.totals)}`)
  const t0 = new Date().toISOString()
  await app.close()
  const t1 = new Date().toISOString()
  await sleep(300)
  app = await start()
  t.comment(`closing at ${t0}, closed at ${t1}, started again at ${new Date().toISOString()}`)
  t.pass('the broker is back on the same ports and Redis')

  // ---- the halt ----
  const halted = await waitFor(
    'the job halts',
    async () => {
      const j = await jobNow()
      return j.state === 'halted' ? j : undefined
    },
    30_000,
  )
  t.match(halted.halt, { threshold: 'failure', limit: FAILURE_LIMIT }, 'halted by the failure threshold')
  t.ok(halted.halt.failures >= FAILURE_LIMIT, `with ${halted.halt.failures} failures`)
  t.ok(
    halted.halt.devices.every((d: string) => failing.includes(d)),
    'the devices it names are failing ones',
  ) || t.comment(JSON.stringify(halted.halt))
  t.ok(halted.wave >= 3 && halted.wave < DEVICES / WAVE, `after wave ${halted.wave} of ${halted.waves}`)

  // devices in flight at the halt finish (the no_confirm ones are told to roll back)
  let unfinished: Json[] = []
  const execs = await waitFor(
    'every notified device done',
    async () => {
      const page = (await call('GET', `/jobs/${jobId}/devices?limit=1000`)).body.items as Json[]
      unfinished = page.filter(
        (e) =>
          !['pending', 'succeeded', 'failed', 'rolled_back'].includes(e.state) ||
          (e.rollback && e.state !== 'rolled_back'),
      )
      return page.length === DEVICES && unfinished.length === 0 ? page : undefined
    },
    20_000,
  ).catch((err: Error) => {
    for (const e of unfinished) {
      const s = sims.find((x) => x.id === e.deviceId) as SimDevice
      t.comment(`${e.deviceId} (${s.mode}) hub: ${JSON.stringify(e)}`)
      t.comment(`  agent: ${JSON.stringify(s.agent.state())}`)
      t.comment(`  log: ${s.log.join(' | ')}`)
    }
    throw err
  })
  const final = await jobNow()
  const counted = Object.values(final.totals as Record<string, number>).reduce((a, b) => a + b, 0)
  t.equal(counted, DEVICES, 'the totals count every device once')

  // ---- wave by wave ----
  await waitFor('the halted event', () => events.some((e) => e.jobId === jobId && e.event === 'halted'))
  const waves = events.filter((e) => e.jobId === jobId && e.event === 'wave_started').map((e) => e.wave)
  t.same(
    waves,
    Array.from({ length: halted.wave }, (_, i) => i + 1),
    'each wave started once, in order, through the restart',
  )
  const byOrdinal = new Map(execs.map((e) => [e.deviceId as string, e]))
  const lastWave = halted.wave as number
  const later = execs.filter((e) => e.ordinal >= lastWave * WAVE)
  t.ok(
    later.length > 0 && later.every((e) => e.state === 'pending'),
    `the ${later.length} devices of the waves after the halt were never notified`,
  )

  // ---- nothing lost: the hub and every device agree ----
  await Promise.all(sims.map((s) => s.agent.idle()))
  const disagreements: string[] = []
  for (const s of sims) {
    const e = byOrdinal.get(s.id) as Json
    const last = s.agent.state().last
    if (e.state === 'pending') {
      if (last !== undefined || s.agent.state().job)
        disagreements.push(`${s.id}: pending at the hub, busy on the device`)
      if (s.agent.version() !== '1.0.0') disagreements.push(`${s.id}: pending but runs ${s.agent.version()}`)
      continue
    }
    const want = EXPECTED[s.mode]
    if (e.state !== want.state) disagreements.push(`${s.id} (${s.mode}): ${e.state}, expected ${want.state}`)
    if (want.error && e.error !== want.error) disagreements.push(`${s.id}: error ${e.error}, expected ${want.error}`)
    if (last?.jobId !== jobId || last.state !== e.state || !last.sent) {
      disagreements.push(`${s.id}: the device ended ${JSON.stringify(last)}, the hub ${e.state}`)
    }
    if (s.agent.version() !== want.version) disagreements.push(`${s.id}: runs ${s.agent.version()}`)
  }
  t.same(disagreements, [], 'every execution at the hub is what its device did')
  for (const id of new Set(disagreements.map((d) => d.split(/[ :]/)[0] as string))) {
    const s = sims.find((x) => x.id === id) as SimDevice
    t.comment(`${id}: hub ${JSON.stringify(byOrdinal.get(id))}`)
    t.comment(`${id}: device ${s.log.join(' | ')}`)
  }

  const notified = sims.filter((s) => byOrdinal.get(s.id)?.state !== 'pending')
  const seen = (mode: string) => notified.filter((s) => s.mode === mode)
  for (const mode of [...FAILING, 'power_loss']) t.ok(seen(mode).length > 0, `${mode} devices were in the rollout`)
  for (const s of seen('no_confirm')) {
    const states = (byOrdinal.get(s.id) as Json).history.map((h: Json) => h.error ?? h.state)
    t.ok(
      states.includes('confirmation_timeout') && states.at(-1) === 'rolled_back',
      `${s.id}: no confirmation in time, told to roll back, rolled back`,
    )
  }
  for (const s of seen('crash_after_reboot')) {
    t.ok(
      s.log.some((l) => /failed its health check/.test(l)),
      `${s.id}: rolled back by itself after its health check`,
    )
  }
  for (const s of seen('power_loss')) {
    t.ok(
      s.log.some((l) => /power lost/.test(l)) && s.log.some((l) => /resuming the download/.test(l)),
      `${s.id}: lost power, resumed, succeeded`,
    )
  }

  // ---- the twins show what runs ----
  const twinOf = async (id: string) => (await call('GET', `/devices/${id}/twin`)).body.reported.firmware as Json
  for (const s of [...seen('ok').slice(0, 3), ...seen('crash_after_reboot'), ...seen('no_confirm')]) {
    t.match(
      await twinOf(s.id),
      { version: EXPECTED[s.mode].version, jobId },
      `${s.id}: the twin says ${EXPECTED[s.mode].version}`,
    )
  }
  t.comment(`final totals: ${JSON.stringify(final.totals)}`)
})
