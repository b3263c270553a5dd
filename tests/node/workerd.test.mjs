// The WebAssembly build in workerd, the open-source runtime of Cloudflare Workers: a Worker
// (workerd/worker.mjs) bundled as wrangler bundles one (esbuild, the `workerd`, `worker` and
// `browser` conditions, the .wasm left to workerd as a compiled module), with the package's
// binding.js replaced by workerd/binding.cjs, run by the workerd in node_modules on a free port.
// Through it: contexts validated by the WebAssembly build, and withAuditContext and log() over
// Neon's serverless driver (through the relay of neon-relay.mjs) against the real test server.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import * as esbuild from 'esbuild'
import { NativeAuditLogs, deferCleanup, freshDatabase, withClient } from './helpers.mjs'
import { startNeonRelay } from './neon-relay.mjs'

const require = createRequire(import.meta.url)
const root = fileURLToPath(new URL('../../', import.meta.url))
const here = fileURLToPath(new URL('./workerd/', import.meta.url))
const wasmFile = 'audit-logs.wasm32-wasi.wasm'
// The binary of the pinned workerd and the newest compatibility date it knows.
const { default: workerdBinary, compatibilityDate } = require('workerd')

/** The Worker bundled into `dir`, with the module workerd compiles next to it. */
async function bundle(dir) {
  assert.ok(existsSync(join(root, wasmFile)), `${wasmFile} is built (npm run build:wasm)`)
  const workerdBinding = {
    name: 'workerd-binding',
    setup(build) {
      // The package's own binding.js, as lib/ and index.js require it.
      build.onResolve({ filter: /(^|\/)binding\.js$/ }, (args) =>
        join(args.resolveDir, args.path) === join(root, 'binding.js') ? { path: join(here, 'binding.cjs') } : undefined)
      build.onResolve({ filter: /\.wasm$/ }, (args) => ({ path: args.path, external: true }))
    },
  }
  const result = await esbuild.build({
    entryPoints: [join(here, 'worker.mjs')],
    outfile: join(dir, 'worker.mjs'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    external: ['node:*'],
    plugins: [workerdBinding],
    // lib/ requires node:async_hooks and node:crypto, which workerd serves (nodejs_compat).
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'error',
  })
  assert.deepEqual(result.errors, [])
  copyFileSync(join(root, wasmFile), join(dir, wasmFile))
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    }).on('error', reject)
  })
}

/** workerd serving the bundled Worker until `t` ends; resolves to its base URL. */
async function startWorkerd(t, { databaseUrl, relayPort }) {
  const dir = mkdtempSync(join(tmpdir(), 'audit-logs-workerd-'))
  deferCleanup(t, () => rmSync(dir, { recursive: true, force: true }))
  await bundle(dir)
  const port = await freePort()
  writeFileSync(join(dir, 'config.capnp'), `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    # Neon's driver dials the relay on 127.0.0.1.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "${wasmFile}", wasm = embed "${wasmFile}"),
  ],
  # Node's modules lib/ needs (node:async_hooks, node:crypto): nodejs_compat, on by default
  # from 2026-08-04.
  compatibilityDate = "${compatibilityDate}",
  bindings = [
    (name = "DATABASE_URL", text = ${JSON.stringify(databaseUrl)}),
    (name = "RELAY_PORT", text = "${relayPort}"),
  ],
);
`)
  // The binary itself: killing the package's bin/workerd (a Node wrapper) would leave it running.
  const child = spawn(workerdBinary, ['serve', join(dir, 'config.capnp')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (data) => { output += data })
  child.stderr.on('data', (data) => { output += data })
  const exited = new Promise((resolve) => child.on('exit', resolve))
  deferCleanup(t, async () => {
    child.kill()
    await exited
  })
  const base = `http://127.0.0.1:${port}`
  for (const started = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (child.exitCode !== null) assert.fail(`workerd exited (${child.exitCode}):\n${output}`)
    if (Date.now() - started > 20_000) assert.fail(`workerd did not answer on ${base} in 20 s:\n${output}`)
    try {
      await fetch(base)
      break
    } catch {}
  }
  return { base, output: () => output }
}

test('workerd: the WebAssembly build validates contexts, and withAuditContext and log() over Neon attribute each write to its request\'s actor', async (t) => {
  const url = await freshDatabase(t)
  const admin = await NativeAuditLogs.connect(url)
  deferCleanup(t, () => admin.close())
  await admin.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await admin.enableTracking('notes')
  const relayPort = await startNeonRelay(t)
  const { base, output } = await startWorkerd(t, { databaseUrl: url, relayPort })

  const post = async (path, body) => {
    const response = await fetch(base + path, { method: 'POST', body: JSON.stringify(body ?? null) })
    return { status: response.status, body: await response.json() }
  }
  assert.deepEqual(await post('/context', { actorId: 42, ipAddress: '10.0.0.1' }),
    { status: 200, body: { value: '{"actor_id":"42","ip_address":"10.0.0.1"}' } })
  const refused = await post('/context', { ipAddress: 'nope' })
  assert.equal(refused.status, 500)
  assert.equal(refused.body.code, 'AUDIT_LOGS_INVALID_CONTEXT')

  // Concurrent requests, each in its own transaction and context.
  const actors = ['ann', 'bob', 'cid', 'dee']
  const answers = await Promise.all(actors.map((actor) => post(`/notes?actor=${actor}`)))
  for (const [i, answer] of answers.entries()) {
    assert.equal(answer.status, 200, `${JSON.stringify(answer.body)}\n${output()}`)
    assert.deepEqual([answer.body.eventActor, answer.body.eventRequest], [actors[i], `req-${actors[i]}`])
  }
  const failed = await post('/notes?actor=mallory&fail=1')
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
