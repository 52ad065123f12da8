// The OTA state machine, rollout arithmetic and manifest signatures (registry/ota.ts), as pure
// functions.
import t from 'tap'
import {
  applyReport,
  buildManifest,
  cancellable,
  checkDeadlines,
  failureLimit,
  generateSigningKey,
  inWindow,
  loadSigningKey,
  type OtaExecution,
  parseReport,
  signManifest,
  successesNeeded,
  verifyManifest,
  waveSizeOf,
} from '../registry/ota.js'
import { execution, otaPackage } from './contract/ota-suite.js'

const job = { version: '2.0.0', rollout: { confirmWithinMs: 1000 } }
const NOW = Date.parse('2026-03-01T12:00:00Z')

function report(e: OtaExecution, state: string, extra: Record<string, unknown> = {}) {
  const p = parseReport({ jobId: e.jobId, state, ...extra })
  if (!p.ok) throw new Error(p.message)
  return applyReport(e, p.report, job, NOW)
}

function walk(states: string[], extra: Record<string, Record<string, unknown>> = {}) {
  let e = execution('j', 'd', 0, { state: 'notified' })
  for (const s of states) {
    const r = report(e, s, extra[s])
    if (!r.ok) throw new Error(`${s}: ${r.message}`)
    e = r.next
  }
  return e
}

t.test('the happy path moves forward through every state', async (t) => {
  const e = walk(
    ['downloading', 'downloading', 'downloaded', 'verified', 'installing', 'rebooting', 'confirming', 'succeeded'],
    { downloading: { progress: 40 }, confirming: { version: '2.0.0' }, succeeded: { version: '2.0.0' } },
  )
  t.equal(e.state, 'succeeded')
  t.equal(e.version, '2.0.0')
  t.equal(e.rev, 9)
  t.same(
    e.history.map((h) => h.state),
    ['pending', 'downloading', 'downloaded', 'verified', 'installing', 'rebooting', 'confirming', 'succeeded'],
    'a repeated downloading adds no history entry',
  )
  t.equal(e.confirmBy, undefined)
})

t.test('skipping forward is allowed; going back or repeating a later state is refused', async (t) => {
  const e = walk(['installing'])
  t.equal(e.state, 'installing')
  t.match(report(e, 'downloading'), { ok: false, reason: 'backwards' })
  t.match(report(e, 'installing'), { ok: false, reason: 'backwards' })
  const pending = execution('j', 'd', 0)
  t.match(report(pending, 'downloading'), { ok: false, reason: 'not_notified' })
})

t.test('rebooting sets the confirmation deadline; missing it fails with a rollback', async (t) => {
  const e = walk(['installing', 'rebooting'])
  t.equal(e.confirmBy, NOW + 1000)
  t.equal(checkDeadlines(e, NOW + 999), undefined)
  const out = checkDeadlines(e, NOW + 1000)
  t.equal(out?.send, 'rollback')
  t.match(out?.next, { state: 'failed', error: 'confirmation_timeout', rollback: { reason: 'confirmation_timeout' } })
  const back = report(out?.next as OtaExecution, 'rolled_back', { version: '1.0.0' })
  t.match(back, { ok: true, next: { state: 'rolled_back', version: '1.0.0' } })
})

t.test('succeeded without confirming, or with another version, is a failure with a rollback', async (t) => {
  const r = report(walk(['installing', 'rebooting']), 'succeeded', { version: '2.0.0' })
  t.match(r, { ok: true, rollback: true, next: { state: 'failed', error: 'unconfirmed' } })
  const wrong = report(walk(['confirming'], { confirming: { version: '2.0.0' } }), 'succeeded', { version: '9' })
  t.match(wrong, { ok: true, rollback: true, next: { state: 'failed', error: 'unconfirmed' } })
  const old = report(walk(['rebooting']), 'confirming', { version: '1.0.0' })
  t.match(old, { ok: true, rollback: true, next: { state: 'failed', error: 'wrong_version' } })
})

t.test('final executions refuse reports, except a rollback after a failure', async (t) => {
  const ok = walk(['confirming', 'succeeded'], { confirming: { version: '2.0.0' }, succeeded: { version: '2.0.0' } })
  t.match(report(ok, 'failed', { error: 'install_failed' }), { ok: false, reason: 'finished' })
  t.match(report(ok, 'rolled_back'), { ok: false, reason: 'finished' })
  const failed = walk(['failed'], { failed: { error: 'hash_mismatch' } })
  t.match(failed, { state: 'failed', error: 'hash_mismatch' })
  t.match(report(failed, 'rolled_back'), { ok: true, next: { state: 'rolled_back' } })
  t.match(report(failed, 'succeeded', { version: '2.0.0' }), { ok: false, reason: 'finished' })
})

