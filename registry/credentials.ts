// Device key material, as the contract fixes it: a key is 32 random bytes written in base64url; the
// registry keeps only `verifier = HMAC-SHA256(key, "fleethub-token-v1")`; a signed token is
// `v1.{expiry}.{base64url(HMAC-SHA256(verifier, "{deviceId}\n{expiry}"))}`, so the broker can check
// a token with the verifier alone. Every comparison is constant-time.
import { createHmac, hash, randomBytes, timingSafeEqual } from 'node:crypto'

export const KEY_BYTES = 32
const VERIFIER_BYTES = 32
const VERIFIER_CONTEXT = 'fleethub-token-v1'
const TOKEN_PREFIX = 'v1.'

export interface DeviceKeys {
  primary: string
  secondary: string
}

/** Base64url verifiers of the primary and secondary keys (what the registry stores). */
export interface KeyVerifiers {
  primary: string
  secondary: string
}

export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64url')
}

/**
 * A verifier no key is known to match: 32 random bytes, as a stored verifier looks. What a device
 * registered by provisioning gets as its secondary (one HMAC and a key fewer than deriving it).
 */
export function unknownVerifier(): string {
  return randomBytes(VERIFIER_BYTES).toString('base64url')
}

export function generateKeys(): DeviceKeys {
  return { primary: generateKey(), secondary: generateKey() }
}

function decodeKey(key: string): Buffer | undefined {
  if (key.length !== 43) return undefined // 32 bytes in unpadded base64url
  const raw = Buffer.from(key, 'base64url')
  return raw.length === KEY_BYTES ? raw : undefined
}

function verifierBytes(key: Buffer): Buffer {
  return createHmac('sha256', key).update(VERIFIER_CONTEXT).digest()
}

/** The stored verifier of a key, or undefined when the text is not a 32-byte base64url key. */
export function verifierOf(key: string): string | undefined {
  const raw = decodeKey(key)
  return raw ? verifierBytes(raw).toString('base64url') : undefined
}

export function verifiersOf(keys: DeviceKeys): KeyVerifiers {
  return { primary: verifierOf(keys.primary) as string, secondary: verifierOf(keys.secondary) as string }
}

/** Signs a token from a key (what a device does) for unix-second `expiry`. */
export function signToken(deviceId: string, key: string, expiry: number): string {
  const raw = decodeKey(key)
  if (!raw) throw new TypeError('a device key is 32 bytes in base64url')
  return signWithVerifier(deviceId, verifierBytes(raw), expiry)
}

function signWithVerifier(deviceId: string, verifier: Buffer, expiry: number): string {
  const sig = createHmac('sha256', verifier).update(`${deviceId}\n${expiry}`).digest('base64url')
  return `${TOKEN_PREFIX}${expiry}.${sig}`
}

/** The outcome of checking a CONNECT password; the broker never tells a client which it was. */
export type PasswordCheck = 'ok' | 'bad' | 'expired'

/**
 * Decoded verifiers, kept by the credential cache so a reconnect costs one HMAC: the primary's 32
 * bytes then the secondary's, in one buffer (one object per cached device, not two).
 */
export type VerifierBytes = Buffer

export function decodeVerifiers(v: KeyVerifiers): VerifierBytes {
  const out = Buffer.allocUnsafe(2 * VERIFIER_BYTES)
  out.write(v.primary, 0, VERIFIER_BYTES, 'base64url')
  out.write(v.secondary, VERIFIER_BYTES, VERIFIER_BYTES, 'base64url')
  return out
}

const primaryOf = (v: VerifierBytes) => v.subarray(0, VERIFIER_BYTES)
const secondaryOf = (v: VerifierBytes) => v.subarray(VERIFIER_BYTES)

function matchesEither(candidate: Buffer, v: VerifierBytes): boolean {
  // both comparisons always run, so timing does not tell primary from secondary
  const a = timingSafeEqual(candidate, primaryOf(v))
  const b = timingSafeEqual(candidate, secondaryOf(v))
  return a || b
}

/**
 * Checks a CONNECT password (a key or a signed token) against a device's verifiers.
 * `nowSec` is the current unix time in seconds.
 */
export function checkPassword(deviceId: string, password: string, v: VerifierBytes, nowSec: number): PasswordCheck {
  if (password.startsWith(TOKEN_PREFIX)) return checkToken(deviceId, password, v, nowSec)
  const raw = decodeKey(password)
  if (!raw) return 'bad'
  return matchesEither(verifierBytes(raw), v) ? 'ok' : 'bad'
}

const TOKEN_RE = /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/

function checkToken(deviceId: string, token: string, v: VerifierBytes, nowSec: number): PasswordCheck {
  const m = TOKEN_RE.exec(token)
  if (!m) return 'bad'
  const expiryText = m[1] as string
  const sig = Buffer.from(m[2] as string, 'base64url')
  const message = `${deviceId}\n${expiryText}`
  const a = createHmac('sha256', primaryOf(v)).update(message).digest()
  const b = createHmac('sha256', secondaryOf(v)).update(message).digest()
  const valid = (timingSafeEqual(sig, a) ? 1 : 0) | (timingSafeEqual(sig, b) ? 1 : 0)
  if (!valid) return 'bad'
  // only a correctly signed token learns that it expired
  return Number(expiryText) > nowSec ? 'ok' : 'expired'
}

/** Equal-length digests of any texts, so comparing them tells nothing of the secret's length or content. */
const compareDigest = (text: string) => hash('sha256', text, 'buffer')

/**
 * A constant-time check of texts against one secret (an API token), digested once: one SHA-256
 * per check (the one-shot `crypto.hash`, a third of the cost of an HMAC object per request).
 */
export function secretMatcher(secret: string): (candidate: string) => boolean {
  const expected = compareDigest(secret)
  return (candidate) => timingSafeEqual(compareDigest(candidate), expected)
}
