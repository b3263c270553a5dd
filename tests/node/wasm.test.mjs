// The WebAssembly build, for runtimes where no native addon loads (Edge, serverless, StackBlitz),
// forced in Node as napi-rs's loader allows. Through it: withAuditContext and events with pg and
// Neon's serverless driver, the same answers and refusals as the native build, and
// AUDIT_LOGS_NEEDS_NATIVE from everything that needs a connection of audit-logs' own. The context
// and Neon suites and Drizzle's run of the ORM suite then run here too, through it (their
// databases set up with the native addon).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { test } from 'node:test'

// Before anything loads binding.js, hence the dynamic imports below. 'error': the WebAssembly
// build or a failure to load, never a quiet fall back to the native one.
process.env.NAPI_RS_FORCE_WASI = 'error'
const require = createRequire(import.meta.url)
const binding = require('../../binding.js')
// Before index.js adds its JavaScript methods to the class.
const wasmMethods = Object.getOwnPropertyNames(binding.AuditLogs.prototype).sort()
const { default: pg } = await import('pg')
const { AuditLogs, TemporaryPostgres, verifyArchive, withAuditContext } = await import('../../index.js')
const { NativeAuditLogs, deferCleanup, freshDatabase, nativeAddon, rejectsWithCode, withClient } =
  await import('./helpers.mjs')

const native = nativeAddon()

/** A migrated database with a tracked `notes` table, and a pg Pool on it. */
async function notes(t) {
  const url = await freshDatabase(t)
  const admin = await NativeAuditLogs.connect(url)
  await admin.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await admin.enableTracking('notes')
  admin.close()
  const pool = new pg.Pool({ connectionString: url, max: 5 })
  deferCleanup(t, () => pool.end())
  return { url, pool }
}

/** What a call gives, or its error's code and message, to compare the two builds. */
function outcome(fn) {
  try {
    return { value: fn() }
  } catch (error) {
    return { code: error.code, message: error.message }
  }
}

test('the WebAssembly build is the one loaded, not the native addon', () => {
  assert.equal(binding.__napiBindingTarget, 'wasm32-wasi')
  assert.notEqual(binding.AuditLogs, native.AuditLogs)
  assert.equal(AuditLogs, binding.AuditLogs, 'index.js exports the loaded build')
})

test('it exports what the native build exports, and AuditLogs has every native method', () => {
  const names = (b) => Object.keys(b).filter((k) => b[k] !== undefined && k !== '__napiBindingTarget').sort()
  assert.deepEqual(names(binding), names(native))
  assert.deepEqual(wasmMethods, Object.getOwnPropertyNames(native.AuditLogs.prototype).sort())
  assert.equal(typeof binding.AuditLogs.connect, 'function')
})

test('contexts, events, request parts and SQLSTATEs get the native build\'s answers and refusals', () => {
  const contexts = [
    { actorId: 42, actorType: 'user', ipAddress: '10.0.0.1', metadata: { plan: 'pro' } },
    { ipAddress: '999.1.1.1' }, { actorID: 'typo' }, { metadata: { constructor: 1 } }, 'user 7',
    { actorId: 'x'.repeat(2000) }, { reason: 'a\u0000b' }, {},
  ]
  for (const context of contexts) {
    assert.deepEqual(outcome(() => binding.serializeContext(context)), outcome(() => native.serializeContext(context)))
    assert.deepEqual(outcome(() => binding.serializeContext({ reason: 'r' }, context)),
      outcome(() => native.serializeContext({ reason: 'r' }, context)))
  }
  const refused = outcome(() => binding.serializeContext({ ipAddress: 'nope' }))
  assert.equal(refused.code, 'AUDIT_LOGS_INVALID_CONTEXT')
  const events = [
    [{ action: 'note.shared', targetType: 'note', targetId: 7, metadata: { to: 'bob' } }],
    [{ action: '' }], [{ action: 'UPDATE' }], [{ action: 'a', bogus: 1 }], [],
  ]
  for (const inputs of events) {
    const options = { context: { actorId: 'ann' } }
    assert.deepEqual(outcome(() => binding.eventStatement(inputs, options)), outcome(() => native.eventStatement(inputs, options)))
  }
  assert.equal(outcome(() => binding.eventStatement([{ action: '' }])).code, 'AUDIT_LOGS_INVALID_EVENT')
  const parts = { ipAddress: 'not an ip', userAgent: 'é'.repeat(600), requestId: 'a\nb' }
  assert.deepEqual(binding.storableRequestParts(parts), native.storableRequestParts(parts))
  for (const [code, message] of [['AL006', 'no audit context'], ['AL008', 'append only'], ['23505', 'duplicate']]) {
    assert.deepEqual(binding.ownError(code, message, null), native.ownError(code, message, null))
  }
  assert.deepEqual(binding.errorCodes(), native.errorCodes())
  assert.deepEqual(binding.entryColumns(), native.entryColumns())
  assert.deepEqual(binding.parseRecordId('[1, "a"]'), native.parseRecordId('[1, "a"]'))
  assert.equal(binding.endsSession('57P01'), true)
})

