// Issue 13, "Behaviour that surprised": what a team adopting the package hit, each as the user
// meets it (real PostgreSQL, real pg, real Prisma 7, the npm bin).
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { AuditLogs, auditExtension, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

const root = fileURLToPath(new URL('../../', import.meta.url))
const bin = join(root, 'bin/audit-logs.js')

/** The npm bin as a user runs it, in `cwd`, with DATABASE_URL only when given. */
function cli(args, { url, cwd = root } = {}) {
  const env = { ...process.env }
  delete env.DATABASE_URL
  if (url) env.DATABASE_URL = url
  return spawnSync(process.execPath, [bin, ...args], { env, cwd, encoding: 'utf8' })
}

/** A migrated database with users (tracked) and posts, an AuditLogs and a pg pool on it. */
async function setup(t, { requireContext = false } = {}) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table users (id serial primary key, email text unique not null, name text);
    create table posts (id serial primary key, title text not null, author_id int not null references users(id))`))
  await audit.enableTracking('users', { requireContext })
  await audit.enableTracking('posts')
  const pool = new pg.Pool({ connectionString: url, max: 3 })
  deferCleanup(t, () => pool.end())
  const actors = () => pool.query('select action, target_type, actor_id from audit.audit_logs order by id').then((r) => r.rows)
  return { url, audit, pool, actors }
}

function prismaOn(t, url) {
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 3 }) })
  deferCleanup(t, () => prisma.$disconnect())
  return prisma
}

test('runWithAuditContext(ctx, () => db.post.update(...)) attributes a lazy Prisma query returned unawaited', async (t) => {
  const { url, pool, actors } = await setup(t)
  const db = prismaOn(t, url).$extends(auditExtension())
  await pool.query("insert into users (email) values ('ann@x.io')")
  // As the README's `() => cleanup()`: the Prisma promise is returned, not awaited, and only
  // starts when the caller awaits it, outside the callback.
  const post = await runWithAuditContext({ actorId: 'nightly-cleanup', actorType: 'system' },
    () => db.post.create({ data: { title: 'draft', authorId: 1 } }))
  assert.equal(post.title, 'draft', 'the query result is passed through')
  await runWithAuditContext({ actorId: 'nightly-cleanup' }, () => db.post.update({ where: { id: post.id }, data: { title: 'done' } }))
  const rows = (await actors()).filter((r) => r.target_type === 'public.posts')
  assert.deepEqual(rows.map((r) => [r.action, r.actor_id]), [['INSERT', 'nightly-cleanup'], ['UPDATE', 'nightly-cleanup']])
  // A plain value and a running Promise come back as they are.
  assert.equal(runWithAuditContext({ actorId: 'x' }, () => 7), 7)
  const running = Promise.resolve(1)
  assert.equal(runWithAuditContext({ actorId: 'x' }, () => running), running)
})

test('events about a record show in its history under the names code gives the table', async (t) => {
  const { url, audit, pool } = await setup(t)
  await withAuditContext(pool, { actorId: '1' }, (c) => c.query("insert into users (id, email) values (2, 'bo@x.io'), (3, 'cy@x.io')"))
  const named = ['user', 'users', 'User', 'Users', 'public.users']
  for (const targetType of named) await audit.log({ action: 'user.login', targetType, targetId: 2, metadata: { as: targetType } })
  // Not this record, or not this table.
  await audit.log({ action: 'user.login', targetType: 'user', targetId: 3 })
  await audit.log({ action: 'user.login', targetType: 'usr', targetId: 2 })
  await audit.log({ action: 'post.viewed', targetType: 'post', targetId: 2 })

  const history = await audit.history({ table: 'users', id: 2 })
  assert.deepEqual(history.map((e) => e.action), [...named.map(() => 'user.login'), 'INSERT'])
  assert.deepEqual(history.slice(0, -1).map((e) => e.metadata.as).reverse(), named)
  // The same through the CLI, and an event's own target type still reads only its events.
  const printed = cli(['history', 'users', '2', '--json'], { url })
  assert.equal(printed.status, 0, printed.stderr)
  assert.equal(JSON.parse(printed.stdout).length, named.length + 1)
  assert.equal((await audit.history({ targetType: 'user', id: 2 })).length, 1)
  assert.equal((await audit.history({ table: 'posts', id: 2 })).map((e) => e.action).join(), 'post.viewed')
})

test('a table requiring a context refuses unattributed writes with AUDIT_LOGS_CONTEXT_REQUIRED (pg and Prisma)', async (t) => {
  const { url, pool, actors } = await setup(t, { requireContext: true })
  const isContextRequired = (driverCode) => (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_CONTEXT_REQUIRED', error.message)
    assert.match(error.message, /INSERT on public\.users needs an audit context/)
    assert.match(error.message, /withAuditContext\(\)/, 'the way out')
    assert.equal(error.cause.code, driverCode, 'the driver\'s error is kept as cause')
    return true
  }
  // node-postgres: the error is AL006 in the driver.
  await assert.rejects(withAuditContext(pool, null, (c) => c.query("insert into users (email) values ('a@x.io')")),
    isContextRequired('AL006'))
  // Prisma: P2039 wrapping AL006, through the extension and through withAuditContext.
  const prisma = prismaOn(t, url)
  const db = prisma.$extends(auditExtension())
  await assert.rejects(db.user.create({ data: { email: 'b@x.io' } }), isContextRequired('P2039'))
  await assert.rejects(db.$transaction(async (tx) => tx.user.create({ data: { email: 'c@x.io' } })), isContextRequired('P2039'))
  await assert.rejects(withAuditContext(prisma, null, (tx) => tx.user.create({ data: { email: 'd@x.io' } })),
    isContextRequired('P2039'))
  // Other errors are left as the driver made them.
  await assert.rejects(withAuditContext(pool, { actorId: '1' }, (c) => c.query('select * from nope')), (e) => e.code === '42P01')
  await assert.rejects(db.user.create({ data: { email: null } }), (e) => e.code !== 'AUDIT_LOGS_CONTEXT_REQUIRED')
  await withAuditContext(pool, { actorId: '9' }, (c) => c.query("insert into users (email) values ('ok@x.io')"))
  assert.deepEqual((await actors()).map((r) => r.actor_id), ['9'], 'nothing else was written')
})

test('a role that may not read the log is told to grant it audit_reader', async (t) => {
  const { url, audit } = await setup(t)
  const role = `app_${randomUUID().slice(0, 8)}`
  await withClient(url, (c) => c.query(`create role ${role} login`))
  deferCleanup(t, () => withClient(url, (c) => c.query(`drop role ${role}`)))
  const asRole = new URL(url)
  asRole.username = role
  const app = await AuditLogs.connect(asRole.toString())
  deferCleanup(t, () => app.close())
  await assert.rejects(app.history({ table: 'users', id: 1 }), (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_PERMISSION_DENIED')
    assert.match(error.message, /permission denied for table audit_logs/)
    assert.ok(error.message.includes(`grant audit_reader to ${role}`), error.message)
    return true
  })
  await withClient(url, (c) => c.query(`grant audit_reader to ${role}`))
  assert.deepEqual(await app.history({ table: 'users', id: 1 }), [], 'the grant printed is the one that works')
  void audit
})

test('times in PostgreSQL\'s text form are read; migrations report when they were applied in RFC 3339', async (t) => {
  const { url, audit, pool } = await setup(t)
  await withAuditContext(pool, { actorId: '1' }, (c) => c.query("insert into users (id, email) values (5, 'e@x.io')"))
  // The time exactly as psql (and pg, as text) prints it, in a zone other than UTC.
  const { rows: [row] } = await pool.query(
    "select (created_at at time zone 'Asia/Kolkata')::text || '+05:30' as india, created_at::text as text from audit.audit_logs")
  assert.match(row.text, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?$/)
  for (const at of [row.text, row.india]) {
    assert.equal((await audit.stateAt({ table: 'users', id: 5, at }))?.email, 'e@x.io', at)
  }
  const [point] = await audit.statesAt({ table: 'users', points: [{ id: 5, at: row.text }] })
  assert.equal(point.state.email, 'e@x.io')
  await rejectsWithCode(assert, audit.stateAt({ table: 'users', id: 5, at: '2026-11-30 09:27:03' }), 'AUDIT_LOGS_INVALID_ARGUMENT')

  const status = await audit.status()
  for (const m of status.migrations) {
    assert.match(m.appliedOn, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.ok(Math.abs(Date.parse(m.appliedOn) - Date.now()) < 600_000)
  }
  const printed = cli(['status'], { url })
  assert.equal(printed.status, 0, printed.stderr)
  assert.match(printed.stdout, /V1__audit_schema\s+applied \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n/)
})

test('statesAt gives state: null for a record that did not exist; a wrong type names its field', async (t) => {
  const { audit } = await setup(t)
  const [missing] = await audit.statesAt({ table: 'users', points: [{ id: 404, at: new Date() }] })
  assert.ok('state' in missing && 'entryId' in missing, JSON.stringify(missing))
  assert.equal(missing.state, null)
  assert.equal(missing.entryId, null)
  await assert.rejects(audit.log({ action: 42 }), (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_INVALID_EVENT')
    assert.match(error.message, /action: invalid type: integer `42`, expected a string/)
    return true
  })
  await assert.rejects(audit.log({ action: 'user.login', actorEmail: 7 }), /actorEmail: invalid type/)
  // An ORM's Int id is stored as its digits, as in a context.
  assert.equal((await audit.log({ action: 'user.login', actorId: 42 })).actorId, '42')
})

test('the CLI reads DATABASE_URL from ./.env, and a variable set in the environment wins', async (t) => {
  const fromFile = await freshDatabase(t)
  const fromEnv = await freshDatabase(t)
  const dir = mkdtempSync(join(tmpdir(), 'audit-logs-env-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, '.env'), `# as Prisma keeps it\nDATABASE_URL="${fromFile}"\nOTHER=1\n`)
  const dbName = (url) => new URL(url).pathname.slice(1)

  const read = cli(['status'], { cwd: dir })
  assert.equal(read.status, 0, read.stderr)
  assert.match(read.stderr, /DATABASE_URL read from \.env/)
  assert.ok(read.stdout.includes(`/${dbName(fromFile)}`), read.stdout)

  const env = cli(['status'], { cwd: dir, url: fromEnv })
  assert.equal(env.status, 0, env.stderr)
  assert.ok(env.stdout.includes(`/${dbName(fromEnv)}`), env.stdout)
  assert.doesNotMatch(env.stderr, /\.env/)

  const none = cli(['status'], { cwd: tmpdir() })
  assert.equal(none.status, 1)
  assert.match(none.stderr, /AUDIT_LOGS_INVALID_URL.*\.env/)
})

