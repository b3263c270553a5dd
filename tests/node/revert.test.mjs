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

// revert(target, { client }): in the caller's own transaction, on the caller's own client.

/** A shop with a bad request (req-666) to undo; the tables as they were before it, and after. */
async function damagedShop(t) {
  const shopped = await shop(t)
  const { pool, rows } = shopped
  await withAuditContext(pool, { actorId: 'ann', requestId: 'req-1' }, (c) => c.query(`
    insert into customers values (1, 'a@x.io', 'free'), (2, 'b@x.io', 'pro');
    insert into orders values (10, 1, 9.99, '2026-01-02T03:04:05Z'), (11, 2, 120, null)`))
  const before = await rows()
  await withAuditContext(pool, { actorId: 'mallory', requestId: 'req-666' }, async (c) => {
    await c.query("update customers set plan = 'free', email = 'evil@x.io' where id = 2")
    await c.query('delete from customers where id = 1')
  })
  const damaged = await rows()
  const entries = async () => (await pool.query('select count(*)::int as n from audit.audit_logs')).rows[0].n
  return { ...shopped, before, damaged, entries }
}

/** What `client` sees of the tables, in its transaction. */
async function seenBy(client) {
  const customers = await client.query('select * from customers order by id')
  const orders = await client.query('select * from orders order by id')
  return { customers: customers.rows, orders: orders.rows }
}

test("a revert on the caller's client is undone by the caller's rollback, audit rows and all", async (t) => {
  const { audit, pool, rows, before, damaged, entries } = await damagedShop(t)
  const logged = await entries()
  const client = await pool.connect()
  deferCleanup(t, () => client.release())
  await client.query('begin')
  const report = await audit.revert({ request: 'req-666' }, { client })
  assert.equal(report.entries, 3)
  assert.deepEqual(await seenBy(client), before, 'the caller sees the revert in its transaction')
  assert.deepEqual(await rows(), damaged, 'nobody else does before it commits')
  await client.query('rollback')
  assert.deepEqual(await rows(), damaged)
  assert.equal(await entries(), logged, 'no audit row of the revert is left')
})

test("a revert commits with the caller's other writes, one entry per change, under the caller's context", async (t) => {
  const { audit, pool, rows, before } = await damagedShop(t)
  const report = await withAuditContext(pool, { actorId: 'admin', requestId: 'fix-1', reason: 'ticket 9' }, async (client) => {
    await client.query("insert into customers values (3, 'c@x.io', 'team')")
    const done = await audit.revert({ request: 'req-666' }, { client })
    // The caller's context is its own again after the revert: this write carries no `reverts`.
    await client.query('update orders set total = 10 where id = 10')
    return done
  })
  assert.deepEqual(report.changes.map((c) => [c.operation, c.table, c.id]),
    [['insert', 'public.customers', '1'], ['update', 'public.customers', '2'], ['insert', 'public.orders', '10']])
  const after = await rows()
  assert.deepEqual(after.customers, [...before.customers, { id: 3, email: 'c@x.io', plan: 'team' }])
  assert.deepEqual(after.orders, before.orders.map((o) => (o.id === 10 ? { ...o, total: '10.00' } : o)))
  const fix = (await audit.byRequest('fix-1')).reverse()
  assert.deepEqual(fix.map((e) => [e.action, e.targetType, e.targetId, e.actorId, e.metadata]), [
    ['INSERT', 'public.customers', '3', 'admin', { reason: 'ticket 9' }],
    ['INSERT', 'public.customers', '1', 'admin', { reason: 'ticket 9', reverts: { request: 'req-666' } }],
    ['UPDATE', 'public.customers', '2', 'admin', { reason: 'ticket 9', reverts: { request: 'req-666' } }],
    ['INSERT', 'public.orders', '10', 'admin', { reason: 'ticket 9', reverts: { request: 'req-666' } }],
    ['UPDATE', 'public.orders', '10', 'admin', { reason: 'ticket 9' }],
  ])
  assert.equal(new Set(fix.map((e) => e.txid)).size, 1, "one transaction: the caller's")
})

test("a revert sees the caller's uncommitted rows, and its conflict leaves the caller's transaction usable", async (t) => {
  const { audit, pool, rows, damaged, entries } = await damagedShop(t)
  const logged = await entries()
  const client = await pool.connect()
  deferCleanup(t, () => client.release())
  await client.query('begin')
  // Re-created in this transaction, not committed: undoing its delete would overwrite it.
  await client.query("insert into customers values (1, 'again@x.io', 'pro')")
  const error = await audit.revert({ request: 'req-666' }, { client }).then(() => assert.fail('a conflict'), (e) => e)
  assert.equal(error.code, 'AUDIT_LOGS_REVERT_CONFLICT', error.message)
  assert.deepEqual(error.conflicts.map((c) => [c.table, c.id]), [['public.customers', '1']])
  // Documented: the revert rolled back to its savepoint; the caller's transaction goes on.
  assert.equal(client.getTransactionStatus(), 'T')
  assert.deepEqual((await client.query('select email from customers where id = 1')).rows, [{ email: 'again@x.io' }])
  await client.query('commit')
  assert.deepEqual((await rows()).customers, [{ id: 1, email: 'again@x.io', plan: 'pro' }, damaged.customers[0]])
  assert.equal(await entries(), logged + 1, "the caller's insert, and nothing of the revert")
})

