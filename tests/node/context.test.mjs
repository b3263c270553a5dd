// withAuditContext for node-postgres, request scope, and read auditing, with real pg, Express
// and Fastify against a real PostgreSQL.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import pg from 'pg'
import {
  auditContextMiddleware,
  auditContextPlugin,
  auditRead,
  currentAuditContext,
  runWithAuditContext,
  withAuditContext,
} from '../../index.js'
import { NativeAuditLogs, deferCleanup, freshDatabase, withClient } from './helpers.mjs'

/**
 * A migrated database with a tracked `notes` table whose `author` column says who wrote it, set up
 * with the native build: wasm.test.mjs runs this file through the WebAssembly one, which has no pool.
 */
async function setup(t, { max = 10 } = {}) {
  const url = await freshDatabase(t)
  const audit = await NativeAuditLogs.connect(url)
  await audit.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text, body text)'))
  await audit.enableTracking('notes')
  audit.close()
  const pool = new pg.Pool({ connectionString: url, max })
  deferCleanup(t, () => pool.end())
  return { url, pool }
}

const entries = (pool) =>
  pool.query(`select action, target_id, new_values, actor_id, actor_type, host(ip_address) as ip, user_agent,
                     request_id, metadata from audit.audit_logs order by id`).then((r) => r.rows)

test('a pool transaction is attributed, returns the result and releases its client', async (t) => {
  const { pool } = await setup(t)
  const result = await withAuditContext(pool, { actorId: '7', actorType: 'user', reason: 'fix typo' }, async (client) => {
    await client.query("insert into notes (author, body) values ('7', 'hello')")
    await client.query("update notes set body = 'hello!'")
    return 'done'
  })
  assert.equal(result, 'done')
  const rows = await entries(pool)
  assert.deepEqual(rows.map((r) => [r.action, r.actor_id, r.actor_type]), [['INSERT', '7', 'user'], ['UPDATE', '7', 'user']])
  assert.deepEqual(rows[0].metadata, { reason: 'fix typo' })
  assert.equal(pool.idleCount, pool.totalCount, 'the client went back to the pool')
})

test('a throw rolls back the rows and their audit rows, and rethrows the same error', async (t) => {
  const { pool } = await setup(t)
  const boom = new Error('boom')
  await assert.rejects(
    withAuditContext(pool, { actorId: '7' }, async (client) => {
      await client.query("insert into notes (author, body) values ('7', 'gone')")
      throw boom
    }),
    (error) => error === boom,
  )
  assert.equal((await pool.query('select count(*)::int as n from notes')).rows[0].n, 0)
  assert.deepEqual(await entries(pool), [])
  assert.equal(pool.idleCount, pool.totalCount)
})

test('nested calls on one client use a savepoint, each with its own context', async (t) => {
  const { pool } = await setup(t)
  await withAuditContext(pool, { actorId: 'outer' }, async (client) => {
    await client.query("insert into notes (author) values ('outer-1')")
    await withAuditContext(client, { actorId: 'inner', actorType: 'system' }, (c) =>
      c.query("insert into notes (author) values ('inner')"))
    await assert.rejects(withAuditContext(client, { actorId: 'failed' }, async (c) => {
      await c.query("insert into notes (author) values ('failed')")
      throw new Error('inner failure')
    }), /inner failure/)
    // The outer context is back, and the outer transaction goes on.
    await client.query("insert into notes (author) values ('outer-2')")
  })
  const rows = await entries(pool)
  assert.deepEqual(rows.map((r) => [r.new_values.author, r.actor_id]), [
    ['outer-1', 'outer'], ['inner', 'inner'], ['outer-2', 'outer'],
  ])
})

test('a nested partial context merges over the enclosing call\'s, which merges over the request\'s', async (t) => {
  const { pool } = await setup(t)
  await runWithAuditContext({ actorId: 'user-1', requestId: 'req-1', metadata: { tenant: 't1' } }, () =>
    withAuditContext(pool, { actorId: 'job-7', actorType: 'system' }, async (client) => {
      assert.deepEqual(currentAuditContext(),
        { actorId: 'job-7', actorType: 'system', requestId: 'req-1', metadata: { tenant: 't1' } })
      await client.query("insert into notes (author) values ('outer')")
      await withAuditContext(client, { metadata: { reason: 'retry' } }, (c) =>
        c.query("insert into notes (author) values ('inner')"))
      await client.query("insert into notes (author) values ('after')")
    }))
  const rows = await entries(pool)
  assert.deepEqual(rows.map((r) => [r.new_values.author, r.actor_id, r.actor_type, r.request_id, r.metadata]), [
    ['outer', 'job-7', 'system', 'req-1', { tenant: 't1' }],
    ['inner', 'job-7', 'system', 'req-1', { tenant: 't1', reason: 'retry' }],
    ['after', 'job-7', 'system', 'req-1', { tenant: 't1' }],
  ])
  assert.equal(currentAuditContext(), undefined, 'nothing leaks out of the calls')
})

