// The generator's client of FleetHub's HTTP API under load: node's own http with a keep-alive Agent
// (no dependency), so every request reuses one of `sockets` open connections and no request pays
// for a TCP handshake. Answers are read whole as text; the caller parses what it needs. (lib/http.ts,
// fetch, stays for the bench's occasional calls: device creation, /metrics.)
import http from 'node:http'

export interface ApiAnswer {
  status: number
  body: string
}

export interface ApiClient {
  /** The API's base URL (which node of a cluster it talks to). */
  readonly url: string
  request(method: 'GET' | 'POST' | 'PATCH', path: string, body?: unknown): Promise<ApiAnswer>
  /** Connections open right now (at most `sockets`). */
  openSockets(): number
  close(): void
}

const TIMEOUT_MS = 30_000

export function apiClient(api: { url: string; adminToken: string }, sockets: number): ApiClient {
  const { hostname, port } = new URL(api.url)
  const agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets, scheduling: 'lifo' })
  const auth = `Bearer ${api.adminToken}`
  return {
    url: api.url,
    request(method, path, body) {
      const payload = body === undefined ? undefined : JSON.stringify(body)
      const headers: http.OutgoingHttpHeaders = { authorization: auth }
      if (payload !== undefined) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = Buffer.byteLength(payload)
      }
      return new Promise((resolve, reject) => {
        const req = http.request({ agent, hostname, port, path, method, headers }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
          res.on('error', reject)
        })
        req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error(`${method} ${path}: no answer within ${TIMEOUT_MS} ms`)))
        req.on('error', (err: NodeJS.ErrnoException) =>
          reject(new Error(`${method} ${path} failed: ${err.code ?? err.message}`)),
        )
        req.end(payload)
      })
    },
    openSockets() {
      let n = 0
      for (const list of Object.values(agent.sockets)) n += list?.length ?? 0
      for (const list of Object.values(agent.freeSockets)) n += list?.length ?? 0
      return n
    },
    close() {
      agent.destroy()
    },
  }
}
