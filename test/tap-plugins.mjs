// tap ships with its TypeScript plugin built in, and that plugin breaks on TypeScript 7. .taprc
// leaves it out, but tap applies a changed plugin list only after `tap build`, and its first run
// on a fresh install would still load the old list. So `npm test` runs this first: it rebuilds
// tap's plugin set once, when the installed one still names the TypeScript plugin. (It reads the
// built file as text: importing @tapjs/test outside a tap run fails on a circular import.)
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const pkg = createRequire(import.meta.url).resolve('@tapjs/test/package.json')
const built = readFileSync(path.join(path.dirname(pkg), 'test-built/dist/esm/index.js'), 'utf8')
if (built.includes('@tapjs/typescript')) {
  const r = spawnSync('npx', ['tap', 'build'], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
