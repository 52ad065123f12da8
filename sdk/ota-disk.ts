// The reference agent's storage, an A/B layout as real devices have it: two slots with a firmware
// image each, the factory ("golden") image, and state.json saying which slot runs, which one ran
// before, and what is in progress. Every change of state.json is atomic (a temporary file, synced,
// then renamed over it), so a power cut leaves the old state or the new one, never half of one:
//   {dir}/slots/a, {dir}/slots/b, {dir}/golden, {dir}/state.json, {dir}/download.part
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { isJsonObject } from './json.js'
import type { OtaState } from './ota-protocol.js'

export type Slot = 'a' | 'b'

/** A new image written to a slot, until it is confirmed or rolled back. */
export interface PendingInstall {
  jobId: string
  slot: Slot
  /** The slot that ran before: where a rollback goes. */
  from: Slot
  version: string
  /** installed: written, not booted; rebooting: active, the reboot under way; booted: running on trial. */
  stage: 'installed' | 'rebooting' | 'booted'
  /** `confirming` has been reported. */
  confirming?: boolean
}

/** A job before its install: the notice's facts and how far the device got. */
export interface JobInProgress {
  jobId: string
  version: string
  url: string
  size: number
  sha256: string
  confirmWithinMs: number
  /** The last state reported for it (so a resume repeats none but `downloading`). */
  reached?: OtaState
  /** The simulated power cut has happened for this job (it happens once). */
  powerLost?: boolean
}

/** The last job's outcome, kept to answer a repeated notice and to send it again after a restart. */
export interface LastOutcome {
  jobId: string
  state: 'succeeded' | 'failed' | 'rolled_back'
  version?: string
  error?: string
  /** Whether the report has been acknowledged (PUBACK). */
  sent: boolean
}

export interface OtaDiskState {
  v: 1
  active: Slot
  previous: Slot | null
  versions: { a: string | null; b: string | null }
  /** SHA-256 of each slot's image as installed: a slot whose file no longer matches is not valid. */
  hashes: { a: string | null; b: string | null }
  golden: string
  goldenSha256: string
  pending?: PendingInstall
  job?: JobInProgress
  last?: LastOutcome
}

export interface OtaPaths {
  state: string
  part: string
  golden: string
  slot(s: Slot): string
}

export function otaPaths(dir: string): OtaPaths {
  return {
    state: path.join(dir, 'state.json'),
    part: path.join(dir, 'download.part'),
    golden: path.join(dir, 'golden'),
    slot: (s) => path.join(dir, 'slots', s),
  }
}

export const otherSlot = (s: Slot): Slot => (s === 'a' ? 'b' : 'a')

/** A stand-in firmware image for a version: 4 KiB of recognisable bytes. */
export function fakeImage(version: string): Buffer {
  const line = Buffer.from(`FLEETHUB-FAKE-FIRMWARE ${version}\n`)
  return Buffer.alloc(4096, line)
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(file), hash)
  return hash.digest('hex')
}

export async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw err
  }
}

/** Writes `data` to `file` durably and atomically. */
async function writeAtomic(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp`
  const fh = await open(tmp, 'w')
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, file)
}

/** Copies `src` to `dest` durably and atomically. */
async function copyAtomic(src: string, dest: string): Promise<void> {
  const tmp = `${dest}.tmp`
  await copyFile(src, tmp)
  const fh = await open(tmp, 'r+')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, dest)
}

export function saveState(dir: string, state: OtaDiskState): Promise<void> {
  return writeAtomic(otaPaths(dir).state, `${JSON.stringify(state, null, 2)}\n`)
}

const isSlot = (v: unknown): v is Slot => v === 'a' || v === 'b'

function checkState(value: unknown, file: string): OtaDiskState {
  const s = value as OtaDiskState
  const ok =
    isJsonObject(value) &&
    s.v === 1 &&
    isSlot(s.active) &&
    (s.previous === null || isSlot(s.previous)) &&
    isJsonObject(s.versions) &&
    isJsonObject(s.hashes) &&
    typeof s.golden === 'string' &&
    typeof s.goldenSha256 === 'string'
  if (!ok) throw new Error(`${file} is not an OTA state (version 1)`)
  return s
}

/**
 * Opens the layout in `dir`, creating it on first use: the golden image and slot `a` hold
 * `firmwareVersion`'s image, slot `a` is active. An existing state.json is read as it is.
 */
export async function openDisk(dir: string, firmwareVersion: string): Promise<OtaDiskState> {
  const p = otaPaths(dir)
  await mkdir(path.dirname(p.slot('a')), { recursive: true })
  let text: string | undefined
  try {
    text = await readFile(p.state, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (text !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new Error(`${p.state} is not JSON`)
    }
    return checkState(parsed, p.state)
  }
  const image = fakeImage(firmwareVersion)
  const sha = createHash('sha256').update(image).digest('hex')
  await writeAtomic(p.golden, image)
  await writeAtomic(p.slot('a'), image)
  const state: OtaDiskState = {
    v: 1,
    active: 'a',
    previous: null,
    versions: { a: firmwareVersion, b: null },
    hashes: { a: sha, b: null },
    golden: firmwareVersion,
    goldenSha256: sha,
  }
  await saveState(dir, state)
  return state
}

/** Does `slot` hold the image state.json says it does (present, with its hash)? */
export async function slotValid(dir: string, state: OtaDiskState, slot: Slot): Promise<boolean> {
  const expected = state.hashes[slot]
  if (state.versions[slot] === null || expected === null) return false
  try {
    return (await sha256File(otaPaths(dir).slot(slot))) === expected
  } catch {
    return false
  }
}

/** Writes the downloaded file into `slot`; true when the slot then holds exactly `sha256`. */
export async function writeSlot(dir: string, slot: Slot, sha256: string): Promise<boolean> {
  const p = otaPaths(dir)
  await copyAtomic(p.part, p.slot(slot))
  return (await sha256File(p.slot(slot))) === sha256
}

/** Copies the golden image into `slot` (recovery when no valid previous image is left). */
export async function restoreGolden(dir: string, state: OtaDiskState, slot: Slot): Promise<void> {
  const p = otaPaths(dir)
  await copyAtomic(p.golden, p.slot(slot))
  state.versions[slot] = state.golden
  state.hashes[slot] = state.goldenSha256
}

export async function removePart(dir: string): Promise<void> {
  await rm(otaPaths(dir).part, { force: true })
}
