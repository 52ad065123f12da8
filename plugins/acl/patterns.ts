// Mosquitto-style ACL files for topics outside `$`:
//
//   # comment
//   topic [read|write|readwrite|deny] <topic>     applies to every client when before any `user` line
//   user <username>
//   topic [read|write|readwrite|deny] <topic>     applies to that user name
//   pattern [read|write|readwrite|deny] <topic>   applies to every client; %c = client id, %u = user name
//
// The access defaults to readwrite. A deny rule that matches wins over any allow rule. Unlike
// mosquitto, `topic` lines before the first `user` line apply to every client (FleetHub has no
// anonymous clients). A subscription is allowed when a read rule covers its whole filter and no deny
// rule can match a topic of it.

import { levelsMatch } from '../../registry/topics.js'

export type Access = 'read' | 'write' | 'readwrite' | 'deny'

export interface AclRule {
  access: Access
  topic: string
  /** Only for this user name (a `topic` line after `user`). */
  user?: string
  /** A `pattern` line: %c and %u are substituted per client. */
  pattern: boolean
}

export class AclParseError extends Error {}

const ACCESS = new Set(['read', 'write', 'readwrite', 'deny'])

export function parseAcl(text: string): AclRule[] {
  const rules: AclRule[] = []
  let user: string | undefined
  const lines = text.split(/\r?\n/)
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] as string).trim()
    if (line === '' || line.startsWith('#')) continue
    const [word, ...rest] = line.split(/\s+/)
    const at = `line ${n + 1}`
    if (word === 'user') {
      if (rest.length !== 1) throw new AclParseError(`${at}: user takes one name`)
      user = rest[0]
      continue
    }
    if (word !== 'topic' && word !== 'pattern') throw new AclParseError(`${at}: unknown keyword ${word}`)
    let access: Access = 'readwrite'
    if (rest.length > 1 && ACCESS.has(rest[0] as string)) access = rest.shift() as Access
    const topic = rest.join(' ')
    if (topic === '') throw new AclParseError(`${at}: ${word} needs a topic`)
    if (!validFilter(topic)) throw new AclParseError(`${at}: ${topic} is not a valid topic filter`)
    const rule: AclRule = { access, topic, pattern: word === 'pattern' }
    if (word === 'topic' && user !== undefined) rule.user = user
    rules.push(rule)
  }
  return rules
}

function validFilter(f: string): boolean {
  const levels = f.split('/')
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i] as string
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return false
    if (l.includes('+') && l !== '+') return false
  }
  return true
}

/** Does every topic the subscription `sub` can match also match `acl`? */
function covers(acl: string[], sub: string[]): boolean {
  for (let i = 0; i < acl.length; i++) {
    const a = acl[i]
    if (a === '#') return true
    if (i >= sub.length) return false
    const s = sub[i]
    if (s === '#') return false
    if (a === '+') continue
    if (s === '+' || s !== a) return false
  }
  return acl.length === sub.length
}

/** Can some topic match both filters? */
function intersects(a: string[], b: string[]): boolean {
  const n = Math.max(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a[i]
    const y = b[i]
    if (x === '#' || y === '#') return true
    if (x === undefined || y === undefined) return false
    if (x !== '+' && y !== '+' && x !== y) return false
  }
  return true
}

export interface ClientAcl {
  canPublish(topic: string): boolean
  canSubscribe(filter: string): boolean
}

interface Compiled {
  levels: string[]
  read: boolean
  write: boolean
  deny: boolean
}

const UNSAFE = /[+#/]/

/** The rules that apply to one client, with %c and %u substituted. */
export function compileAcl(rules: readonly AclRule[], clientId: string, username: string): ClientAcl {
  const own: Compiled[] = []
  for (const r of rules) {
    if (r.user !== undefined && r.user !== username) continue
    let topic = r.topic
    if (r.pattern) {
      // as mosquitto: a substitution that would inject topic structure disables the rule
      if ((topic.includes('%c') && UNSAFE.test(clientId)) || (topic.includes('%u') && UNSAFE.test(username))) continue
      topic = topic.replaceAll('%c', clientId).replaceAll('%u', username)
    }
    own.push({
      levels: topic.split('/'),
      read: r.access === 'read' || r.access === 'readwrite',
      write: r.access === 'write' || r.access === 'readwrite',
      deny: r.access === 'deny',
    })
  }
  return {
    canPublish(topic) {
      const t = topic.split('/')
      let allowed = false
      for (const c of own) {
        if (!levelsMatch(c.levels, t)) continue
        if (c.deny) return false
        if (c.write) allowed = true
      }
      return allowed
    },
    canSubscribe(filter) {
      const f = filter.split('/')
      let allowed = false
      for (const c of own) {
        if (c.deny) {
          if (intersects(c.levels, f)) return false
        } else if (c.read && covers(c.levels, f)) {
          allowed = true
        }
      }
      return allowed
    },
  }
}
