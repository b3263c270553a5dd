// A Worker bundled as wrangler bundles one and served by workerd (the open-source runtime of
// Cloudflare Workers, the pinned `workerd` devDependency), for tests/node/workerd.test.mjs and
// tests/packaging/workerd.test.mjs.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import { dirname, join } from 'node:path'
import * as esbuild from 'esbuild'
import { NativeAuditLogs, deferCleanup, freshDatabase, withClient } from './helpers.mjs'
import { startNeonRelay } from './neon-relay.mjs'

const require = createRequire(import.meta.url)
// The binary of the pinned workerd and the newest compatibility date it knows.
const { default: workerdBinary, compatibilityDate } = require('workerd')

/**
 * Bundles `entry` into `dir`/worker.mjs as wrangler does: esbuild with the `workerd`, `worker` and
 * `browser` conditions, Node's modules and `.wasm` imports left to workerd. Each `.wasm` the bundle
 * imports is copied next to it, as wrangler uploads it, and its module name returned.
 * `nodePaths`: where packages not installed next to `entry` are found (a test's app borrowing
 * the clone's node_modules).
 */
export async function bundleWorker(entry, dir, { nodePaths = [] } = {}) {
  const wasmModules = new Map()
  const compiledWasm = {
    name: 'compiled-wasm',
    setup(build) {
      // wrangler's CompiledWasm rule: the import stays, workerd hands it a WebAssembly.Module.
      build.onResolve({ filter: /\.wasm$/ }, (args) => {
        const name = args.path.split('/').pop()
        wasmModules.set(name, join(args.resolveDir, args.path))
        return { path: `./${name}`, external: true }
      })
    },
  }
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile: join(dir, 'worker.mjs'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    external: ['node:*'],
    nodePaths,
    plugins: [compiledWasm],
    // lib/ requires node:async_hooks and node:crypto, which workerd serves (nodejs_compat);
    // wrangler turns such require() calls into imports, this banner does the same for the test.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'silent',
  })
  assert.deepEqual(result.errors, [])
  for (const [name, path] of wasmModules) copyFileSync(path, join(dir, name))
  return [...wasmModules.keys()]
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    }).on('error', reject)
  })
}

/**
 * workerd serving the Worker bundled in `dir` (bundleWorker) until `t` ends, with `bindings` as
 * text bindings of its env; resolves to its base URL and what it printed so far.
 */
export async function startWorkerd(t, dir, wasmModules, bindings = {}) {
  const port = await freePort()
  const config = join(dir, 'config.capnp')
  writeFileSync(config, `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    # Neon's driver dials the test's relay on 127.0.0.1.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
${wasmModules.map((name) => `    (name = "${name}", wasm = embed "${name}"),\n`).join('')}  ],
  # Node's modules lib/ needs (node:async_hooks, node:crypto): nodejs_compat, on by default
  # from 2026-08-04.
  compatibilityDate = "${compatibilityDate}",
  bindings = [
${Object.entries(bindings).map(([name, value]) => `    (name = "${name}", text = ${JSON.stringify(String(value))}),\n`).join('')}  ],
);
`)
  // The binary itself: killing the package's bin/workerd (a Node wrapper) would leave it running.
  const child = spawn(workerdBinary, ['serve', config], { cwd: dirname(config), stdio: ['ignore', 'pipe', 'pipe'] })
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

/**
 * What the Worker of workerd/worker.mjs writes to: a fresh database with `notes` tracked, and
 * the relay its Neon driver dials; resolves to the Worker's bindings (`DATABASE_URL`, `RELAY_PORT`).
 */
export async function notesDatabase(t) {
  const url = await freshDatabase(t)
  const admin = await NativeAuditLogs.connect(url)
  deferCleanup(t, () => admin.close())
  await admin.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await admin.enableTracking('notes')
  return { DATABASE_URL: url, RELAY_PORT: await startNeonRelay(t) }
}

/** POSTs `body` as JSON to the Worker at `base`, with `requestId` as x-request-id; its status and JSON answer. */
export async function post(base, path, body, requestId) {
  const headers = requestId ? { 'x-request-id': requestId } : {}
  const response = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body ?? null) })
  return { status: response.status, body: await response.json() }
}
