// Unit tests of the pure pieces: key material and tokens, configuration, ACL patterns, topics.
import { createHmac } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { loadConfig, optionsHelp } from '../broker/config.js'
import { compileAcl, parseAcl } from '../plugins/acl/patterns.js'
import {
  checkPassword,
  decodeVerifiers,
  generateKeys,
  secretMatcher,
  signToken,
  verifierOf,
  verifiersOf,
} from '../registry/credentials.js'
import { isDeviceId, patchTags } from '../registry/ids.js'
import { downlinkKindAt, splitIotTopic, uplinkKindAt } from '../registry/topics.js'

t.test('keys, verifiers and tokens follow the contract', async (t) => {
  const keys = generateKeys()
  t.match(keys.primary, /^[A-Za-z0-9_-]{43}$/)
  const raw = Buffer.from(keys.primary, 'base64url')
  t.equal(raw.length, 32)
  const verifier = createHmac('sha256', raw).update('fleethub-token-v1').digest()
  t.equal(verifierOf(keys.primary), verifier.toString('base64url'), 'verifier = HMAC-SHA256(key, "fleethub-token-v1")')
  const sig = createHmac('sha256', verifier).update('dev-9\n1999999999').digest('base64url')
  t.equal(signToken('dev-9', keys.primary, 1999999999), `v1.1999999999.${sig}`, 'token = v1.{expiry}.{sig}')

  const v = decodeVerifiers(verifiersOf(keys))
  const now = 1_800_000_000
  t.equal(checkPassword('dev-9', keys.primary, v, now), 'ok')
  t.equal(checkPassword('dev-9', keys.secondary, v, now), 'ok')
  t.equal(checkPassword('dev-9', signToken('dev-9', keys.secondary, now + 1), v, now), 'ok')
  t.equal(checkPassword('dev-9', signToken('dev-9', keys.primary, now), v, now), 'expired', 'expiry is exclusive')
  t.equal(checkPassword('dev-8', signToken('dev-9', keys.primary, now + 60), v, now), 'bad', 'bound to the device id')
  t.equal(checkPassword('dev-9', generateKeys().primary, v, now), 'bad')
  for (const junk of ['', 'v1.', 'v1.x.y', `v1.${now + 60}.${'A'.repeat(43)}`, 'a'.repeat(43), 'a'.repeat(5000)]) {
    t.equal(checkPassword('dev-9', junk, v, now), 'bad', `junk ${junk.slice(0, 12)}… is bad`)
  }
  t.throws(() => signToken('d', 'short', 1))
  const isAbc = secretMatcher('abc')
  t.ok(isAbc('abc'))
  t.notOk(isAbc('abd'))
  t.notOk(isAbc('abcd'))
  t.notOk(isAbc(''))
})

t.test('ids and tags', async (t) => {
  for (const ok of ['a', 'A-b.c_d:e@f', 'x'.repeat(128)]) t.ok(isDeviceId(ok), ok.slice(0, 20))
  for (const bad of ['', 'x'.repeat(129), 'a/b', 'a+b', 'a#', '{a}', 'a b', 'service:x', 'é'])
    t.notOk(isDeviceId(bad), bad)
  t.same(patchTags({ a: '1', b: 2 }, { a: null, c: true }), { b: 2, c: true })
  t.throws(() => patchTags({}, { 'bad key': 'x' }), { code: 'FLEETHUB_ERR_INVALID_TAGS' })
  t.throws(() => patchTags({}, { k: 'x'.repeat(300) }), { code: 'FLEETHUB_ERR_INVALID_TAGS' })
  t.throws(() => patchTags({}, Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 1]))))
})

t.test('topics', async (t) => {
  t.equal(uplinkKindAt('$iot/d/telemetry', 7), 'telemetry')
  t.equal(uplinkKindAt('$iot/d/twin/reported', 7), 'twin/reported')
  t.equal(uplinkKindAt('$iot/d/telemetry/x', 7), undefined)
  t.equal(uplinkKindAt('$iot/d/twin/desired', 7), undefined)
  t.equal(downlinkKindAt('$iot/d/twin/desired', 7), 'twin/desired')
  t.same(splitIotTopic('$iot/dev-1/cmd/res'), { deviceId: 'dev-1', restAt: 11 })
  t.equal(splitIotTopic('$iot//x'), undefined)
  t.equal(splitIotTopic('$other/x/y'), undefined)
})