test('a transaction the caller began is joined with a savepoint, not committed early', async (t) => {
  const { pool } = await setup(t)
  const client = await pool.connect()
  try {
    await client.query('begin')
    await withAuditContext(client, { actorId: 'joined' }, (c) => c.query("insert into notes (author) values ('x')"))
    assert.equal(client.getTransactionStatus(), 'T', 'still in the caller\'s transaction')
    await client.query('rollback')
  } finally {
    client.release()
  }
  assert.deepEqual(await entries(pool), [], 'the caller rolled back: nothing of it remains')
})

test('50 interleaved concurrent requests each keep their own actor', async (t) => {
  const { pool } = await setup(t, { max: 8 })
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  await Promise.all(Array.from({ length: 50 }, (_, i) =>
    runWithAuditContext({ actorId: `user-${i}`, requestId: `req-${i}` }, async () => {
      await sleep(Math.random() * 20)
      await withAuditContext(pool, null, async (client) => {
        await client.query('insert into notes (author) values ($1)', [`user-${i}`])
        await sleep(Math.random() * 10)
        await client.query("update notes set body = 'edited' where author = $1", [`user-${i}`])
      })
    })))
  const rows = await entries(pool)
  assert.equal(rows.length, 100)
  for (const row of rows) {
    const author = row.new_values.author
    assert.equal(row.actor_id, author, `entry ${row.action} of ${author} attributed to ${row.actor_id}`)
    assert.equal(row.request_id, `req-${author.slice(5)}`)
  }
})

test('the context never leaks to the next user of a pooled connection', async (t) => {
  const { pool } = await setup(t, { max: 1 })
  await withAuditContext(pool, { actorId: 'first' }, (c) => c.query("insert into notes (author) values ('a')"))
  await pool.query("insert into notes (author) values ('b')")
  const { rows } = await pool.query("select current_setting('audit.context', true) as setting")
  assert.equal(rows[0].setting, '', 'never set for the session')
  const logged = await entries(pool)
  assert.deepEqual(logged.map((r) => r.actor_id), ['first', null])
})

test('an invalid context is refused before anything is written', async (t) => {
  const { pool } = await setup(t)
  let ran = false
  for (const bad of [{ ipAddress: '999.1.1.1' }, { actorID: 'typo' }, { metadata: { constructor: 1 } }, 'user 7']) {
    await assert.rejects(
      withAuditContext(pool, bad, async () => { ran = true }),
      (error) => error.code === 'AUDIT_LOGS_INVALID_CONTEXT',
    )
  }
  assert.equal(ran, false)
  assert.equal(pool.totalCount, 0, 'no connection was even checked out')
  await assert.rejects(withAuditContext({}, null, async () => {}), (e) => e.code === 'AUDIT_LOGS_INVALID_ARGUMENT')
})

test('writes without context are recorded unless a context is required', async (t) => {
  const { url, pool } = await setup(t)
  await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('anonymous')"))
  assert.equal((await entries(pool))[0].actor_id, null)
  await assert.rejects(
    withAuditContext(pool, null, async () => {}, { requireContext: true }),
    (error) => error.code === 'AUDIT_LOGS_CONTEXT_REQUIRED',
  )
  // Required by the table itself: a write with no context fails in the database.
  const audit = await NativeAuditLogs.connect(url)
  await audit.enableTracking('notes', { requireContext: true })
  audit.close()
  await assert.rejects(pool.query("insert into notes (author) values ('nobody')"), (e) => e.code === 'AL006')
  await withAuditContext(pool, { actorId: 'somebody' }, (c) => c.query("insert into notes (author) values ('somebody')"))
  assert.equal((await pool.query('select count(*)::int as n from notes')).rows[0].n, 2)
})

