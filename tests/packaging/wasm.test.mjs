// The WebAssembly fallback as published: the root and `audit-logs-wasm32-wasi` (with the module
// and loaders this run built, as `napi artifacts` copies them) packed and installed into a scratch
// app for a wasm32 CPU, as WebContainers install. No native addon gets installed, so the loader
// has to fall back to the WebAssembly package by itself (no NAPI_RS_FORCE_WASI), and withAuditContext
// and log() run through it against a real PostgreSQL.
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { npmIn, outsiderEnv } from './npm.mjs'
import { NativeAuditLogs, freshDatabase, withClient } from '../node/helpers.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const wasmPackage = `${manifest.name}-wasm32-wasi`
const wasmDir = join(root, 'npm', 'wasm32-wasi')

const { run, pack } = npmIn(outsiderEnv())

let work, app, wasmTarball

before(() => {
  work = mkdtempSync(join(tmpdir(), 'audit-logs-wasm-'))
  const rootTarball = pack(root, work)
  // What `napi artifacts` puts in the package: the files its manifest lists, as built.
  const { files } = JSON.parse(readFileSync(join(wasmDir, 'package.json'), 'utf8'))
  const packageDir = join(work, 'wasm32-wasi')
  cpSync(wasmDir, packageDir, { recursive: true })
  for (const file of files) {
    assert.ok(existsSync(join(root, file)), `${file} is built (npm run build:wasm)`)
    cpSync(join(root, file), join(packageDir, file))
  }
  cpSync(join(root, 'LICENSE'), join(packageDir, 'LICENSE'))
  wasmTarball = pack(packageDir, work)

  app = join(work, 'app')
  mkdirSync(app)
  const pgVersion = JSON.parse(readFileSync(join(root, 'node_modules/pg/package.json'), 'utf8')).version
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'scratch-app',
    private: true,
    overrides: { [wasmPackage]: `file:${wasmTarball.path}` },
  }, null, 2))
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--cpu=wasm32', rootTarball.path, `pg@${pgVersion}`], { cwd: app })
})

after(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

test('the WebAssembly package holds the module and its loaders, and is installed for wasm32 instead of an addon', () => {
  const packed = wasmTarball.files.map((f) => f.path).sort()
  assert.ok(packed.includes('audit-logs.wasm32-wasi.wasm') && packed.includes('audit-logs.wasi.cjs'), packed.join(', '))
  assert.ok(!packed.some((p) => p.endsWith('.debug.wasm')), 'the debug module is not shipped')
  // Of the napi targets' packages (audit-logs-workerd, for any CPU, is not one).
  const installed = readdirSync(join(app, 'node_modules'))
    .filter((name) => name.startsWith(`${manifest.name}-`) && name !== `${manifest.name}-workerd`)
  assert.deepEqual(installed, [wasmPackage], 'no native addon package: npm skips them for a wasm32 CPU')
})

test('with no native addon the package falls back to it: withAuditContext and log() work, the pool says it needs native', async (t) => {
  const url = await freshDatabase(t)
  const admin = await NativeAuditLogs.connect(url)
  await admin.migrate()
  await withClient(url, (c) => c.query('create table notes (id serial primary key, author text)'))
  await admin.enableTracking('notes')
  admin.close()
  const script = `
    const pg = require('pg')
    const { AuditLogs, withAuditContext } = require('audit-logs')
    const { __napiBindingTarget } = require('audit-logs/binding.js')
    const pool = new pg.Pool({ connectionString: process.argv[1] })
    ;(async () => {
      const audit = await AuditLogs.connect(process.argv[1])
      const entry = await withAuditContext(pool, { actorId: 'ann' }, async (client) => {
        await client.query("insert into notes (author) values ('ann')")
        return audit.log({ action: 'note.shared', targetType: 'note', targetId: 1 }, { client })
      })
      const failure = await audit.history({ table: 'notes', id: 1 }).catch((e) => e.code)
      await pool.end()
      console.log(JSON.stringify({ __napiBindingTarget, actor: entry.actorId, failure }))
    })()`
  const result = run(process.execPath, ['-e', script, url], { cwd: app })
  assert.deepEqual(JSON.parse(result.stdout), { __napiBindingTarget: 'wasm32-wasi', actor: 'ann', failure: 'AUDIT_LOGS_NEEDS_NATIVE' })
  const rows = await withClient(url, (c) => c.query('select action, actor_id from audit.audit_logs order by id').then((r) => r.rows))
  assert.deepEqual(rows, [{ action: 'INSERT', actor_id: 'ann' }, { action: 'note.shared', actor_id: 'ann' }])
})
