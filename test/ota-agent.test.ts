// The reference OTA agent on a real FleetHub broker over real sockets, downloading from a real HTTP
// server: the test publishes `ota/notify` as the hub does and watches the device's `ota/status`
// reports. Every path: a good install, each verification failure, each injected failure, rollback
// (to the previous slot, to the golden image), cancel, a second job, and restarts that resume from
// state.json (a cut download, a reboot that never came back, an outcome never acknowledged).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import {
  connectDevice,
  type DeviceClient,
  type OtaAgent,
  type OtaAgentOptions,
  type OtaNotice,
  runSampleDevice,
  startOtaAgent,
} from '../sdk/index.js'
import { ADMIN_TOKEN, type Closer, createDevice, mqttUrl, sleep, startTestApp, waitFor } from './helpers/app.js'
import { fileServer, installNotice, makePackage, signingKey, watchStatus } from './helpers/ota-agent.js'
import { freePort } from './helpers/redis.js'

const key = signingKey()
const MODEL = 'acme.air'
const pkg2 = makePackage(key, '2.0.0', { size: 96 * 1024, models: [MODEL] })
const pkg3 = makePackage(key, '3.0.0', { size: 32 * 1024 })
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
const FULL = ['downloading', 'downloaded', 'verified', 'installing', 'rebooting', 'confirming', 'succeeded']