test('the request context follows await, timers and promise chains', async () => {
  const seen = await runWithAuditContext({ actorId: 'ctx-1' }, async () => {
    const afterAwait = (await Promise.resolve(), currentAuditContext()?.actorId)
    const inTimer = await new Promise((resolve) => setTimeout(() => resolve(currentAuditContext()?.actorId), 5))
    const inChain = await Promise.resolve().then(() => null).then(() => currentAuditContext()?.actorId)
    return [afterAwait, inTimer, inChain]
  })
  assert.deepEqual(seen, ['ctx-1', 'ctx-1', 'ctx-1'])
  assert.equal(currentAuditContext(), undefined, 'nothing outside')
  assert.throws(() => runWithAuditContext({ ipAddress: 'nope' }, () => {}), (e) => e.code === 'AUDIT_LOGS_INVALID_CONTEXT')
})

test('Express middleware attributes a request\'s writes to its actor, IP, user agent and request id', async (t) => {
  const { pool } = await setup(t)
  const app = express()
  app.use((req, res, next) => { req.user = { id: req.get('x-user') }; next() })
  app.use(auditContextMiddleware({ getActor: async (req) => ({ actorId: req.user.id, actorType: 'user' }) }))
  app.post('/notes', async (req, res) => {
    await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('via express')"))
    res.json({ ok: true })
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  const response = await fetch(`http://127.0.0.1:${server.address().port}/notes`, {
    method: 'POST', headers: { 'x-user': 'u-42', 'user-agent': 'test-agent/1', 'x-request-id': 'req-abc' },
  })
  assert.equal(response.status, 200)
  const [row] = await entries(pool)
  assert.deepEqual([row.actor_id, row.actor_type, row.ip, row.user_agent, row.request_id],
    ['u-42', 'user', '127.0.0.1', 'test-agent/1', 'req-abc'])
})

test('Fastify plugin sees what authentication set and attributes the request\'s writes', async (t) => {
  const { pool } = await setup(t)
  const app = Fastify()
  app.addHook('onRequest', async (request) => { request.user = { id: request.headers['x-user'] } })
  await app.register(auditContextPlugin, { getActor: (request) => ({ actorId: request.user.id }) })
  app.post('/notes', async () => {
    await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('via fastify')"))
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  deferCleanup(t, () => app.close())
  const response = await fetch(`http://127.0.0.1:${app.server.address().port}/notes`, {
    method: 'POST', headers: { 'x-user': 'u-7' },
  })
  assert.equal(response.status, 200)
  const [row] = await entries(pool)
  assert.equal(row.actor_id, 'u-7')
  assert.equal(row.ip, '127.0.0.1')
  assert.ok(row.request_id, 'a request id even without the header')
})

test('a partial context given inside a request is merged over the request\'s', async (t) => {
  const { pool } = await setup(t)
  const request = { actorId: 'u-1', actorType: 'user', ipAddress: '203.0.113.9', requestId: 'req-1', metadata: { a: '1' } }
  await runWithAuditContext(request, async () => {
    await withAuditContext(pool, { reason: 'duplicate', metadata: { b: '2' } }, (c) => c.query("insert into notes (author) values ('a')"))
    await withAuditContext(pool, { actorId: 'job-7', actorType: 'system' }, (c) => c.query("insert into notes (author) values ('b')"))
  })
  const [merged, overridden] = await entries(pool)
  assert.deepEqual([merged.actor_id, merged.actor_type, merged.ip, merged.request_id], ['u-1', 'user', '203.0.113.9', 'req-1'])
  assert.deepEqual(merged.metadata, { a: '1', b: '2', reason: 'duplicate' })
  assert.deepEqual([overridden.actor_id, overridden.actor_type, overridden.request_id], ['job-7', 'system', 'req-1'])
})

test('hostile headers and odd actors never take the Express server down', async (t) => {
  const { pool } = await setup(t)
  const app = express()
  app.use(auditContextMiddleware({
    getActor: (req) => {
      const kind = req.get('x-actor-kind')
      if (kind === 'number') return { actorId: 42 }            // Prisma Int ids are numbers
      if (kind === 'extra') return { actorId: '7', role: 'admin' } // a key the context has not
      if (kind === 'throws') throw new Error('session store down')
      return { actorId: 'u-1' }
    },
  }))
  app.post('/notes', async (req, res) => {
    await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('x')"))
    res.json({ ok: true })
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  const post = (headers) => fetch(`http://127.0.0.1:${server.address().port}/notes`, { method: 'POST', headers })

  const longAgent = `agent/${'é'.repeat(600)}` // 1206 bytes
  let response = await post({ 'user-agent': longAgent, 'x-request-id': 'r'.repeat(2000) })
  assert.equal(response.status, 200)
  const generated = response.headers.get('x-request-id')
  assert.match(generated, /^[0-9a-f-]{36}$/, 'an unstorable request id is replaced, and echoed')
  response = await post({ 'x-actor-kind': 'number', 'x-request-id': 'req-7' })
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('x-request-id'), 'req-7')
  for (const kind of ['extra', 'throws']) {
    response = await post({ 'x-actor-kind': kind })
    assert.equal(response.status, 500, `${kind}: the framework's error handling answers`)
  }
  response = await post({})
  assert.equal(response.status, 200, 'the server is still up')

  const rows = await entries(pool)
  assert.equal(rows.length, 3, 'the refused requests wrote nothing')
  assert.ok(Buffer.byteLength(rows[0].user_agent) <= 1024 && longAgent.startsWith(rows[0].user_agent))
  assert.equal(rows[0].request_id, generated)
  assert.deepEqual([rows[1].actor_id, rows[1].request_id], ['42', 'req-7'])
  assert.equal(rows[2].actor_id, 'u-1')
})

test('headers sent as UTF-8 are stored as the text the client sent, and the request id echoed as sent', async (t) => {
  const { pool } = await setup(t)
  const app = express()
  app.use(auditContextMiddleware({ getActor: (req) => (req.get('x-actor-id') ? { actorId: req.get('x-actor-id') } : undefined) }))
  app.post('/notes', async (req, res) => {
    await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('x')"))
    res.json({ ok: true })
  })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  // fetch sends a header's characters as bytes: give it the UTF-8 bytes of the text.
  const asBytes = (text) => Buffer.from(text, 'utf8').toString('latin1')
  const post = (headers) => fetch(`http://127.0.0.1:${server.address().port}/notes`, { method: 'POST', headers })
  let response = await post({ 'x-request-id': asBytes('req-café-✓'), 'user-agent': asBytes('app/☃ 1.0') })
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('x-request-id'), asBytes('req-café-✓'), 'echoed as the client sent it')
  // Bytes that are not UTF-8 (a Latin-1 client) stay as Node read them.
  response = await post({ 'x-request-id': 'req-\u00e9t\u00e9' })
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('x-request-id'), 'req-\u00e9t\u00e9')
  const rows = await entries(pool)
  assert.deepEqual([rows[0].request_id, rows[0].user_agent], ['req-café-✓', 'app/☃ 1.0'])
  assert.equal(rows[1].request_id, 'req-été')
})

test('hostile headers never take the Fastify server down either', async (t) => {
  const { pool } = await setup(t)
  const app = Fastify()
  await app.register(auditContextPlugin, {
    getActor: (request) => (request.headers['x-actor-kind'] === 'extra' ? { actorId: '7', role: 'admin' } : { actorId: 9 }),
  })
  app.post('/notes', async () => {
    await withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('x')"))
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  deferCleanup(t, () => app.close())
  const post = (headers) => fetch(`http://127.0.0.1:${app.server.address().port}/notes`, { method: 'POST', headers })
  let response = await post({ 'user-agent': 'a'.repeat(1100), 'x-request-id': 'q'.repeat(2000) })
  assert.equal(response.status, 200)
  assert.match(response.headers.get('x-request-id'), /^[0-9a-f-]{36}$/)
  response = await post({ 'x-actor-kind': 'extra' })
  assert.equal(response.status, 500)
  response = await post({})
  assert.equal(response.status, 200)
  const rows = await entries(pool)
  assert.equal(rows.length, 2)
  assert.deepEqual([rows[0].actor_id, rows[0].user_agent.length], ['9', 1024])
})

test('auditRead records who read which rows, bounded, and nothing for other reads', async (t) => {
  const { pool } = await setup(t)
  await pool.query("insert into notes (author) select 'x' from generate_series(1, 30)")
  const before = (await entries(pool)).length
  await runWithAuditContext({ actorId: 'doctor-1', actorType: 'user' }, () =>
    auditRead(pool, 'public.notes', () => pool.query('select id from notes order by id'), { maxIds: 5 }))
  await pool.query('select * from notes')
  const rows = (await entries(pool)).slice(before)
  assert.equal(rows.length, 1)
  assert.equal(rows[0].action, 'read')
  assert.equal(rows[0].actor_id, 'doctor-1')
  assert.deepEqual(rows[0].metadata, { ids: ['1', '2', '3', '4', '5'], count: 30, truncated: true })
})
