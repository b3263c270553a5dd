import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AuditLogs, serializeContext } from '../../index.js'
import { deferCleanup, freshDatabase, migrated, rejectsWithCode, withClient } from './helpers.mjs'

/** Runs statements with pg in one transaction attributed to `context`. */
function asActor(url, context, statements) {
  return withClient(url, async (client) => {
    await client.query('begin')
    await client.query('select audit.set_checked_context($1)', [serializeContext(context) ?? ''])
    for (const sql of statements) await client.query(sql)
    await client.query('commit')
  })
}

test('migrate installs the schema; status reports it; a second migrate does nothing', async (t) => {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  const before = await audit.status()
  assert.equal(before.upToDate, false)
  assert.ok(before.migrations.every((m) => m.state === 'pending'))
  const dry = await audit.migrate(true)
  assert.equal(dry.dryRun, true)
  assert.match(dry.sql[0], /create table audit\.audit_logs/)
  const report = await audit.migrate()
  assert.deepEqual(report.applied.map((m) => m.name), ['audit_schema', 'capture', 'events', 'protect', 'capture_rights', 'schema_changes', 'lean_capture', 'reader_grants', 'context_marker', 'data_subjects', 'context_setter', 'record_queries', 'archive', 'record_history_events', 'archive_before_retention', 'archived_months', 'subject_ascii_pass'])
  assert.deepEqual((await audit.migrate()).applied, [])
  assert.equal((await audit.status()).upToDate, true)
})

test('tracked changes made through pg carry their context; history reads them back', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table users (id int primary key, email text, password_hash text)'))
  const tracked = await audit.enableTracking('users', { excludeColumns: ['password_hash'] })
  assert.deepEqual(tracked.excludedColumns, ['password_hash'])
  assert.equal(tracked.targetType, 'public.users')

  const alice = { actorId: '17', actorType: 'user', ipAddress: '2001:db8::7', requestId: 'req-1', reason: 'signup' }
  await asActor(url, alice, ["insert into users values (1, 'a@x.io', 'h1')", "update users set email = 'b@x.io'"])

  const history = await audit.history({ table: 'users', id: 1 })
  assert.deepEqual(history.map((e) => e.action), ['UPDATE', 'INSERT'])
  const [update, insert] = history
  assert.ok(update.createdAt instanceof Date)
  assert.deepEqual(update.oldValues, { email: 'a@x.io' })
  assert.deepEqual(update.newValues, { id: 1, email: 'b@x.io' })
  assert.deepEqual(update.changedFields, ['email'])
  assert.equal(update.actorId, '17')
  assert.equal(update.ipAddress, '2001:db8::7')
  assert.equal(update.requestId, 'req-1')
  assert.deepEqual(update.metadata, { reason: 'signup' })
  assert.deepEqual(insert.newValues, { id: 1, email: 'a@x.io' }, 'the excluded column is never stored')
  assert.equal(update.txid, insert.txid)
})

test('a rolled back transaction leaves no audit row', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table t (id int primary key)'))
  await audit.enableTracking('t')
  await withClient(url, async (client) => {
    await client.query('begin')
    await client.query('insert into t values (1)')
    await client.query('rollback')
  })
  assert.deepEqual(await audit.history({ table: 't', id: 1 }), [])
})

test('tables are named as in SQL or by schema and name', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create schema "Sales"; create table "Sales"."Order Items" (a int, b text, primary key (a, b))'))
  const tracked = await audit.enableTracking({ schema: 'Sales', name: 'Order Items' })
  assert.equal(tracked.targetType, '"Sales"."Order Items"')
  await asActor(url, { actorId: '1' }, [`insert into "Sales"."Order Items" values (1, 'x')`])
  const history = await audit.history({ table: '"Sales"."Order Items"', id: [1, 'x'] })
  assert.equal(history.length, 1)
  assert.equal(history[0].targetId, '[1, "x"]')
  assert.deepEqual((await audit.trackedTables()).map((x) => x.name), ['Order Items'])
  assert.equal(await audit.disableTracking({ schema: 'Sales', name: 'Order Items' }), true)
  assert.equal(await audit.disableTracking({ schema: 'Sales', name: 'Order Items' }), false)
})

test('errors are JS errors with stable codes', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table logs (line text); create view v as select 1 as x'))
  await rejectsWithCode(assert, audit.enableTracking('logs'), 'AUDIT_LOGS_NO_PRIMARY_KEY')
  await rejectsWithCode(assert, audit.enableTracking('v'), 'AUDIT_LOGS_NOT_A_TABLE')
  await rejectsWithCode(assert, audit.enableTracking('missing'), 'AUDIT_LOGS_TABLE_NOT_FOUND')
  await rejectsWithCode(assert, audit.enableTracking('Order Items'), 'AUDIT_LOGS_INVALID_TABLE_NAME')
  await rejectsWithCode(assert, audit.history({ table: 'logs', id: 1, limit: 0 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.history({ id: 1 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, AuditLogs.connect('mysql://x@y/z'), 'AUDIT_LOGS_INVALID_URL')
  await rejectsWithCode(assert, AuditLogs.connect('postgres://u:pw@127.0.0.1:1/db'), 'AUDIT_LOGS_CONNECTION_FAILED')
})

test('using the API before migrating says to migrate', async (t) => {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await rejectsWithCode(assert, audit.trackedTables(), 'AUDIT_LOGS_NOT_MIGRATED')
})

test('serializeContext validates before anything is written', () => {
  assert.equal(serializeContext({}), null)
  assert.equal(
    serializeContext({ actorId: '42', ipAddress: '10.0.0.1', metadata: { tenant: 'acme' } }),
    '{"actor_id":"42","ip_address":"10.0.0.1","metadata":{"tenant":"acme"}}',
  )
  for (const bad of [{ ipAddress: 'nope' }, { actorID: '42' }, { metadata: JSON.parse('{"__proto__": {"x": 1}}') }]) {
    assert.throws(() => serializeContext(bad), (e) => e.code === 'AUDIT_LOGS_INVALID_CONTEXT')
  }
})

test('the package exports its API by name, and none of the binding internals', async () => {
  const api = await import('../../index.js')
  for (const name of ['AuditLogs', 'TemporaryPostgres', 'serializeContext', 'verifyArchive', 'ActorType', 'withAuditContext',
    'runWithAuditContext', 'currentAuditContext', 'auditContextMiddleware', 'auditContextPlugin', 'auditRead', 'auditExtension',
    'withRequestContext', 'auditContextFromRequest', 'AuditContextInterceptor', 'auditDialect', 'auditViewer', 'auditViewerPlugin']) {
    assert.ok(api[name] !== undefined, `${name} is exported`)
  }
  for (const name of ['openEntries', 'openSubjectEntries', 'SubjectBatches', 'eventStatement', 'endsSession', 'runCli', 'ownError', 'storableRequestParts', 'EntryBatches']) {
    assert.equal(api[name], undefined, `${name} stays internal`)
  }
  assert.equal(AuditLogs.prototype.openEntries, undefined, 'entries() is the way to stream')
})

test('a tracked table says recordUnchanged, the name of its option (skipUnchanged is its deprecated opposite)', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table notes (id int primary key, body text)'))
  const recording = await audit.enableTracking('notes', { recordUnchanged: true })
  assert.equal(recording.recordUnchanged, true)
  assert.equal(recording.skipUnchanged, false)
  const [skipping] = (await audit.enableTracking('notes', { recordUnchanged: false }), await audit.trackedTables())
  assert.equal(skipping.recordUnchanged, false)
  assert.equal(skipping.skipUnchanged, true)
})