t.test('the OTA agent', async (t) => {
  const app = await startTestApp(t)
  const statuses = await watchStatus(app, t)
  const files: Record<string, Buffer> = { '/fw/2': pkg2.image, '/fw/3': pkg3.image }
  const srv = await fileServer(t, files)
  const slow = await fileServer(t, files, { chunk: 4096, delayMs: 15 })

  function tempDir(t: Closer): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'fh-ota-agent-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  const notify = (id: string, n: OtaNotice | object) =>
    app.broker.publish(`$iot/${id}/ota/notify`, JSON.stringify(n), { qos: 1 })

  interface Device {
    id: string
    dev: DeviceClient
    agent: OtaAgent
    dir: string
    connects: () => number
  }

  async function connect(t: Closer, id: string, key2: string) {
    const dev = await connectDevice({ url: mqttUrl(app), deviceId: id, key: key2 })
    t.teardown(() => dev.end(true))
    let connects = 0
    dev.mqtt.on('connect', () => connects++)
    return { dev, connects: () => connects }
  }

  const base = (dir: string): OtaAgentOptions => ({
    dir,
    publicKey: key.publicKey,
    model: MODEL,
    retryDelayMs: 10,
    rebootMs: 50,
  })

  async function device(t: Closer, id: string, opts: Partial<OtaAgentOptions> = {}, dir = tempDir(t)): Promise<Device> {
    const keys = await createDevice(app, id)
    const { dev, connects } = await connect(t, id, keys.primary)
    const agent = await startOtaAgent(dev, { ...base(dir), ...opts })
    t.teardown(() => agent.stop())
    return { id, dev, agent, dir, connects }
  }

  const slotFile = (d: Device, s: 'a' | 'b') => readFileSync(path.join(d.dir, 'slots', s))
  const exists = (file: string) => {
    try {
      readFileSync(file)
      return true
    } catch {
      return false
    }
  }

  t.test('a good package: every state in order, then the new slot runs', async (t) => {
    const checked: unknown[] = []
    const d = await device(t, 'ota-good', {
      healthCheck: (info) => {
        checked.push(info)
        return true
      },
    })
    t.equal(d.agent.version(), '1.0.0', 'a new device runs its factory image')
    t.match(d.agent.state(), { active: 'a', previous: null, versions: { a: '1.0.0', b: null }, golden: '1.0.0' })
    await notify(d.id, installNotice('job-good', pkg2, srv.url('/fw/2')))
    const done = await statuses.next(d.id, 'succeeded')
    t.same(done, { jobId: 'job-good', state: 'succeeded', version: '2.0.0' }, 'succeeded with the version')
    t.same(statuses.states(d.id), FULL, 'the states in the spec order')
    const reports = statuses.of(d.id)
    t.match(
      reports.find((s) => s.state === 'confirming'),
      { version: '2.0.0' },
      'confirming names the new version',
    )
    const progress = reports.filter((s) => s.state === 'downloading').map((s) => s.progress as number)
    t.equal(progress[0], 0, 'progress starts at 0')
    t.equal(progress.at(-1), 100, 'and ends at 100')
    t.ok(
      progress.every((p, i) => i === 0 || p > (progress[i - 1] as number)),
      'in steps that only grow',
    )
    t.ok(
      reports.every((s) => s.jobId === 'job-good'),
      'every report names the job',
    )
    t.same(checked, [{ jobId: 'job-good', version: '2.0.0' }], 'the health check ran once, on the new version')
    await d.agent.idle()
    t.equal(d.agent.version(), '2.0.0')
    t.match(d.agent.state(), { active: 'b', previous: 'a', versions: { a: '1.0.0', b: '2.0.0' } })
    t.notOk('pending' in d.agent.state() || 'job' in d.agent.state(), 'nothing left in progress')
    t.same(slotFile(d, 'b'), pkg2.image, 'slot b holds the image')
    t.notOk(exists(path.join(d.dir, 'download.part')), 'the download is gone')
    t.same(
      JSON.parse(readFileSync(path.join(d.dir, 'state.json'), 'utf8')),
      d.agent.state(),
      'state.json is what the agent holds',
    )
    t.equal(d.connects(), 1, 'the simulated reboot dropped the connection and connected again')

    const before = statuses.of(d.id).length
    await notify(d.id, installNotice('job-good', pkg2, srv.url('/fw/2')))
    await sleep(100)
    await d.agent.idle()
    t.equal(statuses.of(d.id).length, before, 'a repeated notice for a reported job changes nothing')

    await notify(d.id, installNotice('job-again', pkg2, srv.url('/fw/2')))
    t.same(
      [await statuses.next(d.id, 'confirming'), await statuses.next(d.id, 'succeeded')].map((s) => s.state),
      ['confirming', 'succeeded'],
      'the version it runs already: confirmed at once',
    )
    t.equal(d.connects(), 1, 'without a reboot')
  })

  t.test('a failed check reports its code and leaves the running slot alone', async (t) => {
    const other = signingKey()
    const forged = makePackage(other, '2.0.0', { image: pkg2.image, models: [MODEL] })
    const forWater = makePackage(key, '2.0.0', { image: pkg2.image, models: ['acme.water'] })
    files['/fw/tampered'] = Buffer.concat([pkg2.image.subarray(0, -1), Buffer.from([0])])
    files['/fw/long'] = Buffer.concat([pkg2.image, Buffer.from('extra')])
    const good = (jobId: string, url = srv.url('/fw/2')) => ({ ...installNotice(jobId, pkg2, url) })
    const cases: [string, Record<string, unknown>, string][] = [
      ['a manifest signed with another key', { ...installNotice('c1', forged, srv.url('/fw/2')) }, 'bad_signature'],
      ['a notice whose hash is not the manifest’s', { ...good('c2'), sha256: 'f'.repeat(64) }, 'manifest_mismatch'],
      ['a notice whose size is not the manifest’s', { ...good('c3'), size: 5 }, 'manifest_mismatch'],
      ['a package for another model', { ...installNotice('c4', forWater, srv.url('/fw/2')) }, 'incompatible'],
      ['a tampered file', good('c5', srv.url('/fw/tampered')), 'hash_mismatch'],
      ['a file longer than the manifest says', good('c6', srv.url('/fw/long')), 'size_mismatch'],
      ['a file that is not there', good('c7', srv.url('/fw/none')), 'download_failed'],
      ['a notice without a URL', { ...good('c8'), url: undefined }, 'bad_notice'],
    ]
    const errors: string[] = []
    const d = await device(t, 'ota-checks', { onError: (e) => errors.push(e.message) })
    for (const [what, notice, code] of cases) {
      await notify(d.id, notice)
      const failed = await statuses.next(d.id, 'failed')
      t.same(failed, { jobId: notice.jobId, state: 'failed', error: code }, `${what}: failed with ${code}`)
      await d.agent.idle()
      t.match(d.agent.state(), { active: 'a', versions: { a: '1.0.0', b: null } }, `${what}: slot a still runs`)
      t.notOk(exists(path.join(d.dir, 'download.part')), `${what}: no download left`)
    }
    t.notOk(
      statuses.of(d.id).some((s) => ['installing', 'rebooting', 'succeeded'].includes(s.state)),
      'nothing was ever installed',
    )
    t.same(
      statuses
        .of(d.id)
        .filter((s) => s.jobId === 'c5')
        .map((s) => s.state)
        .filter((s) => s !== 'downloading'),
      ['downloaded', 'failed'],
      'the hash is checked after downloaded, before verified',
    )
    t.match(errors, [/url must be an http\(s\) URL/], 'the unreadable notice went to onError')
    t.equal(d.connects(), 0, 'and the device never rebooted')

    await notify(d.id, { action: 'install' })
    await app.broker.publish(`$iot/${d.id}/ota/notify`, 'not json at all', { qos: 1 })
    await sleep(100)
    t.equal(errors.length, 3, 'notices without a job id are refused without a report')
    t.ok(d.dev.mqtt.connected, 'and the device carries on')
  })

  t.test('injected: bad_hash and bad_signature fail the real checks', async (t) => {
    for (const [fail, code] of [
      ['bad_hash', 'hash_mismatch'],
      ['bad_signature', 'bad_signature'],
    ] as const) {
      const d = await device(t, `ota-${fail}`, { fail })
      await notify(d.id, installNotice(`j-${fail}`, pkg2, srv.url('/fw/2')))
      t.same(await statuses.next(d.id, 'failed'), { jobId: `j-${fail}`, state: 'failed', error: code }, fail)
      await d.agent.idle()
      t.equal(d.agent.version(), '1.0.0', `${fail}: still on 1.0.0`)
    }
  })

  t.test('a failed health check goes back to the previous slot', async (t) => {
    for (const [what, opts] of [
      ['injected crash_after_reboot', { fail: 'crash_after_reboot' }],
      ['a health check that answers false', { healthCheck: () => false }],
      ['a health check that throws', { healthCheck: () => Promise.reject(new Error('sensor dead')) }],
    ] as [string, Partial<OtaAgentOptions>][]) {
      const id = `ota-crash-${what.split(' ').at(-1)}`
      const d = await device(t, id, opts)
      await notify(d.id, installNotice('j-crash', pkg2, srv.url('/fw/2')))
      const back = await statuses.next(d.id, 'rolled_back')
      t.same(back, { jobId: 'j-crash', state: 'rolled_back', version: '1.0.0', error: 'health_check_failed' }, what)
      t.same(statuses.states(d.id), [...FULL.slice(0, 5), 'rolled_back'], `${what}: no confirming`)
      await d.agent.idle()
      t.match(d.agent.state(), { active: 'a', previous: null }, `${what}: slot a runs again`)
      t.equal(d.connects(), 2, `${what}: rebooted into the new slot and back`)
    }
  })

  t.test('no_confirm holds at confirming until the hub says roll back', async (t) => {
    const d = await device(t, 'ota-noconfirm', { fail: 'no_confirm' })
    await notify(d.id, installNotice('j-nc', pkg2, srv.url('/fw/2')))
    await statuses.next(d.id, 'confirming')
    await sleep(200)
    await d.agent.idle()
    t.equal(statuses.of(d.id).at(-1)?.state, 'confirming', 'no succeeded')
    t.match(d.agent.state(), { active: 'b', pending: { jobId: 'j-nc', stage: 'booted', confirming: true } })
    await notify(d.id, { jobId: 'j-nc', action: 'rollback', reason: 'confirmation_timeout' })
    t.same(await statuses.next(d.id, 'rolled_back'), { jobId: 'j-nc', state: 'rolled_back', version: '1.0.0' })
    await d.agent.idle()
    t.match(d.agent.state(), { active: 'a', previous: null, last: { state: 'rolled_back', sent: true } })
    const n = statuses.of(d.id).length
    await notify(d.id, { jobId: 'j-nc', action: 'rollback' })
    await sleep(100)
    await d.agent.idle()
    t.equal(statuses.of(d.id).length, n, 'a repeated rollback is already answered')
    t.equal(d.connects(), 2)
  })

  t.test('a rollback after success goes to the previous slot, or to golden when that is gone', async (t) => {
    const d = await device(t, 'ota-rollback')
    await notify(d.id, installNotice('r1', pkg2, srv.url('/fw/2')))
    await statuses.next(d.id, 'succeeded')
    await notify(d.id, { jobId: 'r1', action: 'rollback', reason: 'unconfirmed' })
    t.same(await statuses.next(d.id, 'rolled_back'), { jobId: 'r1', state: 'rolled_back', version: '1.0.0' })
    await d.agent.idle()
    t.match(d.agent.state(), { active: 'a', previous: null })

    await notify(d.id, installNotice('r2', pkg2, srv.url('/fw/2')))
    await statuses.next(d.id, 'succeeded')
    await notify(d.id, installNotice('r3', pkg3, srv.url('/fw/3')))
    await statuses.next(d.id, 'succeeded')
    await d.agent.idle()
    t.match(d.agent.state(), { active: 'a', previous: 'b', versions: { a: '3.0.0', b: '2.0.0' } }, '2 then 3')
    writeFileSync(path.join(d.dir, 'slots', 'b'), 'bit rot')
    await notify(d.id, { jobId: 'r3', action: 'rollback' })
    t.same(
      await statuses.next(d.id, 'rolled_back'),
      { jobId: 'r3', state: 'rolled_back', version: '1.0.0' },
      'slot b no longer matches its hash: the golden image runs',
    )
    await d.agent.idle()
    t.match(d.agent.state(), { active: 'b', versions: { b: '1.0.0' } })
    t.same(slotFile(d, 'b'), readFileSync(path.join(d.dir, 'golden')), 'restored from golden')

    await notify(d.id, { jobId: 'never-heard-of', action: 'rollback' })
    t.same(
      await statuses.next(d.id, 'rolled_back'),
      { jobId: 'never-heard-of', state: 'rolled_back', version: '1.0.0' },
      'a rollback for a job it never installed: it runs its last good image already',
    )
  })

  t.test('cancel and rollback stop a download; a second job meanwhile is refused as busy', async (t) => {
    const d = await device(t, 'ota-cancel')
    await notify(d.id, installNotice('k1', pkg2, slow.url('/fw/2')))
    await statuses.next(d.id, 'downloading')
    await notify(d.id, installNotice('k2', pkg3, srv.url('/fw/3')))
    t.same(await statuses.next(d.id, 'failed'), { jobId: 'k2', state: 'failed', error: 'busy' }, 'busy')
    await notify(d.id, { jobId: 'k1', action: 'cancel' })
    await sleep(100)
    await d.agent.idle()
    t.notOk('job' in d.agent.state(), 'the cancelled job is forgotten')
    t.notOk(exists(path.join(d.dir, 'download.part')), 'with its download')
    t.notOk(
      statuses.of(d.id).some((s) => s.jobId === 'k1' && s.state !== 'downloading'),
      'a cancel is not reported',
    )

    await notify(d.id, installNotice('k3', pkg2, slow.url('/fw/2')))
    await statuses.next(d.id, 'downloading')
    await notify(d.id, { jobId: 'k3', action: 'rollback' })
    t.same(await statuses.next(d.id, 'rolled_back'), { jobId: 'k3', state: 'rolled_back', version: '1.0.0' })
    await d.agent.idle()
    t.notOk('job' in d.agent.state(), 'the download stopped')
    t.equal(d.agent.version(), '1.0.0')

    await notify(d.id, installNotice('k4', pkg3, srv.url('/fw/3')))
    await statuses.next(d.id, 'succeeded')
    t.pass('the next job runs')
  })

  t.test('power_loss: the download stops halfway, the device restarts and resumes it', async (t) => {
    const d = await device(t, 'ota-power', { fail: 'power_loss' })
    const before = srv.requests.length
    await notify(d.id, installNotice('p1', pkg2, srv.url('/fw/2')))
    await statuses.next(d.id, 'succeeded')
    const mine = srv.requests.slice(before).filter((r) => r.path === '/fw/2')
    t.same(
      mine.map((r) => r.range),
      [undefined, `bytes=${pkg2.image.length / 2}-`],
      'the second request asked for the second half',
    )
    const progress = statuses
      .of(d.id)
      .filter((s) => s.state === 'downloading')
      .map((s) => s.progress)
    t.ok(progress.includes(50), 'the resumed download reported where it started again: 50 %')
    t.equal(d.connects(), 2, 'the power cut and the install each restarted the device')
    t.same(slotFile(d, 'b'), pkg2.image)
  })

  t.test('a reboot while the broker is away waits for it; a failing reboot hook is reported', async (t) => {
    // the device reaches the broker through a TCP relay the test can take away and bring back
    const port = await freePort()
    const sockets = new Set<net.Socket>()
    const relay = () => {
      const server = net.createServer((inbound) => {
        const outbound = net.connect(app.ports.mqtt, '127.0.0.1')
        for (const s of [inbound, outbound]) {
          sockets.add(s)
          s.on('close', () => sockets.delete(s))
          s.on('error', () => {})
        }
        inbound.pipe(outbound).pipe(inbound)
      })
      return new Promise<net.Server>((r) => server.listen(port, '127.0.0.1', () => r(server)))
    }
    let current = await relay()
    t.teardown(() => {
      for (const s of sockets) s.destroy()
      current.close()
    })
    const keys = await createDevice(app, 'ota-away')
    const dev = await connectDevice({
      url: `mqtt://127.0.0.1:${port}`,
      deviceId: 'ota-away',
      key: keys.primary,
      reconnectPeriodMs: 50,
      onError: () => {},
    })
    t.teardown(() => dev.end(true))
    const errors: string[] = []
    // down for 300 ms: the relay is gone by then, and comes back after several refused attempts
    const agent = await startOtaAgent(dev, {
      ...base(tempDir(t)),
      rebootMs: 300,
      onError: (e) => errors.push(e.message),
    })
    t.teardown(() => agent.stop())
    let refusedAttempts = 0
    dev.mqtt.on('error', () => refusedAttempts++)
    await notify('ota-away', installNotice('aw', pkg2, srv.url('/fw/2')))
    await statuses.next('ota-away', 'rebooting')
    current.close() // no new connections; the device's own ends with its reboot
    await sleep(800)
    current = await relay()
    t.same(await statuses.next('ota-away', 'succeeded'), { jobId: 'aw', state: 'succeeded', version: '2.0.0' })
    t.ok(refusedAttempts > 0, `the reboot outlived ${refusedAttempts} refused connection attempts`)
    t.same(errors, [], 'and was not an error')

    const d = await device(t, 'ota-reboot-throws', {
      reboot: () => Promise.reject(new Error('watchdog fired')),
      onError: (e) => errors.push(e.message),
    })
    await notify(d.id, installNotice('rt', pkg2, srv.url('/fw/2')))
    t.same(await statuses.next(d.id, 'succeeded'), { jobId: 'rt', state: 'succeeded', version: '2.0.0' })
    t.same(errors, ['the reboot failed: watchdog fired'], 'a reboot hook that throws is reported, and the boot goes on')
  })

  t.test('restarts resume from state.json', async (t) => {
    await t.test('a download cut by a power loss resumes in the next process', async (t) => {
      const dir = tempDir(t)
      const keys = await createDevice(app, 'ota-restart-dl')
      const first = await connect(t, 'ota-restart-dl', keys.primary)
      let lost = () => {}
      const powerLost = new Promise<void>((r) => {
        lost = r
      })
      const agent1 = await startOtaAgent(first.dev, { ...base(dir), fail: 'power_loss', onPowerLoss: lost })
      const before = srv.requests.length
      await notify('ota-restart-dl', installNotice('rd', pkg2, srv.url('/fw/2')))
      await powerLost
      await agent1.stop()
      await first.dev.end(true)
      const saved = JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8'))
      t.match(saved, { job: { jobId: 'rd', powerLost: true } }, 'state.json remembers the job')
      t.equal(readFileSync(path.join(dir, 'download.part')).length, pkg2.image.length / 2, 'and half the file is there')

      const second = await connect(t, 'ota-restart-dl', keys.primary)
      const agent2 = await startOtaAgent(second.dev, { ...base(dir), fail: 'power_loss' })
      t.teardown(() => agent2.stop())
      await statuses.next('ota-restart-dl', 'succeeded')
      t.same(
        srv.requests
          .slice(before)
          .filter((r) => r.path === '/fw/2')
          .map((r) => r.range),
        [undefined, `bytes=${pkg2.image.length / 2}-`],
        'the new process asked only for the rest (the power goes once per job)',
      )
      t.equal(agent2.version(), '2.0.0')
    })

    await t.test('a reboot that never came back: the next process confirms the new image', async (t) => {
      const dir = tempDir(t)
      const keys = await createDevice(app, 'ota-restart-boot')
      const first = await connect(t, 'ota-restart-boot', keys.primary)
      let rebooting = () => {}
      const reached = new Promise<void>((r) => {
        rebooting = r
      })
      const agent1 = await startOtaAgent(first.dev, {
        ...base(dir),
        reboot: () => {
          rebooting()
          return new Promise(() => {}) // the process dies during the reboot
        },
      })
      await notify('ota-restart-boot', installNotice('rb', pkg2, srv.url('/fw/2')))
      await reached
      await agent1.stop()
      await first.dev.end(true)
      t.match(JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')), {
        active: 'b',
        pending: { jobId: 'rb', stage: 'rebooting', from: 'a' },
      })
      const second = await connect(t, 'ota-restart-boot', keys.primary)
      const agent2 = await startOtaAgent(second.dev, base(dir))
      t.teardown(() => agent2.stop())
      t.same(await statuses.next('ota-restart-boot', 'succeeded'), {
        jobId: 'rb',
        state: 'succeeded',
        version: '2.0.0',
      })
      t.same(statuses.states('ota-restart-boot'), FULL, 'the job went on from rebooting')
      await agent2.idle()
      t.match(agent2.state(), { active: 'b', previous: 'a' })
    })

    await t.test('an outcome never acknowledged is sent after the restart', async (t) => {
      const dir = tempDir(t)
      const d = await device(t, 'ota-restart-last', {}, dir)
      await d.agent.stop()
      const state = d.agent.state()
      state.last = { jobId: 'rl', state: 'failed', error: 'hash_mismatch', sent: false }
      writeFileSync(path.join(dir, 'state.json'), JSON.stringify(state))
      const agent2 = await startOtaAgent(d.dev, base(dir))
      t.teardown(() => agent2.stop())
      t.same(await statuses.next(d.id, 'failed'), { jobId: 'rl', state: 'failed', error: 'hash_mismatch' })
      await agent2.idle()
      t.match(agent2.state(), { last: { sent: true } })
    })

    await t.test('a state.json that is not one stops the start with its name', async (t) => {
      const dir = tempDir(t)
      writeFileSync(path.join(dir, 'state.json'), '{"v":7}')
      const keys = await createDevice(app, 'ota-bad-state')
      const { dev } = await connect(t, 'ota-bad-state', keys.primary)
      await t.rejects(startOtaAgent(dev, base(dir)), /state\.json is not an OTA state/)
      await t.rejects(startOtaAgent(dev, { ...base(dir), publicKey: 'nope' }), TypeError, 'nor does a bad key')
    })
  })

  t.test('the sample device runs the agent and reports its firmware version', async (t) => {
    const keys = await createDevice(app, 'ota-sample')
    const dir = tempDir(t)
    const stop = new AbortController()
    const lines: string[] = []
    const run = runSampleDevice({
      url: mqttUrl(app),
      deviceId: 'ota-sample',
      key: keys.primary,
      signal: stop.signal,
      log: (l) => lines.push(l),
      ota: { dir, publicKey: key.publicKeyPem, model: MODEL, firmwareVersion: '1.5.0', fail: 'crash_after_reboot' },
    })
    t.teardown(() => stop.abort())
    await waitFor('the agent is running', () => lines.some((l) => /OTA agent: running 1\.5\.0/.test(l)))
    const twin = await waitFor('the firmware report', async () => {
      const r = await app.http.inject({ method: 'GET', url: '/devices/ota-sample/twin', headers: auth })
      return r.json().reported?.firmware ? r.json() : undefined
    })
    t.match(twin, { reported: { firmware: { version: '1.5.0' } } }, 'the twin shows the running version')
    await notify('ota-sample', installNotice('s1', pkg2, srv.url('/fw/2')))
    t.match(await statuses.next('ota-sample', 'rolled_back'), { version: '1.5.0', error: 'health_check_failed' })
    t.ok(existsDir(path.join(dir, 'ota-sample', 'slots')), 'its state is kept under {dir}/{device id}')
    stop.abort()
    await run
    t.ok(
      lines.some((l) => / warn ota-sample: ota: will fail on purpose: crash_after_reboot/.test(l)),
      'it says it will fail',
    )
  })

  function existsDir(p: string): boolean {
    try {
      readFileSync(path.join(p, 'a'))
      return true
    } catch {
      return false
    }
  }
})
