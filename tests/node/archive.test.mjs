// Archives from Node: archive() writes whole, sealed months to a directory, verifyArchive()
// checks them from the files alone (and audit.verifyArchive() joined to the live chain).
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { verifyArchive } from '../../index.js'
import { deferCleanup, migrated, rejectsWithCode, withClient } from './helpers.mjs'

const bin = fileURLToPath(new URL('../../bin/audit-logs.js', import.meta.url))
const cli = (args, { url }) =>
  spawnSync(process.execPath, [bin, ...args], { env: { ...process.env, DATABASE_URL: url }, encoding: 'utf8' })

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

test('with archiveTo in the policy, maintain archives a month past retention before dropping it; the CLI saves it too', async (t) => {
  const { url, audit, dir, to } = await withPastMonth(t)
  const saved = await audit.configure({ retentionMonths: 1, archiveTo: to })
  assert.equal(saved.archiveTo, to)
  const report = await audit.maintain({ anonymizeAfterDays: 0 })
  assert.equal(report.monthsArchived.length, 1)
  const [month] = report.monthsArchived
  assert.deepEqual(report.partitionsDropped, [`audit_logs_p${month.replace('-', '_')}`])
  assert.deepEqual(report.partitionsAwaitingArchive, [])
  assert.equal((await verifyArchive(to)).rowsChecked, 40)
  assert.deepEqual(readdirSync(dir), [month])
  await rejectsWithCode(assert, audit.configure({ archiveTo: 'ftp://host/audit' }), 'AUDIT_LOGS_INVALID_SETTINGS')
  const printed = cli(['configure', '--archive-to', '', '--json'], { url })
  assert.equal(printed.status, 0, printed.stderr)
  assert.equal(JSON.parse(printed.stdout).archiveTo, undefined, 'turned off')
  assert.equal((await audit.configure({})).archiveTo, undefined)
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

test('DuckDB, and history({ includeArchive }) once the month is dropped, answer the history of a record from the archive with the live log\'s entries', async (t) => {
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

  // Dropped from the live log, the month is read back from its archive by history itself.
  await audit.archive({ to, thenDrop: true })
  assert.deepEqual(await audit.history({ table: 'orders', id: 3 }), [])
  assert.deepEqual(await audit.history({ table: 'orders', id: 3, includeArchive: true }), live)
  const printed = cli(['history', 'orders', '3', '--include-archive', '--json'], { url })
  assert.equal(printed.status, 0, printed.stderr)
  assert.deepEqual(JSON.parse(printed.stdout).map((e) => e.id), live.map((e) => e.id))
})

// A record's state at a time from the Parquet files: the row after its newest row change at or
// before then, none if that change deleted it or moved its key away (the README's query).
const DUCKDB_STATE_AT = `
import duckdb, json, sys
states = []
for key, at in json.loads(sys.argv[2]):
    row = duckdb.sql("""
      select case when action in ('INSERT', 'UPDATE') and target_id = $key then new_values::varchar end
        from read_parquet($dir || '/*/part-*.parquet')
       where target_type = 'public.orders' and (target_id = $key or old_target_id = $key)
         and action in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE') and created_at <= $at::timestamptz
       order by id desc limit 1""", params={"dir": sys.argv[1], "key": key, "at": at}).fetchall()
    states.append(json.loads(row[0][0]) if row and row[0][0] else None)
print(json.dumps(states))
`

test('DuckDB answers the state of a record at a time from the archive as stateAt does live', async (t) => {
  const { url, audit, dir, to } = await withPastMonth(t)
  // Two months ago: order 3 inserted at minute 1, updated at 2 and 3, deleted at 4; order 4
  // inserted at 1 and its key changed to 104 at 3.
  await withClient(url, (c) => c.query(`
    create table orders (id int primary key, total int);
    select audit.enable_tracking('orders');
    insert into audit.audit_logs (created_at, action, target_type, target_id, old_target_id, old_values, new_values, changed_fields)
    select date_trunc('month', now()) - interval '2 months' + interval '2 days' + m * interval '1 minute',
           action, 'public.orders', id, old_id, old_values::jsonb, new_values::jsonb, fields
      from (values (1, 'INSERT', '3', null, null, '{"id": 3, "total": 10}', null::text[]),
                   (1, 'INSERT', '4', null, null, '{"id": 4, "total": 40}', null),
                   (2, 'UPDATE', '3', null, '{"total": 10}', '{"id": 3, "total": 11}', array['total']),
                   (3, 'UPDATE', '3', null, '{"total": 11}', '{"id": 3, "total": 12}', array['total']),
                   (3, 'UPDATE', '104', '4', '{"id": 4}', '{"id": 104, "total": 40}', array['id']),
                   (4, 'DELETE', '3', null, '{"id": 3, "total": 12}', null, null))
           as e(m, action, id, old_id, old_values, new_values, fields);
    select audit.maintain(anonymize_after_days => 0);`))
  const [base] = await withClient(url, async (c) =>
    (await c.query(`select date_trunc('month', now()) - interval '2 months' + interval '2 days' as base`)).rows.map((r) => r.base))
  const at = (minutes) => new Date(base.getTime() + minutes * 60_000 + 30_000).toISOString()
  const points = [['3', at(0)], ['3', at(1)], ['3', at(2)], ['3', at(3)], ['3', at(4)],
    ['4', at(2)], ['4', at(3)], ['104', at(2)], ['104', at(3)]]
  const live = []
  for (const [id, time] of points) live.push(await audit.stateAt({ table: 'orders', id, at: time }))
  assert.deepEqual(live.map((s) => s?.total ?? null), [null, 10, 11, 12, null, 40, null, null, 40])
  await audit.archive({ to })
  const archived = JSON.parse(execFileSync('python3', ['-c', DUCKDB_STATE_AT, dir, JSON.stringify(points)], { encoding: 'utf8' }))
  assert.deepEqual(archived, live)
})
