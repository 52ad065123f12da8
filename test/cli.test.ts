// The `fleethub` command as operators run it: the listening line, TLS and WSS, graceful stop,
// configuration errors.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { connackOf, connect, deviceOpts } from './helpers/app.js'
import { api, exitOf, runCli, startNode } from './helpers/process.js'

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/tls')
const TOKEN = 'cli-admin-token-0123456789'

t.test('start, serve TCP, WebSocket, TLS and WSS, stop on SIGTERM with exit 0', async (t) => {
  const node = await startNode(
    {
      FLEETHUB_ADMIN_TOKEN: TOKEN,
      FLEETHUB_TLS_CERT: path.join(fixtures, 'cert.pem'),
      FLEETHUB_TLS_KEY: path.join(fixtures, 'key.pem'),
      FLEETHUB_MQTTS_PORT: '0',
      FLEETHUB_WSS_PORT: '0',
    },
    t.teardown,
  )
  const line = node
    .output()
    .split('\n')
    .find((l) => l.includes('"msg":"listening"')) as string
  const listening = JSON.parse(line)
  for (const k of ['mqtt', 'ws', 'http', 'mqtts', 'wss'])
    t.ok(listening[k] > 0, `the listening line has the real ${k} port`)
  const keys = (await api(node, TOKEN, 'POST', '/devices', { id: 'tls-1' })).json.keys
  const ca = readFileSync(path.join(fixtures, 'cert.pem'))
  const urls = [
    `mqtt://127.0.0.1:${listening.mqtt}`,
    `ws://127.0.0.1:${listening.ws}/mqtt`,
    `mqtts://localhost:${listening.mqtts}`,
    `wss://localhost:${listening.wss}/mqtt`,
  ]
  for (const url of urls)
    t.equal(
      await connackOf(url, { ...deviceOpts('tls-1', keys.primary), ca }),
      0,
      `a device connects over ${url.split(':')[0]}`,
    )
  const held = await connect(urls[2] as string, { ...deviceOpts('tls-1', keys.primary), ca })
  const closed = new Promise<void>((r) => held.once('close', () => r()))
  t.equal(await node.stop('SIGTERM'), 0, 'SIGTERM: exit 0')
  await closed
  t.pass('and the open session was closed')
  t.match(node.output(), /"msg":"stopped"/)
})

t.test('the generated admin token is printed once and works', async (t) => {
  const node = await startNode({}, t.teardown)
  const tokens = node
    .output()
    .split('\n')
    .filter((l) => l.includes('adminToken'))
  t.equal(tokens.length, 1)
  const token = JSON.parse(tokens[0] as string).adminToken as string
  t.equal((await api(node, token, 'GET', '/devices')).status, 200)
  t.equal((await api(node, 'wrong-token', 'GET', '/devices')).status, 401)
  t.equal(await node.stop('SIGINT'), 0, 'SIGINT: exit 0')
})

t.test('configuration errors exit 2 and name the option', async (t) => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [['start'], { FLEETHUB_MQTT_PORT: 'abc' }, /FLEETHUB_MQTT_PORT="abc"/],
    [['start', '--redis', 'http://x'], {}, /--redis="http:\/\/x"/],
    [['start', '--nope'], {}, /nope/],
    [['frobnicate'], {}, /unknown command frobnicate/],
  ]
  for (const [args, env, msg] of cases) {
    const p = runCli(args, env)
    let err = ''
    p.stderr?.on('data', (d) => {
      err += d
    })
    t.equal(await exitOf(p), 2, `${args.join(' ')}: exit 2`)
    t.match(err, msg)
  }
  const help = runCli(['start', '--help'], {})
  let out = ''
  help.stdout?.on('data', (d) => {
    out += d
  })
  t.equal(await exitOf(help), 0)
  t.match(out, /FLEETHUB_REDIS_URL/)
})

t.test('a Redis that is not there fails the start clearly', async (t) => {
  const p = runCli(['start'], {
    FLEETHUB_REDIS_URL: 'redis://127.0.0.1:1',
    FLEETHUB_HTTP_PORT: '0',
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_WS_PORT: '0',
  })
  let err = ''
  p.stderr?.on('data', (d) => {
    err += d
  })
  t.equal(await exitOf(p), 1)
  t.match(err, /Redis|ECONNREFUSED/)
})
