// Configuration is read once, here: from command-line flags, then FLEETHUB_* environment variables,
// then defaults. Every option is declared once in OPTIONS with its env var, flag, default and
// documentation (the README's table and `fleethub start --help` come from it). Errors name the
// option and the bad value. Everything else receives the frozen Config.
import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { errors } from '../registry/errors.js'

export interface Config {
  /** MQTT over TCP. @default 1883 */
  readonly mqttPort: number
  /** MQTT over WebSocket, path /mqtt. @default 8083 */
  readonly wsPort: number
  /** HTTP management API, /metrics, /healthz, /docs. @default 8080 */
  readonly httpPort: number
  /** Bind address of every listener. @default 0.0.0.0 */
  readonly host: string
  /** PEM certificate: with tlsKey, also serves MQTT over TLS and WSS. */
  readonly tlsCert?: string
  readonly tlsKey?: string
  /** MQTT over TLS, when a certificate is given. @default 8883 */
  readonly mqttsPort: number
  /** MQTT over secure WebSocket, when a certificate is given. @default 8084 */
  readonly wssPort: number
  /** Redis URL; unset means the embedded in-memory mode. */
  readonly redisUrl?: string
  /** Prefix of every Redis key. @default fh */
  readonly redisPrefix: string
  /** Admin API token; unset means one is generated and printed once at start. */
  readonly adminToken?: string
  /** This node's id in a cluster. @default random */
  readonly nodeId: string
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Mosquitto-style ACL file for topics outside `$`; unset allows every authenticated client. */
  readonly aclFile?: string
  /** Largest MQTT packet accepted, in bytes; bigger ones close the connection. @default 262144 */
  readonly maxPacketSize: number
  /** Inbound packets a node works on at once before connections wait to be read. @default 256 */
  readonly maxInFlight: number
  /** Devices whose credentials the CONNECT cache keeps. @default 100000 */
  readonly authCacheSize: number
  /** Largest twin document per side, in bytes. @default 32768 */
  readonly twinMaxBytes: number
  /** Deepest nesting in a twin document. @default 10 */
  readonly twinMaxDepth: number
  /** Longest a command may wait for its answer (ms); requests asking for more get 400. @default 300000 */
  readonly commandMaxTimeoutMs: number
  /** How long command records are kept after their last change (ms). @default 86400000 */
  readonly commandRetentionMs: number
  /** Queued commands a device may have at most. @default 50 */
  readonly commandQueueMax: number
  /** Allow key rollover to devices connected without TLS (the new key then travels in clear). @default false */
  readonly allowInsecureRollover: boolean
  /** Where compact frames are decoded: inline, pool (worker threads) or auto. @default auto */
  readonly decodePolicy: 'inline' | 'pool' | 'auto'
  /** Worker threads of the decode pool. @default cores - 1, at least 1 */
  readonly decodeThreads: number
  /** Compact frames in flight before their senders are held. @default 10000 */
  readonly decodeQueueMax: number
  /** Frames per decode task in the pool. @default 512 */
  readonly decodeBatch: number
  /** Hubs provisioned devices are assigned to: a JSON array (docs/provisioning.md); unset: this node. */
  readonly provisioningHubs?: string
  /** PKCS#8 PEM Ed25519 private key that signs package manifests; unset: an ephemeral key per start. */
  readonly otaSigningKey?: string
  /** Directory of hosted package files. @default {os.tmpdir()}/fleethub-packages */
  readonly otaDir: string
  /** Largest package file upload, in bytes. @default 67108864 */
  readonly otaMaxPackageBytes: number
  /** Base URL devices download hosted packages from; unset: this node's HTTP address. */
  readonly otaBaseUrl?: string
  /** How often the rollout scheduler looks at its jobs (ms). @default 1000 */
  readonly otaTickMs: number
}

type Kind = 'port' | 'string' | 'file' | 'url' | 'int' | 'token' | 'nodeId' | 'logLevel' | 'bool'

interface OptionSpec {
  key: keyof Config
  env: string
  flag: string
  kind: Kind
  default?: string | number | (() => string)
  doc: string
  min?: number
  max?: number
  /** Strings: the values allowed. */
  choices?: readonly string[]
}

