// What an Express + Prisma app written from the README alone still hit (issue 13's last item):
// writes that went unattributed, or attributed to the wrong actor (real PostgreSQL, pg, Prisma 7).
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { AuditLogs, auditExtension, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

/** A migrated database with users and posts tracked; an extended Prisma client and a pg pool. */
async function setup(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table users (id serial primary key, email text unique not null, name text);
    create table posts (id serial primary key, title text not null, author_id int not null references users(id));
    insert into users (email) values ('ann@x.io');
    insert into posts (title, author_id) values ('draft', 1)`))
  await audit.enableTracking('users')
  await audit.enableTracking('posts')
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 3 }) })
  deferCleanup(t, () => prisma.$disconnect())
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  const entries = () => pool.query(
    "select action, target_id, actor_id, metadata->>'reason' as reason, new_values->>'title' as title from audit.audit_logs order by id",
  ).then((r) => r.rows)
  return { prisma, db: prisma.$extends(auditExtension()), pool, entries }
}

test('a write through $queryRaw (UPDATE ... RETURNING) is attributed by the Prisma extension', async (t) => {
  const { db, entries } = await setup(t)
  const context = { actorId: 'raw-writer', requestId: 'req-raw' }
  const [tagged, unsafe, cte] = await runWithAuditContext(context, async () => [
    await db.$queryRaw`update posts set title = ${'tagged'} where id = 1 returning id, title`,
    await db.$queryRawUnsafe('/* a comment */ update posts set title = $1 where id = 1 returning title', 'unsafe'),
    await db.$queryRaw`with changed as (update posts set title = 'cte' where id = 1 returning id) select count(*)::int as n from changed`,
  ])
  // The results come back as Prisma gives them.
  assert.deepEqual(tagged, [{ id: 1, title: 'tagged' }])
  assert.deepEqual(unsafe, [{ title: 'unsafe' }])
  assert.deepEqual(cte, [{ n: 1 }])
  // A raw SELECT is still a read: no transaction, and it sees the writes.
  const [row] = await runWithAuditContext(context, () => db.$queryRaw`select title from posts where id = 1`)
  assert.equal(row.title, 'cte')
  assert.deepEqual((await entries()).map((e) => [e.action, e.title, e.actor_id]), [
    ['UPDATE', 'tagged', 'raw-writer'],
    ['UPDATE', 'unsafe', 'raw-writer'],
    ['UPDATE', 'cte', 'raw-writer'],
  ])
})

test('a raw write inside db.$transaction stays in it and rolls back with it', async (t) => {
  const { db, entries } = await setup(t)
  await assert.rejects(runWithAuditContext({ actorId: 'tx-writer' }, () => db.$transaction(async (tx) => {
    await tx.$queryRaw`update posts set title = 'rolled back' where id = 1 returning id`
    throw new Error('after the write')
  })), /after the write/)
  assert.deepEqual(await entries(), [], 'neither the change nor its audit row')
})

test('withAuditContext(tx, ...) inside db.$transaction restores the outer context afterwards', async (t) => {
  const { prisma, db, pool, entries } = await setup(t)
  await runWithAuditContext({ actorId: 'request-user' }, () => db.$transaction(async (tx) => {
    await withAuditContext(tx, { actorId: 'inner-actor', reason: 'inner' },
      (inner) => inner.post.update({ where: { id: 1 }, data: { title: 'inner' } }))
    // The rest of the outer transaction is the request's again.
    await tx.post.update({ where: { id: 1 }, data: { title: 'outer' } })
  }))
  // Where nothing was set outside, nothing is left set after the inner call.
  await db.$transaction(async (tx) => {
    await withAuditContext(tx, { actorId: 'only-inner' }, (inner) => inner.post.update({ where: { id: 1 }, data: { title: 'inner 2' } }))
    await tx.post.update({ where: { id: 1 }, data: { title: 'unattributed' } })
  })
  assert.deepEqual((await entries()).map((e) => [e.title, e.actor_id, e.reason]), [
    ['inner', 'inner-actor', 'inner'],
    ['outer', 'request-user', null],
    ['inner 2', 'only-inner', null],
    ['unattributed', null, null],
  ])
  // The same with the tx of a client that is not extended.
  await prisma.$transaction(async (tx) => {
    await withAuditContext(tx, { actorId: 'plain-inner' }, (inner) => inner.post.update({ where: { id: 1 }, data: { title: 'plain inner' } }))
    await tx.post.update({ where: { id: 1 }, data: { title: 'plain after' } })
  })
  assert.deepEqual((await entries()).slice(4).map((e) => [e.title, e.actor_id]), [['plain inner', 'plain-inner'], ['plain after', null]])
  // As pg's nested call does.
  await withAuditContext(pool, { actorId: 'pg-outer' }, async (client) => {
    await withAuditContext(client, { actorId: 'pg-inner' }, (c) => c.query("update posts set title = 'pg inner' where id = 1"))
    await client.query("update posts set title = 'pg outer' where id = 1")
  })
  assert.deepEqual((await entries()).slice(6).map((e) => [e.title, e.actor_id]), [['pg inner', 'pg-inner'], ['pg outer', 'pg-outer']])
})

test('deployed as the README says: a migrating role that is not a superuser, the app as its own role', async (t) => {
  const url = await freshDatabase(t)
  const suffix = randomUUID().slice(0, 8)
  const admin = `admin_${suffix}`
  const app = `app_${suffix}`
  const as = (role) => Object.assign(new URL(url), { username: role }).toString()
  await withClient(url, (c) => c.query(`
    create role ${admin} login createrole; create role ${app} login;
    grant create on database ${new URL(url).pathname.slice(1)} to ${admin};
    grant create, usage on schema public to ${app}`))
  deferCleanup(t, () => withClient(url, (c) => c.query(
    `reassign owned by ${admin}, ${app} to current_user; drop owned by ${admin}, ${app}; drop role ${admin}; drop role ${app}`)))
  await withClient(as(app), (c) => c.query('create table users (id serial primary key, email text not null)'))

  const migrator = await AuditLogs.connect(as(admin))
  deferCleanup(t, () => migrator.close())
  await migrator.migrate()
  // enable creates triggers on the app's table: the README's `grant app to admin`.
  await rejectsWithCode(assert, migrator.enableTracking('users'), 'AUDIT_LOGS_PERMISSION_DENIED')
  await withClient(url, (c) => c.query(`grant ${app} to ${admin}`))
  await migrator.enableTracking('users')

  // The app's writes are recorded with no grant; reading and sealing take the README's grants.
  const pool = new pg.Pool({ connectionString: as(app), max: 1 })
  deferCleanup(t, () => pool.end())
  await withAuditContext(pool, { actorId: '7' }, (c) => c.query("insert into users (email) values ('a@x.io')"))
  const audit = await AuditLogs.connect(as(app))
  deferCleanup(t, () => audit.close())
  await rejectsWithCode(assert, audit.history({ table: 'users', id: 1 }), 'AUDIT_LOGS_PERMISSION_DENIED')
  await rejectsWithCode(assert, audit.seal(), 'AUDIT_LOGS_PERMISSION_DENIED')
  await withClient(url, (c) => c.query(`grant audit_reader to ${app}; grant audit_maintainer to ${app}`))
  assert.deepEqual((await audit.history({ table: 'users', id: 1 })).map((e) => [e.action, e.actorId]), [['INSERT', '7']])
  assert.equal((await audit.seal()).rowCount, 1)
  assert.equal((await audit.verify()).ok, true)
})
