// Archives on S3 from Node: a real S3-compatible server (moto's, from PyPI; .ci/run installs
// it), started here on a free port and stopped after, reached with credentials from the
// environment as a deployment would set them.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { verifyArchive } from '../../index.js'
import { deferCleanup, migrated, rejectsWithCode, withClient } from './helpers.mjs'

async function freePort() {
  const server = createServer()
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A moto server of this test's own (after its database: cleanups need one); its endpoint. */
async function moto(t) {
  const port = await freePort()
  const child = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
  let exited = null
  child.on('exit', (code) => { exited = code })
  deferCleanup(t, () => child.kill())
  const endpoint = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (exited !== null) throw new Error(`moto exited (${exited}): python3 -m pip install 'moto[server]==5.2.5'`)
    try {
      await fetch(endpoint)
      break
    } catch {
      if (i > 300) throw new Error('moto did not start')
      await sleep(100)
    }
  }
  // What a deployment's environment holds (moto accepts any key; the SDK must sign with one).
  process.env.AWS_ACCESS_KEY_ID = 'audit-logs-test'
  process.env.AWS_SECRET_ACCESS_KEY = 'audit-logs-test-secret'
  process.env.AWS_REGION = 'us-east-1'
  return endpoint
}

/** Creates a bucket (moto takes unsigned requests), with Object Lock when `locked`. */
async function bucket(endpoint, name, locked) {
  const res = await fetch(`${endpoint}/${name}`, {
    method: 'PUT',
    headers: locked ? { 'x-amz-bucket-object-lock-enabled': 'true' } : {},
  })
  assert.equal(res.status, 200, await res.text())
}

test('archive to s3:// with object lock, verifyArchive from the bucket alone and joined to the live chain', async (t) => {
  const { url, audit } = await migrated(t)
  const endpoint = await moto(t)
  await withClient(url, (c) => c.query(`
    insert into audit.audit_logs (created_at, action, actor_id, new_values, changed_fields, ip_address)
    select date_trunc('month', now()) - interval '2 months' + g * interval '1 hour', 'test.old', 'u' || g,
           jsonb_build_object('n', g, 'note', 'café'), array['n', 'a b'], '2001:db8::1'
      from generate_series(1, 40) g;
    select audit.maintain(anonymize_after_days => 0);`))
  await bucket(endpoint, 'plain', false)
  await bucket(endpoint, 'locked', true)

  await assert.rejects(
    audit.archive({ to: `s3://plain/audit?endpoint=${endpoint}`, lockMode: 'governance', lockDays: 7 }),
    (e) => e.code === 'AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE' && /plain/.test(e.message))

  const to = `s3://locked/audit?endpoint=${endpoint}`
  const report = await audit.archive({ to, olderThanMonths: 1, lockMode: 'compliance', lockDays: 30 })
  assert.equal(report.monthsArchived.length, 1)
  assert.equal(report.rows, 40)
  assert.ok(Date.parse(report.lockedUntil) > Date.now() + 29 * 86400e3, report.lockedUntil)

  const offline = await verifyArchive(to)
  assert.equal(offline.ok, true, JSON.stringify(offline))
  assert.equal(offline.rowsChecked, 40)
  const joined = await audit.verifyArchive(to, { against: offline.head.slice(0, 32) })
  assert.equal(joined.ok, true, JSON.stringify(joined))
  assert.equal(joined.againstFound, true)

  const again = await audit.archive({ to, olderThanMonths: 1, lockMode: 'compliance', lockDays: 30 })
  assert.deepEqual(again.monthsSkipped, report.monthsArchived)
  await rejectsWithCode(assert, verifyArchive(`s3://nowhere/audit?endpoint=${endpoint}`), 'AUDIT_LOGS_ARCHIVE_STORAGE_FAILED')
})