export const OPTIONS: readonly OptionSpec[] = [
  {
    key: 'mqttPort',
    env: 'FLEETHUB_MQTT_PORT',
    flag: 'mqtt-port',
    kind: 'port',
    default: 1883,
    doc: 'MQTT over TCP port (0: pick a free port)',
  },
  {
    key: 'wsPort',
    env: 'FLEETHUB_WS_PORT',
    flag: 'ws-port',
    kind: 'port',
    default: 8083,
    doc: 'MQTT over WebSocket port, path /mqtt',
  },
  {
    key: 'httpPort',
    env: 'FLEETHUB_HTTP_PORT',
    flag: 'http-port',
    kind: 'port',
    default: 8080,
    doc: 'HTTP API port (+ /metrics, /healthz, /docs)',
  },
  { key: 'host', env: 'FLEETHUB_HOST', flag: 'host', kind: 'string', default: '0.0.0.0', doc: 'bind address' },
  {
    key: 'tlsCert',
    env: 'FLEETHUB_TLS_CERT',
    flag: 'tls-cert',
    kind: 'file',
    doc: 'PEM certificate file; with the key, serves MQTT over TLS and WSS',
  },
  { key: 'tlsKey', env: 'FLEETHUB_TLS_KEY', flag: 'tls-key', kind: 'file', doc: 'PEM private key file' },
  {
    key: 'mqttsPort',
    env: 'FLEETHUB_MQTTS_PORT',
    flag: 'mqtts-port',
    kind: 'port',
    default: 8883,
    doc: 'MQTT over TLS port (when a certificate is given)',
  },
  {
    key: 'wssPort',
    env: 'FLEETHUB_WSS_PORT',
    flag: 'wss-port',
    kind: 'port',
    default: 8084,
    doc: 'MQTT over secure WebSocket port (when a certificate is given)',
  },
  {
    key: 'redisUrl',
    env: 'FLEETHUB_REDIS_URL',
    flag: 'redis',
    kind: 'url',
    doc: 'Redis URL (redis:// or rediss://); unset: embedded in-memory mode',
  },
  {
    key: 'redisPrefix',
    env: 'FLEETHUB_REDIS_PREFIX',
    flag: 'redis-prefix',
    kind: 'string',
    default: 'fh',
    doc: 'prefix of every Redis key',
  },
  {
    key: 'adminToken',
    env: 'FLEETHUB_ADMIN_TOKEN',
    flag: 'admin-token',
    kind: 'token',
    doc: 'admin API token, at least 16 characters; unset: generated and printed once',
  },
  {
    key: 'nodeId',
    env: 'FLEETHUB_NODE_ID',
    flag: 'node-id',
    kind: 'nodeId',
    default: randomNodeId,
    doc: 'node id in a cluster (default: random)',
  },
  {
    key: 'logLevel',
    env: 'FLEETHUB_LOG_LEVEL',
    flag: 'log-level',
    kind: 'logLevel',
    default: 'info',
    doc: 'fatal, error, warn, info, debug, trace or silent',
  },
  {
    key: 'aclFile',
    env: 'FLEETHUB_ACL_FILE',
    flag: 'acl-file',
    kind: 'file',
    doc: 'mosquitto-style ACL file for topics outside $ (default: allow all authenticated clients)',
  },
  {
    key: 'maxPacketSize',
    env: 'FLEETHUB_MAX_PACKET_SIZE',
    flag: 'max-packet-size',
    kind: 'int',
    default: 262144,
    min: 1024,
    max: 268435455,
    doc: 'largest MQTT packet in bytes; a bigger one closes the connection',
  },
  {
    key: 'maxInFlight',
    env: 'FLEETHUB_MAX_IN_FLIGHT',
    flag: 'max-in-flight',
    kind: 'int',
    default: 256,
    min: 16,
    max: 1000000,
    doc: 'inbound packets a node works on at once; past that, connections wait to be read (backpressure)',
  },
  {
    key: 'authCacheSize',
    env: 'FLEETHUB_AUTH_CACHE_SIZE',
    flag: 'auth-cache-size',
    kind: 'int',
    default: 100000,
    min: 0,
    max: 10000000,
    doc: 'devices whose credentials the CONNECT cache keeps (0: off)',
  },
  {
    key: 'twinMaxBytes',
    env: 'FLEETHUB_TWIN_MAX_BYTES',
    flag: 'twin-max-bytes',
    kind: 'int',
    default: 32768,
    min: 256,
    max: 1048576,
    doc: 'largest twin document per side (desired, reported), in bytes',
  },
  {
    key: 'twinMaxDepth',
    env: 'FLEETHUB_TWIN_MAX_DEPTH',
    flag: 'twin-max-depth',
    kind: 'int',
    default: 10,
    min: 1,
    max: 32,
    doc: 'deepest nesting of objects and arrays in a twin document',
  },
  {
    key: 'commandMaxTimeoutMs',
    env: 'FLEETHUB_COMMAND_MAX_TIMEOUT_MS',
    flag: 'command-max-timeout-ms',
    kind: 'int',
    default: 300000,
    min: 1000,
    max: 86400000,
    doc: 'longest timeoutMs a command may ask for (the default is 30000)',
  },
  {
    key: 'commandRetentionMs',
    env: 'FLEETHUB_COMMAND_RETENTION_MS',
    flag: 'command-retention-ms',
    kind: 'int',
    default: 86400000,
    min: 1000,
    max: 2592000000,
    doc: 'how long command records are kept after their last change',
  },
  {
    key: 'commandQueueMax',
    env: 'FLEETHUB_COMMAND_QUEUE_MAX',
    flag: 'command-queue-max',
    kind: 'int',
    default: 50,
    min: 1,
    max: 10000,
    doc: 'queued commands one offline device may have (more: 429)',
  },
  {
    key: 'allowInsecureRollover',
    env: 'FLEETHUB_ALLOW_INSECURE_ROLLOVER',
    flag: 'allow-insecure-rollover',
    kind: 'bool',
    default: 'false',
    doc: 'allow key rollover to devices connected without TLS (the new key travels in clear)',
  },
  {
    key: 'decodePolicy',
    env: 'FLEETHUB_DECODE_POLICY',
    flag: 'decode-policy',
    kind: 'string',
    choices: ['inline', 'pool', 'auto'],
    default: 'auto',
    doc: 'where compact frames are decoded: inline, pool (worker threads) or auto (inline until decoding would take a tenth of the event loop)',
  },
  {
    key: 'decodeThreads',
    env: 'FLEETHUB_DECODE_THREADS',
    flag: 'decode-threads',
    kind: 'int',
    default: Math.max(1, availableParallelism() - 1),
    min: 1,
    max: 64,
    doc: 'worker threads of the decode pool (default: cores - 1, at least 1)',
  },
  {
    key: 'decodeQueueMax',
    env: 'FLEETHUB_DECODE_QUEUE_MAX',
    flag: 'decode-queue-max',
    kind: 'int',
    default: 10000,
    min: 1,
    max: 1000000,
    doc: 'compact frames in flight before their senders are held (backpressure)',
  },
  {
    key: 'decodeBatch',
    env: 'FLEETHUB_DECODE_BATCH',
    flag: 'decode-batch',
    kind: 'int',
    default: 512,
    min: 1,
    max: 10000,
    doc: 'compact frames per decode task in the pool',
  },
  {
    key: 'provisioningHubs',
    env: 'FLEETHUB_PROVISIONING_HUBS',
    flag: 'provisioning-hubs',
    kind: 'string',
    doc: 'hubs provisioned devices are assigned to, a JSON array (docs/provisioning.md); unset: this node',
  },
  {
    key: 'otaSigningKey',
    env: 'FLEETHUB_OTA_SIGNING_KEY',
    flag: 'ota-signing-key',
    kind: 'file',
    doc: 'PKCS#8 PEM Ed25519 private key that signs package manifests (unset: an ephemeral key per start, for development only; every node of a cluster needs the same key)',
  },
  {
    key: 'otaDir',
    env: 'FLEETHUB_OTA_DIR',
    flag: 'ota-dir',
    kind: 'string',
    default: () => path.join(tmpdir(), 'fleethub-packages'),
    doc: 'directory of hosted package files (default: fleethub-packages in the system temp dir; in a cluster it must be shared storage, or use external package URLs)',
  },
  {
    key: 'otaMaxPackageBytes',
    env: 'FLEETHUB_OTA_MAX_PACKAGE_BYTES',
    flag: 'ota-max-package-bytes',
    kind: 'int',
    default: 67108864,
    min: 1,
    max: 17179869184,
    doc: 'largest package file upload, in bytes',
  },
  {
    key: 'otaBaseUrl',
    env: 'FLEETHUB_OTA_BASE_URL',
    flag: 'ota-base-url',
    kind: 'string',
    doc: "base URL devices download hosted packages from, e.g. https://hub.example.com (unset: this node's HTTP address)",
  },
  {
    key: 'otaTickMs',
    env: 'FLEETHUB_OTA_TICK_MS',
    flag: 'ota-tick-ms',
    kind: 'int',
    default: 1000,
    min: 20,
    max: 60000,
    doc: 'how often the rollout scheduler drives its jobs (ms)',
  },
]

