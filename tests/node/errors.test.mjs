// Errors as a JavaScript user meets them: one list of codes (the core's, which index.d.ts
// declares as AuditLogsErrorCode and lib/ throws from), and structured fields on real failures.
import assert from 'node:assert/strict'
import { readFile, readdir } from 'node:fs/promises'
import { test } from 'node:test'
import pg from 'pg'
import { AuditLogs, withAuditContext } from '../../index.js'
import { errorCodes } from '../../binding.js'
import { deferCleanup, freshDatabase, migrated, withClient } from './helpers.mjs'

const root = new URL('../../', import.meta.url)

/** The codes index.d.ts declares in `AuditLogsErrorCode`. */
async function declaredCodes() {
  const types = await readFile(new URL('index.d.ts', root), 'utf8')
  const union = types.match(/export type AuditLogsErrorCode =([^;]*?)\n\n/)
  assert.ok(union, 'index.d.ts declares AuditLogsErrorCode')
  return [...union[1].matchAll(/'([A-Z_]+)'/g)].map((m) => m[1])
}

/** Asserts that `promise` rejects with `code`, a code of the list, and returns the error. */
async function failure(promise, code) {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e) => e,
  )
  assert.ok(error instanceof Error)
  assert.equal(error.code, code, error.message)
  assert.ok(errorCodes().includes(error.code), `${error.code} is in the list`)
  return error
}

test('index.d.ts declares exactly the codes of the core, in its order', async () => {
  assert.deepEqual(await declaredCodes(), errorCodes())
  assert.equal(new Set(errorCodes()).size, errorCodes().length)
})

test('every code the JavaScript layer throws is one of the list', async () => {
  const files = ['index.js', 'bin/audit-logs.js',
    ...(await readdir(new URL('lib/', root), { recursive: true })).filter((f) => f.endsWith('.js')).map((f) => `lib/${f}`)]
  const thrown = new Set()
  for (const file of files) {
    const text = await readFile(new URL(file, root), 'utf8')
    for (const [, code] of text.matchAll(/'(AUDIT_LOGS_[A-Z_]+)'/g)) thrown.add(code)
  }
  assert.ok(thrown.has('AUDIT_LOGS_COMMIT_UNKNOWN'), 'the scan finds the codes of lib/pg.js')
  for (const code of thrown) assert.ok(errorCodes().includes(code), `${code} is in the list`)
})

test('tracking errors carry the table, and an unknown field its column', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table lines (line text); create table posts (id int primary key, author_id int)'))
  const noKey = await failure(audit.enableTracking('lines'), 'AUDIT_LOGS_NO_PRIMARY_KEY')
  assert.equal(noKey.table, 'public.lines')
  const missing = await failure(audit.enableTracking('postz'), 'AUDIT_LOGS_TABLE_NOT_FOUND')
  assert.equal(missing.table, 'postz')
  await audit.enableTracking('posts')
  const column = await failure(audit.fieldChanges({ table: 'posts', field: 'authorId' }), 'AUDIT_LOGS_INVALID_COLUMN')
  assert.equal(column.table, 'public.posts')
  assert.equal(column.column, 'authorId')
  assert.match(column.message, /did you mean author_id\?/)
  const argument = await failure(audit.history({ table: 'posts', id: 1, limit: 0 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  assert.equal(argument.argument, 'limit')
  assert.equal(argument.table, undefined, 'no field the error does not have')
})

test('a diverged migration names the migration', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query("update audit.refinery_schema_history set checksum = '1' where version = 1"))
  const diverged = await failure(audit.migrate(), 'AUDIT_LOGS_MIGRATION_DIVERGED')
  assert.match(diverged.migration, /^V1__/)
})

test('a refusal by our SQL through node-postgres keeps its SQLSTATE and hint', async (t) => {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await audit.enableTracking('notes', { requireContext: true })
  const pool = new pg.Pool({ connectionString: url })
  deferCleanup(t, () => pool.end())
  const refused = await failure(
    withAuditContext(pool, null, (c) => c.query("insert into notes (author) values ('nobody')")),
    'AUDIT_LOGS_CONTEXT_REQUIRED',
  )
  assert.equal(refused.sqlstate, 'AL006')
  assert.equal(refused.cause.code, 'AL006')
  assert.equal(typeof refused.hint, 'string')
})
