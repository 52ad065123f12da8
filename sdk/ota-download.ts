// A resumable download into one file: each attempt asks for the bytes the file lacks with a Range
// request (`bytes={have}-`) and appends them, so a dropped connection or a power cut costs only
// what was in flight. A server that ignores Range (200) starts the file again; a 206 must start
// where the file ends. Network errors and 5xx answers are retried with a growing pause; the count
// starts again whenever an attempt got further than any before. A 4xx answer, more bytes than
// announced, or the retries running out end the download.

import { once } from 'node:events'
import { createWriteStream, type WriteStream } from 'node:fs'
import { truncate } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { sizeOf } from './ota-disk.js'
import type { OtaErrorCode } from './ota-protocol.js'

/** A download that cannot succeed: `code` is the `failed` report's error. */
export class DownloadError extends Error {
  readonly code: OtaErrorCode

  constructor(code: OtaErrorCode, message: string) {
    super(message)
    this.name = 'DownloadError'
    this.code = code
  }
}

/** The simulated power cut stopped the download at `bytes` (failure injection `power_loss`). */
export class PowerCut extends Error {
  readonly bytes: number

  constructor(bytes: number) {
    super(`power lost after ${bytes} bytes`)
    this.name = 'PowerCut'
    this.bytes = bytes
  }
}

export interface DownloadOptions {
  url: string
  file: string
  /** The expected size: the download stops when the file has it, and refuses more. */
  size: number
  signal?: AbortSignal
  headers?: Record<string, string>
  /** Attempts after a failure without progress. Default 5. */
  retries?: number
  /** The pause before the first retry, doubled for each further one (at most 5 s). Default 200. */
  retryDelayMs?: number
  /** The file's size after each chunk written (and once at the start). */
  onProgress?: (bytes: number) => void
  /** Stop with a PowerCut once the file has this many bytes (failure injection). */
  cutAt?: number
}

/** One attempt from `have` on; returns when the answer's body has ended. */
async function attempt(o: DownloadOptions, have: number): Promise<void> {
  const headers: Record<string, string> = { ...o.headers }
  if (have > 0) headers.range = `bytes=${have}-`
  const res = await fetch(o.url, { headers, ...(o.signal ? { signal: o.signal } : {}) })
  let start: number
  if (res.status === 200) start = 0
  else if (res.status === 206) {
    const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '')
    start = m ? Number(m[1]) : -1
    if (start !== have) {
      await res.body?.cancel()
      await truncate(o.file, 0)
      throw new Error(`the server answered bytes from ${start}, not ${have}: starting again`)
    }
  } else if (res.status === 416) {
    // our part is not a prefix of what the server has (or is all of it): start again
    await res.body?.cancel()
    await truncate(o.file, 0)
    throw new Error('the server refused the range: starting again')
  } else {
    await res.body?.cancel()
    const error = new Error(`HTTP ${res.status} from ${o.url}`)
    if (res.status >= 400 && res.status < 500) throw new DownloadError('download_failed', error.message)
    throw error
  }
  if (!res.body) throw new Error('an answer without a body')
  const out = createWriteStream(o.file, { flags: start === 0 ? 'w' : 'a' })
  try {
    await copyBody(res.body, out, o, start)
  } finally {
    out.end()
    if (!out.closed) await once(out, 'close').catch(() => {})
  }
}

async function copyBody(
  body: ReadableStream<Uint8Array>,
  out: WriteStream,
  o: DownloadOptions,
  start: number,
): Promise<void> {
  let bytes = start
  o.onProgress?.(bytes)
  for await (const chunk of body) {
    let piece = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    if (bytes + piece.length > o.size) {
      throw new DownloadError('size_mismatch', `the server sent more than the ${o.size} bytes announced`)
    }
    const cut = o.cutAt !== undefined && bytes + piece.length >= o.cutAt
    if (cut) piece = piece.subarray(0, (o.cutAt as number) - bytes)
    if (!out.write(piece)) await once(out, 'drain')
    bytes += piece.length
    if (cut) throw new PowerCut(bytes)
    o.onProgress?.(bytes)
  }
}

/** Downloads `url` into `file` until the file has `size` bytes, resuming what is there. */
export async function downloadResumable(o: DownloadOptions): Promise<void> {
  const retries = o.retries ?? 5
  const firstDelay = o.retryDelayMs ?? 200
  let failures = 0
  // progress is measured against the most the file ever had: a part started again after a refused
  // range and filled back to where it was has made none
  let best = Math.min(await sizeOf(o.file), o.size)
  let lastError: Error | undefined
  for (;;) {
    o.signal?.throwIfAborted()
    const have = await sizeOf(o.file)
    if (have > o.size) await truncate(o.file, 0)
    else if (have === o.size) {
      o.onProgress?.(have)
      return
    }
    try {
      await attempt(o, have > o.size ? 0 : have)
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason
      if (err instanceof DownloadError || err instanceof PowerCut) throw err
      lastError = err as Error
    }
    const now = await sizeOf(o.file)
    if (now === o.size) continue // complete: the next turn returns
    if (now > best) {
      best = now
      failures = 0
    } else failures++
    if (failures > retries) {
      throw new DownloadError('download_failed', `gave up after ${retries} retries: ${lastError?.message ?? 'no data'}`)
    }
    if (failures > 0) await sleep(Math.min(firstDelay * 2 ** (failures - 1), 5000), undefined, { signal: o.signal })
  }
}
