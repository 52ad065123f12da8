// The scenario on 200 devices: a staged job in which 10 % of the devices fail in different
// ways (a bad hash, no confirmation after the reboot, success without confirming, silence) advances
// wave by wave, halts when the failure threshold is crossed, and the failed devices roll back.
import t from 'tap'
import { startTestApp, waitFor } from './helpers/app.js'
import {
  api,
  type Device,
  devices,
  hostedPackage,
  type Json,
  jobReaches,
  type Mode,
  otaEnv,
  watchJobs,
} from './helpers/ota.js'

const FAILING: Mode[] = ['fail', 'noconfirm', 'unconfirmed', 'silent']

t.test('200 devices, 10 % failing in four ways: waves, a halt, rollbacks', async (t) => {
  const app = await startTestApp(t, otaEnv(t))
  const call = api(app)
  const w = await watchJobs(t, app, 'svc-fleet')
  // one device in ten fails, in turn each way
  const modes: Mode[] = Array.from({ length: 200 }, (_, i) =>
    i % 10 === 3 ? (FAILING[((i / 10) % 4) | 0] as Mode) : 'ok',
  )
  const ds = await devices(t, app, 'fleet', modes, { fleet: 'all' })
  const p = await hostedPackage(app, '2.0.0')
  const job = await call('POST', '/jobs', {
    packageId: p.id,
    target: { where: "tags.fleet = 'all'" },
    rollout: {
      waveSize: 20,
      successThreshold: 0.85,
      failureThreshold: 8,
      confirmWithinMs: 2000,
      deviceTimeoutMs: 4000,
      ratePerMinute: 1200,
    },
  })
  t.equal(job.status, 201)
  const halted = await jobReaches(app, job.body.id, 'halted', 30_000)
  t.match(halted.halt, { threshold: 'failure', limit: 8 })
  t.ok(halted.halt.failures >= 8)
  t.ok(halted.halt.devices.length >= 8, 'the failing devices are listed')
  const indexOf = (id: string) => Number(id.slice('fleet-'.length))
  for (const id of halted.halt.devices as string[]) {
    t.not(modes[indexOf(id)], 'ok', `${id} is one that fails`)
  }
  const waves = w
    .events(job.body.id)
    .filter((e) => e.event === 'wave_started')
    .map((e) => e.wave)
  t.same(
    waves,
    Array.from({ length: waves.length }, (_, i) => i + 1),
    'waves started in order',
  )
  t.equal(waves.length, halted.wave, 'every wave announced')
  t.ok(halted.wave >= 3 && halted.wave < 10, `halted in wave ${halted.wave}, before the end`)
  const reached = halted.wave * 20
  // the devices in flight finish: those that did not confirm are rolled back
  const expectedOf = (mode: Mode) =>
    mode === 'ok' ? 'succeeded' : mode === 'fail' ? 'failed' : mode === 'silent' ? 'timed_out' : 'rolled_back'
  const settled = (list: Json[]) =>
    list.every((e) => e.state === 'pending' || e.state === expectedOf(modes[indexOf(e.deviceId)] as Mode))
  const list = await waitFor(
    'every notified device in its final state',
    async () => {
      const items = (await call('GET', `/jobs/${job.body.id}/devices?limit=1000`)).body.items as Json[]
      return settled(items) ? items : undefined
    },
    10_000,
  ).catch(async () => (await call('GET', `/jobs/${job.body.id}/devices?limit=1000`)).body.items as Json[])
  t.equal(list.length, 200)
  for (const e of list) {
    const i = indexOf(e.deviceId)
    const mode = modes[i] as Mode
    // the halted wave may not have been notified whole (the rate limit spreads its notifications)
    const unsent = e.ordinal >= reached || (e.ordinal >= reached - 20 && e.state === 'pending')
    if (unsent) {
      t.equal(e.state, 'pending', `${e.deviceId} in a later wave was never notified`)
      t.equal((ds[i] as Device).got.length, 0)
      continue
    }
    t.equal(e.state, expectedOf(mode), `${e.deviceId} (${mode}) ${expectedOf(mode)}`)
  }
  const final = await call('GET', `/jobs/${job.body.id}`)
  t.equal(final.body.state, 'halted')
  t.ok(final.body.totals.pending >= 200 - reached, 'the later waves stay pending')
})
