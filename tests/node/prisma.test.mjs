// withAuditContext and auditExtension with a real Prisma 7 client (generated from
// tests/prisma/schema.prisma) through @prisma/adapter-pg, against a real PostgreSQL.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { AuditLogs, auditExtension, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

// Every statement Prisma sends, to check what the extension adds (and that reads add nothing).
const statements = []
const originalQuery = pg.Client.prototype.query
pg.Client.prototype.query = function traced(config, ...rest) {
  statements.push(typeof config === 'string' ? config : config?.text)
  return originalQuery.call(this, config, ...rest)
}

async function setup(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table users (id serial primary key, email text unique not null, name text);
    create table posts (id serial primary key, title text not null, author_id int not null references users(id));
    create table patients (id serial primary key, name text not null, diagnosis text not null)`))
  for (const table of ['users', 'posts', 'patients']) await audit.enableTracking(table)
  audit.close()
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 5 }) })
  deferCleanup(t, () => prisma.$disconnect())
  const log = () => withClient(url, (c) => c.query(`select action, target_type, target_id, actor_id, txid, metadata
                                                   from audit.audit_logs order by id`).then((r) => r.rows))
  const count = (table) => withClient(url, (c) => c.query(`select count(*)::int as n from ${table}`).then((r) => r.rows[0].n))
  return { url, prisma, log, count }
}

test('withAuditContext(prisma) attributes an interactive transaction; a throw rolls back rows and audit rows', async (t) => {
  const { prisma, log, count } = await setup(t)
  const user = await withAuditContext(prisma, { actorId: 'admin-1', actorType: 'user' }, async (tx) => {
    const created = await tx.user.create({ data: { email: 'ann@x.io' } })
    await tx.post.create({ data: { title: 'hello', authorId: created.id } })
    return created
  })
  assert.equal(user.email, 'ann@x.io')
  const rows = await log()
  assert.deepEqual(rows.map((r) => [r.action, r.target_type, r.actor_id]),
    [['INSERT', 'public.users', 'admin-1'], ['INSERT', 'public.posts', 'admin-1']])
  assert.equal(rows[0].txid, rows[1].txid)

  await assert.rejects(withAuditContext(prisma, { actorId: 'admin-1' }, async (tx) => {
    await tx.user.create({ data: { email: 'gone@x.io' } })
    throw new Error('nope')
  }), /nope/)
  assert.equal(await count('users'), 1)
  assert.equal((await log()).length, 2)
})

test('the extension attributes single writes of every kind to the current context', async (t) => {
  const { prisma, log } = await setup(t)
  const db = prisma.$extends(auditExtension())
  await runWithAuditContext({ actorId: 'u-1', actorType: 'user' }, async () => {
    const a = await db.user.create({ data: { email: 'a@x.io' } })
    await db.user.createMany({ data: [{ email: 'b@x.io' }, { email: 'c@x.io' }] })
    await db.user.update({ where: { id: a.id }, data: { name: 'A' } })
    await db.user.updateMany({ where: { email: { in: ['b@x.io', 'c@x.io'] } }, data: { name: 'BC' } })
    await db.user.upsert({ where: { email: 'd@x.io' }, create: { email: 'd@x.io' }, update: {} })
    await db.$executeRaw`update users set name = 'raw' where email = 'd@x.io'`
    await db.user.delete({ where: { email: 'd@x.io' } })
    await db.user.deleteMany({ where: { email: 'c@x.io' } })
  })
  const rows = await log()
  assert.deepEqual(rows.map((r) => r.action), [
    'INSERT', 'INSERT', 'INSERT', 'UPDATE', 'UPDATE', 'UPDATE', 'INSERT', 'UPDATE', 'DELETE', 'DELETE',
  ])
  assert.ok(rows.every((r) => r.actor_id === 'u-1'), JSON.stringify(rows.map((r) => r.actor_id)))
})

test('writes inside an extended interactive transaction stay in it and roll back with it (the batch trap)', async (t) => {
  const { prisma, log, count } = await setup(t)
  const db = prisma.$extends(auditExtension())
  await runWithAuditContext({ actorId: 'u-2' }, async () => {
    await assert.rejects(db.$transaction(async (tx) => {
      await tx.user.create({ data: { email: 'trap@x.io' } })
      await tx.user.updateMany({ data: { name: 'x' } })
      await tx.$executeRaw`insert into patients (name, diagnosis) values ('p', 'd')`
      throw new Error('roll back')
    }), /roll back/)
  })
  assert.equal(await count('users'), 0, 'nothing escaped the transaction')
  assert.equal(await count('patients'), 0)
  assert.deepEqual(await log(), [])

  await runWithAuditContext({ actorId: 'u-3' }, () =>
    db.$transaction(async (tx) => {
      await tx.user.create({ data: { email: 'kept@x.io' } })
      await tx.user.update({ where: { email: 'kept@x.io' }, data: { name: 'K' } })
    }))
  const rows = await log()
  assert.deepEqual(rows.map((r) => r.actor_id), ['u-3', 'u-3'])
  assert.equal(rows[0].txid, rows[1].txid)
})

test('batch transactions are attributed and keep their results', async (t) => {
  const { prisma, log, count } = await setup(t)
  const db = prisma.$extends(auditExtension({ getContext: () => ({ actorId: 'batch-1' }) }))
  const [user, updated] = await db.$transaction([
    db.user.create({ data: { email: 'e@x.io' } }),
    db.user.updateMany({ data: { name: 'E' } }),
  ])
  assert.equal(user.email, 'e@x.io')
  assert.deepEqual(updated, { count: 1 })
  assert.deepEqual((await log()).map((r) => r.actor_id), ['batch-1', 'batch-1'])
  await assert.rejects(db.$transaction([
    db.user.create({ data: { email: 'f@x.io' } }),
    db.user.create({ data: { email: 'e@x.io' } }),
  ]))
  assert.equal(await count('users'), 1, 'a failed batch rolls back as a whole')
})

test('reads add no statement; writes add the context in the same transaction', async (t) => {
  const { prisma } = await setup(t)
  const db = prisma.$extends(auditExtension({ getContext: () => ({ actorId: 'r-1' }) }))
  await db.user.create({ data: { email: 'warm@x.io' } })
  statements.length = 0
  await db.user.findMany()
  await db.user.count()
  assert.equal(statements.filter((s) => /set_config/i.test(s)).length, 0)
  assert.equal(statements.length, 2, statements.join('\n'))
  statements.length = 0
  await db.user.create({ data: { email: 'g@x.io' } })
  const sequence = statements.map((s) => s.trim().split(/\s+/)[0].toLowerCase())
  assert.deepEqual(sequence, ['begin', 'select', 'insert', 'commit'], statements.join('\n'))
})

test('50 concurrent requests through the extension keep their own actors', async (t) => {
  const { prisma, log } = await setup(t)
  const db = prisma.$extends(auditExtension())
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  await Promise.all(Array.from({ length: 50 }, (_, i) => runWithAuditContext({ actorId: `user-${i}` }, async () => {
    await sleep(Math.random() * 15)
    if (i % 2 === 0) {
      await db.user.create({ data: { email: `user-${i}@x.io` } })
    } else {
      await db.$transaction(async (tx) => {
        await tx.user.create({ data: { email: `user-${i}@x.io` } })
        await sleep(Math.random() * 10)
        await tx.user.update({ where: { email: `user-${i}@x.io` }, data: { name: `user-${i}` } })
      })
    }
  })))
  const rows = await log()
  assert.equal(rows.length, 75)
  for (const row of rows) assert.match(row.actor_id, /^user-\d+$/)
  const byTarget = new Map()
  for (const row of rows) byTarget.set(row.target_id, [...(byTarget.get(row.target_id) ?? []), row.actor_id])
  for (const actors of byTarget.values()) assert.equal(new Set(actors).size, 1, 'each record changed by one actor only')
})

test('read auditing records who read which records of the listed models only', async (t) => {
  const { prisma, log } = await setup(t)
  const db = prisma.$extends(auditExtension({ readAudit: { models: { Patient: 'public.patients' }, maxIds: 2 } }))
  await runWithAuditContext({ actorId: 'doctor-9', actorType: 'user' }, async () => {
    await db.patient.createMany({ data: [1, 2, 3].map((i) => ({ name: `p${i}`, diagnosis: 'secret' })) })
    await db.patient.findMany()
    await db.patient.findUnique({ where: { id: 1 } })
    await db.user.findMany()
  })
  const reads = (await log()).filter((r) => r.action === 'read')
  assert.equal(reads.length, 2, 'one event per read of Patient, none for User')
  assert.deepEqual(reads.map((r) => [r.target_type, r.actor_id]), [['public.patients', 'doctor-9'], ['public.patients', 'doctor-9']])
  assert.deepEqual(reads[0].metadata, { model: 'Patient', operation: 'findMany', ids: ['1', '2'], count: 3, truncated: true })
  assert.deepEqual(reads[1].metadata, { model: 'Patient', operation: 'findUnique', ids: ['1'], count: 1, truncated: false })
})

test('requireContext fails writes without a context, and bad contexts fail before writing', async (t) => {
  const { prisma, count } = await setup(t)
  const db = prisma.$extends(auditExtension({ requireContext: true }))
  await assert.rejects(db.user.create({ data: { email: 'h@x.io' } }), (e) => e.code === 'AUDIT_LOGS_CONTEXT_REQUIRED')
  await assert.rejects(
    runWithAuditContext({ actorId: 'ok' }, () => withAuditContext(prisma, { ipAddress: 'x' }, async (tx) => tx.user.create({ data: { email: 'i@x.io' } }))),
    (e) => e.code === 'AUDIT_LOGS_INVALID_CONTEXT')
  assert.equal(await count('users'), 0)
})

test('an event logged in a Prisma transaction commits or rolls back with it', async (t) => {
  const { url, prisma, log } = await setup(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  const signup = await withAuditContext(prisma, { actorId: 'u-9', actorType: 'user' }, async (tx) => {
    const user = await tx.user.create({ data: { email: 'new@x.io' } })
    return audit.log({ action: 'user.signed_up', targetType: 'user', targetId: user.id }, { client: tx })
  })
  assert.equal(signup.actorId, 'u-9', "the transaction's context attributes the event")
  assert.equal(typeof signup.id, 'number')
  assert.ok(signup.createdAt instanceof Date)
  await assert.rejects(withAuditContext(prisma, { actorId: 'u-9' }, async (tx) => {
    await tx.user.create({ data: { email: 'twice@x.io' } })
    await audit.logMany([{ action: 'user.signed_up' }, { action: 'welcome.sent' }], { client: tx })
    throw new Error('mail server down')
  }), /mail server down/)
  assert.deepEqual((await log()).map((r) => [r.action, r.actor_id]),
    [['INSERT', 'u-9'], ['user.signed_up', 'u-9']])
})

test("a revert in a Prisma interactive transaction commits or rolls back with it, under the transaction's context", async (t) => {
  const { url, prisma, log } = await setup(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  const ann = await withAuditContext(prisma, { actorId: 'u-1' }, (tx) => tx.user.create({ data: { email: 'ann@x.io', name: 'Ann' } }))
  await withAuditContext(prisma, { actorId: 'spam-bot', requestId: 'bad' }, async (tx) => {
    await tx.user.update({ where: { id: ann.id }, data: { name: 'SPAM' } })
    await tx.post.create({ data: { title: 'buy now', authorId: ann.id } })
  })
  const users = () => prisma.user.findMany({ orderBy: { id: 'asc' } })
  const damaged = await users()

  // Rolled back with the transaction: nothing of the revert is left, audit rows included.
  const logged = (await log()).length
  await assert.rejects(withAuditContext(prisma, { actorId: 'mod-1' }, async (tx) => {
    await audit.revert({ request: 'bad' }, { client: tx })
    assert.equal((await tx.user.findUnique({ where: { id: ann.id } })).name, 'Ann')
    throw new Error('changed my mind')
  }), /changed my mind/)
  assert.deepEqual(await users(), damaged)
  assert.equal((await log()).length, logged)

  // A conflict inside it leaves the transaction usable: the moderator's own write commits.
  const conflict = await withAuditContext(prisma, { actorId: 'mod-1' }, async (tx) => {
    await tx.post.updateMany({ data: { title: 'edited' } })
    const error = await audit.revert({ request: 'bad' }, { client: tx }).catch((e) => e)
    await tx.user.update({ where: { id: ann.id }, data: { email: 'ann@y.io' } })
    return error
  })
  assert.equal(conflict.code, 'AUDIT_LOGS_REVERT_CONFLICT', conflict.message)
  assert.equal((await prisma.post.findFirst()).title, 'edited')

  // Committed with it, the post's edit overwritten as asked.
  const report = await withAuditContext(prisma, { actorId: 'mod-1', reason: 'spam' }, (tx) =>
    audit.revert({ request: 'bad' }, { client: tx, onConflict: 'overwrite' }))
  assert.equal(report.entries, 2)
  assert.deepEqual((await users()).map((u) => [u.email, u.name]), [['ann@y.io', 'Ann']])
  assert.equal(await prisma.post.count(), 0)
  const reverting = (await log()).slice(-2)
  assert.deepEqual(reverting.map((r) => [r.action, r.target_type, r.actor_id, r.metadata]), [
    ['DELETE', 'public.posts', 'mod-1', { reason: 'spam', reverts: { request: 'bad' } }],
    ['UPDATE', 'public.users', 'mod-1', { reason: 'spam', reverts: { request: 'bad' } }],
  ])
  await assert.rejects(audit.revert({ request: 'bad' }, { client: prisma }), (e) => e.code === 'AUDIT_LOGS_INVALID_ARGUMENT' && /\$transaction/.test(e.message))
})