test('pg: withAuditContext attributes, nests as savepoints, rolls back, and refuses without a required context', async (t) => {
  const { pool } = await notes(t)
  await withAuditContext(pool, { actorId: 'ann' }, async (client) => {
    await client.query("insert into notes (author) values ('ann')")
    await withAuditContext(client, { actorId: 'bob' }, (inner) => inner.query("insert into notes (author) values ('bob')"))
  })
  await assert.rejects(withAuditContext(pool, { actorId: 'mallory' }, async (client) => {
    await client.query("insert into notes (author) values ('mallory')")
    throw new Error('handler failed')
  }), /handler failed/)
  await rejectsWithCode(assert, withAuditContext(pool, null, async () => {}, { requireContext: true }), 'AUDIT_LOGS_CONTEXT_REQUIRED')
  await rejectsWithCode(assert, withAuditContext(pool, { actorId: 'a', nope: 1 }, async () => {}), 'AUDIT_LOGS_INVALID_CONTEXT')
  const { rows } = await pool.query('select actor_id, new_values from audit.audit_logs order by id')
  assert.deepEqual(rows.map((r) => [r.actor_id, r.new_values.author]), [['ann', 'ann'], ['bob', 'bob']])
})

test('pg: log() and logMany() write in the caller\'s transaction, with its context, and go with its rollback', async (t) => {
  const { url, pool } = await notes(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await withAuditContext(pool, { actorId: 'ann', requestId: 'req-1' }, async (client) => {
    const entry = await audit.log({ action: 'note.shared', targetType: 'note', targetId: 1 }, { client })
    assert.equal(entry.actorId, 'ann')
    assert.equal(entry.requestId, 'req-1')
    const many = await audit.logMany([{ action: 'note.read', targetType: 'note', targetId: '1' },
      { action: 'note.read', targetType: 'note', targetId: '2' }], { client })
    assert.deepEqual(many.map((e) => e.targetId), ['1', '2'])
  })
  await assert.rejects(withAuditContext(pool, { actorId: 'ann' }, async (client) => {
    await audit.log({ action: 'note.deleted', targetType: 'note', targetId: 3 }, { client })
    throw new Error('rolled back')
  }), /rolled back/)
  const client = await pool.connect()
  try {
    await rejectsWithCode(assert, audit.log({ action: '' }, { client }), 'AUDIT_LOGS_INVALID_EVENT')
  } finally {
    client.release()
  }
  const { rows } = await pool.query("select action, target_id, actor_id from audit.audit_logs where action like 'note.%' order by id")
  assert.deepEqual(rows, [
    { action: 'note.shared', target_id: '1', actor_id: 'ann' },
    { action: 'note.read', target_id: '1', actor_id: 'ann' },
    { action: 'note.read', target_id: '2', actor_id: 'ann' },
  ])
})

test('what needs a connection of audit-logs\' own rejects with AUDIT_LOGS_NEEDS_NATIVE, naming it', async (t) => {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  const needsNative = (what) => (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_NEEDS_NATIVE')
    assert.match(error.message, new RegExp(`^${what.replace(/[().]/g, '\\$&')} needs the native build`))
    return true
  }
  await assert.rejects(audit.history({ table: 'notes', id: 1 }), needsNative('history()'))
  await assert.rejects(audit.verify(), needsNative('verify()'))
  await assert.rejects(audit.migrate(), needsNative('migrate()'))
  await assert.rejects(audit.log({ action: 'a.b' }), needsNative('log() without a client'))
  await assert.rejects(audit.revert({ transaction: 1 }), needsNative('revert()'))
  await assert.rejects(async () => { for await (const entry of audit.entries()) assert.fail(entry) }, needsNative('entries()'))
  await assert.rejects(verifyArchive('file:///tmp/none'), needsNative('verifyArchive()'))
  await assert.rejects(TemporaryPostgres.start(), needsNative('TemporaryPostgres.start()'))
  audit.close()
})

test('the command line says it needs the native build', () => {
  const cli = spawnSync(process.execPath, [new URL('../../bin/audit-logs.js', import.meta.url).pathname, 'status'],
    { encoding: 'utf8', env: { ...process.env, NAPI_RS_FORCE_WASI: 'error' } })
  assert.equal(cli.status, 1)
  assert.match(cli.stderr, /error\[AUDIT_LOGS_NEEDS_NATIVE\]: the audit-logs command line needs the native build/)
})

// The suites of withAuditContext with pg, Express and Fastify, of Neon's serverless driver, and
// of one ORM (Drizzle: the wrappers of the others call the same binding functions), through
// this build.
await import('./context.test.mjs')
await import('./neon.test.mjs')
await import('./drizzle.test.mjs')
