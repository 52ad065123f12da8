// Page cursors of the device lists: the last device id of a page, opaque to clients.
import { errors } from '../../registry/errors.js'
import { isDeviceId } from '../../registry/ids.js'

export const encodeCursor = (id: string) => Buffer.from(id, 'utf8').toString('base64url')

export function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!isDeviceId(id)) throw new errors.INVALID_CURSOR()
  return id
}
