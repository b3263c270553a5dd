import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { AuditLogs } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

const KEY = 'a secret of at least sixteen bytes'
const hmac = (value) => `hmac:${createHmac('sha256', KEY).update(value).digest('hex')}`
const bin = fileURLToPath(new URL('../../bin/audit-logs.js', import.meta.url))

/** The real CLI, as a user runs it, with the redaction key in its environment. */
function cli(args, url) {
  const env = { ...process.env, DATABASE_URL: url, AUDIT_LOGS_REDACTION_KEY: KEY }
  return spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' })
}

const ANN = { actorId: '42', email: 'ann@x.io', ipAddress: '203.0.113.9', values: ['Ann Smith'] }
const ANN_ARGS = ['--actor', '42', '--email', 'ann@x.io', '--ip', '203.0.113.9', '--value', 'Ann Smith']

/** Ann in her own changes, a record about her (nested values), a composite key, Bob's later edit
 * of a note about her, an event about her; and look-alikes that must not match. */
async function logWithAnn(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table users (id int primary key, email text, name text, profile jsonb);
    create table notes (id int primary key, author_email text, body text);
    create table memberships (email text, org int, primary key (email, org))`))
  for (const table of ['users', 'notes', 'memberships']) await audit.enableTracking(table)
  await withClient(url, async (c) => {
    await c.query('begin')
    await c.query(`select audit.set_context('{"actor_id": "42", "actor_email": "ann@x.io", "ip_address": "203.0.113.9",
      "user_agent": "Firefox/128", "metadata": {"reason": "ann@x.io asked"}}')`)
    await c.query(`insert into users values (42, 'ann@x.io', 'Ann Smith', '{"contacts": [{"kind": "mail", "value": "Ann@X.io"}], "age": 42}')`)
    await c.query("insert into notes values (1, 'ann@x.io', 'Ann Smith wrote this')")
    await c.query("insert into memberships values ('ann@x.io', 7)")
    await c.query('commit')
    await c.query('begin')
    await c.query(`select audit.set_context('{"actor_id": "7", "actor_email": "bob@x.io", "ip_address": "203.0.113.95"}')`)
    await c.query("update notes set body = 'Bob moved the note of Ann Smith' where id = 1")
    await c.query("insert into notes values (2, 'joann@x.io', 'Joann, 42 years')")
    await c.query('commit')
  })
  await audit.log({ action: 'user.login', targetType: 'user', targetId: '42', metadata: { device: { owner: 'Ann Smith' } } })
  return { url, audit }
}

const rows = (url) => withClient(url, (c) => c.query('select * from audit.audit_logs order by id').then((r) => r.rows))
const where = (entries) => entries.map((m) => [m.entry.action, m.entry.targetType, m.entry.targetId ?? null, m.paths])

test('subject finds every mention of a person with where; the CLI exports the same as JSON lines and CSV', async (t) => {
  const { url, audit } = await logWithAnn(t)
  const page = await audit.subject(ANN, { limit: 100 })
  assert.equal(page.nextCursor, undefined)
  const own = ['actor_id', 'actor_email', 'ip_address', 'user_agent']
  assert.deepEqual(where(page.entries).reverse(), [
    ['INSERT', 'public.users', '42', [...own, 'new_values.email', 'new_values.name', 'new_values.profile.contacts[0].value', 'metadata.reason']],
    ['INSERT', 'public.notes', '1', [...own, 'new_values.author_email', 'new_values.body', 'metadata.reason']],
    ['INSERT', 'public.memberships', '["ann@x.io", 7]', [...own, 'target_id', 'new_values.email', 'metadata.reason']],
    ['UPDATE', 'public.notes', '1', ['old_values.body', 'new_values.author_email', 'new_values.body']],
    ['user.login', 'user', '42', ['metadata.device.owner']],
  ])
  const paged = await audit.subject(ANN, { limit: 2 })
  assert.equal(paged.entries.length, 2)
  const rest = await audit.subject(ANN, { limit: 100, cursor: paged.nextCursor })
  assert.deepEqual([...paged.entries, ...rest.entries].map((m) => m.entry.id), page.entries.map((m) => m.entry.id))

  const streamed = []
  for await (const found of audit.subjectEntries(ANN, { order: 'oldest', batchSize: 2 })) streamed.push(found)
  assert.deepEqual(streamed, [...page.entries].reverse(), 'the stream (an export from Node) holds the same')

  const jsonl = cli(['subject', ...ANN_ARGS, '--format', 'jsonl'], url)
  assert.equal(jsonl.status, 0, jsonl.stderr)
  const exported = jsonl.stdout.trim().split('\n').map((line) => JSON.parse(line))
  assert.deepEqual(exported.map((m) => [m.entry.id, m.paths]), page.entries.map((m) => [Number(m.entry.id), m.paths]).reverse())
  assert.equal(exported[0].entry.newValues.name, 'Ann Smith', 'what was recorded about her, in full')
  const json = cli(['subject', ...ANN_ARGS, '--json'], url)
  assert.deepEqual(JSON.parse(json.stdout).map((m) => m.paths), exported.map((m) => m.paths))

  const csv = cli(['subject', ...ANN_ARGS, '--format', 'csv'], url)
  assert.equal(csv.status, 0, csv.stderr)
  const [header, ...lines] = csv.stdout.trim().split('\n')
  assert.ok(header.startsWith('id,created_at,txid,action,') && header.endsWith(',metadata,paths'), header)
  assert.equal(lines.length, 5)

  const text = cli(['subject', '--email', 'ANN@x.io'], url)
  assert.equal(text.status, 0, text.stderr)
  assert.match(text.stdout, /INSERT public\.memberships \["ann@x\.io", 7\]: actor_id, actor_email, ip_address, user_agent, target_id, new_values\.email, metadata\.reason/)
  assert.match(text.stdout, /4 entries mention this subject\./)
})

