// Neon's serverless driver (@neondatabase/serverless) in its node-postgres-compatible mode,
// through a relay of the kind Neon's proxy is (neon-relay.mjs) in front of the real test server.
// Its clients are pg's of an older line, which cannot say whether they are in a transaction:
// withAuditContext asks the server instead.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Client, Pool } from '@neondatabase/serverless'
import { AuditLogs, withAuditContext } from '../../index.js'
import { NativeAuditLogs, deferCleanup, freshDatabase } from './helpers.mjs'
import { useNeonRelay } from './neon-relay.mjs'

async function neonDatabase(t) {
  const url = await freshDatabase(t)
  await useNeonRelay(t)
  // Set up with the native build, which wasm.test.mjs runs this file without.
  const admin = await NativeAuditLogs.connect(url)
  deferCleanup(t, () => admin.close())
  await admin.migrate()
  const pool = new Pool({ connectionString: url, max: 5 })
  deferCleanup(t, () => pool.end())
  await pool.query('create table notes (id serial primary key, author text)')
  await admin.enableTracking('notes')
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  const entries = async () => (await pool.query(
    'select actor_id, new_values from audit.audit_logs order by id')).rows
  return { url, audit, pool, entries }
}

test('Neon serverless Pool: each write is attributed to its actor, 30 interleaved; a throw rolls back rows and audit rows', async (t) => {
  const { pool, entries } = await neonDatabase(t)
  await Promise.all(Array.from({ length: 30 }, (_, i) =>
    withAuditContext(pool, { actorId: `user-${i}` }, async (client) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5))
      await client.query('insert into notes (author) values ($1)', [`user-${i}`])
    })))
  await assert.rejects(withAuditContext(pool, { actorId: 'mallory' }, async (client) => {
    await client.query("insert into notes (author) values ('mallory')")
    throw new Error('handler failed')
  }), /handler failed/)
  const rows = await entries()
  assert.equal(rows.length, 30)
  for (const row of rows) assert.equal(row.actor_id, row.new_values.author)
  assert.equal((await pool.query('select count(*)::int as n from notes')).rows[0].n, 30)
})

test('Neon serverless Client: a nested call is a savepoint with its own actor, and a failed transaction is refused by code', async (t) => {
  const { url, entries } = await neonDatabase(t)
  const client = new Client({ connectionString: url })
  await client.connect()
  deferCleanup(t, () => client.end())
  assert.equal(typeof client.getTransactionStatus, 'undefined', 'the driver cannot say; the server is asked')

  await withAuditContext(client, { actorId: 'outer' }, async (tx) => {
    await tx.query("insert into notes (author) values ('outer')")
    await withAuditContext(tx, { actorId: 'inner' }, (inner) => inner.query("insert into notes (author) values ('inner')"))
    await assert.rejects(withAuditContext(tx, { actorId: 'undone' }, async (inner) => {
      await inner.query("insert into notes (author) values ('undone')")
      throw new Error('inner failed')
    }), /inner failed/)
    await tx.query("insert into notes (author) values ('outer')")
  })
  const idle = await client.query('select pg_catalog.statement_timestamp() = pg_catalog.transaction_timestamp() as idle')
  assert.equal(idle.rows[0].idle, true, 'the outermost call committed its own transaction')
  assert.deepEqual((await entries()).map((r) => [r.actor_id, r.new_values.author]),
    [['outer', 'outer'], ['inner', 'inner'], ['outer', 'outer']])

  await client.query('begin')
  await client.query('select 1/0').catch(() => {})
  await assert.rejects(withAuditContext(client, { actorId: 'late' }, (tx) => tx.query('select 1')),
    { code: 'AUDIT_LOGS_TRANSACTION_FAILED' })
  await client.query('rollback')
  await withAuditContext(client, { actorId: 'after' }, (tx) => tx.query("insert into notes (author) values ('after')"))
  assert.equal((await entries()).at(-1).actor_id, 'after', 'the client is usable again after the rollback')
})

test('Neon serverless: an event is written in the caller\'s transaction and goes with its rollback', async (t) => {
  const { audit, pool } = await neonDatabase(t)
  const client = await pool.connect()
  try {
    await client.query('begin')
    await audit.log({ action: 'note.exported', targetType: 'note', targetId: '1' }, { client, context: { actorId: 'ann' } })
    await client.query('rollback')
    await client.query('begin')
    const entry = await audit.log({ action: 'note.exported', targetType: 'note', targetId: '2' }, { client, context: { actorId: 'ann' } })
    await client.query('commit')
    assert.equal(entry.actorId, 'ann')
  } finally {
    client.release()
  }
  const events = (await pool.query("select target_id, actor_id from audit.audit_logs where action = 'note.exported'")).rows
  assert.deepEqual(events, [{ target_id: '2', actor_id: 'ann' }])
})

test('Drizzle over Neon serverless (drizzle-orm/neon-serverless): its transaction is attributed, nested calls are savepoints', async (t) => {
  const { drizzle } = await import('drizzle-orm/neon-serverless')
  const { pgTable, serial, text } = await import('drizzle-orm/pg-core')
  const { pool, entries } = await neonDatabase(t)
  const notes = pgTable('notes', { id: serial('id').primaryKey(), author: text('author') })
  const db = drizzle(pool)
  await withAuditContext(db, { actorId: 'ann' }, async (tx) => {
    await tx.insert(notes).values({ author: 'ann' })
    await withAuditContext(tx, { actorId: 'bob' }, (inner) => inner.insert(notes).values({ author: 'bob' }))
  })
  await assert.rejects(withAuditContext(db, { actorId: 'mallory' }, async (tx) => {
    await tx.insert(notes).values({ author: 'mallory' })
    throw new Error('handler failed')
  }), /handler failed/)
  assert.deepEqual((await entries()).map((r) => [r.actor_id, r.new_values.author]), [['ann', 'ann'], ['bob', 'bob']])
})
