// Request scope for NestJS: AuditContextInterceptor in a real Nest app, on each of Nest's HTTP
// platforms (Express and Fastify), after a guard that authenticates, against a real PostgreSQL. Decorators are applied as functions (this
// file is plain JavaScript), as TypeScript compiles them.
import 'reflect-metadata'
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Controller, Module, Post, Req } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter } from '@nestjs/platform-fastify'
import pg from 'pg'
import { AuditContextInterceptor, AuditLogs, currentAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

async function nestApp(t, platform, options) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await audit.enableTracking('notes')
  audit.close()
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  deferCleanup(t, () => pool.end())

  class NotesController {
    async create(req) {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5))
      await withAuditContext(pool, null, (c) => c.query('insert into notes (author) values ($1)', [req.user?.id ?? null]))
      return { actorId: currentAuditContext()?.actorId ?? null }
    }
  }
  Controller('notes')(NotesController)
  Post()(NotesController.prototype, 'create', Object.getOwnPropertyDescriptor(NotesController.prototype, 'create'))
  Req()(NotesController.prototype, 'create', 0)
  class AppModule {}
  Module({ controllers: [NotesController] })(AppModule)

  const app = platform === 'fastify'
    ? await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false })
    : await NestFactory.create(AppModule, { logger: false })
  // Authentication as a guard: it runs before interceptors, so getActor sees req.user.
  app.useGlobalGuards({
    canActivate(context) {
      const req = context.switchToHttp().getRequest()
      if (req.headers['x-user']) req.user = { id: req.headers['x-user'] }
      return true
    },
  })
  app.useGlobalInterceptors(new AuditContextInterceptor(options))
  await app.listen(0, '127.0.0.1')
  deferCleanup(t, () => app.close())
  const base = `http://127.0.0.1:${app.getHttpServer().address().port}`
  const post = (headers) => fetch(`${base}/notes`, { method: 'POST', headers })
  const entries = () => pool.query(`select actor_id, actor_type, user_agent, request_id, new_values
    from audit.audit_logs order by id`).then((r) => r.rows)
  return { post, entries }
}

for (const platform of ['express', 'fastify']) {
  test(`NestJS on ${platform}: writes of a request are attributed to the actor a guard authenticated; 50 interleaved requests`, async (t) => {
    const { post, entries } = await nestApp(t, platform, { getActor: (req) => req.user && { actorId: req.user.id, actorType: 'user' } })
    const response = await post({ 'x-user': 'ann', 'x-request-id': 'req-ann', 'user-agent': 'curl/8' })
    assert.equal(response.status, 201)
    assert.deepEqual(await response.json(), { actorId: 'ann' })
    assert.equal(response.headers.get('x-request-id'), 'req-ann')
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      post({ 'x-user': `user-${i}`, 'x-request-id': `req-user-${i}` })))
    assert.ok(responses.every((r) => r.status === 201))
    const rows = await entries()
    assert.deepEqual([rows[0].actor_id, rows[0].actor_type, rows[0].user_agent, rows[0].request_id], ['ann', 'user', 'curl/8', 'req-ann'])
    assert.equal(rows.length, 51)
    for (const row of rows) {
      assert.equal(row.actor_id, row.new_values.author)
      assert.equal(row.request_id, `req-${row.actor_id}`)
    }
  })

  test(`NestJS on ${platform}: hostile headers are cut or replaced; a throwing or unstorable getActor is a 500, and the app goes on`, async (t) => {
    const { post, entries } = await nestApp(t, platform, {
      getActor: (req) => {
        if (req.headers['x-kind'] === 'throws') throw new Error('session store down')
        if (req.headers['x-kind'] === 'extra') return { actorId: '7', role: 'admin' }
        return req.user && { actorId: req.user.id }
      },
    })
    let response = await post({ 'user-agent': 'a'.repeat(1100), 'x-request-id': 'q'.repeat(2000), 'x-user': 'bob' })
    assert.equal(response.status, 201)
    assert.match(response.headers.get('x-request-id'), /^[0-9a-f-]{36}$/)
    for (const kind of ['throws', 'extra']) {
      response = await post({ 'x-kind': kind })
      assert.equal(response.status, 500, `${kind}: Nest's exception filter answers`)
    }
    response = await post({ 'x-user': 'carol' })
    assert.equal(response.status, 201, 'the app is still up')
    const rows = await entries()
    assert.deepEqual(rows.map((r) => r.actor_id), ['bob', 'carol'], 'the refused requests wrote nothing')
    assert.equal(rows[0].user_agent.length, 1024)
  })
}
