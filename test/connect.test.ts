// The CONNACK matrix: who gets in, and with which return code when not.
import t from 'tap'
import type { Plugin } from '../broker/plugin-host.js'
import { signToken } from '../registry/credentials.js'
import {
  ADMIN_TOKEN,
  connackOf,
  createDevice,
  deviceOpts,
  mqttUrl,
  serviceOpts,
  startTestApp,
  wsUrl,
} from './helpers/app.js'
import { rawConnect, rawConnectBytes } from './helpers/raw.js'

t.test('CONNACK matrix over TCP and WebSocket', async (t) => {
  const app = await startTestApp(t)
  const keys = await createDevice(app, 'dev-1')
  await createDevice(app, 'dev-off')
  const offKeys = await app.registry.rotateKeys('dev-off')
  await app.registry.updateDevice('dev-off', { status: 'disabled' })
  const now = Math.floor(Date.now() / 1000)
  const cases: [string, Parameters<typeof connackOf>[1], number][] = [
    ['primary key', deviceOpts('dev-1', keys.primary), 0],
    ['secondary key', deviceOpts('dev-1', keys.secondary), 0],
    ['signed token', deviceOpts('dev-1', signToken('dev-1', keys.primary, now + 600)), 0],
    ['token signed with the secondary key', deviceOpts('dev-1', signToken('dev-1', keys.secondary, now + 600)), 0],
    ['expired token', deviceOpts('dev-1', signToken('dev-1', keys.primary, now - 1)), 4],
    ['token of another device', deviceOpts('dev-1', signToken('dev-2', keys.primary, now + 600)), 4],
    ['wrong key', deviceOpts('dev-1', 'not-the-key'), 4],
    ['key of the right shape but wrong', deviceOpts('dev-1', offKeys.primary), 4],
    ['unknown device', deviceOpts('ghost', keys.primary), 4],
    ['no password', { clientId: 'dev-1', username: 'dev-1' }, 4],
    ['no user name and no password', { clientId: 'dev-1' }, 4],
    ['disabled device with its key', deviceOpts('dev-off', offKeys.primary), 5],
    ['disabled device with a wrong key', deviceOpts('dev-off', keys.primary), 4],
    ['client id other than the device id', { clientId: 'other', username: 'dev-1', password: keys.primary }, 2],
    ['empty client id, clean session', { clientId: '', username: 'dev-1', password: keys.primary, clean: true }, 0],
    ['service with the admin token', serviceOpts('svc-1'), 0],
    ['service with a wrong token', serviceOpts('svc-1', 'test', 'wrong-token-wrong-token'), 4],
    ['service borrowing a device id', serviceOpts('dev-1'), 2],
    ['service with an invalid name', { clientId: 's', username: 'service:', password: ADMIN_TOKEN }, 4],
  ]
  for (const [transport, url] of [
    ['tcp', mqttUrl(app)],
    ['ws', wsUrl(app)],
  ] as const) {
    for (const [name, opts, code] of cases) {
      t.equal(await connackOf(url, opts), code, `${transport}: ${name} → ${code}`)
    }
  }

  // mqtt.js will not send these; a raw client does
  const raw = await rawConnect(app.ports.mqtt)
  raw.sendBytes(rawConnectBytes({ clientId: '', username: 'dev-1', password: keys.primary, clean: false }))
  const connack = (await raw.next('connack')) as { returnCode?: number } | undefined
  t.equal(connack?.returnCode, 2, 'empty client id with CleanSession=0 → 2 [MQTT-3.1.3-8]')
  t.ok(await raw.closedWithin(1000), 'and the connection is closed')
})

t.test("an authenticate hook reads the peer's address, over TCP and WebSocket", async (t) => {
  const seen: { transport: string; remoteAddress: string | undefined }[] = []
  const watcher: Plugin = {
    name: 'address-watcher',
    register({ host }) {
      // first in line: the built-in hooks decide every CONNECT with a user name
      host.hooks.authenticate.unshift(async (ctx) => {
        seen.push({ transport: ctx.transport, remoteAddress: ctx.remoteAddress })
        return undefined // not this hook's to decide
      })
    },
  }
  const app = await startTestApp(t, {}, { plugins: [watcher] })
  const keys = await createDevice(app, 'addr-1')
  t.equal(await connackOf(mqttUrl(app), deviceOpts('addr-1', keys.primary)), 0)
  t.equal(await connackOf(wsUrl(app), deviceOpts('addr-1', keys.primary)), 0)
  t.same(seen, [
    { transport: 'tcp', remoteAddress: '127.0.0.1' },
    { transport: 'ws', remoteAddress: '127.0.0.1' },
  ])
})
