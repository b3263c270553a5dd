// Bad input, one test per case, through the npm package and its CLI: each gets a clear error
// with a stable code, and leaves the database exactly as it was (no table, trigger, tracked
// table or audit row appears or changes).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import pg from 'pg'
import { AuditLogs, runWithAuditContext, serializeContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

const cli = new URL('../../bin/audit-logs.js', import.meta.url).pathname

/** Everything a bad call could have changed. */
const FINGERPRINT = `
  select (select count(*) from audit.audit_logs)::int as audit_rows,
         (select count(*) from audit.tracked_tables)::int as tracked,
         (select count(*) from pg_trigger where not tgisinternal)::int as triggers,
         (select count(*) from pg_class where relnamespace = 'public'::regnamespace)::int as relations,
         (select string_agg(id || ':' || coalesce(email, ''), ',' order by id) from users) as users`

async function world(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table users (id int primary key, email text);
    create table no_key (v int);
    create view users_view as select * from users;
    insert into users values (1, 'a@x.io');`))
  await audit.enableTracking('users')
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  const fingerprint = () => withClient(url, (c) => c.query(FINGERPRINT).then((r) => r.rows[0]))
  return { url, audit, pool, fingerprint }
}

/** `bad` must fail with `code` (and mention `mentions`), changing nothing. */
function refused(name, code, bad, mentions) {
  test(`${name}: ${code}`, async (t) => {
    const w = await world(t)
    const before = await w.fingerprint()
    await assert.rejects(async () => bad(w), (error) => {
      assert.equal(error.code, code, error.message)
      if (mentions) assert.match(error.message, mentions)
      return true
    })
    assert.deepEqual(await w.fingerprint(), before, 'nothing changed')
  })
}

function runCli(url, args) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, DATABASE_URL: url } })
}

/** A CLI call must exit with `status` and print `code`, changing nothing. */
function cliRefused(name, args, status, code) {
  test(`CLI ${name}: exit ${status}`, async (t) => {
    const w = await world(t)
    const before = await w.fingerprint()
    const result = runCli(w.url, args)
    assert.equal(result.status, status, result.stderr)
    if (code) assert.match(result.stderr, new RegExp(`error\\[${code}\\]`))
    else assert.match(result.stderr, /Usage|error:/)
    assert.deepEqual(await w.fingerprint(), before, 'nothing changed')
  })
}

// Table names.
refused('a table name carrying SQL', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking('users; drop table users --'))
refused('an unterminated quote', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking('"users'))
refused('too many dots', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking('a.b.c.d'))
refused('an empty name', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking(''))
refused('a blank name', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking('   '))
refused('a name with spaces, unquoted', 'AUDIT_LOGS_INVALID_TABLE_NAME', ({ audit }) => audit.enableTracking('order items'))
refused('a table that does not exist', 'AUDIT_LOGS_TABLE_NOT_FOUND', ({ audit }) => audit.enableTracking('userz'), /userz/)
refused('a unicode name that does not exist', 'AUDIT_LOGS_TABLE_NOT_FOUND', ({ audit }) => audit.enableTracking('"Ünïcødé"'))
refused('a quoted name that exists only unquoted-cased', 'AUDIT_LOGS_TABLE_NOT_FOUND', ({ audit }) => audit.enableTracking('"Users"'))
refused('a view', 'AUDIT_LOGS_NOT_A_TABLE', ({ audit }) => audit.enableTracking('users_view'))
refused('a table without a primary key', 'AUDIT_LOGS_NO_PRIMARY_KEY', ({ audit }) => audit.enableTracking('no_key'), /primary key/)
refused('an excluded column that does not exist', 'AUDIT_LOGS_INVALID_COLUMN', ({ audit }) =>
  audit.enableTracking('users', { excludeColumns: ['pasword'] }))
refused('the audit table itself', 'AUDIT_LOGS_RESERVED_TABLE', ({ audit }) => audit.enableTracking('audit.audit_logs'))
refused('a system catalog', 'AUDIT_LOGS_RESERVED_TABLE', ({ audit }) => audit.enableTracking('pg_catalog.pg_class'))

// Connection strings.
refused('another scheme', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('mysql://root@localhost/db'))
refused('an empty URL', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect(''))
refused('a broken IPv6 host', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('postgres://[::1/db'))
refused('a port out of range', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('postgres://localhost:99999/db'))
refused('an unknown sslmode', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('postgres://localhost/db?sslmode=maybe'))
refused('a broken percent escape', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('postgres://postgres%zz@127.0.0.1/db'), /%zz/)
refused('a NUL byte in the password', 'AUDIT_LOGS_INVALID_URL', () => AuditLogs.connect('postgres://postgres:pa%00ss@127.0.0.1/db'), /NUL/)
test('a URL that is not a string rejects, never throws: AUDIT_LOGS_INVALID_URL naming what it is', async () => {
  for (const [url, what] of [[42, 'a number'], [undefined, 'undefined'], [null, 'null'], [{ host: 'db' }, 'an object']]) {
    let pending
    assert.doesNotThrow(() => { pending = AuditLogs.connect(url) }, `connect(${String(url)}) threw`)
    assert.ok(pending instanceof Promise)
    await assert.rejects(pending, (error) => {
      assert.equal(error.code, 'AUDIT_LOGS_INVALID_URL', error.message)
      assert.match(error.message, new RegExp(`the URL is ${what}, not a string`))
      return true
    })
  }
})
refused('an unreachable server', 'AUDIT_LOGS_CONNECTION_FAILED', () => AuditLogs.connect('postgres://postgres@127.0.0.1:1/db?connect_timeout=2'))
// The test server has either no TLS or a certificate no public root signed.
refused('TLS verification that cannot succeed', 'AUDIT_LOGS_TLS_FAILED', async ({ url }) => {
  const tls = new URL(url)
  tls.searchParams.set('sslmode', 'verify-full')
  await AuditLogs.connect(tls.toString())
})

// Contexts.
refused('a context that is a string', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext('user 42'))
refused('a context that is an array', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext([{ actorId: '1' }]))
refused('a bad IPv4 address', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ ipAddress: '10.0.0.256' }), /10\.0\.0\.256/)
refused('a bad IPv6 address', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ ipAddress: '2001:db8::g' }))
refused('a misspelled key', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ actorID: '1' }), /actorID/)
refused('a number where a string goes', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ actorType: 42 }), /actorType must be a string/)
refused('a fractional actor id', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ actorId: 4.2 }), /actorId must be a string or an integer/)
refused('an oversized field', 'AUDIT_LOGS_INVALID_CONTEXT', async () => serializeContext({ userAgent: 'x'.repeat(5000) }))
refused('an oversized context', 'AUDIT_LOGS_INVALID_CONTEXT', async () =>
  serializeContext({ metadata: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, 'v'.repeat(40)])) }))
refused('a prototype-polluting key', 'AUDIT_LOGS_INVALID_CONTEXT', async () =>
  serializeContext({ metadata: JSON.parse('{"nested": {"__proto__": {"admin": true}}}') }), /prototype/)
// jsonb cannot hold U+0000: refused up front, not by the capture trigger failing the update.
refused('a NUL character in a context', 'AUDIT_LOGS_INVALID_CONTEXT', ({ pool }) =>
  withAuditContext(pool, { userAgent: 'curl\u0000', metadata: { tags: ['a\u0000'] } }, (c) =>
    c.query("update users set email = 'changed' where id = 1")), /NUL/)
refused('a bad context given to withAuditContext runs nothing', 'AUDIT_LOGS_INVALID_CONTEXT', ({ pool }) =>
  withAuditContext(pool, { ipAddress: 'localhost' }, (c) => c.query("update users set email = 'changed' where id = 1")))

// Query arguments.
refused('a record id that is an object', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.history({ table: 'users', id: { id: 1 } }))
refused('a limit of zero', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.history({ table: 'users', id: 1, limit: 0 }))
refused('a huge limit', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({}, { limit: 1_000_000 }))
refused('a negative cursor', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({}, { cursor: '-1' }))
refused('a cursor carrying SQL', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({}, { cursor: '1 or 1=1' }))
refused('a negative before', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.byActor('1', { before: -3 }))
refused('a date that is not one', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({ from: 'last tuesday' }))
refused('a date out of range', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.stateAt({ table: 'users', id: 1, at: '99999-01-01T00:00:00Z' }))
refused('a time range backwards', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) =>
  audit.search({ from: '2026-02-01T00:00:00Z', to: '2026-01-01T00:00:00Z' }))
refused('metadataContains that is not an object', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({ metadataContains: [1] }))
refused('an unknown groupBy key', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.counts(['actor_id) from users; --']))
refused('two time buckets', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.counts(['day', 'hour']))
refused('a burst window that is not an interval', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.bursts({ window: "1 hour'; drop table users; --", threshold: 3 }))
refused('a burst threshold of zero', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.bursts({ window: '1 hour', threshold: 0 }))
refused('too many points', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) =>
  audit.statesAt({ table: 'users', points: Array.from({ length: 10_001 }, (_, i) => ({ id: i, at: new Date() })) }))
refused('a stream batch of zero', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.entries({}, { batchSize: 0 }).next())

// Events.
refused('an event posing as a row change', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) => audit.log({ action: 'DELETE', targetType: 'public.users', targetId: 1 }))
refused('an event action with SQL', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) => audit.log({ action: "x'); delete from users; --" }))
refused('an event action too long', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) => audit.log({ action: 'a'.repeat(101) }))
refused('a NUL character in an event', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) =>
  audit.log({ action: 'user.login', targetType: 'user', targetId: 'a', metadata: { note: 'x\u0000' } }), /metadata\.note.*NUL/)
refused('event metadata too large', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) => audit.log({ action: 'big', metadata: { blob: 'x'.repeat(70_000) } }))
refused('too many events at once', 'AUDIT_LOGS_INVALID_EVENT', ({ audit }) => audit.logMany(Array.from({ length: 10_001 }, () => ({ action: 'many' }))))

// The command line.
cliRefused('with an unknown flag', ['migrate', '--force'], 2)
cliRefused('with a missing argument', ['history', 'users'], 2)
cliRefused('with a table name carrying SQL', ['enable', 'users; drop table users'], 1, 'AUDIT_LOGS_INVALID_TABLE_NAME')
cliRefused('with a view', ['enable', 'users_view'], 1, 'AUDIT_LOGS_NOT_A_TABLE')
cliRefused('with an unknown export format', ['export', '--format', 'xml'], 2)
cliRefused('with a bad date', ['export', '--from', 'yesterday'], 1, 'AUDIT_LOGS_INVALID_ARGUMENT')
cliRefused('with a reserved event action', ['log', '--action', 'UPDATE'], 1, 'AUDIT_LOGS_INVALID_EVENT')

// SQL: the same rules for psql users.
for (const [name, sql, sqlstate] of [
  ['enable_tracking of a view', "select audit.enable_tracking('users_view')", 'AL002'],
  ['enable_tracking without a primary key', "select audit.enable_tracking('no_key')", 'AL001'],
  ['set_context with an array', "select audit.set_context('[1]')", 'AL004'],
  ['set_context with a bad IP', `select audit.set_context('{"ip_address": "1.2.3"}')`, 'AL004'],
  ['log_event posing as a row change', "select * from audit.log_event('UPDATE', 'public.users', '1')", 'AL007'],
]) {
  test(`SQL ${name}: ${sqlstate}`, async (t) => {
    const w = await world(t)
    const before = await w.fingerprint()
    await withClient(w.url, (c) => assert.rejects(c.query(sql), (e) => e.code === sqlstate && /audit-logs: /.test(e.message)))
    assert.deepEqual(await w.fingerprint(), before, 'nothing changed')
  })
}

test('a NaN or an infinity in a context is refused by name, with the code of any bad context', () => {
  for (const [context, path] of [
    [{ actorId: Number('not a number') }, 'actorId'],
    [{ actorId: '1', requestId: Infinity }, 'requestId'],
    [{ metadata: { score: { max: -Infinity } } }, 'metadata.score.max'],
  ]) {
    for (const call of [() => runWithAuditContext(context, () => {}), () => serializeContext(context)]) {
      assert.throws(call, (e) => e.code === 'AUDIT_LOGS_INVALID_CONTEXT' && e.message.includes(`${path} is`), path)
    }
  }
})

// What napi cannot convert (a NaN where JSON goes, a string where a number goes) is refused as
// any bad argument is: a rejected promise with the code, naming the field.
refused('a NaN record id in history', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.history({ table: 'users', id: NaN }), /invalid argument id: NaN and Infinity/)
refused('an infinite record id in stateAt', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.stateAt({ table: 'users', id: Infinity, at: new Date() }), /argument id/)
refused('a NaN target id in search', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.search({ targetId: NaN }), /argument targetId/)
refused('an infinity deep in event metadata', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.log({ action: 'score.saved', metadata: { scores: [1, -Infinity] } }), /argument metadata\.scores\[1\]/)
refused('a NaN target id in entries', 'AUDIT_LOGS_INVALID_ARGUMENT', async ({ audit }) => { for await (const _ of audit.entries({ targetId: NaN })) break }, /argument targetId/)
refused('a string limit', 'AUDIT_LOGS_INVALID_ARGUMENT', ({ audit }) => audit.history({ table: 'users', id: 1, limit: 'ten' }), /argument limit/)

test('a napi conversion failure rejects the promise: it is never thrown synchronously', async (t) => {
  const { audit } = await world(t)
  const pending = audit.history({ table: 'users', id: NaN })
  assert.ok(pending instanceof Promise)
  const error = await pending.then(() => assert.fail('refused'), (e) => e)
  assert.equal(error.argument, 'id')
  assert.equal(error.cause.code, 'InvalidArg', "napi's own error stays as the cause")
})
