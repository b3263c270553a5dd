// Undo through the npm package, as a new user would call it after reading the README: the
// expected tables come from the live tables before the changes undone.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import pg from 'pg'
import { AuditLogs, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

const bin = fileURLToPath(new URL('../../bin/audit-logs.js', import.meta.url))

async function shop(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table customers (id int primary key, email text not null, plan text);
    create table orders (id int primary key, customer_id int not null references customers on delete cascade,
                         total numeric(10, 2), placed_at timestamptz);`))
  await audit.enableTracking('customers')
  await audit.enableTracking('orders')
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  const rows = async () => {
    const customers = await pool.query('select * from customers order by id')
    const orders = await pool.query('select * from orders order by id')
    return { customers: customers.rows, orders: orders.rows }
  }
  return { url, audit, pool, rows }
}

test("revert puts a bad request's changes back, records who reverted, and can be reverted itself", async (t) => {
  const { audit, pool, rows } = await shop(t)
  await withAuditContext(pool, { actorId: 'ann', requestId: 'req-1' }, (c) => c.query(`
    insert into customers values (1, 'a@x.io', 'free'), (2, 'b@x.io', 'pro');
    insert into orders values (10, 1, 9.99, '2026-01-02T03:04:05Z'), (11, 2, 120, null)`))
  const before = await rows()
  await withAuditContext(pool, { actorId: 'mallory', requestId: 'req-666' }, async (c) => {
    await c.query("update customers set plan = 'free', email = 'evil@x.io' where id = 2")
    await c.query('delete from customers where id = 1')
  })
  const damaged = await rows()

  const dry = await audit.revert({ request: 'req-666' }, { dryRun: true })
  assert.equal(dry.dryRun, true)
  assert.deepEqual(await rows(), damaged, 'a dry run changes nothing')
  const email = dry.changes.find((c) => c.table === 'public.customers' && c.id === '2').fields.find((f) => f.field === 'email')
  assert.deepEqual([email.current, email.restored], ['evil@x.io', 'b@x.io'])
  assert.ok(dry.statements.every((s) => /^(insert|update|delete) /.test(s)), dry.statements.join('\n'))

  const report = await audit.revert({ request: 'req-666' }, { context: { actorId: 'admin', reason: 'ticket 9' } })
  assert.equal(report.dryRun, false)
  assert.equal(report.entries, 3, 'the update, the delete and its cascade')
  assert.deepEqual(await rows(), before)
  const reverting = await audit.search({ actorId: 'admin' })
  assert.equal(reverting.entries.length, 3)
  for (const entry of reverting.entries) {
    assert.deepEqual(entry.metadata, { reason: 'ticket 9', reverts: { request: 'req-666' } })
  }
  // Undo the undo: a transaction, by its txid.
  await audit.revert({ transaction: reverting.entries[0].txid })
  assert.deepEqual(await rows(), damaged)
})

test('a record changed again since is a conflict that names who changed it, unless overwriting', async (t) => {
  const { audit, pool, rows } = await shop(t)
  await withAuditContext(pool, { actorId: 'ann' }, (c) => c.query("insert into customers values (1, 'a@x.io', 'free')"))
  await withAuditContext(pool, { actorId: 'bob' }, (c) => c.query("update customers set plan = 'pro'"))
  const [upgrade] = await audit.history({ table: 'customers', id: 1, limit: 1 })
  await withAuditContext(pool, { actorId: 'cid' }, (c) => c.query("update customers set plan = 'team', email = 'c@x.io'"))
  const now = await rows()
  const error = await audit.revert({ entry: upgrade.id }).then(() => assert.fail('a conflict'), (e) => e)
  assert.equal(error.code, 'AUDIT_LOGS_REVERT_CONFLICT', error.message)
  assert.match(error.message, /cid/)
  assert.match(error.message, /overwrite/)
  // The conflicts, structured: the record and who changed it since.
  assert.deepEqual(error.conflicts.map((c) => [c.table, c.id, c.entryId, c.later.map((e) => e.actorId)]),
    [['public.customers', '1', upgrade.id, ['cid']]])
  assert.deepEqual(await rows(), now)
  const kept = await audit.revert({ entry: upgrade.id }, { onConflict: 'keep-later', dryRun: true })
  assert.deepEqual(kept.notes, ['public.customers 1: changed since, so left as they are: plan'])
  assert.deepEqual(kept.changes, [])
  await audit.revert({ entry: upgrade.id }, { onConflict: 'overwrite' })
  assert.deepEqual((await rows()).customers, [{ id: 1, email: 'c@x.io', plan: 'free' }], "only bob's field is put back")
})

test('one record goes back to a time given as a Date, even after its delete', async (t) => {
  const { audit, pool, rows } = await shop(t)
  await withAuditContext(pool, { actorId: 'ann' }, (c) => c.query(`
    insert into customers values (1, 'a@x.io', 'free'); insert into orders values (10, 1, 5, null)`))
  const before = await rows()
  const [{ at }] = (await pool.query('select clock_timestamp() as at')).rows
  await withAuditContext(pool, { actorId: 'bob' }, (c) => c.query('delete from customers'))
  await audit.revert({ table: 'customers', id: 1, to: at })
  await audit.revert({ table: { schema: 'public', name: 'orders' }, id: 10, to: at.toISOString() })
  assert.deepEqual(await rows(), before)
})

test('a malformed target is refused before anything is read or written', async (t) => {
  const { audit } = await shop(t)
  await rejectsWithCode(assert, audit.revert({ transaction: 1, entry: 2 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({}), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ actor: 'x', from: new Date() }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ table: 'customers', id: 1 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ entry: 1 }, { onConflict: 'ignore' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ request: 'r', from: 'yesterday' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ transaction: 123456 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ entry: 1 }, { context: { ipAddress: 'nope' } }), 'AUDIT_LOGS_INVALID_CONTEXT')
  await rejectsWithCode(assert, audit.revert({ table: 'nope', id: 1, to: new Date() }), 'AUDIT_LOGS_TABLE_NOT_FOUND')
})

test('the CLI reverts with a dry run first, and fails with the conflict named', async (t) => {
  const { url, audit, pool, rows } = await shop(t)
  const cli = (...args) => spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: url }, encoding: 'utf8' })
  await withAuditContext(pool, { actorId: 'ann' }, (c) => c.query("insert into customers values (1, 'a@x.io', 'free')"))
  const before = await rows()
  await withAuditContext(pool, { actorId: 'job' }, (c) => c.query('delete from customers'))
  const [deleted] = await audit.history({ table: 'customers', id: 1, limit: 1 })

  const dry = cli('revert', '--transaction', String(deleted.txid), '--dry-run')
  assert.equal(dry.status, 0, dry.stderr)
  assert.match(dry.stdout, /Would change 1 record\(s\):\n {2}insert public\.customers 1\n/)
  assert.match(dry.stdout, /email: null → "a@x\.io"/)
  assert.match(dry.stdout, /insert into public\.customers/)
  assert.match(dry.stdout, /Nothing was changed \(dry run\)/)
  assert.deepEqual((await rows()).customers, [])

  const done = cli('revert', '--transaction', String(deleted.txid), '--by', 'admin', '--reason', 'oops')
  assert.equal(done.status, 0, done.stderr)
  assert.deepEqual(await rows(), before)
  const [recreated] = await audit.history({ table: 'customers', id: 1, limit: 1 })
  assert.equal(recreated.actorId, 'admin')
  assert.deepEqual(recreated.metadata, { reason: 'oops', reverts: { transaction: deleted.txid } })

  await withAuditContext(pool, { actorId: 'eve' }, (c) => c.query("update customers set plan = 'pro'"))
  const refused = cli('revert', '--transaction', String(deleted.txid))
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /AUDIT_LOGS_REVERT_CONFLICT/)
  assert.match(refused.stderr, /eve/)
  const missing = cli('revert', '--actor', 'eve')
  assert.equal(missing.status, 2, 'clap refuses an actor without --from and --to')
})
