// The OTA agent's parts on their own: the resumable download against a real HTTP server (Range
// requests, a connection dropped midway, a server without Range, a power cut, refusals), the
// signature and manifest checks, and the `fleethub simulate` OTA flags.
import { generateKeyPairSync, sign } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import {
  checkInstall,
  DownloadError,
  downloadResumable,
  parseManifest,
  parseNotice,
  parsePublicKey,
  parseSimulateArgs,
  verifyManifest,
} from '../sdk/index.js'
import { PowerCut } from '../sdk/ota-download.js'
import { fileServer, installNotice, makePackage, signingKey } from './helpers/ota-agent.js'

const key = signingKey()
const stranger = signingKey()
/** A signature of `text` by a key nobody trusts. */
const signingKeySig = (text: string) => sign(null, Buffer.from(text), stranger.privateKey).toString('base64url')
const image = Buffer.alloc(100_000)
for (let i = 0; i < image.length; i++) image[i] = (i * 7919) % 251

function tempDir(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fh-ota-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('download: the whole file, with progress', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  const file = path.join(tempDir(t), 'part')
  const seen: number[] = []
  await downloadResumable({ url: srv.url('/fw'), file, size: image.length, onProgress: (b) => seen.push(b) })
  t.same(readFileSync(file), image, 'the file is the image')
  t.equal(seen.at(-1), image.length, 'progress ends at the size')
  t.ok(
    seen.every((b, i) => i === 0 || b >= (seen[i - 1] as number)),
    'progress only grows',
  )
  t.ok(seen.length > 2, 'and is reported along the way')
  t.same(srv.requests, [{ path: '/fw', range: undefined, status: 200 }], 'one plain request')
})

t.test('download: a connection dropped midway resumes with a Range request', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  srv.dropAfter('/fw', 30_000, 2)
  const file = path.join(tempDir(t), 'part')
  await downloadResumable({ url: srv.url('/fw'), file, size: image.length, retryDelayMs: 10 })
  t.same(readFileSync(file), image, 'the file is whole and right')
  t.same(
    srv.requests.map((r) => [r.range, r.status]),
    [
      [undefined, 200],
      ['bytes=30000-', 206],
      ['bytes=60000-', 206],
    ],
    'each attempt asked for the bytes after those it had',
  )
})

t.test('download: a part left by an earlier run is resumed, not fetched again', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  const file = path.join(tempDir(t), 'part')
  writeFileSync(file, image.subarray(0, 12_345))
  await downloadResumable({ url: srv.url('/fw'), file, size: image.length })
  t.same(readFileSync(file), image)
  t.same(srv.requests, [{ path: '/fw', range: 'bytes=12345-', status: 206 }])

  await downloadResumable({ url: srv.url('/fw'), file, size: image.length })
  t.equal(srv.requests.length, 1, 'a complete part needs no request at all')
})

t.test('download: a server that ignores Range starts the file again', async (t) => {
  const srv = await fileServer(t, { '/fw': image }, { ignoreRange: true })
  const file = path.join(tempDir(t), 'part')
  writeFileSync(file, Buffer.from('stale bytes'))
  await downloadResumable({ url: srv.url('/fw'), file, size: image.length })
  t.same(readFileSync(file), image, 'the 200 answer replaced the part')
})

t.test('download: a part longer than the file, or not a prefix of it, is started again', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  const dir = tempDir(t)
  const longer = path.join(dir, 'longer')
  writeFileSync(longer, Buffer.alloc(image.length + 10))
  await downloadResumable({ url: srv.url('/fw'), file: longer, size: image.length })
  t.same(readFileSync(longer), image, 'too long: truncated and fetched whole')

  const small = image.subarray(0, 1000)
  const srv2 = await fileServer(t, { '/small': small })
  const wrong = path.join(dir, 'wrong')
  writeFileSync(wrong, Buffer.alloc(1000))
  // the announced size is larger than the served file: 416 for our range, then all of it
  await t.rejects(
    downloadResumable({ url: srv2.url('/small'), file: wrong, size: 2000, retries: 1, retryDelayMs: 5 }),
    { code: 'download_failed' },
    'a file shorter than announced never completes',
  )
  t.equal(srv2.requests[0]?.status, 416, 'the range past its end was refused')
})

