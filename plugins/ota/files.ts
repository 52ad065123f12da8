// Hosted package files: written once from an upload stream (hashed and counted on the way, into a
// temporary file renamed into place), read back in byte ranges for devices that resume downloads.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { errors } from '../../registry/errors.js'

export interface StoredFile {
  size: number
  sha256: string
}

export type PackageFiles = ReturnType<typeof createPackageFiles>

export function createPackageFiles(dir: string, maxBytes: number) {
  const fileOf = (id: string) => path.join(dir, `${id}.bin`)
  let made: Promise<unknown> | undefined

  return {
    dir,
    path: fileOf,

    /** Stores the stream as the package's file; refuses (and keeps nothing) past `maxBytes`. */
    async write(id: string, body: Readable): Promise<StoredFile> {
      made ??= mkdir(dir, { recursive: true })
      await made
      const part = path.join(dir, `${id}.${randomBytes(6).toString('hex')}.part`)
      const hash = createHash('sha256')
      let size = 0
      let tooLarge = false
      try {
        await pipeline(
          body,
          async function* count(source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              size += chunk.length
              if (size > maxBytes) {
                tooLarge = true
                throw new errors.PAYLOAD_TOO_LARGE(`a package file is at most ${maxBytes} bytes`)
              }
              hash.update(chunk)
              yield chunk
            }
          },
          createWriteStream(part),
        )
      } catch (err) {
        await rm(part, { force: true })
        if (tooLarge) throw new errors.PAYLOAD_TOO_LARGE(`a package file is at most ${maxBytes} bytes`)
        throw err
      }
      await rename(part, fileOf(id))
      return { size, sha256: hash.digest('hex') }
    },

    async size(id: string): Promise<number | undefined> {
      try {
        return (await stat(fileOf(id))).size
      } catch {
        return undefined
      }
    },

    read(id: string, start: number, end: number): Readable {
      return createReadStream(fileOf(id), { start, end })
    },

    /** Renames file `from` to be package `to`'s file. */
    async promote(from: string, to: string): Promise<void> {
      await rename(fileOf(from), fileOf(to))
    },

    async remove(id: string): Promise<void> {
      await rm(fileOf(id), { force: true })
    },
  }
}

/**
 * The byte range a `Range` header asks for in a file of `size` bytes (RFC 9110 §14): one range,
 * `bytes=a-b`, `bytes=a-` or `bytes=-n`. undefined: serve the whole file (no header, or one we do not
 * take, such as several ranges); 'unsatisfiable': 416.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m) return undefined
  const [, a, b] = m as unknown as [string, string, string]
  if (a === '' && b === '') return undefined
  if (a === '') {
    const n = Number(b)
    if (n === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - n), end: size - 1 }
  }
  const start = Number(a)
  if (start >= size) return 'unsatisfiable'
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  if (end < start) return undefined
  return { start, end }
}
