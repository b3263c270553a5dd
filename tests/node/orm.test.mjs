// `audit-logs schema --prisma | --drizzle`: the printed models work, as printed, with the real
// ORMs against a real audit table.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import pg from 'pg'
import { AuditLogs, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

const root = new URL('../..', import.meta.url).pathname
const generated = new URL('../.generated/', import.meta.url).pathname
const cli = `${root}bin/audit-logs.js`

function schema(flag) {
  const result = spawnSync(process.execPath, [cli, 'schema', flag], { encoding: 'utf8' })
  assert.equal(result.status, 0, result.stderr)
  return result.stdout
}

/** A database with some attributed changes and an event. */
async function auditedDatabase(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query('create table users (id int primary key, email text)'))
  await audit.enableTracking('users')
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  await withAuditContext(pool, { actorId: '42', actorType: 'user', ipAddress: '192.0.2.1' }, (c) =>
    c.query("insert into users values (1, 'a@x.io'), (2, 'b@x.io')"))
  await audit.log({ action: 'user.login', actorId: '42', targetType: 'user', targetId: '42' })
  return url
}

test('the Prisma model reads the audit table through a generated Prisma client', async (t) => {
  const url = await auditedDatabase(t)
  const dir = `${generated}prisma`
  mkdirSync(dir, { recursive: true })
  writeFileSync(`${dir}/schema.prisma`, `generator client {
  provider = "prisma-client-js"
  output   = "./client"
}

datasource db {
  provider = "postgresql"
  schemas  = ["public", "audit"]
}

${schema('--prisma')}`)
  const generate = spawnSync('npx', ['prisma', 'generate', '--schema', `${dir}/schema.prisma`], {
    cwd: root, encoding: 'utf8', env: { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: '/bin/true' },
  })
  assert.equal(generate.status, 0, generate.stderr + generate.stdout)

  const { PrismaClient } = createRequire(import.meta.url)(`${dir}/client`)
  const { PrismaPg } = await import('@prisma/adapter-pg')
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 2 }) })
  deferCleanup(t, () => prisma.$disconnect())
  const rows = await prisma.auditLog.findMany({ where: { actorId: '42' }, orderBy: { id: 'asc' } })
  assert.deepEqual(rows.map((r) => [r.action, r.targetType, r.targetId]),
    [['INSERT', 'public.users', '1'], ['INSERT', 'public.users', '2'], ['user.login', 'user', '42']])
  assert.deepEqual(rows[0].newValues, { id: 1, email: 'a@x.io' })
  assert.equal(rows[0].ipAddress, '192.0.2.1')
  assert.ok(rows[0].createdAt instanceof Date)
  assert.equal(typeof rows[0].id, 'bigint')
  assert.equal(await prisma.auditLog.count({ where: { action: 'user.login' } }), 1)
})

test('the Drizzle table reads the audit table through drizzle-orm', async (t) => {
  const url = await auditedDatabase(t)
  mkdirSync(generated, { recursive: true })
  writeFileSync(`${generated}audit-drizzle.mjs`, schema('--drizzle'))
  const { auditLogs } = await import(`${generated}audit-drizzle.mjs`)
  const { drizzle } = await import('drizzle-orm/node-postgres')
  const { eq, asc } = await import('drizzle-orm')
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  const db = drizzle(pool)
  const rows = await db.select().from(auditLogs).where(eq(auditLogs.actorId, '42')).orderBy(asc(auditLogs.id))
  assert.deepEqual(rows.map((r) => [r.action, r.targetId]), [['INSERT', '1'], ['INSERT', '2'], ['user.login', '42']])
  assert.deepEqual(rows[1].newValues, { id: 2, email: 'b@x.io' })
  assert.deepEqual(rows[0].changedFields, null)
  assert.ok(rows[0].createdAt instanceof Date)
  assert.equal(typeof rows[0].id, 'number')
})
