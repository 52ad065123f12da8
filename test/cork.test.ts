// Writes batched (registry/cork.ts): what a corked socket writes in one tick, and what an ioredis
// connection (the first and every one it reconnects with) writes in one event-loop turn, leaves in
// one writev; ioredis against a real redis-server.
import { once } from 'node:events'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { Redis } from 'ioredis'
import t from 'tap'
import { autoCork, autoCorkRedis } from '../registry/cork.js'
import { startRedis } from './helpers/redis.js'

/** Counts the stream's system-call-level writes from now on: [writev calls, chunks in them, single writes]. */
function countWrites(stream: Duplex): { writev: number; chunks: number; single: number } {
  const s = stream as unknown as {
    _writev: (chunks: unknown[], cb: unknown) => void
    _write: (...args: unknown[]) => void
  }
  const counts = { writev: 0, chunks: 0, single: 0 }
  const writev = s._writev.bind(stream)
  const write = s._write.bind(stream)
  s._writev = (chunks, cb) => {
    counts.writev++
    counts.chunks += chunks.length
    writev(chunks, cb)
  }
  s._write = (...args) => {
    counts.single++
    write(...args)
  }
  return counts
}

t.test('a corked socket sends the writes of one tick in one writev', async (t) => {
  const received: Buffer[] = []
  const server = net.createServer((c) => c.on('data', (d: Buffer) => received.push(d)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  autoCork(socket)
  const counts = countWrites(socket)
  for (const part of ['one,', 'two,', 'three']) socket.write(part)
  t.equal(socket.writableCorked, 1, 'corked until the end of the tick')
  await new Promise((r) => setImmediate(r))
  t.equal(socket.writableCorked, 0, 'uncorked after it')
  t.same(counts, { writev: 1, chunks: 3, single: 0 })
  // the next tick's write is batched on its own
  socket.write('four')
  await new Promise((r) => setImmediate(r))
  t.equal(counts.writev + counts.single, 2)
  while (Buffer.concat(received).length < 'one,two,threefour'.length) await new Promise((r) => setTimeout(r, 5))
  t.equal(Buffer.concat(received).toString(), 'one,two,threefour')
})

t.test(
  'an ioredis client sends the commands of one event-loop turn in one writev, after reconnecting too',
  async (t) => {
    const redis = await startRedis()
    t.teardown(() => redis.stop())
    const client = autoCorkRedis(new Redis(redis.url, { lazyConnect: true }))
    t.teardown(() => client.disconnect())
    await client.connect()

    const burst = async () => {
      const counts = countWrites(client.stream)
      const keys = ['a', 'b', 'c', 'd', 'e']
      const set = (i: number) => client.set(`cork:${keys[i]}`, String(i))
      // three now, one from a microtask and one from a later tick of the same turn
      const sets = [set(0), set(1), set(2)]
      sets.push(
        new Promise((resolve) => queueMicrotask(() => resolve(set(3)))),
        new Promise((resolve) => process.nextTick(() => process.nextTick(() => resolve(set(4))))),
      )
      t.same(await Promise.all(sets), ['OK', 'OK', 'OK', 'OK', 'OK'])
      t.same(await client.mget(...keys.map((k) => `cork:${k}`)), ['0', '1', '2', '3', '4'], 'every command answered')
      return counts
    }
    const first = await burst()
    t.equal(first.writev, 1, 'five SETs in one system call')
    t.equal(first.chunks, 5)
    t.equal(first.single, 1, 'the MGET of a later turn on its own')

    const firstStream = client.stream
    client.disconnect(true) // ioredis reconnects with a new socket
    await once(client, 'ready')
    t.not(client.stream, firstStream, 'a new connection')
    const second = await burst()
    t.equal(second.writev, 1, 'the new connection is corked as well')
    t.equal(second.chunks, 5)
  },
)