t.test('download: refusals and limits', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  const dir = tempDir(t)
  const e404 = await downloadResumable({ url: srv.url('/nope'), file: path.join(dir, 'a'), size: 10 }).catch(
    (e: unknown) => e,
  )
  t.ok(e404 instanceof DownloadError, 'a 404 is a DownloadError')
  t.match(e404, { code: 'download_failed', message: /HTTP 404/ })
  t.equal(srv.requests.filter((r) => r.path === '/nope').length, 1, 'a 4xx is not retried')

  await t.rejects(
    downloadResumable({ url: srv.url('/fw'), file: path.join(dir, 'b'), size: 50_000 }),
    { code: 'size_mismatch' },
    'more bytes than announced: size_mismatch',
  )

  srv.dropAfter('/fw', 0, 10)
  const before = srv.requests.length
  await t.rejects(
    downloadResumable({
      url: srv.url('/fw'),
      file: path.join(dir, 'c'),
      size: image.length,
      retries: 2,
      retryDelayMs: 5,
    }),
    { code: 'download_failed', message: /gave up after 2 retries/ },
    'failures without progress run out of retries',
  )
  t.equal(srv.requests.length - before, 3, 'one attempt and two retries')

  const ac = new AbortController()
  ac.abort('stop')
  await t.rejects(
    downloadResumable({ url: srv.url('/fw'), file: path.join(dir, 'd'), size: image.length, signal: ac.signal }),
    'an aborted signal stops it',
  )
})

t.test('download: a power cut stops at the byte given, and the next run completes', async (t) => {
  const srv = await fileServer(t, { '/fw': image })
  const file = path.join(tempDir(t), 'part')
  const cut = await downloadResumable({ url: srv.url('/fw'), file, size: image.length, cutAt: 50_000 }).catch(
    (e: unknown) => e,
  )
  t.ok(cut instanceof PowerCut, 'a PowerCut')
  t.equal(readFileSync(file).length, 50_000, 'exactly the bytes before the cut are on disk')
  await downloadResumable({ url: srv.url('/fw'), file, size: image.length })
  t.same(readFileSync(file), image)
  t.equal(srv.requests.at(-1)?.range, 'bytes=50000-')
})

t.test('public keys: PEM or raw base64url, Ed25519 only', async (t) => {
  t.equal(parsePublicKey(key.publicKeyPem).asymmetricKeyType, 'ed25519', 'PEM')
  t.equal(parsePublicKey(key.publicKey).asymmetricKeyType, 'ed25519', 'raw base64url')
  t.same(
    parsePublicKey(key.publicKey).export({ format: 'jwk' }),
    parsePublicKey(key.publicKeyPem).export({ format: 'jwk' }),
    'the same key either way',
  )
  t.throws(() => parsePublicKey('short'), TypeError)
  t.throws(() => parsePublicKey('-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----'), TypeError)
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' })
  t.throws(() => parsePublicKey(rsa.toString()), /not an Ed25519/)
})

t.test('manifests: the signature covers the exact bytes; the checks come in order', async (t) => {
  const pkg = makePackage(key, '2.0.0', { size: 100, models: ['acme.air'] })
  const k = parsePublicKey(key.publicKey)
  t.ok(verifyManifest(pkg.manifest, pkg.signature, k), 'a good signature verifies')
  t.notOk(verifyManifest(`${pkg.manifest} `, pkg.signature, k), 'one more byte does not')
  t.notOk(verifyManifest(pkg.manifest, signingKeySig(pkg.manifest), k), 'another key does not')
  t.notOk(verifyManifest(pkg.manifest, 'not+base64url', k), 'garbage does not')
  t.notOk(verifyManifest(pkg.manifest, pkg.signature.slice(0, 40), k), 'a short one does not')

  const notice = installNotice('j1', pkg, 'http://x/fw')
  t.match(checkInstall(notice, k, { model: 'acme.air' }), { ok: true, manifest: { version: '2.0.0' } })
  t.match(checkInstall({ ...notice, signature: signingKeySig(pkg.manifest) }, k, { model: 'acme.air' }), {
    ok: false,
    error: 'bad_signature',
  })
  t.match(checkInstall({ ...notice, sha256: 'a'.repeat(64) }, k, { model: 'acme.air' }), {
    ok: false,
    error: 'manifest_mismatch',
    message: /sha256/,
  })
  t.match(checkInstall({ ...notice, size: 99 }, k, { model: 'acme.air' }), { error: 'manifest_mismatch' })
  t.match(checkInstall({ ...notice, version: '9' }, k, { model: 'acme.air' }), { error: 'manifest_mismatch' })
  t.match(checkInstall(notice, k, { model: 'acme.water' }), { ok: false, error: 'incompatible' })
  t.match(checkInstall(notice, k, {}), { ok: false, error: 'incompatible' }, 'no model: not for named models')
  const any = makePackage(key, '2.0.1', { size: 10, tags: { ring: 'beta' } })
  t.match(checkInstall(installNotice('j', any, 'http://x'), k, {}), { ok: true }, 'no models: any model')
  t.match(checkInstall(installNotice('j', any, 'http://x'), k, { tags: { ring: 'prod' } }), { error: 'incompatible' })
  t.match(checkInstall(installNotice('j', any, 'http://x'), k, { tags: { ring: 'beta' } }), { ok: true })

  const unsigned = 'not json'
  const sig = sign(null, Buffer.from(unsigned), key.privateKey).toString('base64url')
  t.match(checkInstall({ ...notice, manifest: unsigned, signature: sig }, k, {}), { error: 'bad_notice' })
  t.equal(parseManifest('{"v":2}'), undefined, 'another manifest version is not read')
})

