// What a device checks before it downloads anything: the manifest is signed by the key it trusts
// (Ed25519 over the manifest's exact UTF-8 bytes), the notice says what the manifest says, and the
// package is for this device's model (and tags). The file itself is checked after the download.
import type { KeyObject } from 'node:crypto'
import { type Manifest, parsePublicKey, verifyManifest } from '../registry/ota.js'
import type { InstallNotice, OtaErrorCode } from './ota-protocol.js'
import { parseManifest } from './ota-protocol.js'

export { parsePublicKey, verifyManifest }

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
