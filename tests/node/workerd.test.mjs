// The WebAssembly build in workerd, the open-source runtime of Cloudflare Workers, as a Workers
// project gets it: a Worker (workerd/worker.mjs) importing `audit-logs` by its name, from an app
// whose node_modules holds the package's published files and audit-logs-workerd's (npm/workerd
// and the module npm run build:wasm built), bundled as wrangler bundles one (workerd.mjs): the
// `workerd` condition alone routes the package's binding to audit-logs-workerd. Through it:
// contexts validated by the WebAssembly build, and withAuditContext and log() over Neon's
// serverless driver (through the relay of neon-relay.mjs) against the real test server.
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { deferCleanup, withClient } from './helpers.mjs'
import { bundleWorker, notesDatabase, post as postTo, startWorkerd } from './workerd.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
const wasmFile = 'audit-logs.wasm32-wasi.wasm'

/** Copies a package's published files (its manifest's `files`, and the manifest) into `to`. */
function installFiles(from, to, { builtFrom = from } = {}) {
  const manifest = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8'))
  mkdirSync(to, { recursive: true })
  cpSync(join(from, 'package.json'), join(to, 'package.json'))
  for (const file of manifest.files) {
    const source = existsSync(join(from, file)) ? join(from, file) : join(builtFrom, file)
    assert.ok(existsSync(source), `${file} is built (npm run build:wasm)`)
    cpSync(source, join(to, file), { recursive: true })
  }
}

/** workerd serving workerd/worker.mjs, bundled from an app that installed audit-logs, until `t` ends. */
async function startWorker(t, bindings) {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logs-workerd-'))
  deferCleanup(t, () => rmSync(dir, { recursive: true, force: true }))
  const modules = join(dir, 'app', 'node_modules')
  installFiles(root, join(modules, 'audit-logs'))
  installFiles(join(root, 'npm', 'workerd'), join(modules, 'audit-logs-workerd'), { builtFrom: root })
  cpSync(fileURLToPath(new URL('./workerd/worker.mjs', import.meta.url)), join(dir, 'app', 'worker.mjs'))
  // Neon's driver and audit-logs-workerd's runtime come from the clone, as if installed too.
  const wasmModules = await bundleWorker(join(dir, 'app', 'worker.mjs'), dir, { nodePaths: [join(root, 'node_modules')] })
  assert.deepEqual(wasmModules, [wasmFile], 'the Worker imports the WebAssembly build')
  assert.doesNotMatch(readFileSync(join(dir, 'worker.mjs'), 'utf8'), /NAPI_RS_FORCE_WASI/, "napi's Node loader is not bundled")
  return startWorkerd(t, dir, wasmModules, bindings)
}

test('workerd: a Worker importing audit-logs (the workerd condition, no alias) validates contexts, and withAuditContext and log() over Neon attribute each write to its request\'s actor', async (t) => {
  const bindings = await notesDatabase(t)
  const url = bindings.DATABASE_URL
  const { base, output } = await startWorker(t, bindings)

  const post = (path, body, requestId) => postTo(base, path, body, requestId)
  assert.deepEqual(await post('/context', { actorId: 42, ipAddress: '10.0.0.1' }),
    { status: 200, body: { value: '{"actor_id":"42","ip_address":"10.0.0.1"}' } })
  const refused = await post('/context', { ipAddress: 'nope' })
  assert.equal(refused.status, 500)
  assert.equal(refused.body.code, 'AUDIT_LOGS_INVALID_CONTEXT')

  // Concurrent requests, each in its own transaction and context.
  const actors = ['ann', 'bob', 'cid', 'dee']
  const answers = await Promise.all(actors.map((actor) => post(`/notes?actor=${actor}`, null, `req-${actor}`)))
  for (const [i, answer] of answers.entries()) {
    assert.equal(answer.status, 200, `${JSON.stringify(answer.body)}\n${output()}`)
    assert.deepEqual([answer.body.eventActor, answer.body.eventRequest], [actors[i], `req-${actors[i]}`])
  }
  const failed = await post('/notes?actor=mallory&fail=1', null, 'req-mallory')
  assert.deepEqual([failed.status, failed.body.message], [500, 'handler failed'])

  const { rows } = await withClient(url, (c) => c.query(
    "select action, actor_id, request_id, coalesce(new_values->>'author', target_id) as what from audit.audit_logs order by id"))
  assert.equal(rows.length, 8, 'a row and an event per request, none from the failed one')
  for (const actor of actors) {
    const mine = rows.filter((row) => row.actor_id === actor)
    assert.deepEqual(mine.map((row) => [row.action, row.request_id]).sort(),
      [['INSERT', `req-${actor}`], ['note.shared', `req-${actor}`]])
    assert.equal(mine.find((row) => row.action === 'INSERT').what, actor)
  }
  const notes = await withClient(url, (c) => c.query('select author from notes order by author'))
  assert.deepEqual(notes.rows.map((row) => row.author), actors)
})
