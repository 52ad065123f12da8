// The built-in command `$changeKey` (docs/commands.md, "Key rollover"): FleetHub sends a new key,
// the device stores it (`onKeyChange`) and answers 200, and only then does FleetHub switch the
// device's primary key. The SDK connects with the new key from the next (re)connect on; if storing
// it fails, the answer is a failure and the old key stays, on both sides.
import { verifierOf } from '../registry/credentials.js'
import type { CommandHandler } from './commands.js'
import { CommandError } from './errors.js'
import { isJsonObject } from './json.js'
import type { Keyring } from './keyring.js'

export const CHANGE_KEY = '$changeKey'

/** Stores the device's new key where the next start reads it; throwing keeps the old key. */
export type KeyChangeHandler = (newKey: string) => Promise<void> | void

export function changeKeyHandler(keyring: Keyring, onKeyChange: KeyChangeHandler): CommandHandler {
  return async function changeKey(body) {
    const key = isJsonObject(body) ? body.key : undefined
    if (typeof key !== 'string' || verifierOf(key) === undefined) {
      throw new CommandError(400, { code: 'E_BAD_KEY', message: 'body.key must be a 32-byte key in base64url' })
    }
    await onKeyChange(key) // a throw is answered 500 E_HANDLER: FleetHub keeps the old key
    keyring.adopt(key)
    return { status: 200 }
  }
}