t.test('notices: what the agent refuses to read', async (t) => {
  const pkg = makePackage(key, '2.0.0', { size: 10 })
  const good = installNotice('j1', pkg, 'https://cdn.example/fw')
  t.match(parseNotice(good), { action: 'install', jobId: 'j1' })
  t.same(parseNotice({ jobId: 'j1', action: 'rollback', reason: 'x' }), {
    jobId: 'j1',
    action: 'rollback',
    reason: 'x',
  })
  t.same(parseNotice({ jobId: 'j1', action: 'cancel' }), { jobId: 'j1', action: 'cancel' })
  const bad: [string, unknown][] = [
    ['not an object', 'x'],
    ['no job id', { ...good, jobId: undefined }],
    ['an unknown action', { ...good, action: 'format' }],
    ['a file: URL', { ...good, url: 'file:///etc/passwd' }],
    ['a negative size', { ...good, size: -1 }],
    ['an upper-case hash', { ...good, sha256: pkg.sha256.toUpperCase() }],
    ['no manifest', { ...good, manifest: undefined }],
    ['no confirmation deadline', { ...good, confirmWithinMs: 0 }],
  ]
  for (const [what, v] of bad) t.ok('problem' in parseNotice(v), `${what} is refused`)
})

t.test('simulate: the OTA flags', async (t) => {
  const dir = tempDir(t)
  const pem = path.join(dir, 'key.pem')
  writeFileSync(pem, key.publicKeyPem)
  const base = ['--device-id', 'd1', '--key', 'k']
  t.equal(parseSimulateArgs(base).ota, undefined, 'off by default')
  t.same(
    parseSimulateArgs([
      ...base,
      '--ota-dir',
      dir,
      '--ota-public-key',
      pem,
      '--ota-fail',
      'power_loss',
      '--ota-model',
      'acme.air',
      '--firmware-version',
      '1.2.3',
    ]).ota,
    { dir, publicKey: key.publicKeyPem, fail: 'power_loss', model: 'acme.air', firmwareVersion: '1.2.3' },
    'a PEM file is read',
  )
  t.same(
    parseSimulateArgs([...base, '--ota-dir', dir, '--ota-public-key', key.publicKey]).ota,
    { dir, publicKey: key.publicKey },
    'a raw key is taken as it is',
  )
  const refusals: [string[], RegExp][] = [
    [['--ota-dir', dir], /--ota-dir needs --ota-public-key/],
    [['--ota-public-key', key.publicKey], /needs --ota-dir/],
    [['--ota-fail', 'bad_hash'], /--ota-fail needs --ota-dir/],
    [['--ota-dir', dir, '--ota-public-key', path.join(dir, 'missing.pem')], /--ota-public-key: cannot read .*ENOENT/],
    [['--ota-dir', dir, '--ota-public-key', key.publicKey, '--ota-fail', 'meteor'], /--ota-fail must be one of/],
  ]
  for (const [argv, message] of refusals) t.throws(() => parseSimulateArgs([...base, ...argv]), message)
  writeFileSync(pem, 'not a key')
  t.throws(() => parseSimulateArgs([...base, '--ota-dir', dir, '--ota-public-key', pem]), /--ota-public-key: /)
})
