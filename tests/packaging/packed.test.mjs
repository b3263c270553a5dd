// The package as a registry user gets it (issue 13): the root packed as it is published, and this
// platform's package with the addon this run built (the copy the release's `napi artifacts`
// makes). A scratch app outside the repository, with no Rust toolchain on PATH, installs the
// root alone: its optionalDependencies must bring the platform package (an npm override points
// that name at the local tarball, the registry being the only thing left out). Then migrate,
// enable, attributed writes and history run through npx, require and import on a fresh database,
// undo and the viewer run from the installed package, and a small Express + Prisma app serves
// attributed writes, history and a record's state over HTTP.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { npmIn, outsiderEnv } from './npm.mjs'
import { freshDatabase, withClient } from '../node/helpers.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const windows = process.platform === 'win32'
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare']

/** napi's name for this machine: linux-x64-gnu, linux-x64-musl, darwin-arm64, win32-x64-msvc... */
function hostPlatform() {
  if (process.platform === 'linux') {
    const glibc = process.report.getReport().header.glibcVersionRuntime
    return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
  }
  return windows ? `win32-${process.arch}-msvc` : `${process.platform}-${process.arch}`
}
const platform = hostPlatform()
const platformPackage = `${manifest.name}-${platform}`
const addonFile = `${manifest.napi.binaryName}.${platform}.node`

/** PATH without any folder holding cargo or rustc: whatever runs below cannot build Rust. */
function pathWithoutRust() {
  const tools = windows ? ['cargo.exe', 'rustc.exe'] : ['cargo', 'rustc']
  return process.env.PATH.split(delimiter)
    .filter((dir) => !tools.some((tool) => existsSync(join(dir, tool))))
    .join(delimiter)
}

const env = outsiderEnv({ PATH: pathWithoutRust() })
for (const key of Object.keys(env)) if (key.toUpperCase() === 'PATH' && key !== 'PATH') delete env[key] // Windows' Path
delete env.DATABASE_URL
const { run, pack } = npmIn(env)
const pgVersion = JSON.parse(readFileSync(join(root, 'node_modules/pg/package.json'), 'utf8')).version

let work, app, rootTarball, platformTarball, install

before(() => {
  work = mkdtempSync(join(tmpdir(), 'audit-logs-packed-'))
  assert.ok(!work.startsWith(root), 'the scratch app is outside the repository')

  // In a clone with the addon built, as npm pack leaves the root's addon out anyway.
  rootTarball = pack(root, work)

  // napi artifacts would insist on every target's addon: the copy it makes, by hand.
  const built = join(root, addonFile)
  assert.ok(existsSync(built), `${addonFile} is built (npm run build)`)
  const platformDir = join(work, platform)
  cpSync(join(root, 'npm', platform), platformDir, { recursive: true })
  cpSync(built, join(platformDir, addonFile))
  cpSync(join(root, 'LICENSE'), join(platformDir, 'LICENSE'))
  platformTarball = pack(platformDir, work)

  // A user's app: the root alone is asked for; pg comes from the npm cache like any dependency.
  app = join(work, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'scratch-app',
    private: true,
    overrides: { [platformPackage]: `file:${platformTarball.path}` },
  }, null, 2))
  install = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', rootTarball.path,
    `pg@${pgVersion}`], { cwd: app })
})

after(() => {
  if (work) rmSync(work, { recursive: true, force: true })
})

test('the root tarball carries no install script, the LICENSE, and its platform packages at its version', () => {
  const paths = rootTarball.files.map((f) => f.path)
  assert.ok(paths.includes('LICENSE'), 'LICENSE is packed')
  assert.ok(paths.includes('bin/audit-logs.js') && paths.includes('binding.js') && paths.includes('index.d.ts'))
  assert.deepEqual(paths.filter((p) => p.endsWith('.node')), [], 'the root carries no addon')
  const packed = JSON.parse(readFileSync(join(app, 'node_modules', manifest.name, 'package.json'), 'utf8'))
  for (const script of INSTALL_SCRIPTS) assert.equal(packed.scripts?.[script], undefined, `no ${script} script`)
  assert.equal(packed.optionalDependencies[platformPackage], packed.version)
  // Every napi target has its package, and Workers theirs (audit-logs-workerd), all at the
  // root's version.
  assert.equal(packed.optionalDependencies[`${manifest.name}-workerd`], packed.version)
  assert.equal(Object.keys(packed.optionalDependencies).length, packed.napi.targets.length + 1)
  for (const version of Object.values(packed.optionalDependencies)) assert.equal(version, packed.version)
  assert.equal(packed.license, 'MIT')
  assert.ok(packed.repository?.url, 'repository is set')
})

