// Paged lists: the cursor is the last id of a page, in base64url, so a client treats it as opaque.
import { errors } from '../../registry/errors.js'
import { isDeviceId } from '../../registry/ids.js'

export const encodeCursor = (id: string) => Buffer.from(id, 'utf8').toString('base64url')

/** The id in a cursor; `valid` says what an id of the list looks like. */
export function decodeCursor(cursor: string, valid: (id: string) => boolean = isDeviceId): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!valid(id)) throw new errors.INVALID_CURSOR()
  return id
}

/** A store's page as the API answers it: `nextCursor` while more may follow. */
export function pageAnswer<T>(page: { items: T[]; next?: string }): { items: T[]; nextCursor?: string } {
  return page.next === undefined ? { items: page.items } : { items: page.items, nextCursor: encodeCursor(page.next) }
}