test("a dry run on the caller's client changes nothing in its transaction and leaves its context", async (t) => {
  const { audit, pool, rows, damaged } = await damagedShop(t)
  const report = await withAuditContext(pool, { actorId: 'admin' }, async (client) => {
    const dry = await audit.revert({ request: 'req-666' }, { client, dryRun: true })
    assert.deepEqual(await seenBy(client), damaged)
    await client.query("update customers set plan = 'team' where id = 2")
    return dry
  })
  assert.equal(report.dryRun, true)
  assert.equal(report.changes.length, 3)
  assert.ok(report.statements.some((s) => s.startsWith('insert into public.customers')), report.statements.join('\n'))
  assert.deepEqual((await rows()).customers, [{ ...damaged.customers[0], plan: 'team' }])
  const [last] = await audit.history({ table: 'customers', id: 2, limit: 1 })
  assert.deepEqual([last.actorId, last.metadata], ['admin', undefined])
})

test('a client in no transaction, in a failed one, or a pool is refused by name, changing nothing', async (t) => {
  const { url, audit, pool, rows, damaged, entries } = await damagedShop(t)
  const logged = await entries()
  await withClient(url, async (client) => {
    await rejectsWithCode(assert, audit.revert({ request: 'req-666' }, { client }), 'AUDIT_LOGS_NOT_IN_TRANSACTION')
    const error = await audit.revert({ request: 'req-666' }, { client }).catch((e) => e)
    assert.match(error.message, /begin/)
    assert.equal(error.cause?.code, '25P01', "pg's error is the cause")
    await client.query('begin')
    await client.query('select 1/0').catch(() => {})
    await rejectsWithCode(assert, audit.revert({ request: 'req-666' }, { client }), 'AUDIT_LOGS_TRANSACTION_FAILED')
    await client.query('rollback')
  })
  // Inside a transaction, a bad target is refused as without client, the transaction usable.
  await withAuditContext(pool, { actorId: 'admin' }, async (client) => {
    const missing = await audit.revert({ table: 'customer', id: 1, to: new Date() }, { client }).catch((e) => e)
    assert.equal(missing.code, 'AUDIT_LOGS_TABLE_NOT_FOUND', missing.message)
    assert.match(missing.message, /did you mean public\.customers\?/)
    await rejectsWithCode(assert, audit.revert({ transaction: 123456 }, { client }), 'AUDIT_LOGS_INVALID_ARGUMENT')
    await client.query('select 1')
  })
  await rejectsWithCode(assert, audit.revert({ request: 'req-666' }, { client: pool }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.revert({ request: 'req-666' }, { client: {} }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  assert.deepEqual(await rows(), damaged)
  assert.equal(await entries(), logged)
})

test('the rows a revert checked and wrote stay locked until the caller ends its transaction', async (t) => {
  const { url, audit, pool } = await damagedShop(t)
  const client = await pool.connect()
  deferCleanup(t, () => client.release())
  await client.query('begin')
  await audit.revert({ request: 'req-666' }, { client })
  await withClient(url, async (other) => {
    await assert.rejects(other.query('select * from customers where id = 2 for update nowait'), (e) => e.code === '55P03')
  })
  await client.query('commit')
  await withClient(url, (other) => other.query('select * from customers where id = 2 for update nowait'))
})

test('under repeatable read, a row changed by another transaction since the snapshot fails the revert with 40001', async (t) => {
  const { url, audit, pool, damaged } = await damagedShop(t)
  const client = await pool.connect()
  deferCleanup(t, () => client.release())
  await client.query('begin isolation level repeatable read')
  await client.query('select count(*) from customers') // the snapshot
  await withClient(url, (other) => other.query("update customers set plan = 'team' where id = 2"))
  const error = await audit.revert({ request: 'req-666' }, { client, onConflict: 'overwrite' }).catch((e) => e)
  assert.equal(error.code, 'AUDIT_LOGS_DATABASE_ERROR', error.message)
  assert.equal(error.sqlstate, '40001')
  assert.equal(error.cause?.code, '40001', "pg's error is the cause")
  // Rolled back to its savepoint: the caller's transaction still answers, with its snapshot.
  assert.deepEqual((await client.query('select plan from customers where id = 2')).rows, [{ plan: damaged.customers[0].plan }])
  await client.query('rollback')
})