test('the platform package holds the addon and says which platform it is for', () => {
  assert.deepEqual(platformTarball.files.map((f) => f.path).sort(), ['LICENSE', 'README.md', addonFile, 'package.json'])
  const pkg = JSON.parse(readFileSync(join(app, 'node_modules', platformPackage, 'package.json'), 'utf8'))
  assert.equal(pkg.version, manifest.version)
  assert.deepEqual(pkg.os, [process.platform])
  assert.deepEqual(pkg.cpu, [process.arch])
  if (process.platform === 'linux') assert.deepEqual(pkg.libc, [platform.endsWith('musl') ? 'musl' : 'glibc'])
})

test('installing the root alone brings the platform package, without running or warning about scripts', () => {
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8'))
  const entry = lock.packages[`node_modules/${platformPackage}`]
  assert.ok(entry, `${platformPackage} was installed`)
  assert.equal(entry.optional, true, 'as an optional dependency of the root')
  assert.ok(statSync(join(app, 'node_modules', platformPackage, addonFile)).size > 0)
  assert.deepEqual(readdirSync(join(app, 'node_modules', manifest.name)).filter((f) => f.endsWith('.node')), [])
  // npm 11 warns about install scripts not covered by allowScripts; there must be none.
  assert.doesNotMatch(`${install.stdout}${install.stderr}`, /allowScripts|install script|prepare/i)
})

/**
 * The smoke test of an installed package, in `cwd`: migrate, enable, a write attributed through
 * `require` and one through `import`, and the history, through `cli` (how the package manager
 * runs the installed bin) and `node` (how it runs a script). Returns the addon `require` loaded.
 */
async function migrateWriteAndRead(t, cwd, { cli, node }) {
  const url = await freshDatabase(t)
  const withUrl = { cwd, extraEnv: { DATABASE_URL: url } }
  assert.notEqual(spawnSync('cargo', ['--version'], { env }).status, 0, 'no cargo on PATH')

  assert.match(cli(['migrate'], withUrl).stdout, /\S/)
  await withClient(url, (c) => c.query('create table notes (id int primary key, body text)'))
  cli(['enable', 'notes'], withUrl)

  writeFileSync(join(cwd, 'write.cjs'), `
const { withAuditContext } = require('audit-logs')
const pg = require('pg')
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
withAuditContext(pool, { actorId: 'cjs-user', actorType: 'user' },
  (client) => client.query("insert into notes values (1, 'from require')"))
  .then(() => pool.end())
  .then(() => console.log(Object.keys(require.cache).find((f) => f.endsWith('.node'))))
`)
  const loaded = node(['write.cjs'], withUrl).stdout.trim()

  writeFileSync(join(cwd, 'write.mjs'), `
import { withAuditContext, ActorType } from 'audit-logs'
import pg from 'pg'
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL })
await withAuditContext(pool, { actorId: 'esm-user', actorType: ActorType.MODERATOR, reason: 'import' },
  (client) => client.query("update notes set body = 'from import' where id = 1"))
await pool.end()
`)
  node(['write.mjs'], withUrl)

  const history = JSON.parse(cli(['history', 'notes', '1', '--json'], withUrl).stdout)
  assert.deepEqual(history.map((e) => [e.action, e.actorId, e.actorType]), [
    ['UPDATE', 'esm-user', 'moderator'],
    ['INSERT', 'cjs-user', 'user'],
  ])
  assert.deepEqual(history[0].newValues, { id: 1, body: 'from import' })
  return loaded
}

