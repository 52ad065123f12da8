// What the reference agent simulates instead of a real device: the reboot (the MQTT connection
// drops and comes back, as when a device restarts) and the failures `fleethub simulate --ota-fail`
// injects. Each failure makes the real check fail or the real path run: a tampered signature meets
// the real verification, a corrupted file the real hash check, a cut download the real resume.
import { open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { MqttClient } from 'mqtt'

/**
 * - `bad_hash`: the downloaded file is corrupted (one byte flipped): `failed` with `hash_mismatch`.
 * - `bad_signature`: the notice's signature is tampered with: `failed` with `bad_signature`.
 * - `crash_after_reboot`: the new image fails its health check: back to the previous slot, `rolled_back`.
 * - `no_confirm`: the device reports `confirming` but never `succeeded`: the hub's confirmation
 *   deadline fires and it sends a rollback.
 * - `power_loss`: the power goes halfway through the download (once per job); after the restart the
 *   download resumes where the file ends.
 */
export const OTA_FAILURES = ['bad_hash', 'bad_signature', 'crash_after_reboot', 'no_confirm', 'power_loss'] as const
export type OtaFailure = (typeof OTA_FAILURES)[number]

export function isOtaFailure(v: unknown): v is OtaFailure {
  return (OTA_FAILURES as readonly unknown[]).includes(v)
}

/** The signature with one character changed (still base64url, so only the verification refuses it). */
export function tamperSignature(signature: string): string {
  const first = signature[0] === 'A' ? 'B' : 'A'
  return first + signature.slice(1)
}

/** Flips the last byte of `file` (an empty file gets one byte). */
export async function corruptFile(file: string): Promise<void> {
  const fh = await open(file, 'r+')
  try {
    const { size } = await fh.stat()
    if (size === 0) {
      await fh.write(Buffer.from([0xff]), 0, 1, 0)
      return
    }
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, size - 1)
    b[0] = (b[0] as number) ^ 0xff
    await fh.write(b, 0, 1, size - 1)
  } finally {
    await fh.close()
  }
}

/**
 * A simulated reboot of a device on `client`: the connection closes without DISCONNECT (as when the
 * power goes), stays down for `downMs`, and the same client connects again (mqtt.js resubscribes, and
 * keeps trying every reconnect period while the broker is away). Resolves on the new CONNACK;
 * `signal` stops waiting.
 */
export async function dropConnection(client: MqttClient, downMs: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    client.end(true, () => resolve())
  })
  await sleep(downMs, undefined, signal ? { signal } : {})
  // not events.once: it rejects on the first 'error', and a refused attempt is not the end of a reboot
  const back = new Promise<void>((resolve, reject) => {
    const stop = () => {
      client.off('connect', connected)
      reject(new Error('the reboot was interrupted'))
    }
    function connected() {
      signal?.removeEventListener('abort', stop)
      resolve()
    }
    client.once('connect', connected)
    signal?.addEventListener('abort', stop, { once: true })
  })
  client.reconnect()
  await back
}
