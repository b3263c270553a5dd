// Request scope for fetch-style handlers, `(Request) => Response`, with Node's own Request and
// Response and a real Hono app, against a real PostgreSQL: the Express middleware's header rules.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Hono } from 'hono'
import pg from 'pg'
import {
  AuditLogs,
  auditContextFromRequest,
  currentAuditContext,
  withAuditContext,
  withRequestContext,
} from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

async function setup(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await audit.enableTracking('notes')
  audit.close()
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  deferCleanup(t, () => pool.end())
  const write = (author = 'x') => withAuditContext(pool, null, (c) => c.query('insert into notes (author) values ($1)', [author]))
  const entries = () => pool.query(`select actor_id, actor_type, host(ip_address) as ip, user_agent, request_id,
    new_values from audit.audit_logs order by id`).then((r) => r.rows)
  return { pool, write, entries }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
// fetch sends a header's characters as bytes: the UTF-8 bytes of a text, as Latin-1 characters.
const asBytes = (text) => Buffer.from(text, 'utf8').toString('latin1')
const request = (headers = {}) => new Request('http://app.test/notes', { method: 'POST', headers })

test('a wrapped route handler writes as the request\'s actor, and the request id is echoed', async (t) => {
  const { write, entries } = await setup(t)
  const POST = withRequestContext(async (req) => {
    await write()
    return Response.json({ actor: currentAuditContext()?.actorId })
  }, { getActor: (req) => ({ actorId: req.headers.get('x-user'), actorType: 'user' }), getIp: () => '203.0.113.9' })

  const response = await POST(request({ 'x-user': 'ann', 'x-request-id': 'req-1', 'user-agent': 'curl/8' }))
  assert.equal(response.status, 200)
  assert.deepEqual(await response.json(), { actor: 'ann' })
  assert.equal(response.headers.get('x-request-id'), 'req-1')
  const [row] = await entries()
  assert.deepEqual([row.actor_id, row.actor_type, row.ip, row.user_agent, row.request_id],
    ['ann', 'user', '203.0.113.9', 'curl/8', 'req-1'])
})

test('hostile headers are cut or replaced, never refused, and UTF-8 is read as the client sent it', async (t) => {
  const { write, entries } = await setup(t)
  const POST = withRequestContext(async () => { await write(); return new Response('ok') }, { getIp: (req) => req.headers.get('x-ip') ?? undefined })
  const longAgent = `agent/${'é'.repeat(600)}` // 1206 bytes
  let response = await POST(request({ 'user-agent': asBytes(longAgent), 'x-request-id': 'r'.repeat(2000), 'x-ip': 'not-an-ip' }))
  assert.equal(response.status, 200)
  const generated = response.headers.get('x-request-id')
  assert.match(generated, UUID, 'an unstorable request id is replaced by a UUID, and echoed')
  response = await POST(request({ 'x-request-id': 'req-\u0001-control' }))
  assert.match(response.headers.get('x-request-id'), UUID, 'a control character: replaced')
  response = await POST(request({ 'x-request-id': asBytes('req-café-✓'), 'user-agent': asBytes('app/☃ 1.0') }))
  assert.equal(response.headers.get('x-request-id'), asBytes('req-café-✓'), 'echoed as the client sent it')

  const rows = await entries()
  assert.equal(rows.length, 3)
  assert.ok(Buffer.byteLength(rows[0].user_agent) <= 1024 && longAgent.startsWith(rows[0].user_agent), 'cut at a character boundary')
  assert.ok(Buffer.byteLength(rows[0].user_agent) > 1020)
  assert.deepEqual([rows[0].request_id, rows[0].ip], [generated, null], 'the bad IP is dropped')
  assert.deepEqual([rows[2].request_id, rows[2].user_agent], ['req-café-✓', 'app/☃ 1.0'])
})

test('a throwing or unstorable getActor rejects the handler before it runs; the next request is served', async (t) => {
  const { write, entries } = await setup(t)
  let ran = 0
  const handler = withRequestContext(async () => { ran++; await write(); return new Response('ok') }, {
    getActor: (req) => {
      const kind = req.headers.get('x-kind')
      if (kind === 'throws') throw new Error('session store down')
      if (kind === 'extra') return { actorId: '7', role: 'admin' }
      if (kind === 'nan') return { actorId: Number('abc') }
      return { actorId: '1' }
    },
  })
  await assert.rejects(handler(request({ 'x-kind': 'throws' })), /session store down/)
  await rejectsWithCode(assert, handler(request({ 'x-kind': 'extra' })), 'AUDIT_LOGS_INVALID_CONTEXT')
  await rejectsWithCode(assert, handler(request({ 'x-kind': 'nan' })), 'AUDIT_LOGS_INVALID_CONTEXT')
  assert.equal(ran, 0, 'the handler never ran')
  assert.equal((await handler(request())).status, 200)
  assert.deepEqual((await entries()).map((r) => r.actor_id), ['1'])
})

test('an immutable response (Response.redirect) gets the request id on a copy; one the handler set is kept', async () => {
  const redirect = withRequestContext(() => Response.redirect('http://app.test/done', 303))
  let response = await redirect(request({ 'x-request-id': 'req-r' }))
  assert.deepEqual([response.status, response.headers.get('location'), response.headers.get('x-request-id')],
    [303, 'http://app.test/done', 'req-r'])
  const own = withRequestContext(() => new Response('ok', { headers: { 'x-request-id': 'mine' } }))
  response = await own(request({ 'x-request-id': 'req-o' }))
  assert.equal(response.headers.get('x-request-id'), 'mine')
})

test('Remix-style { request } arguments and Next.js-style headers() work too', async (t) => {
  const { pool, write, entries } = await setup(t)
  const action = withRequestContext(async ({ params }) => { await write(params.id); return new Response('ok') },
    { getActor: ({ request: req }) => ({ actorId: req.headers.get('x-user') }) })
  await action({ request: request({ 'x-user': 'remix-user', 'x-request-id': 'req-remix' }), params: { id: 'n1' } })
  // A server action has no Request: Next.js's headers() is read the same way.
  const headers = new Headers({ 'x-request-id': 'req-action', 'user-agent': 'next' })
  const context = await auditContextFromRequest({ headers }, { getActor: () => ({ actorId: 'action-user' }) })
  assert.deepEqual(context, { userAgent: 'next', requestId: 'req-action', actorId: 'action-user' })
  await withAuditContext(pool, context, (c) => c.query("insert into notes (author) values ('n2')"))
  const rows = await entries()
  assert.deepEqual(rows.map((r) => [r.actor_id, r.request_id, r.new_values.author]),
    [['remix-user', 'req-remix', 'n1'], ['action-user', 'req-action', 'n2']])
})

test('a real Hono app: app-wide middleware and a wrapped route, hostile requests answered by onError, 50 interleaved requests', async (t) => {
  const { write, entries } = await setup(t)
  const app = new Hono()
  app.use(withRequestContext((c, next) => next(), {
    getActor: (c) => {
      if (c.req.header('x-kind') === 'throws') throw new Error('auth down')
      return c.req.header('x-user') ? { actorId: c.req.header('x-user'), actorType: 'user' } : undefined
    },
  }))
  app.post('/notes', async (c) => {
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 5))
    await write(c.req.header('x-user'))
    return c.json({ ok: true })
  })
  app.onError((error, c) => c.json({ error: error.message }, 500))

  let response = await app.request('/notes', { method: 'POST', headers: { 'x-user': 'hono-user', 'x-request-id': 'req-h' } })
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('x-request-id'), 'req-h', 'echoed by the middleware')
  response = await app.request('/notes', { method: 'POST', headers: { 'x-kind': 'throws' } })
  assert.deepEqual([response.status, await response.json()], [500, { error: 'auth down' }])

  const responses = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    app.request('/notes', { method: 'POST', headers: { 'x-user': `user-${i}`, 'x-request-id': `req-${i}` } })))
  assert.ok(responses.every((r) => r.status === 200))
  const rows = await entries()
  assert.equal(rows.length, 51)
  for (const row of rows.slice(1)) {
    assert.equal(row.actor_id, row.new_values.author)
    assert.equal(row.request_id, `req-${row.actor_id.slice(5)}`)
  }
})
