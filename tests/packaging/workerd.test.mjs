// Cloudflare Workers as a Workers project gets the package: the root packed as published and
// audit-logs-workerd packed with the module this run built (the copy the release makes), installed
// into a scratch app by a plain `npm install audit-logs` (no --cpu, no --force: the Workers
// package comes as an optional dependency of the root; an npm override points its name at the
// local tarball). The app's Worker imports `audit-logs` by its name; bundled as wrangler bundles
// (esbuild, the `workerd` condition) and run in workerd, it validates contexts and writes an
// attributed row and event over Neon's driver through the WebAssembly build.
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { npmIn, outsiderEnv } from './npm.mjs'
import { withClient } from '../node/helpers.mjs'
import { bundleWorker, notesDatabase, post as postTo, startWorkerd } from '../node/workerd.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const workerdDir = join(root, 'npm', 'workerd')
const workerdPackage = JSON.parse(readFileSync(join(workerdDir, 'package.json'), 'utf8')).name
const wasmFile = 'audit-logs.wasm32-wasi.wasm'

const { run, pack } = npmIn(outsiderEnv())

let work, app, workerdTarball

before(() => {
  work = mkdtempSync(join(tmpdir(), 'audit-logs-workerd-packed-'))
  const rootTarball = pack(root, work)
  // What the release puts in the package: the module the WebAssembly build made.
  assert.ok(existsSync(join(root, wasmFile)), `${wasmFile} is built (npm run build:wasm)`)
  const packageDir = join(work, 'workerd')
  cpSync(workerdDir, packageDir, { recursive: true })
  cpSync(join(root, wasmFile), join(packageDir, wasmFile))
  cpSync(join(root, 'LICENSE'), join(packageDir, 'LICENSE'))
  workerdTarball = pack(packageDir, work)

  app = join(work, 'app')
  mkdirSync(app)
  const neonVersion = JSON.parse(readFileSync(join(root, 'node_modules/@neondatabase/serverless/package.json'), 'utf8')).version
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'scratch-worker',
    private: true,
    overrides: { [workerdPackage]: `file:${workerdTarball.path}` },
  }, null, 2))
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', rootTarball.path,
    `@neondatabase/serverless@${neonVersion}`], { cwd: app })
  cpSync(join(root, 'tests/node/workerd/worker.mjs'), join(app, 'worker.mjs'))
})

after(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

test('the Workers package holds the module and its loader, and npm installs it with the root on any CPU', () => {
  assert.deepEqual(workerdTarball.files.map((f) => f.path).sort(),
    ['LICENSE', 'README.md', wasmFile, 'binding.cjs', 'instance.mjs', 'package.json'])
  const installed = JSON.parse(readFileSync(join(app, 'node_modules', workerdPackage, 'package.json'), 'utf8'))
  assert.equal(installed.version, manifest.version)
  assert.equal(installed.cpu, undefined, 'no cpu field: npm installs it where wrangler runs')
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8'))
  assert.equal(lock.packages[`node_modules/${workerdPackage}`]?.optional, true, 'as an optional dependency of the root')
  assert.ok(!readdirSync(join(app, 'node_modules')).includes(`${manifest.name}-wasm32-wasi`), 'not the wasm32 package')
})

test('a Worker importing audit-logs, bundled with the workerd condition, validates contexts and attributes writes in workerd', async (t) => {
  const bindings = await notesDatabase(t)
  const url = bindings.DATABASE_URL

  const dir = join(work, `bundle-${Date.now()}`)
  mkdirSync(dir)
  const wasmModules = await bundleWorker(join(app, 'worker.mjs'), dir)
  assert.deepEqual(wasmModules, [wasmFile])
  assert.doesNotMatch(readFileSync(join(dir, 'worker.mjs'), 'utf8'), /NAPI_RS_FORCE_WASI/, "napi's Node loader is not bundled")
  const { base, output } = await startWorkerd(t, dir, wasmModules, bindings)

  const post = (path, body, requestId) => postTo(base, path, body, requestId)
  assert.deepEqual(await post('/context', { actorId: 7 }), { status: 200, body: { value: '{"actor_id":"7"}' } })
  const refused = await post('/context', { ipAddress: 'nope' })
  assert.deepEqual([refused.status, refused.body.code], [500, 'AUDIT_LOGS_INVALID_CONTEXT'])
  const written = await post('/notes?actor=ann', null, 'req-ann')
  assert.equal(written.status, 200, `${JSON.stringify(written.body)}\n${output()}`)
  assert.deepEqual([written.body.eventActor, written.body.eventRequest], ['ann', 'req-ann'])
  const { rows } = await withClient(url, (c) => c.query('select action, actor_id from audit.audit_logs order by id'))
  assert.deepEqual(rows, [{ action: 'INSERT', actor_id: 'ann' }, { action: 'note.shared', actor_id: 'ann' }])
})
