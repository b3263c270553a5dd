// Archives from Node: archive() writes whole, sealed months to a directory, verifyArchive()
// checks them from the files alone (and audit.verifyArchive() joined to the live chain).
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { verifyArchive } from '../../index.js'
import { deferCleanup, migrated, rejectsWithCode, withClient } from './helpers.mjs'

/** A migrated database with 40 rows in the month before last, moved into its partition and sealed. */
async function withPastMonth(t) {
  const { url, audit } = await migrated(t)
  await withClient(url, (c) => c.query(`
    insert into audit.audit_logs (created_at, action, actor_id, new_values, changed_fields, ip_address)
    select date_trunc('month', now()) - interval '2 months' + g * interval '1 hour', 'test.old', 'u' || g,
           jsonb_build_object('n', g, 'note', 'café'), array['n', 'a b'], '2001:db8::1'
      from generate_series(1, 40) g;
    select audit.maintain(anonymize_after_days => 0);`))
  const dir = mkdtempSync(join(tmpdir(), 'audit-archive-'))
  deferCleanup(t, () => rmSync(dir, { recursive: true, force: true }))
  return { url, audit, dir, to: `file://${dir}` }
}

test('archive writes the month, verifyArchive checks it without the database, thenDrop drops it and verify still passes', async (t) => {
  const { audit, dir, to } = await withPastMonth(t)
  const report = await audit.archive({ to, olderThanMonths: 1 })
  assert.equal(report.monthsArchived.length, 1)
  assert.equal(report.rows, 40)
  const month = report.monthsArchived[0]
  assert.deepEqual(readdirSync(join(dir, month)).sort(), ['entries.bin', 'manifest.json', 'part-0000.parquet', 'redactions.bin'])
  const manifest = JSON.parse(readFileSync(join(dir, month, 'manifest.json'), 'utf8'))
  assert.equal(manifest.rowCount, 40)

  const offline = await verifyArchive(to)
  assert.equal(offline.ok, true, JSON.stringify(offline))
  assert.equal(offline.rowsChecked, 40)

  const again = await audit.archive({ to, olderThanMonths: 1, thenDrop: true })
  assert.deepEqual(again.monthsSkipped, [month])
  assert.deepEqual(again.monthsDropped, [month])
  const live = await audit.verify()
  assert.equal(live.ok, true, JSON.stringify(live))
  assert.equal(live.rowsExpired, 40)
  const joined = await audit.verifyArchive(to, { against: live.shortHead })
  assert.equal(joined.ok, true, JSON.stringify(joined))
  assert.equal(joined.liveHead, live.head)
  assert.equal(joined.againstFound, true)

  // A byte of the Parquet file flipped: the file is named.
  const file = join(dir, month, 'part-0000.parquet')
  const bytes = readFileSync(file)
  bytes[bytes.length >> 1] ^= 0xff
  writeFileSync(file, bytes)
  const tampered = await verifyArchive(to)
  assert.equal(tampered.ok, false)
  assert.equal(tampered.firstProblem.month, month)
  assert.equal(tampered.firstProblem.file, `${month}/part-0000.parquet`)
})

test('archive refuses other schemes, a lock on a directory, bad cut-offs, and verifyArchive a bad head', async (t) => {
  const { audit, to } = await withPastMonth(t)
  await assert.rejects(audit.archive({ to: 'gs://bucket/audit' }),
    (e) => e.code === 'AUDIT_LOGS_ARCHIVE_UNSUPPORTED' && /s3:\/\/bucket\/prefix/.test(e.message))
  await rejectsWithCode(assert, audit.archive({ to, lockMode: 'compliance', lockDays: 7 }), 'AUDIT_LOGS_ARCHIVE_UNSUPPORTED')
  await rejectsWithCode(assert, audit.archive({ to, lockMode: 'compliance' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.archive({ to, before: '2026-13' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.archive({ to, before: '2026-01', olderThanMonths: 2 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, verifyArchive(to, { against: 'xyz' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, verifyArchive('gs://bucket/audit'), 'AUDIT_LOGS_ARCHIVE_UNSUPPORTED')
})

// DuckDB (its Python package; .ci/run installs it) reads the month as it is: a record's history
// from the Parquet files is the live log's, entry for entry.
const DUCKDB_HISTORY = `
import duckdb, json, sys
rows = duckdb.sql("""
  select id, action, new_values::varchar, changed_fields, actor_id, epoch_us(created_at)
    from read_parquet(? || '/*/part-*.parquet')
   where target_type = 'public.orders' and target_id = '3'
   order by created_at desc, id desc""", params=[sys.argv[1]]).fetchall()
print(json.dumps(rows))
`

test('DuckDB answers the history of a record from the archive with the live log\'s entries', async (t) => {
  const { url, audit, dir, to } = await withPastMonth(t)
  await withClient(url, (c) => c.query(`
    create table orders (id int primary key, total int);
    select audit.enable_tracking('orders');
    insert into audit.audit_logs (created_at, action, target_type, target_id, old_values, new_values, changed_fields, actor_id)
    select date_trunc('month', now()) - interval '2 months' + g * interval '1 minute',
           case when g = 3 then 'INSERT' else 'UPDATE' end, 'public.orders', (g % 10)::text,
           case when g > 3 then jsonb_build_object('total', g - 10) end, jsonb_build_object('id', g % 10, 'total', g),
           case when g > 3 then array['total'] end, 'u' || g
      from generate_series(3, 60) g;
    select audit.maintain(anonymize_after_days => 0);`))
  const live = await audit.history({ table: 'orders', id: 3 })
  assert.equal(live.length, 6)
  await audit.archive({ to })
  const archived = JSON.parse(execFileSync('python3', ['-c', DUCKDB_HISTORY, dir], { encoding: 'utf8' }))
  assert.deepEqual(
    archived.map(([id, action, newValues, changedFields, actorId, micros]) =>
      ({ id, action, newValues: JSON.parse(newValues), changedFields, actorId, createdAt: micros / 1000 })),
    live.map((e) => ({ id: e.id, action: e.action, newValues: e.newValues, changedFields: e.changedFields ?? null,
      actorId: e.actorId, createdAt: e.createdAt.getTime() })))
})
