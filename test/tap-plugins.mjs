// tap ships with its TypeScript plugin built in, and that plugin breaks on TypeScript 7. .taprc
// leaves it out, but tap applies a changed plugin list only after `tap build`, and its first run
// on a fresh install would still load the old list. So `npm test` runs this first: it rebuilds
// tap's plugin set once, when the installed one still has the TypeScript loader.
import { spawnSync } from 'node:child_process'
import { importLoaders, loaders } from '@tapjs/test'

const stale = [...importLoaders, ...loaders].some((l) => l.includes('@tapjs/typescript'))
if (stale) {
  const r = spawnSync('npx', ['tap', 'build'], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
