import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { freshDatabase, withClient } from './helpers.mjs'

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
