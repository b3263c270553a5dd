// withAuditContext and auditDialect with Kysely (PostgresDialect over a pg Pool), the real package.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Kysely, PostgresDialect, Transaction, sql } from 'kysely'
import pg from 'pg'
import { auditDialect, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, rejectsWithCode } from './helpers.mjs'
import { entries, notesDatabase, ormSuite } from './orm_suite.mjs'

// Every statement sent, to check what auditDialect adds (and that reads add nothing).
const statements = []
const originalQuery = pg.Client.prototype.query
pg.Client.prototype.query = function traced(config, ...rest) {
  statements.push(typeof config === 'string' ? config : config?.text)
  return originalQuery.call(this, config, ...rest)
}

ormSuite('Kysely', {
  async open(url, t, { max = 2 } = {}) {
    const pool = new pg.Pool({ connectionString: url, max })
    // Kysely does not listen for pg's 'error' event on the client it checked out: a connection
    // lost in a transaction would crash the process. Any pg Pool user needs this listener.
    pool.on('connect', (client) => client.on('error', () => {}))
    const db = new Kysely({ dialect: new PostgresDialect({ pool }) })
    deferCleanup(t, () => db.destroy())
    return {
      db,
      insert: (trx, author) => trx.insertInto('notes').values({ author }).execute(),
      isTransaction: (trx) => trx instanceof Transaction,
      transaction: (db, fn) => db.transaction().execute(fn),
    }
  },
})

async function audited(t, options, { requireContext = false } = {}) {
  const { url } = await notesDatabase(t, { requireContext })
  const db = new Kysely({ dialect: auditDialect(new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }), options) })
  deferCleanup(t, () => db.destroy())
  return { url, db }
}

/** The statements `fn` sends, lower-cased, the BEGIN variants as `begin`. */
async function sent(fn) {
  const start = statements.length
  await fn()
  return statements.slice(start).map((s) => s.trim().toLowerCase().replace(/^start transaction.*/, 'begin'))
}

const SET = 'select audit.set_checked_context($1)'

test('auditDialect: a write on its own is attributed to the request in one transaction; a read adds nothing', async (t) => {
  const { url, db } = await audited(t)
  const request = { actorId: 'ann', requestId: 'req-1' }
  const write = await sent(() => runWithAuditContext(request, () => db.insertInto('notes').values({ author: 'ann' }).execute()))
  assert.deepEqual(write.map((s) => s.split(' ')[0]), ['begin', 'select', 'insert', 'commit'])
  assert.equal(write[1], SET)
  const read = await sent(() => runWithAuditContext(request, () => db.selectFrom('notes').selectAll().execute()))
  assert.equal(read.length, 1, 'a read is one statement')
  // A CTE that writes, under a SELECT, is a write.
  await runWithAuditContext({ actorId: 'bob' }, () => db.with('added', (qb) => qb.insertInto('notes').values({ author: 'bob' }).returning('id'))
    .selectFrom('added').selectAll().execute())
  await runWithAuditContext({ actorId: 'cy' }, () => sql`update notes set body = 'x' where author = 'ann'`.execute(db))
  assert.deepEqual((await entries(url)).map((r) => [r.action, r.actor_id, r.request_id]),
    [['INSERT', 'ann', 'req-1'], ['INSERT', 'bob', null], ['UPDATE', 'cy', null]])
})

test('auditDialect: writes in a Kysely transaction stay in it (the context its first statement) and roll back with it', async (t) => {
  const { url, db } = await audited(t)
  const failure = new Error('roll back')
  const inside = await sent(() => runWithAuditContext({ actorId: 'ann' }, () => assert.rejects(db.transaction().execute(async (trx) => {
    await trx.insertInto('notes').values({ author: 'ann' }).execute()
    await trx.updateTable('notes').set({ body: 'x' }).execute()
    throw failure
  }), (error) => error === failure)))
  assert.deepEqual(inside.map((s) => s.split(' ')[0]), ['begin', 'select', 'insert', 'update', 'rollback'], 'one BEGIN, no COMMIT inside')
  assert.deepEqual(await entries(url), [])
  await runWithAuditContext({ actorId: 'ann' }, () => db.transaction().execute((trx) => trx.insertInto('notes').values({ author: 'ann' }).execute()))
  // withAuditContext's own context wins over the request's.
  await runWithAuditContext({ actorId: 'ann' }, () => withAuditContext(db, { actorId: 'admin' }, (trx) =>
    trx.insertInto('notes').values({ author: 'admin' }).execute()))
  assert.deepEqual((await entries(url)).map((r) => [r.new_values.author, r.actor_id]), [['ann', 'ann'], ['admin', 'admin']])
})

test('auditDialect: no context adds nothing; requireContext refuses the write with AUDIT_LOGS_CONTEXT_REQUIRED, writing nothing', async (t) => {
  const { url, db } = await audited(t)
  const plain = await sent(() => db.insertInto('notes').values({ author: 'nobody' }).execute())
  assert.equal(plain.length, 1)
  assert.deepEqual((await entries(url)).map((r) => r.actor_id), [null])

  const strict = await audited(t, { requireContext: true })
  await rejectsWithCode(assert, strict.db.insertInto('notes').values({ author: 'x' }).execute(), 'AUDIT_LOGS_CONTEXT_REQUIRED')
  assert.deepEqual(await entries(strict.url), [])
  // A table requiring a context refuses an unattributed write: the driver's AL006, as our code.
  const guarded = await audited(t, {}, { requireContext: true })
  await rejectsWithCode(assert, guarded.db.insertInto('notes').values({ author: 'x' }).execute(), 'AUDIT_LOGS_CONTEXT_REQUIRED')
  await runWithAuditContext({ actorId: 'ok' }, () => guarded.db.insertInto('notes').values({ author: 'ok' }).execute())
  assert.deepEqual((await entries(guarded.url)).map((r) => r.actor_id), ['ok'])
})