t.test('the per-device timeout: cancel before installing, rollback after', async (t) => {
  const early = walk(['downloading'])
  const e1 = { ...early, deadline: NOW }
  t.match(checkDeadlines(e1, NOW), { send: 'cancel', next: { state: 'timed_out' } })
  t.equal(checkDeadlines(e1, NOW)?.next.rollback, undefined)
  const late = { ...walk(['installing']), deadline: NOW }
  t.match(checkDeadlines(late, NOW), {
    send: 'rollback',
    next: { state: 'timed_out', rollback: { reason: 'timed_out' } },
  })
  t.equal(cancellable(early), true)
  t.equal(cancellable(walk(['installing'])), false)
})

t.test('reports are validated', async (t) => {
  t.match(parseReport(null), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'notified' }), { ok: false, message: /state must be/ })
  t.match(parseReport({ jobId: 'j', state: 'pending' }), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'failed' }), { ok: false, message: /error code/ })
  t.match(parseReport({ jobId: 'j', state: 'failed', error: 'Not Snake' }), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'downloading', progress: 101 }), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'downloading', progress: '5' }), { ok: false })
  t.match(parseReport({ jobId: 7, state: 'downloading' }), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'confirming', version: 'x'.repeat(65) }), { ok: false })
  t.match(parseReport({ jobId: 'j', state: 'failed', error: 'bad_signature' }), { ok: true })
})

t.test('rollout arithmetic', async (t) => {
  const base = { successThreshold: 0.8, deviceTimeoutMs: 1, confirmWithinMs: 1 }
  t.equal(waveSizeOf({ ...base, waveSize: 5 }, 20), 5)
  t.equal(waveSizeOf({ ...base, waveSize: 50 }, 20), 20)
  t.equal(waveSizeOf({ ...base, wavePercent: 10 }, 25), 3)
  t.equal(waveSizeOf(base, 20), 20)
  t.equal(failureLimit({ ...base, failureThreshold: 0.1 }, 200), 20)
  t.equal(failureLimit({ ...base, failureThreshold: 0.01 }, 20), 1)
  t.equal(failureLimit({ ...base, failureThreshold: 3 }, 200), 3)
  t.equal(failureLimit(base, 200), undefined)
  t.equal(successesNeeded(base, 5), 4)
  t.equal(successesNeeded({ ...base, successThreshold: 0.7 }, 10), 7)
  t.equal(successesNeeded({ ...base, successThreshold: 1 }, 3), 3)
})

t.test('maintenance windows, in UTC, across midnight too', async (t) => {
  const at = (hhmm: string) => Date.parse(`2026-03-01T${hhmm}:00Z`)
  t.equal(inWindow(undefined, at('12:00')), true)
  t.equal(inWindow({ start: '01:00', end: '05:00' }, at('03:00')), true)
  t.equal(inWindow({ start: '01:00', end: '05:00' }, at('05:00')), false)
  t.equal(inWindow({ start: '22:00', end: '02:00' }, at('23:30')), true)
  t.equal(inWindow({ start: '22:00', end: '02:00' }, at('01:59')), true)
  t.equal(inWindow({ start: '22:00', end: '02:00' }, at('12:00')), false)
})

t.test('manifests are signed with Ed25519 and verify only with the signing key', async (t) => {
  const key = generateSigningKey()
  const pem = key.privateKey.export({ format: 'pem', type: 'pkcs8' })
  const loaded = loadSigningKey(pem)
  t.equal(loaded.publicKeyRaw, key.publicKeyRaw, 'a PKCS#8 PEM key loads to the same key')
  t.equal(Buffer.from(key.publicKeyRaw, 'base64url').length, 32)
  const manifest = buildManifest(otaPackage('p1', { size: 10, sha256: 'ab'.repeat(32), models: ['m'] }))
  t.same(Object.keys(JSON.parse(manifest)), [
    'v',
    'packageId',
    'name',
    'version',
    'size',
    'sha256',
    'models',
    'tags',
    'createdAt',
  ])
  const sig = signManifest(manifest, key)
  t.equal(verifyManifest(manifest, sig, key.publicKeyPem), true, 'PEM public key')
  t.equal(verifyManifest(manifest, sig, key.publicKeyRaw), true, 'raw base64url public key')
  t.equal(verifyManifest(manifest, sig, generateSigningKey().publicKeyRaw), false, 'another key')
  t.equal(verifyManifest(manifest.replace('"size":10', '"size":11'), sig, key.publicKey), false, 'tampered')
  t.equal(verifyManifest(manifest, 'not-a-signature', key.publicKey), false)
  t.throws(() => buildManifest(otaPackage('p2')), /no size/)
  const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ec', { namedCurve: 'P-256' }))
  t.throws(() => loadSigningKey(privateKey.export({ format: 'pem', type: 'pkcs8' })), /Ed25519/)
})
