// The docs must say what the code does: every option is in the README's table and the operations
// guide, and every HTTP route in the HTTP API guide.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { OPTIONS } from '../broker/config.js'
import { startTestApp } from './helpers/app.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const read = (f: string) => readFileSync(path.join(root, f), 'utf8')

t.test('every option is documented', async (t) => {
  const readme = read('README.md')
  for (const o of OPTIONS) {
    // Markdown tables may be padded with spaces (the formatter aligns them)
    t.match(readme, new RegExp(`\\| \`--${o.flag}\`\\s*\\| \`${o.env}\`\\s*\\|`), `README lists --${o.flag} / ${o.env}`)
  }
})

t.test('every HTTP route is documented', async (t) => {
  const app = await startTestApp(t)
  const spec = (await app.http.inject({ method: 'GET', url: '/docs/json' })).json() as {
    paths: Record<string, Record<string, unknown>>
  }
  const guide = read('docs/http-api.md')
  for (const [route, methods] of Object.entries(spec.paths)) {
    for (const method of Object.keys(methods)) {
      t.match(
        guide,
        `### \`${method.toUpperCase()} ${route}\``,
        `docs/http-api.md has ${method.toUpperCase()} ${route}`,
      )
    }
  }
})

t.test('the README keeps its two commands', async (t) => {
  const readme = read('README.md')
  t.match(readme, 'npm ci && npm start')
  t.match(readme, 'npm test')
})