test('migrate, enable, attributed writes and history through npx, require and import, with no Rust', async (t) => {
  const loaded = await migrateWriteAndRead(t, app, {
    // --no: npx must find the installed bin, never install or build anything.
    cli: (args, options) => run('npx', ['--no', 'audit-logs', ...args], options),
    node: (args, options) => run('node', args, options),
  })
  // (A suffix: on macOS the temporary folder is reached through a symlink.)
  assert.ok(loaded.endsWith(join('node_modules', platformPackage, addonFile)), `the addon comes from the platform package: ${loaded}`)
})

// pnpm links each package's dependencies beside it (node_modules/.pnpm) and runs no dependency's
// install script unless allowed; yarn's Plug'n'Play has no node_modules at all and unpacks only
// packages holding native files. The addon must be found under both, and nothing may need a script.
// What each says of a dependency's install script: pnpm "Ignored build scripts: ...", yarn
// "... lists build scripts, but all build scripts have been disabled" or "... must be built".
const ASKS_FOR_A_SCRIPT = /build scripts|must be built/i

test('installed with pnpm (isolated node_modules) and with yarn (Plug\'n\'Play): the same, through their exec and node', async (t) => {
  const pnpm = (args, options) => run(process.execPath, [join(root, 'node_modules/pnpm/bin/pnpm.mjs'), ...args], options)
  const pnpmApp = join(work, 'pnpm-app')
  mkdirSync(pnpmApp)
  writeFileSync(join(pnpmApp, 'package.json'), JSON.stringify({ name: 'pnpm-app', private: true }))
  // pnpm reads overrides from its workspace file. The tarballs are beside the apps, named
  // relatively with '/' (a Windows path would be escapes in YAML, and yarn's file: wants '/').
  const besideApp = (tarball) => `file:../${tarball.filename}`
  writeFileSync(join(pnpmApp, 'pnpm-workspace.yaml'), `overrides:\n  ${platformPackage}: '${besideApp(platformTarball)}'\n`)
  const pnpmInstall = pnpm(['add', besideApp(rootTarball), `pg@${pgVersion}`], { cwd: pnpmApp })
  assert.doesNotMatch(`${pnpmInstall.stdout}${pnpmInstall.stderr}`, ASKS_FOR_A_SCRIPT)
  const byPnpm = await migrateWriteAndRead(t, pnpmApp, {
    cli: (args, options) => pnpm(['exec', 'audit-logs', ...args], options),
    node: (args, options) => run('node', args, options),
  })
  assert.ok(byPnpm.includes(join('node_modules', '.pnpm')) && byPnpm.endsWith(join(platformPackage, addonFile)), byPnpm)

  // Yarn resolves every optional dependency, whatever the platform, to write its lockfile: the
  // other platforms' packages are their manifests packed (what the registry would serve, less
  // the binaries this machine never fetches), this platform's the package packed above.
  const yarn = (args, options) => run(process.execPath, [join(root, 'node_modules/@yarnpkg/cli-dist/bin/yarn.js'), ...args],
    { ...options, extraEnv: { YARN_ENABLE_IMMUTABLE_INSTALLS: 'false', YARN_ENABLE_TELEMETRY: '0', ...options.extraEnv } })
  const yarnApp = join(work, 'yarn-app')
  mkdirSync(yarnApp)
  const resolutions = { [platformPackage]: besideApp(platformTarball) }
  for (const name of Object.keys(manifest.optionalDependencies).filter((name) => name !== platformPackage)) {
    const dir = join(work, name)
    cpSync(join(root, 'npm', name.slice(manifest.name.length + 1)), dir, { recursive: true })
    resolutions[name] = besideApp(pack(dir, work))
  }
  writeFileSync(join(yarnApp, 'package.json'), JSON.stringify({ name: 'yarn-app', private: true, resolutions }))
  writeFileSync(join(yarnApp, 'yarn.lock'), '')
  const yarnInstall = yarn(['add', `audit-logs@${besideApp(rootTarball)}`, `pg@${pgVersion}`], { cwd: yarnApp })
  assert.doesNotMatch(`${yarnInstall.stdout}${yarnInstall.stderr}`, ASKS_FOR_A_SCRIPT)
  assert.ok(!existsSync(join(yarnApp, 'node_modules')), "Plug'n'Play: no node_modules")
  const byYarn = await migrateWriteAndRead(t, yarnApp, {
    cli: (args, options) => yarn(['audit-logs', ...args], options),
    node: (args, options) => yarn(['node', ...args], options),
  })
  assert.ok(byYarn.includes(join('.yarn', 'unplugged')) && byYarn.endsWith(join(platformPackage, addonFile)), byYarn)
})

