// Helpers for the OTA agent tests: a signing key and signed packages as the hub makes them (per
// /tmp/ota-spec.md), a real HTTP file server with Range support that can drop a connection midway,
// and a watch on the devices' `ota/status` reports through the broker.
import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { App } from '../../broker/app.js'
import type { InstallNotice, OtaStatus } from '../../sdk/index.js'

export interface SigningKey {
  privateKey: KeyObject
  publicKeyPem: string
  /** base64url of the raw 32 bytes. */
  publicKey: string
}

export function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const jwk = publicKey.export({ format: 'jwk' })
  return {
    privateKey,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    publicKey: jwk.x as string,
  }
}

export interface TestPackage {
  version: string
  image: Buffer
  sha256: string
  manifest: string
  signature: string
}

/** A package of `size` random bytes with its manifest signed by `key`. */
export function makePackage(
  key: SigningKey,
  version: string,
  opts: { size?: number; models?: string[]; tags?: Record<string, string>; image?: Buffer } = {},
): TestPackage {
  const image = opts.image ?? randomBytes(opts.size ?? 64 * 1024)
  const sha256 = createHash('sha256').update(image).digest('hex')
  const manifest = JSON.stringify({
    v: 1,
    packageId: `pkg-${version}`,
    name: 'test-fw',
    version,
    size: image.length,
    sha256,
    models: opts.models ?? [],
    tags: opts.tags ?? {},
    createdAt: new Date().toISOString(),
  })
  const signature = sign(null, Buffer.from(manifest), key.privateKey).toString('base64url')
  return { version, image, sha256, manifest, signature }
}

export function installNotice(jobId: string, pkg: TestPackage, url: string, confirmWithinMs = 5000): InstallNotice {
  const { version, sha256, manifest, signature } = pkg
  return {
    jobId,
    action: 'install',
    version,
    url,
    size: pkg.image.length,
    sha256,
    manifest,
    signature,
    confirmWithinMs,
  }
}

export interface ServedRequest {
  path: string
  range: string | undefined
  status: number
}

export interface FileServer {
  url(path: string): string
  requests: ServedRequest[]
  /** The next `n` answers to `path` are cut after `bytes` bytes of body (the socket destroyed). */
  dropAfter(path: string, bytes: number, n?: number): void
  close(): Promise<void>
}

/** A real HTTP server for `files` (path → bytes) with single-range support, as a CDN would serve. */
export async function fileServer(
  t: { teardown(fn: () => unknown): void },
  files: Record<string, Buffer>,
  opts: { ignoreRange?: boolean; chunk?: number; delayMs?: number } = {},
): Promise<FileServer> {
  const requests: ServedRequest[] = []
  const drops = new Map<string, { bytes: number; n: number }>()
  const server = http.createServer(function serve(req, res) {
    const path = (req.url ?? '/').split('?')[0] as string
    const file = files[path]
    const range = req.headers.range
    const note = (status: number) => requests.push({ path, range, status })
    if (!file) {
      note(404)
      res.writeHead(404).end()
      return
    }
    let start = 0
    let status = 200
    const m = /^bytes=(\d+)-$/.exec(range ?? '')
    if (m && !opts.ignoreRange) {
      start = Number(m[1])
      if (start >= file.length) {
        note(416)
        res.writeHead(416, { 'content-range': `bytes */${file.length}` }).end()
        return
      }
      status = 206
    }
    note(status)
    const body = file.subarray(start)
    const headers: Record<string, string | number> = { 'content-length': body.length, 'accept-ranges': 'bytes' }
    if (status === 206) headers['content-range'] = `bytes ${start}-${file.length - 1}/${file.length}`
    res.writeHead(status, headers)
    const drop = drops.get(path)
    if (drop && drop.n > 0) {
      drop.n--
      res.write(body.subarray(0, drop.bytes), () => setTimeout(() => res.socket?.destroy(), 20))
      return
    }
    // in chunks, so a download has progress to report
    const chunk = opts.chunk ?? 8192
    let at = 0
    const next = () => {
      if (res.destroyed) return
      if (at >= body.length) return res.end()
      const piece = body.subarray(at, at + chunk)
      at += chunk
      const go = () => (opts.delayMs ? setTimeout(next, opts.delayMs) : setImmediate(next))
      if (res.write(piece)) go()
      else res.once('drain', go)
    }
    next()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  t.teardown(close)
  return {
    url: (p) => `http://127.0.0.1:${port}${p}`,
    requests,
    dropAfter(p, bytes, n = 1) {
      drops.set(p, { bytes, n })
    },
    close,
  }
}

export interface StatusWatch {
  /** Every report of a device, in order. */
  of(deviceId: string): OtaStatus[]
  /** The states a device reported, in order, without repeated `downloading`. */
  states(deviceId: string): string[]
  /** Waits for a report of `state` (the first one not taken before) and returns it. */
  next(deviceId: string, state: string, ms?: number): Promise<OtaStatus>
}

/** Watches `$iot/+/ota/status` through the broker, as the hub's own handler would see it. */
export async function watchStatus(app: App, t: { teardown(fn: () => unknown): void }): Promise<StatusWatch> {
  const seen = new Map<string, OtaStatus[]>()
  const taken = new Map<string, number>()
  const waiters = new Set<() => void>()
  const off = await app.broker.subscribe('$iot/+/ota/status', (topic, payload) => {
    const id = topic.split('/')[1] as string
    let list = seen.get(id)
    if (!list) {
      list = []
      seen.set(id, list)
    }
    list.push(JSON.parse(payload.toString()))
    for (const w of waiters) w()
  })
  t.teardown(off)
  const of = (id: string) => seen.get(id) ?? []
  return {
    of,
    states: (id) =>
      of(id)
        .map((s) => s.state)
        .filter((s, i, all) => !(s === 'downloading' && all[i - 1] === 'downloading')),
    next(id, state, ms = 5000) {
      const key = `${id}\u0000${state}`
      return new Promise((resolve, reject) => {
        const check = () => {
          const from = taken.get(key) ?? 0
          const i = of(id).findIndex((s, k) => k >= from && s.state === state)
          if (i < 0) return false
          taken.set(key, i + 1)
          waiters.delete(check)
          clearTimeout(timer)
          resolve(of(id)[i] as OtaStatus)
          return true
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`${id}: no ${state} within ${ms} ms (saw ${JSON.stringify(of(id))})`))
        }, ms)
        if (!check()) waiters.add(check)
      })
    },
  }
}
