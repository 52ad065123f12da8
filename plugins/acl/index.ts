// Authorization. Inside `$iot/`, a device publishes only its own uplink topics and subscribes only
// its own downlink topics, exactly (no wildcards: see ARCHITECTURE.md on mqemitter-redis patterns);
// a gateway also those of its registered children. Services read `$iot/` and `$fleet/` but never
// publish there (they drive devices through the HTTP API). A provisioning connection may use its two
// `$provision/{registrationId}/` topics and nothing else. Other `$` topics are closed. Outside `$`,
// a mosquitto-style ACL file decides, or, without one, every authenticated client may use any topic.
import { readFileSync } from 'node:fs'
import type { Decision, Plugin } from '../../broker/plugin-host.js'
import type { DevicePrincipal, Session } from '../../broker/session.js'
import { errors } from '../../registry/errors.js'
import { isDeviceId } from '../../registry/ids.js'
import type { RegistryService } from '../../registry/service.js'
import { downlinkKindAt, FLEET_PREFIX, IOT_PREFIX, splitIotTopic, uplinkKindAt } from '../../registry/topics.js'
import { type AclRule, type ClientAcl, compileAcl, parseAcl } from './patterns.js'

/** Remembered publish decisions per client for the ACL file (devices reuse a few topics). */
const DECISION_CACHE = 64

/** Answers a gateway remembers about its children; past this the memory starts over. */
const MAX_KNOWN_CHILDREN = 1024

/**
 * Is `childId` a registered child of this device? A device learns once per session whether it has
 * children at all, so a device that is no gateway costs no look-ups however many foreign topics it
 * tries; a gateway remembers its answers (bounded). Registry events keep both correct.
 */
function isChild(p: DevicePrincipal, childId: string, registry: RegistryService): boolean | Promise<boolean> {
  if (p.gateway === false) return false
  const known = p.children?.get(childId)
  if (known !== undefined) return known
  if (!isDeviceId(childId)) return false
  if (p.gateway === undefined) {
    return registry.hasChildren(p.deviceId).then((yes) => {
      p.gateway ??= yes
      return p.gateway ? isChild(p, childId, registry) : false
    })
  }
  return registry.getRecord(childId).then((r) => {
    const yes = r?.parentId === p.deviceId
    p.children ??= new Map()
    const children = p.children
    if (children.size >= MAX_KNOWN_CHILDREN) children.clear()
    children.set(childId, yes)
    return yes
  })
}

function deviceDecision(
  p: DevicePrincipal,
  topic: string,
  kindAt: (t: string, offset: number) => string | undefined,
  registry: RegistryService,
): Decision | Promise<Decision> {
  if (topic.charCodeAt(0) !== 36 /* $ */) return 'defer'
  if (topic.startsWith(p.prefix)) return kindAt(topic, p.prefix.length) ? 'allow' : 'deny'
  const split = splitIotTopic(topic)
  if (!split || !kindAt(topic, split.restAt)) return 'deny'
  const child = isChild(p, split.deviceId, registry)
  if (typeof child === 'boolean') return child ? 'allow' : 'deny'
  return child.then((yes) => (yes ? 'allow' : 'deny'))
}

export function aclPlugin(): Plugin {
  return {
    name: 'acl',
    dependencies: ['auth'],
    register({ host, registry, config, log }) {
      // a provisioning connection: its register topic up, its response topic down, nothing else
      host.addHook('authorizePublish', function provisionPublish(s: Session, topic: string) {
        return s.principal.kind === 'provision' ? (topic === s.principal.registerTopic ? 'allow' : 'deny') : 'defer'
      })
      host.addHook('authorizeSubscribe', function provisionSubscribe(s: Session, topic: string) {
        return s.principal.kind === 'provision' ? (topic === s.principal.responseTopic ? 'allow' : 'deny') : 'defer'
      })

      // devices: their own reserved topics
      host.addHook('authorizePublish', function devicePublish(s: Session, topic: string) {
        return s.principal.kind === 'device' ? deviceDecision(s.principal, topic, uplinkKindAt, registry) : 'defer'
      })
      host.addHook('authorizeSubscribe', function deviceSubscribe(s: Session, topic: string) {
        return s.principal.kind === 'device' ? deviceDecision(s.principal, topic, downlinkKindAt, registry) : 'defer'
      })

      // services: read the reserved topic spaces, write none of them
      host.addHook('authorizePublish', function servicePublish(s: Session, topic: string) {
        if (s.principal.kind !== 'service') return 'defer'
        return topic.charCodeAt(0) === 36 ? 'deny' : 'defer'
      })
      host.addHook('authorizeSubscribe', function serviceSubscribe(s: Session, topic: string) {
        if (s.principal.kind !== 'service' || topic.charCodeAt(0) !== 36) return 'defer'
        return topic.startsWith(IOT_PREFIX) || topic.startsWith(FLEET_PREFIX) ? 'allow' : 'deny'
      })

      // everything outside `$`
      if (!config.aclFile) {
        const open = (_s: Session, topic: string): Decision => (topic.charCodeAt(0) === 36 ? 'deny' : 'allow')
        host.addHook('authorizePublish', open)
        host.addHook('authorizeSubscribe', open)
        return
      }
      let rules: AclRule[]
      try {
        rules = parseAcl(readFileSync(config.aclFile, 'utf8'))
      } catch (err) {
        throw new errors.CONFIG(`invalid FLEETHUB_ACL_FILE ${config.aclFile}: ${(err as Error).message}`)
      }
      log.info({ file: config.aclFile, rules: rules.length }, 'ACL file loaded')
      const aclOf = (s: Session): { acl: ClientAcl; seen: Map<string, boolean> } => {
        let entry = s.data.get('acl') as { acl: ClientAcl; seen: Map<string, boolean> } | undefined
        if (!entry) {
          const p = s.principal
          const username = p.kind === 'device' ? p.deviceId : p.kind === 'service' ? `service:${p.name}` : s.clientId
          entry = { acl: compileAcl(rules, s.clientId, username), seen: new Map() }
          s.data.set('acl', entry)
        }
        return entry
      }
      host.addHook('authorizePublish', function aclFilePublish(s: Session, topic: string) {
        if (topic.charCodeAt(0) === 36) return 'deny'
        const { acl, seen } = aclOf(s)
        let ok = seen.get(topic)
        if (ok === undefined) {
          ok = acl.canPublish(topic)
          if (seen.size >= DECISION_CACHE) seen.clear()
          seen.set(topic, ok)
        }
        return ok ? 'allow' : 'deny'
      })
      host.addHook('authorizeSubscribe', function aclFileSubscribe(s: Session, topic: string) {
        if (topic.charCodeAt(0) === 36) return 'deny'
        return aclOf(s).acl.canSubscribe(topic) ? 'allow' : 'deny'
      })
    },
  }
}
