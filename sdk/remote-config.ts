// Remote configuration over the two built-in desired sections (docs/twins.md, "Remote
// configuration"): `config` (the application's, any object) and `system` (checked by FleetHub).
// A section handler runs when its section changed since it last succeeded; what it applied is
// reported under the same name, in the one patch that also acknowledges the version, so the twin
// converges. What is reported is the difference to the reported document, so a removed setting is
// reported as removed.
import type { DesiredApplier, DesiredTracker } from './desired.js'
import { diffPatch, isJsonObject, type JsonObject, jsonEqual } from './json.js'

export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace'

/** The `system` section; FleetHub refuses any other property, so a handler can trust these types. */
export interface SystemProperties {
  /** How often the device sends telemetry: whole seconds, 1-86400. */
  reportingIntervalSec?: number
  /** A host name, optionally with `:port`. */
  timeServer?: string
  logLevel?: LogLevel
}

export interface SectionInfo {
  /** The desired version this section value belongs to. */
  version: number
}

/**
 * Applies a section (an empty object when desired has none). May return the values it actually
 * applied, which are reported instead of the ones it was given; throwing reports nothing.
 */
export type SectionHandler<T> = (
  section: T,
  info: SectionInfo,
) => T | undefined | Promise<T | undefined> | void | Promise<void>
export type ConfigHandler = SectionHandler<JsonObject>
export type SystemHandler = SectionHandler<SystemProperties>

export type SectionName = 'config' | 'system'

/** An applier for one handler of one section. */
export function sectionApplier(name: SectionName, handler: SectionHandler<JsonObject>): DesiredApplier {
  let applied: JsonObject | undefined
  let result: JsonObject = {}
  return async function applySection(update) {
    const section = update.desired[name]
    const value = isJsonObject(section) ? section : {}
    if (applied === undefined || !jsonEqual(value, applied)) {
      const returned = await handler(structuredClone(value), { version: update.version })
      applied = value
      // the JSON form, as it will be sent (undefined properties dropped)
      result = JSON.parse(JSON.stringify(isJsonObject(returned) ? returned : value))
    }
    // also when the handler did not run: an earlier report of it may not have got through
    const patch = diffPatch(update.reported?.[name], result)
    return Object.keys(patch).length > 0 ? { [name]: patch } : undefined
  }
}

export interface RemoteConfig {
  /** Applies the `config` section; resolves once the handler has had the current section. */
  onConfig(handler: ConfigHandler): Promise<() => void>
  /** Applies the `system` section; resolves once the handler has had the current section. */
  onSystem(handler: SystemHandler): Promise<() => void>
}

export function createRemoteConfig(tracker: DesiredTracker): RemoteConfig {
  function on(name: SectionName, handler: SectionHandler<JsonObject>): Promise<() => void> {
    if (typeof handler !== 'function') return Promise.reject(new TypeError(`the ${name} handler must be a function`))
    return tracker.add(sectionApplier(name, handler))
  }
  return {
    onConfig: (handler) => on('config', handler),
    onSystem: (handler) => on('system', handler as SectionHandler<JsonObject>),
  }
}
