// The behaviour every ORM integration of withAuditContext must have, asserted from the audit log
// against a real PostgreSQL; each ORM's test file runs it with the real package, writing through
// the ORM's own query builder inside the transaction it hands to `fn`.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createRequire } from 'node:module'
import { AuditLogs, runWithAuditContext, withAuditContext } from '../../index.js'
import { startCommitProxy } from './commit_proxy.mjs'
import { NativeAuditLogs, deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

// Run through the WebAssembly build by wasm.test.mjs, where a revert needs the native one.
const wasm = createRequire(import.meta.url)('../../binding.js').__napiBindingTarget === 'wasm32-wasi'

/**
 * A migrated database with a tracked `notes` table whose `author` column says who wrote it, set
 * up with the native build, and an AuditLogs of the build under test on it.
 */
export async function notesDatabase(t, { requireContext = false } = {}) {
  const url = await freshDatabase(t)
  const admin = await NativeAuditLogs.connect(url)
  await admin.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text, body text)'))
  await admin.enableTracking('notes', { requireContext })
  admin.close()
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  return { url, audit }
}

/** The log's entries, oldest first, read with pg itself. */
export async function entries(url) {
  return withClient(url, (c) => c.query(`select action, actor_id, actor_type, request_id, target_type,
    new_values, metadata from audit.audit_logs order by id`).then((r) => r.rows))
}

const count = (url) => withClient(url, (c) => c.query('select count(*)::int as n from notes').then((r) => r.rows[0].n))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * `orm.open(url, t)` gives `{ db, insert(tx, author), isTransaction(tx), transaction(db, fn) }`:
 * the ORM's database on `url` (closed when `t` ends), an insert through its query builder, how
 * to know its transaction object, and its own way to open a transaction.
 */