test('undo and the viewer from the installed package: revert through npx, ui serving its shipped page', async (t) => {
  const url = await freshDatabase(t)
  const withUrl = { cwd: app, extraEnv: { DATABASE_URL: url } }
  run('npx', ['--no', 'audit-logs', 'migrate'], withUrl)
  await withClient(url, (c) => c.query("create table notes (id int primary key, body text); insert into notes values (1, 'kept')"))
  run('npx', ['--no', 'audit-logs', 'enable', 'notes'], withUrl)
  await withClient(url, (c) => c.query("begin; select audit.set_context('{\"actor_id\": \"job\"}'); delete from notes; commit"))
  const [deleted] = JSON.parse(run('npx', ['--no', 'audit-logs', 'history', 'notes', '1', '--json'], withUrl).stdout)
  assert.equal(deleted.action, 'DELETE')
  const dry = run('npx', ['--no', 'audit-logs', 'revert', '--transaction', String(deleted.txid), '--dry-run'], withUrl)
  assert.match(dry.stdout, /Would change 1 record\(s\)/)
  run('npx', ['--no', 'audit-logs', 'revert', '--transaction', String(deleted.txid), '--by', 'admin'], withUrl)
  const rows = await withClient(url, (c) => c.query('select id, body from notes').then((r) => r.rows))
  assert.deepEqual(rows, [{ id: 1, body: 'kept' }])

  // `ui` is served by the package's JavaScript: its page and assets must be in the tarball.
  const ui = spawn(process.execPath, [join(app, 'node_modules', 'audit-logs', 'bin', 'audit-logs.js'), 'ui', '--port', '0'],
    { cwd: app, env: { ...env, DATABASE_URL: url } })
  t.after(() => ui.kill())
  let printed = ''
  for await (const chunk of ui.stdout) {
    printed += chunk
    if (/on http:\/\/\S+/.test(printed)) break
  }
  const base = /on (http:\/\/\S+)/.exec(printed)?.[1]
  assert.ok(base, printed)
  for (const [path, type] of [['', 'text/html'], ['app.js', 'text/javascript'], ['style.css', 'text/css']]) {
    const response = await fetch(base + path)
    assert.equal(response.status, 200, path)
    assert.match(response.headers.get('content-type'), new RegExp(type))
  }
  const search = await (await fetch(`${base}api/search?actorId=admin`)).json()
  assert.deepEqual(search.entries.map((e) => [e.action, e.metadata?.reverts?.transaction]), [['INSERT', deleted.txid]])
})

