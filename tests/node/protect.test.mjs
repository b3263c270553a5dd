import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { AuditLogs } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

const KEY = 'a secret of at least sixteen bytes'

/** A migrated database with a tracked `users` table and `n` rows written by actor 42. */
async function withUsers(t, n = 10) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query('create table users (id int primary key, email text)'))
  await audit.enableTracking('users')
  await withClient(url, async (c) => {
    await c.query('begin')
    await c.query(`select audit.set_context('{"actor_id": "42", "actor_email": "ann@x.io", "ip_address": "203.0.113.7"}')`)
    await c.query(`insert into users select g, 'u' || g || '@x.io' from generate_series(1, ${n}) g`)
    await c.query('commit')
  })
  return { url, audit }
}

test('the log refuses updates, deletes and truncates, loudly', async (t) => {
  const { url } = await withUsers(t, 2)
  for (const sql of ['update audit.audit_logs set actor_id = null', 'delete from audit.audit_logs', 'truncate audit.audit_logs']) {
    await assert.rejects(withClient(url, (c) => c.query(sql)), (error) => {
      assert.equal(error.code, 'AL008', sql)
      assert.match(error.message, /append-only/)
      return true
    })
  }
})

test('seal and verify; an edited row is found with its id; a rewrite is caught against an exported head', async (t) => {
  const { url, audit } = await withUsers(t)
  const sealed = await audit.seal()
  assert.equal(sealed.sealId, 1)
  assert.equal(sealed.rowCount, 10)
  assert.match(sealed.head, /^[0-9a-f]{64}$/)
  assert.equal(sealed.shortHead, sealed.head.slice(0, 32), 'what to export, as verify gives it')
  assert.equal((await audit.seal()).sealId, undefined, 'nothing left to seal')

  const report = await audit.verify()
  assert.equal(report.ok, true)
  assert.equal(report.rowsChecked, 10)
  assert.equal(report.firstProblem, undefined)
  const exported = report.shortHead
  assert.equal(exported, sealed.head.slice(0, 32))
  assert.equal((await audit.verify({ against: exported })).againstFound, true)

  const [{ id }] = await withClient(url, (c) => c.query("select id from audit.audit_logs where target_id = '4'")).then((r) => r.rows)
  await withClient(url, (c) => c.query(`set session_replication_role = replica;
    update audit.audit_logs set actor_id = 'someone else' where id = ${id}`))
  const tampered = await audit.verify()
  assert.equal(tampered.ok, false)
  assert.equal(tampered.firstProblem.kind, 'changed')
  assert.equal(tampered.firstProblem.rowId, Number(id))
  assert.equal(tampered.rowsChanged, 1)

  // Recompute the whole chain consistently: only the exported head catches it.
  await withClient(url, (c) => c.query(`set session_replication_role = replica;
    delete from audit.seal_chunks; delete from audit.seals`))
  await audit.seal()
  assert.equal((await audit.verify()).ok, true)
  const rewritten = await audit.verify({ against: exported })
  assert.equal(rewritten.ok, false)
  assert.equal(rewritten.firstProblem.kind, 'digest_not_found')
  await rejectsWithCode(assert, audit.verify({ against: 'xyz' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
})

test('redact replaces an actor\'s values with keyed hashes and verification stays green', async (t) => {
  const { audit } = await withUsers(t, 3)
  await audit.seal()
  const report = await audit.redact({ actorId: '42', reason: 'GDPR art. 17' }, Buffer.from(KEY))
  assert.equal(report.rowsRedacted, 3)
  assert.deepEqual(report.fields, ['actor_id', 'actor_email', 'ip_address', 'user_agent'])
  const [entry] = await audit.history({ table: 'users', id: 1 })
  const hmac = (value) => `hmac:${createHmac('sha256', KEY).update(value).digest('hex')}`
  assert.equal(entry.actorId, hmac('42'))
  assert.equal(entry.actorEmail, hmac('ann@x.io'))
  assert.equal(entry.ipAddress ?? null, null)
  const verified = await audit.verify()
  assert.equal(verified.ok, true)
  assert.equal(verified.rowsRedacted, 3)

  const byRecord = await audit.redact({ targetType: 'public.users', targetId: 2, fields: ['values.email'] }, KEY)
  assert.equal(byRecord.rowsRedacted, 1)
  const [record] = await audit.history({ table: 'users', id: 2 })
  assert.equal(record.newValues.email, hmac('u2@x.io'))
  assert.equal((await audit.verify()).ok, true)

  await rejectsWithCode(assert, audit.redact({ actorId: '42' }, 'short'), 'AUDIT_LOGS_INVALID_REDACTION')
  await rejectsWithCode(assert, audit.redact({ actorId: '42', targetType: 'public.users' }, KEY), 'AUDIT_LOGS_INVALID_REDACTION')
})

test('maintain moves default-partition rows, drops expired partitions, anonymizes due rows, and records it all', async (t) => {
  const { url, audit } = await withUsers(t, 2)
  await withClient(url, (c) => c.query(`insert into audit.audit_logs (created_at, action, ip_address, user_agent) values
    (now() - interval '30 months', 'test.expired', '10.0.0.1', 'ua'),
    (now() - interval '100 days', 'test.due', '10.0.0.2', 'ua')`))
  const settings = await audit.configure({ retentionMonths: 24 })
  assert.equal(settings.retentionMonths, 24)
  assert.equal(settings.anonymizeAfterDays, 90)
  const report = await audit.maintain()
  assert.equal(report.rowsMoved, 2)
  assert.equal(report.partitionsDropped.length, 1)
  assert.equal(report.rowsAnonymized, 1)
  assert.equal(report.sealedRows, 5)
  const rows = await withClient(url, (c) => c.query(
    "select action, ip_address::text as ip, user_agent from audit.audit_logs where action like 'test.%' or action like 'audit.%' order by id")).then((r) => r.rows)
  assert.deepEqual(rows.filter((r) => r.action.startsWith('test.')), [{ action: 'test.due', ip: '10.0.0.0/24', user_agent: null }])
  const actions = rows.map((r) => r.action)
  for (const action of ['audit.settings_changed', 'audit.rows_moved', 'audit.partition_dropped', 'audit.anonymized']) {
    assert.ok(actions.includes(action), `${action} in ${actions}`)
  }
  await audit.seal()
  const verified = await audit.verify()
  assert.equal(verified.ok, true)
  assert.equal(verified.rowsExpired, 1)
  await rejectsWithCode(assert, audit.maintain({ retentionMonths: -1 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.configure({ anonymizeFields: ['actor_id'] }), 'AUDIT_LOGS_INVALID_SETTINGS')
})

test('an application role cannot call the maintenance functions', async (t) => {
  const { url } = await withUsers(t, 1)
  const role = `app_${Math.random().toString(36).slice(2, 10)}`
  await withClient(url, (c) => c.query(`create role ${role}`))
  deferCleanup(t, () => withClient(url, (c) => c.query(`drop owned by ${role}; drop role ${role}`)))
  for (const sql of ['select audit.seal()', 'select audit.maintain()', "select audit.redact('a secret of at least sixteen bytes', actor_id => '42')"]) {
    await assert.rejects(withClient(url, async (c) => {
      await c.query(`set role ${role}`)
      await c.query(sql)
    }), (error) => {
      assert.equal(error.code, '42501', sql)
      return true
    })
  }
})