export function ormSuite(name, orm) {
  test(`${name}: fn runs in the ORM's transaction, attributed; its result comes back`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert, isTransaction } = await orm.open(url, t)
    const result = await withAuditContext(db, { actorId: '7', actorType: 'user', reason: 'fix typo' }, async (tx) => {
      assert.ok(isTransaction(tx), `fn receives a ${name} transaction`)
      await insert(tx, '7')
      await insert(tx, '7')
      return 'done'
    })
    assert.equal(result, 'done')
    const rows = await entries(url)
    assert.deepEqual(rows.map((r) => [r.action, r.actor_id, r.actor_type]), [['INSERT', '7', 'user'], ['INSERT', '7', 'user']])
    assert.deepEqual(rows[0].metadata, { reason: 'fix typo' })
  })

  test(`${name}: a throw rolls back the rows and their audit rows, and rethrows the same error`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert } = await orm.open(url, t)
    const boom = new Error('boom')
    await assert.rejects(withAuditContext(db, { actorId: '7' }, async (tx) => {
      await insert(tx, '7')
      throw boom
    }), (error) => error === boom)
    assert.equal(await count(url), 0)
    assert.deepEqual(await entries(url), [])
  })

  test(`${name}: nested calls use savepoints with their own context, and the outer one comes back`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert } = await orm.open(url, t)
    await withAuditContext(db, { actorId: 'outer' }, async (tx) => {
      await insert(tx, 'outer-1')
      await withAuditContext(tx, { actorId: 'inner', actorType: 'system' }, (inner) => insert(inner, 'inner'))
      await assert.rejects(withAuditContext(tx, { actorId: 'failed' }, async (inner) => {
        await insert(inner, 'failed')
        throw new Error('inner failure')
      }), /inner failure/)
      await insert(tx, 'outer-2')
    })
    const rows = await entries(url)
    assert.deepEqual(rows.map((r) => [r.new_values.author, r.actor_id, r.actor_type]), [
      ['outer-1', 'outer', null], ['inner', 'inner', 'system'], ['outer-2', 'outer', null],
    ])
  })

  test(`${name}: a transaction opened with the ORM is joined, not committed early`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert, transaction } = await orm.open(url, t)
    const rollback = new Error('roll back the whole transaction')
    await assert.rejects(transaction(db, async (tx) => {
      await withAuditContext(tx, { actorId: 'joined' }, (inner) => insert(inner, 'joined'))
      const [row] = await withClient(url, (c) => c.query('select count(*)::int as n from audit.audit_logs').then((r) => r.rows))
      assert.equal(row.n, 0, 'not committed by withAuditContext: another session sees nothing yet')
      throw rollback
    }), (error) => error === rollback)
    assert.deepEqual(await entries(url), [], 'the ORM rolled back: nothing of it remains')
  })

  test(`${name}: requireContext refuses before writing, and a table requiring a context gives AUDIT_LOGS_CONTEXT_REQUIRED`, async (t) => {
    const { url } = await notesDatabase(t, { requireContext: true })
    const { db, insert } = await orm.open(url, t)
    let ran = false
    await rejectsWithCode(assert, withAuditContext(db, null, async () => { ran = true }, { requireContext: true }),
      'AUDIT_LOGS_CONTEXT_REQUIRED')
    assert.equal(ran, false, 'fn never ran')
    // The database refuses the unattributed write (AL006); the wrapper names it as the native API does.
    await assert.rejects(withAuditContext(db, null, (tx) => insert(tx, 'nobody')), (error) => {
      assert.equal(error.code, 'AUDIT_LOGS_CONTEXT_REQUIRED', error.message)
      assert.ok(error.cause, 'the driver\'s error as cause')
      return true
    })
    await withAuditContext(db, { actorId: 'someone' }, (tx) => insert(tx, 'someone'))
    assert.deepEqual((await entries(url)).map((r) => r.actor_id), ['someone'])
  })

  test(`${name}: 50 interleaved requests each keep their own actor, from the request's context`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert } = await orm.open(url, t, { max: 4 })
    await Promise.all(Array.from({ length: 50 }, (_, i) =>
      runWithAuditContext({ actorId: `user-${i}`, requestId: `req-${i}` }, async () => {
        await sleep(Math.random() * 10)
        await withAuditContext(db, null, async (tx) => {
          await insert(tx, `user-${i}`)
          await sleep(Math.random() * 5)
          await insert(tx, `user-${i}`)
        })
      })))
    const rows = await entries(url)
    assert.equal(rows.length, 100)
    for (const row of rows) {
      assert.equal(row.actor_id, row.new_values.author)
      assert.equal(row.request_id, `req-${row.new_values.author.slice(5)}`)
    }
  })

  test(`${name}: events logged in the ORM's transaction commit and roll back with it`, async (t) => {
    const { url, audit } = await notesDatabase(t)
    const { db, insert } = await orm.open(url, t)
    await withAuditContext(db, { actorId: 'ann', requestId: 'req-1' }, async (tx) => {
      await insert(tx, 'ann')
      const event = await audit.log({ action: 'note.shared', targetType: 'note', targetId: '1' }, { client: tx })
      assert.equal(event.actorId, 'ann', 'the transaction\'s context fills the event')
      await audit.logMany([{ action: 'note.pinned', targetType: 'note', targetId: '1' }], { client: tx })
    })
    await assert.rejects(withAuditContext(db, { actorId: 'bob' }, async (tx) => {
      await audit.log({ action: 'note.shared', targetType: 'note', targetId: '2' }, { client: tx })
      throw new Error('undo')
    }), /undo/)
    const rows = await entries(url)
    assert.deepEqual(rows.map((r) => [r.action, r.actor_id, r.request_id]), [
      ['INSERT', 'ann', 'req-1'], ['note.shared', 'ann', 'req-1'], ['note.pinned', 'ann', 'req-1'],
    ])
  })

  test(`${name}: a connection lost while COMMIT is in flight rejects with AUDIT_LOGS_COMMIT_UNKNOWN; row and audit row committed together`, async (t) => {
    const { url } = await notesDatabase(t)
    const proxy = await startCommitProxy(url)
    deferCleanup(t, () => proxy.close())
    const { db, insert } = await orm.open(proxy.url, t, { max: 1 })
    const lost = proxy.loseNextCommit('after')
    const error = await withAuditContext(db, { actorId: 'ann', requestId: 'req-lost' }, (tx) => insert(tx, 'ann'))
      .then(() => assert.fail('resolved although its COMMIT was never answered'), (e) => e)
    await lost
    assert.equal(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', error.message)
    assert.match(error.message, /audit\.byRequest\("req-lost"\)/)
    assert.ok(error.cause instanceof Error, 'keeps what the ORM raised')
    // The server did commit: the row and its audit row, together.
    assert.equal(await count(url), 1)
    assert.deepEqual((await entries(url)).map((r) => [r.actor_id, r.request_id]), [['ann', 'req-lost']])
  })

  test(`${name}: a plain write after a context is attributed to nobody (nothing leaks to the connection)`, async (t) => {
    const { url } = await notesDatabase(t)
    const { db, insert, transaction } = await orm.open(url, t, { max: 1 })
    await withAuditContext(db, { actorId: 'first' }, (tx) => insert(tx, 'first'))
    await transaction(db, (tx) => insert(tx, 'later'))
    assert.deepEqual((await entries(url)).map((r) => [r.new_values.author, r.actor_id]), [['first', 'first'], ['later', null]])
  })

  test(`${name}: a revert given the ORM's transaction runs in it: rolled back with it, or committed with its writes`, async (t) => {
    const { url, audit } = await notesDatabase(t)
    const { db, insert } = await orm.open(url, t)
    await withAuditContext(db, { actorId: 'spam', requestId: 'bad' }, async (tx) => {
      await insert(tx, 'spam')
      await insert(tx, 'spam')
    })
    if (wasm) {
      await rejectsWithCode(assert, withAuditContext(db, { actorId: 'mod' },
        (tx) => audit.revert({ request: 'bad' }, { client: tx })), 'AUDIT_LOGS_NEEDS_NATIVE')
      return
    }
    await assert.rejects(withAuditContext(db, { actorId: 'mod' }, async (tx) => {
      assert.equal((await audit.revert({ request: 'bad' }, { client: tx })).changes.length, 2)
      throw new Error('not yet')
    }), /not yet/)
    assert.equal(await count(url), 2)
    assert.equal((await entries(url)).length, 2)
    await withAuditContext(db, { actorId: 'mod' }, async (tx) => {
      await audit.revert({ request: 'bad' }, { client: tx })
      await insert(tx, 'mod')
    })
    assert.deepEqual((await entries(url)).slice(2).map((r) => [r.action, r.actor_id, r.metadata]), [
      ['DELETE', 'mod', { reverts: { request: 'bad' } }], ['DELETE', 'mod', { reverts: { request: 'bad' } }],
      ['INSERT', 'mod', null],
    ])
    assert.equal(await count(url), 1)
    await rejectsWithCode(assert, audit.revert({ request: 'bad' }, { client: db }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  })
}