test('keeping years from the installed package: a month archived and dropped, verified and read back through npx; a data subject found and erased', async (t) => {
  const url = await freshDatabase(t)
  const withUrl = { cwd: app, extraEnv: { DATABASE_URL: url } }
  const npx = (...args) => run('npx', ['--no', 'audit-logs', ...args], withUrl)
  npx('migrate')
  await withClient(url, (c) => c.query(`
    create table notes (id int primary key, body text);
    insert into audit.audit_logs (created_at, action, target_type, target_id, new_values, actor_id, actor_email)
    select date_trunc('month', now()) - interval '2 months' + g * interval '1 hour', 'UPDATE', 'public.notes',
           (g % 3)::text, jsonb_build_object('id', g % 3, 'body', 'by ann@x.io ' || g), 'u' || g, 'ann@x.io'
      from generate_series(1, 30) g;
    select audit.maintain(anonymize_after_days => 0);`))
  npx('enable', 'notes')
  await withClient(url, (c) => c.query("insert into notes values (1, 'live')"))
  const before = JSON.parse(npx('history', 'notes', '1', '--json').stdout)
  assert.equal(before.length, 11)

  const dir = mkdtempSync(join(tmpdir(), 'audit-logs-packed-archive-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  npx('archive', '--to', `file://${dir}`, '--older-than-months', '1', '--then-drop')
  assert.match(npx('verify', '--archive', `file://${dir}`, '--offline').stdout, /\S/)
  assert.equal(JSON.parse(npx('history', 'notes', '1', '--json').stdout).length, 1, 'the month left the live log')
  const read = JSON.parse(npx('history', 'notes', '1', '--include-archive', '--json').stdout)
  assert.deepEqual(read, before)

  // The live log's mentions of ann@x.io: none left once erased (the archive keeps its own, as
  // the README says).
  await withClient(url, (c) => c.query(`begin; select audit.set_context('{"actor_id": "ann", "actor_email": "ann@x.io"}');
    update notes set body = 'ann@x.io wrote' where id = 1; commit`))
  const found = npx('subject', '--email', 'ann@x.io', '--format', 'jsonl').stdout.trim().split('\n').map((l) => JSON.parse(l))
  assert.equal(found.length, 1)
  run('npx', ['--no', 'audit-logs', 'redact', '--email', 'ann@x.io', '--reason', 'GDPR request'],
    { cwd: app, extraEnv: { DATABASE_URL: url, AUDIT_LOGS_REDACTION_KEY: 'a secret of at least sixteen bytes' } })
  assert.equal(npx('subject', '--email', 'ann@x.io', '--format', 'jsonl').stdout.trim(), '')
})

// The app of issue 13's last item, small: Express 5 and Prisma 7 with the pg adapter, the
// package as installed above, driven over real HTTP. Express and Prisma's runtime come from the
// npm cache like pg; the Prisma client is generated by the clone's own Prisma CLI (offline).
const EXPRESS_APP = `
import express from 'express'
import pg from 'pg'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import { AuditLogs, auditContextMiddleware, auditExtension, withAuditContext } from 'audit-logs'

const url = process.env.DATABASE_URL
const pool = new pg.Pool({ connectionString: url })
const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) })
const db = prisma.$extends(auditExtension())
const audit = await AuditLogs.connect(url)

const app = express()
app.use(express.json())
app.use(auditContextMiddleware({ getActor: (req) => ({ actorId: Number(req.get('x-user-id')) || undefined, actorType: 'user' }) }))
app.post('/users', async (req, res) => {
  res.status(201).json(await db.user.create({ data: { email: req.body.email, posts: { create: [{ title: 'first' }] } } }))
})
app.patch('/posts/:id', async (req, res) => {
  const rows = await withAuditContext(pool, { reason: 'edit' }, async (client) =>
    (await client.query('update posts set title = $1 where id = $2 returning id', [req.body.title, Number(req.params.id)])).rows)
  res.json(rows)
})
app.post('/fail', async (req) => {
  await db.$transaction(async (tx) => {
    await tx.post.update({ where: { id: 1 }, data: { title: 'rolled back' } })
    throw new Error('after the write')
  })
})
app.get('/history/:table/:id', async (req, res) => {
  res.json(await audit.history({ table: req.params.table, id: Number(req.params.id) }))
})
app.get('/state/:table/:id', async (req, res) => {
  res.json(await audit.stateAt({ table: req.params.table, id: Number(req.params.id), at: new Date() }))
})
app.use((err, req, res, next) => res.status(500).json({ error: err.message }))

const server = app.listen(0, '127.0.0.1')
await new Promise((resolve) => server.once('listening', resolve))
const base = 'http://127.0.0.1:' + server.address().port
const call = async (method, path, { body, headers = {} } = {}) => {
  const res = await fetch(base + path, { method, headers: { 'content-type': 'application/json', ...headers }, body: body && JSON.stringify(body) })
  return { status: res.status, requestId: res.headers.get('x-request-id'), body: await res.json() }
}
const results = {
  create: await call('POST', '/users', { body: { email: 'ann@x.io' }, headers: { 'x-user-id': '7', 'x-request-id': 'req-create' } }),
  edit: await call('PATCH', '/posts/1', { body: { title: 'edited' }, headers: { 'x-user-id': '7', 'user-agent': 'u'.repeat(3000) } }),
  fail: await call('POST', '/fail', { headers: { 'x-user-id': '7' } }),
  anonymous: await call('PATCH', '/posts/1', { body: { title: 'anonymous' }, headers: { 'x-request-id': 'r'.repeat(2000) } }),
  users: await call('GET', '/history/users/1'),
  posts: await call('GET', '/history/posts/1'),
  state: await call('GET', '/state/posts/1'),
}
server.close()
await Promise.all([pool.end(), prisma.$disconnect(), audit.close()])
console.log(JSON.stringify(results))
`

test('an Express + Prisma app on the installed package: attributed writes, rollback, history and a state over HTTP', async (t) => {
  const url = await freshDatabase(t)
  const expressApp = join(work, 'express-app')
  mkdirSync(expressApp)
  const version = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version
  writeFileSync(join(expressApp, 'package.json'), JSON.stringify({
    name: 'express-app', private: true, type: 'module',
    overrides: { [platformPackage]: `file:${platformTarball.path}` },
  }, null, 2))
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', rootTarball.path,
    ...['pg', 'express', '@prisma/client', '@prisma/adapter-pg'].map((name) => `${name}@${version(name)}`)], { cwd: expressApp })
  writeFileSync(join(expressApp, 'schema.prisma'), `
generator client {
  provider = "prisma-client-js"
}
datasource db {
  provider = "postgresql"
}
model User {
  id    Int    @id @default(autoincrement())
  email String @unique
  posts Post[]
  @@map("users")
}
model Post {
  id       Int    @id @default(autoincrement())
  title    String
  authorId Int    @map("author_id")
  author   User   @relation(fields: [authorId], references: [id])
  @@map("posts")
}
`)
  run(process.execPath, [join(root, 'node_modules/prisma/build/index.js'), 'generate', '--schema', 'schema.prisma'],
    // Offline, as scripts/test.mjs generates the tests' client: no update check, no schema engine.
    { cwd: expressApp, extraEnv: { CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true' } })

  // The deploy steps of the README, then the app.
  const withUrl = { cwd: expressApp, extraEnv: { DATABASE_URL: url } }
  run('npx', ['--no', 'audit-logs', 'migrate'], withUrl)
  await withClient(url, (c) => c.query(`
    create table users (id serial primary key, email text unique not null);
    create table posts (id serial primary key, title text not null, author_id int not null references users(id),
                        views bigint not null default 1152921504606846977)`))
  run('npx', ['--no', 'audit-logs', 'enable', 'users'], withUrl)
  run('npx', ['--no', 'audit-logs', 'enable', 'posts'], withUrl)
  writeFileSync(join(expressApp, 'server.mjs'), EXPRESS_APP)
  const results = JSON.parse(run('node', ['server.mjs'], withUrl).stdout)

  assert.equal(results.create.status, 201)
  assert.equal(results.create.requestId, 'req-create', 'the request id is echoed')
  assert.equal(results.edit.status, 200, 'a 3000-byte user agent fails nothing')
  assert.deepEqual([results.fail.status, results.fail.body], [500, { error: 'after the write' }])
  assert.equal(results.anonymous.status, 200, 'a request id that cannot be stored fails nothing')
  assert.match(results.anonymous.requestId, /^[0-9a-f-]{36}$/, 'it is replaced by a new one')
  // The nested create is attributed to the request; the rolled-back write left nothing.
  assert.deepEqual(results.users.body.map((e) => [e.action, e.actorId, e.requestId]), [['INSERT', '7', 'req-create']])
  assert.deepEqual(results.posts.body.map((e) => [e.action, e.newValues.title, e.actorId ?? null, e.metadata?.reason ?? null]), [
    ['UPDATE', 'anonymous', null, 'edit'],
    ['UPDATE', 'edited', '7', 'edit'],
    ['INSERT', 'first', '7', null],
  ])
  assert.equal(results.posts.body[1].userAgent.length, 1024, 'the user agent is cut to 1024 bytes')
  assert.equal(results.posts.body[0].requestId, results.anonymous.requestId)
  // A recorded bigint past 2^53 (a column Prisma's model does not even name) is a number, as pg
  // reads it from jsonb, so res.json() can send the state: a BigInt made it throw (a 500).
  assert.equal(results.state.status, 200, JSON.stringify(results.state.body))
  assert.deepEqual([results.state.body.title, results.state.body.views], ['anonymous', 2 ** 60])
})