t.test('configuration', async (t) => {
  const c = loadConfig([], {})
  t.match(c, { mqttPort: 1883, wsPort: 8083, httpPort: 8080, host: '0.0.0.0', mqttsPort: 8883, wssPort: 8084 })
  t.equal(c.redisUrl, undefined, 'embedded mode by default')
  t.match(c.nodeId, /^node-/)
  t.ok(Object.isFrozen(c))
  const env = loadConfig([], {
    FLEETHUB_MQTT_PORT: '0',
    FLEETHUB_REDIS_URL: 'redis://h:1/2',
    FLEETHUB_ADMIN_TOKEN: 'x'.repeat(16),
    FLEETHUB_NODE_ID: 'n1',
  })
  t.match(env, { mqttPort: 0, redisUrl: 'redis://h:1/2', nodeId: 'n1' })
  t.equal(loadConfig(['--mqtt-port', '1999'], { FLEETHUB_MQTT_PORT: '1000' }).mqttPort, 1999, 'flags win over env')
  const bad: [string[], Record<string, string>, RegExp][] = [
    [[], { FLEETHUB_MQTT_PORT: '70000' }, /FLEETHUB_MQTT_PORT="70000".*0 to 65535/],
    [[], { FLEETHUB_HTTP_PORT: 'eighty' }, /FLEETHUB_HTTP_PORT="eighty".*whole number/],
    [['--ws-port=-1'], {}, /--ws-port="-1"/],
    [[], { FLEETHUB_REDIS_URL: 'http://x' }, /FLEETHUB_REDIS_URL.*redis:\/\//],
    [[], { FLEETHUB_REDIS_URL: 'not a url' }, /FLEETHUB_REDIS_URL.*not a URL/],
    [[], { FLEETHUB_ADMIN_TOKEN: 'short' }, /FLEETHUB_ADMIN_TOKEN.*16 characters/],
    [[], { FLEETHUB_TLS_CERT: '/nonexistent.pem' }, /FLEETHUB_TLS_CERT.*no such file/],
    [[], { FLEETHUB_NODE_ID: 'a b' }, /FLEETHUB_NODE_ID/],
    [[], { FLEETHUB_LOG_LEVEL: 'loud' }, /FLEETHUB_LOG_LEVEL.*one of/],
    [[], { FLEETHUB_MAX_PACKET_SIZE: '10' }, /FLEETHUB_MAX_PACKET_SIZE.*1024/],
    [['--bogus', 'x'], {}, /bogus/],
  ]
  for (const [argv, e, msg] of bad) {
    t.throws(() => loadConfig(argv, e), { code: 'FLEETHUB_ERR_CONFIG', message: msg }, String(msg))
  }
  const cert = path.join(tmpdir(), `fh-cert-${process.pid}.pem`)
  writeFileSync(cert, 'not pem')
  t.throws(() => loadConfig([], { FLEETHUB_TLS_CERT: cert }), /given together/)
  t.throws(() => loadConfig([], { FLEETHUB_TLS_CERT: cert, FLEETHUB_TLS_KEY: cert }), /not a PEM file/)
  t.match(optionsHelp(), /--mqtt-port\s+FLEETHUB_MQTT_PORT\s+1883/)
})

t.test('mosquitto-style ACL patterns', async (t) => {
  const rules = parseAcl(
    [
      '# comment',
      'topic read pub/#',
      'topic deny pub/secret',
      'pattern readwrite dev/%u/#',
      'pattern write up/%c',
      'user ops',
      'topic ops/+/cmd',
    ].join('\n'),
  )
  t.equal(rules.length, 5)
  const acl = compileAcl(rules, 'client-1', 'd1')
  const pubs: [string, boolean][] = [
    ['dev/d1/x', true],
    ['dev/d1', true],
    ['dev/d2/x', false],
    ['up/client-1', true],
    ['pub/news', false],
    ['ops/a/cmd', false],
  ]
  for (const [topic, ok] of pubs) t.equal(acl.canPublish(topic), ok, `publish ${topic}`)
  const subs: [string, boolean][] = [
    ['pub/news', true],
    ['pub/+', false],
    ['pub/secret', false],
    ['pub/a/b', true],
    ['dev/d1/#', true],
    ['dev/+/x', false],
    ['#', false],
    ['up/client-1', false],
  ]
  for (const [filter, ok] of subs) t.equal(acl.canSubscribe(filter), ok, `subscribe ${filter}`)
  const ops = compileAcl(rules, 'c', 'ops')
  t.ok(ops.canPublish('ops/x/cmd'))
  t.ok(ops.canSubscribe('ops/+/cmd'))
  t.notOk(ops.canSubscribe('ops/#'))
  const sneaky = compileAcl(rules, 'a/#', 'd1')
  t.notOk(sneaky.canPublish('up/a/b'), 'a client id with topic characters disables its pattern')
  for (const bad of ['frobnicate x', 'topic', 'topic read a/#/b', 'topic a+', 'user']) {
    t.throws(() => parseAcl(bad), /line 1/, bad)
  }
})
