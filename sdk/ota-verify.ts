// What a device checks before it downloads anything: the manifest is signed by the key it trusts
// (Ed25519 over the manifest's exact UTF-8 bytes), the notice says what the manifest says, and the
// package is for this device's model (and tags). The file itself is checked after the download.
import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import type { InstallNotice, Manifest, OtaErrorCode } from './ota-protocol.js'
import { parseManifest } from './ota-protocol.js'

/**
 * The trusted public key, from a PEM (SPKI) or the base64url of its raw 32 bytes (what
 * `GET /ota/signing-key` answers as `publicKey`). Throws a TypeError for anything else.
 */
export function parsePublicKey(key: string | KeyObject): KeyObject {
  let k: KeyObject
  if (typeof key !== 'string') k = key
  else if (key.includes('-----BEGIN')) {
    try {
      k = createPublicKey(key)
    } catch (err) {
      throw new TypeError(`not a public key PEM: ${(err as Error).message}`)
    }
  } else {
    const raw = key.trim()
    if (!/^[A-Za-z0-9_-]{43}$/.test(raw) || Buffer.from(raw, 'base64url').length !== 32) {
      throw new TypeError('an Ed25519 public key is a PEM or the base64url of its 32 raw bytes')
    }
    k = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw }, format: 'jwk' })
  }
  if (k.type !== 'public' || k.asymmetricKeyType !== 'ed25519')
    throw new TypeError('the key is not an Ed25519 public key')
  return k
}

/** Is `signature` (base64url) a valid Ed25519 signature of `manifest` by `key`? */
export function verifyManifest(manifest: string, signature: string, key: KeyObject): boolean {
  if (!/^[A-Za-z0-9_-]+$/.test(signature)) return false
  const sig = Buffer.from(signature, 'base64url')
  if (sig.length !== 64) return false
  try {
    return verify(null, Buffer.from(manifest, 'utf8'), key, sig)
  } catch {
    return false
  }
}

export interface DeviceIdentity {
  /** The device's model id; a package for named models needs it. */
  model?: string
  /** The device's tags, when it checks a package's required tags itself. */
  tags?: Record<string, string>
}

export type InstallCheck = { ok: true; manifest: Manifest } | { ok: false; error: OtaErrorCode; message: string }

const refuse = (error: OtaErrorCode, message: string): InstallCheck => ({ ok: false, error, message })

/** Checks an install notice in the order the spec gives; the first failure is the answer. */
export function checkInstall(notice: InstallNotice, key: KeyObject, device: DeviceIdentity): InstallCheck {
  if (!verifyManifest(notice.manifest, notice.signature, key)) {
    return refuse('bad_signature', 'the manifest signature does not verify with the trusted key')
  }
  const manifest = parseManifest(notice.manifest)
  if (!manifest) return refuse('bad_notice', 'the signed manifest is not a version 1 manifest')
  for (const field of ['version', 'size', 'sha256'] as const) {
    if (notice[field] !== manifest[field]) {
      return refuse('manifest_mismatch', `the notice's ${field} is not the manifest's`)
    }
  }
  if (manifest.models.length > 0 && (device.model === undefined || !manifest.models.includes(device.model))) {
    return refuse('incompatible', `the package is for ${manifest.models.join(', ')}, not ${device.model ?? 'no model'}`)
  }
  if (device.tags) {
    for (const [name, value] of Object.entries(manifest.tags)) {
      if (device.tags[name] !== value) return refuse('incompatible', `the package needs tag ${name}=${value}`)
    }
  }
  return { ok: true, manifest }
}