test('a dry run lists the erasure and changes nothing; the erasure changes exactly that, and subject then finds nothing', async (t) => {
  const { url, audit } = await logWithAnn(t)
  await audit.seal()
  const before = await rows(url)
  const found = await audit.subject(ANN, { limit: 100 })

  const dry = await audit.redact({ ...ANN, reason: 'GDPR request 7', dryRun: true }, KEY)
  assert.equal(dry.dryRun, true)
  assert.equal(dry.eventId, undefined)
  assert.equal(dry.rowsRedacted, 5)
  assert.deepEqual(dry.entries.map((e) => [e.id, e.paths]), found.entries.map((m) => [m.entry.id, m.paths]).reverse())
  assert.deepEqual(await rows(url), before, 'a dry run changes nothing')

  const cliDry = cli(['redact', ...ANN_ARGS, '--dry-run'], url)
  assert.equal(cliDry.status, 0, cliDry.stderr)
  assert.match(cliDry.stdout, /Dry run: would redact 5 row\(s\)/)
  assert.deepEqual(await rows(url), before)

  const erased = cli(['redact', ...ANN_ARGS, '--reason', 'GDPR request 7', '--json'], url)
  assert.equal(erased.status, 0, erased.stderr)
  const report = JSON.parse(erased.stdout)
  assert.equal(report.rowsRedacted, 5)
  assert.ok(report.eventId > 0)

  assert.deepEqual((await audit.subject(ANN)).entries, [])
  assert.equal(cli(['subject', ...ANN_ARGS], url).stdout.trim(), 'No entry mentions this subject.')
  const after = new Map((await rows(url)).map((r) => [r.id, r]))
  const changed = new Set(dry.entries.map((e) => String(e.id)))
  for (const row of before) {
    const now = after.get(row.id)
    if (!changed.has(String(row.id))) {
      assert.deepEqual(now, row, `entry ${row.id} is not about Ann: untouched`)
      continue
    }
    // Only personal columns changed, each to a keyed hash of what it held.
    for (const column of ['id', 'created_at', 'txid', 'action', 'target_type', 'changed_fields', 'actor_type', 'request_id']) {
      assert.deepEqual(now[column], row[column], `${row.id}.${column}`)
    }
  }
  const user = [...after.values()].find((r) => r.target_type === 'public.users')
  assert.deepEqual(user.new_values, {
    id: 42, email: hmac('ann@x.io'), name: hmac('Ann Smith'),
    profile: { contacts: [{ kind: 'mail', value: hmac('Ann@X.io') }], age: 42 },
  })
  assert.equal(user.ip_address, null)
  assert.equal(user.user_agent, hmac('Firefox/128'))
  const verified = await audit.verify()
  assert.equal(verified.ok, true)
  assert.equal(verified.rowsRedacted, 5)
})

test('hostile subject values match only themselves, and bad subjects are refused with a code', async (t) => {
  const { url, audit } = await logWithAnn(t)
  const hostile = ['50%_off', `O'Brien "the \\ one"`, '$.author_email', '.*']
  await withClient(url, async (c) => {
    for (const [i, body] of hostile.entries()) await c.query('insert into notes values ($1, $2, $3)', [10 + i, 'x@y.z', body])
    await c.query("insert into notes values (20, 'x@y.z', '50X off'), (21, 'x@y.z', 'OBrien the one'), (22, 'x@y.z', 'anything')")
  })
  for (const [i, value] of hostile.entries()) {
    const { entries } = await audit.subject({ values: [value] })
    assert.deepEqual(where(entries), [['INSERT', 'public.notes', String(10 + i), ['new_values.body']]], value)
  }
  await rejectsWithCode(assert, audit.subject({}), 'AUDIT_LOGS_INVALID_SUBJECT')
  await rejectsWithCode(assert, audit.subject({ values: ['x'] }), 'AUDIT_LOGS_INVALID_SUBJECT')
  await rejectsWithCode(assert, audit.subject({ ipAddress: '10.0.0.0/8' }), 'AUDIT_LOGS_INVALID_SUBJECT')
  await rejectsWithCode(assert, audit.redact({ email: 'ann@x.io', fields: ['actor_id'] }, KEY), 'AUDIT_LOGS_INVALID_REDACTION')
  await rejectsWithCode(assert, audit.redact({ email: 'ann@x.io', targetType: 'public.users', targetId: 42 }, KEY), 'AUDIT_LOGS_INVALID_REDACTION')
  const refused = cli(['subject', '--value', 'x'], url)
  assert.equal(refused.status, 1)
  assert.match(refused.stderr, /AUDIT_LOGS_INVALID_SUBJECT/)
})
