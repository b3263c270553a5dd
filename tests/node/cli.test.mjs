import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { AuditLogs } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

const bin = fileURLToPath(new URL('../../bin/audit-logs.js', import.meta.url))

function cli(args, databaseUrl) {
  const env = { ...process.env }
  delete env.DATABASE_URL
  if (databaseUrl) env.DATABASE_URL = databaseUrl
  return spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' })
}

test('the npm bin runs the Rust command line and returns its exit status', () => {
  const version = cli(['--version'])
  assert.equal(version.status, 0)
  assert.match(version.stdout, /^audit-logs \d+\.\d+\.\d+\n$/)
  assert.equal(cli([]).status, 2)
  const missing = cli(['status'])
  assert.equal(missing.status, 1)
  assert.match(missing.stderr, /AUDIT_LOGS_INVALID_URL/)
})

test('migrate, enable and history through npx as a user runs them', async (t) => {
  const url = await freshDatabase(t)
  assert.equal(cli(['migrate'], url).status, 0)
  await withClient(url, (c) => c.query('create table notes (id int primary key, body text)'))
  const enabled = cli(['enable', 'notes'], url)
  assert.equal(enabled.status, 0, enabled.stderr)
  await withClient(url, (c) => c.query("insert into notes values (1, 'hi')"))
  const history = cli(['history', 'notes', '1', '--json'], url)
  assert.equal(history.status, 0, history.stderr)
  const [entry] = JSON.parse(history.stdout)
  assert.equal(entry.action, 'INSERT')
  assert.deepEqual(entry.newValues, { id: 1, body: 'hi' })
  const refused = cli(['enable', 'pg_class'], url)
  assert.equal(refused.status, 1)
})

/** The keys of a value, all the way down (a Date is a string in JSON: both are leaves). */
function shape(value) {
  if (Array.isArray(value)) return value.map(shape)
  if (value === null || typeof value !== 'object' || value instanceof Date) return '-'
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, shape(value[key])]))
}

function json(url, ...args) {
  const run = cli([...args, '--json'], url)
  assert.equal(run.status, 0, run.stderr + run.stdout)
  return JSON.parse(run.stdout)
}

test("the CLI's --json output and the Node objects have the same shape for the same data", async (t) => {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  const same = (name, fromCli, fromNode) => {
    assert.deepEqual(shape(fromCli), shape(fromNode), name)
    return fromNode
  }
  same('migrate --dry-run', json(url, 'migrate', '--dry-run'), await audit.migrate(true))
  json(url, 'migrate')
  same('migrate', json(url, 'migrate'), await audit.migrate())
  await withClient(url, (c) => c.query('create table notes (id int primary key, body text, secret text)'))
  same('enable', json(url, 'enable', 'notes', '--exclude', 'secret'), await audit.enableTracking('notes', { excludeColumns: ['secret'] }))
  await withClient(url, (c) => c.query("insert into notes values (1, 'hi', 's'); update notes set body = 'ho' where id = 1"))
  same('status', json(url, 'status'), await audit.status())
  same('tracked', json(url, 'tracked'), await audit.trackedTables())
  const history = same('history', json(url, 'history', 'notes', '1'), await audit.history({ table: 'notes', id: 1 }))
  assert.equal(history.length, 2, 'an INSERT and an UPDATE: both kinds of entry compared')
  const txid = String(history[0].txid)
  same('revert --dry-run', json(url, 'revert', '--transaction', txid, '--dry-run'), await audit.revert({ transaction: history[0].txid }, { dryRun: true }))
  same('log', json(url, 'log', '--action', 'report.exported', '--actor', '7'), await audit.log({ action: 'report.exported', actorId: '7' }))

  const exported = cli(['export', '--table', 'notes'], url)
  assert.equal(exported.status, 0, exported.stderr)
  const streamed = []
  for await (const entry of audit.entries({ table: 'notes' }, { order: 'oldest' })) streamed.push(entry)
  same('export', exported.stdout.trim().split('\n').map((line) => JSON.parse(line)), streamed)

  same('seal', json(url, 'seal'), await withClient(url, (c) => c.query("insert into notes values (2, 'x', 's')")).then(() => audit.seal()))
  same('seal with nothing waiting', json(url, 'seal'), await audit.seal())
  same('verify', json(url, 'verify'), await audit.verify())
  same('configure', json(url, 'configure', '--retention-months', '24'), await audit.configure({ retentionMonths: 24 }))
  same('maintain', json(url, 'maintain'), await audit.maintain())
  assert.equal(json(url, 'disable', 'notes'), true)
  assert.equal(await audit.disableTracking('notes'), false)
  assert.equal(json(url, 'disable', 'notes'), false, 'the same value as Node: whether it was tracked')
})