test('schema --prisma says other models need @@schema("public"), and prisma generate then succeeds', async (t) => {
  const printed = cli(['schema', '--prisma'])
  assert.equal(printed.status, 0, printed.stderr)
  assert.match(printed.stdout, /@@schema\("public"\) to each of your own models/)
  // The tests' own models, with and without the attribute the output asks for.
  const models = readFileSync(join(root, 'tests/prisma/schema.prisma'), 'utf8')
    .replace(/^(generator|datasource)[^}]*}\n/gms, '')
  const withSchema = models.replace(/\n {2}@@map\(("[^"]+")\)\n}/g, '\n  @@map($1)\n  @@schema("public")\n}')
  assert.notEqual(withSchema, models)
  // Inside the project, so that the generator finds @prisma/client as in the user's app.
  const dir = mkdtempSync(join(root, 'node_modules', '.audit-logs-prisma-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const generate = (userModels) => {
    const file = join(dir, 'schema.prisma')
    writeFileSync(file, `generator client {\n  provider = "prisma-client-js"\n  output = "${join(dir, 'client')}"\n}\n` +
      'datasource db {\n  provider = "postgresql"\n  schemas  = ["public", "audit"]\n}\n' + userModels + printed.stdout)
    return spawnSync(join(root, 'node_modules/.bin/prisma'), ['generate', '--schema', file], {
      cwd: dir, encoding: 'utf8',
      env: { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true' },
    })
  }
  const without = generate(models)
  assert.notEqual(without.status, 0, 'without @@schema("public") Prisma refuses the models')
  assert.match(without.stderr + without.stdout, /@@schema/)
  const done = generate(withSchema)
  assert.equal(done.status, 0, done.stderr + done.stdout)
})

test('help names no partial list; seal with nothing new prints the head; a failed verify exports no head; tracked shows require-context', async (t) => {
  const help = cli(['--help'])
  const firstLine = help.stdout.split('\n')[0]
  const commands = [...help.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]).filter((c) => c !== 'help')
  assert.ok(commands.length >= 14, help.stdout)
  const named = commands.filter((c) => new RegExp(`\\b${c}\\b`).test(firstLine))
  assert.ok(named.length === 0 || named.length === commands.length, `first line names some commands: ${firstLine}`)

  const { url, pool } = await setup(t, { requireContext: true })
  await withAuditContext(pool, { actorId: '1' }, (c) => c.query("insert into users (email) values ('a@x.io')"))
  const first = cli(['seal'], { url })
  assert.equal(first.status, 0, first.stderr)
  const head = first.stdout.match(/^Head: ([0-9a-f]{64})$/m)?.[1]
  assert.ok(head, first.stdout)
  const again = cli(['seal'], { url })
  assert.match(again.stdout, /Nothing to seal/)
  assert.equal(again.stdout.match(/^Head: ([0-9a-f]{64})$/m)?.[1], head, again.stdout)
  assert.equal(JSON.parse(cli(['seal', '--json'], { url }).stdout).head, head)

  const ok = cli(['verify'], { url })
  assert.equal(ok.status, 0, ok.stderr)
  assert.match(ok.stdout, /^Head: [0-9a-f]{32}$/m)
  await withClient(url, (c) => c.query(`set session_replication_role = replica;
    update audit.audit_logs set actor_id = 'someone else'`))
  const failed = cli(['verify'], { url })
  assert.equal(failed.status, 1)
  assert.match(failed.stdout, /Verification FAILED/)
  assert.doesNotMatch(failed.stdout, /Head:/)

  const tracked = cli(['tracked'], { url })
  assert.match(tracked.stdout, /public\.users \(key id\): requiring a context/)
})