function randomNodeId(): string {
  return `node-${Math.random().toString(36).slice(2, 10)}`
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

function bad(o: OptionSpec, source: string, value: string, why: string): Error {
  return new errors.CONFIG(`invalid ${source === 'flag' ? `--${o.flag}` : o.env}=${JSON.stringify(value)}: ${why}`)
}

function parseValue(o: OptionSpec, raw: string, source: 'flag' | 'env'): string | number {
  switch (o.kind) {
    case 'port':
    case 'int': {
      const min = o.kind === 'port' ? 0 : (o.min ?? 0)
      const max = o.kind === 'port' ? 65535 : (o.max ?? Number.MAX_SAFE_INTEGER)
      if (!/^\d+$/.test(raw)) throw bad(o, source, raw, 'expected a whole number')
      const n = Number(raw)
      if (n < min || n > max) throw bad(o, source, raw, `expected ${min} to ${max}`)
      return n
    }
    case 'file':
      if (!existsSync(raw)) throw bad(o, source, raw, 'no such file')
      return raw
    case 'url': {
      let u: URL
      try {
        u = new URL(raw)
      } catch {
        throw bad(o, source, raw, 'not a URL')
      }
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
        throw bad(o, source, raw, 'expected redis:// or rediss://')
      return raw
    }
    case 'token':
      if (raw.length < 16) throw bad(o, source, '…', 'a token needs at least 16 characters')
      return raw
    case 'nodeId':
      if (!/^[A-Za-z0-9\-._]{1,64}$/.test(raw)) throw bad(o, source, raw, 'expected 1-64 letters, digits, - . or _')
      return raw
    case 'bool':
      if (raw !== 'true' && raw !== 'false') throw bad(o, source, raw, 'expected true or false')
      return raw
    case 'logLevel':
      if (!LOG_LEVELS.includes(raw)) throw bad(o, source, raw, `expected one of ${LOG_LEVELS.join(', ')}`)
      return raw
    default:
      if (raw.length === 0) throw bad(o, source, raw, 'must not be empty')
      if (o.choices && !o.choices.includes(raw)) throw bad(o, source, raw, `expected one of ${o.choices.join(', ')}`)
      return raw
  }
}

/**
 * Builds the configuration from flags (`argv`, after the command) and the environment.
 * Throws a FLEETHUB_ERR_CONFIG error that names the option on any bad value.
 */
export function loadConfig(argv: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Config {
  let values: Record<string, string | boolean | undefined>
  try {
    const options = Object.fromEntries(OPTIONS.map((o) => [o.flag, { type: 'string' as const }]))
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values
  } catch (err) {
    throw new errors.CONFIG((err as Error).message)
  }
  const out: Record<string, unknown> = {}
  for (const o of OPTIONS) {
    const flag = values[o.flag]
    const fromEnv = env[o.env]
    if (typeof flag === 'string') out[o.key] = parseValue(o, flag, 'flag')
    else if (fromEnv !== undefined && fromEnv !== '') out[o.key] = parseValue(o, fromEnv, 'env')
    else if (typeof o.default === 'function') out[o.key] = o.default()
    else if (o.default !== undefined) out[o.key] = o.default
  }
  if ((out.tlsCert === undefined) !== (out.tlsKey === undefined)) {
    throw new errors.CONFIG('FLEETHUB_TLS_CERT and FLEETHUB_TLS_KEY must be given together')
  }
  if (out.tlsCert !== undefined) {
    for (const k of ['tlsCert', 'tlsKey'] as const) {
      const o = OPTIONS.find((x) => x.key === k) as OptionSpec
      const text = readFileSync(out[k] as string, 'utf8')
      if (!text.includes('-----BEGIN')) throw bad(o, 'env', out[k] as string, 'not a PEM file')
    }
  }
  for (const o of OPTIONS) if (o.kind === 'bool') out[o.key] = out[o.key] === 'true'
  return Object.freeze(out) as unknown as Config
}

/** The option table, for `fleethub start --help`. */
export function optionsHelp(): string {
  const rows = OPTIONS.map((o) => {
    const def = typeof o.default === 'function' ? 'random' : o.default === undefined ? 'unset' : String(o.default)
    return `  --${o.flag.padEnd(17)} ${o.env.padEnd(26)} ${def.padEnd(8)} ${o.doc}`
  })
  return [`  ${'flag'.padEnd(19)} ${'env var'.padEnd(26)} ${'default'.padEnd(8)} meaning`, ...rows].join('\n')
}
