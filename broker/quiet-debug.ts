// `debug` loggers that cost nothing while they are off. mqtt-packet logs through `debug` a dozen
// times per packet it parses or writes, and a `debug` logger gathers its arguments into an array
// before it checks whether it is enabled: about a tenth of the bytes a node allocates for a twin
// patch (bench twin-reported, sampled heap profile; docs/benchmarks.md). From here on, a logger
// created for a namespace that `DEBUG` does not enable is an empty function. `DEBUG=mqtt-packet:*`
// at start still logs; enabling a namespace later (`debug.enable()`) reaches only loggers created
// after it. Imported before anything else by the command and the composition root, so the modules
// that create their loggers at load time (mqtt-packet, ioredis) get these.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

interface Debugger {
  (...args: unknown[]): void
  namespace: string
  enabled: boolean
  extend(namespace: string, delimiter?: string): Debugger
}
interface CreateDebug {
  (namespace: string): Debugger
  enabled(namespace: string): boolean
}

const path = require.resolve('debug')
const createDebug = require('debug') as CreateDebug

function quietDebug(namespace: string): Debugger {
  if (createDebug.enabled(namespace)) return createDebug(namespace)
  const off = (() => {}) as Debugger
  off.namespace = namespace
  off.enabled = false
  off.extend = (sub, delimiter = ':') => quietDebug(namespace + delimiter + sub)
  return off
}

// the package's own functions and state (enable, disable, names, formatters…) stay reachable, read
// and written through to the package itself
for (const key of Object.getOwnPropertyNames(createDebug)) {
  if (key in Function.prototype || key === 'prototype' || key === 'debug' || key === 'default') continue
  Object.defineProperty(quietDebug, key, {
    enumerable: true,
    get: () => (createDebug as unknown as Record<string, unknown>)[key],
    set: (value: unknown) => {
      ;(createDebug as unknown as Record<string, unknown>)[key] = value
    },
  })
}
Object.defineProperty(quietDebug, 'debug', { value: quietDebug })
Object.defineProperty(quietDebug, 'default', { value: quietDebug })
const loaded = require.cache[path]
if (loaded) loaded.exports = quietDebug
