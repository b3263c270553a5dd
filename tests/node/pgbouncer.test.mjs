// Behind a real pgBouncer in transaction pooling mode: 50 interleaved actors through each
// integration share 2 server connections, every audit row names its actor, and a plain write
// after a context names nobody (the context is transaction-local: nothing is left on the server
// connection for its next user). Fails, never skips, when pgbouncer is not installed.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import { drizzle } from 'drizzle-orm/node-postgres'
import { pgTable, serial, text } from 'drizzle-orm/pg-core'
import knex from 'knex'
import { Kysely, PostgresDialect } from 'kysely'
import { DataTypes, Sequelize } from 'sequelize'
import { DataSource, EntitySchema } from 'typeorm'
import pg from 'pg'
import { Pool as NeonPool } from '@neondatabase/serverless'
import { AuditLogs, auditDialect, auditExtension, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, serverUrl, withClient } from './helpers.mjs'
import { useNeonRelay } from './neon-relay.mjs'
import { startPgBouncer } from './pgbouncer.mjs'

const ACTORS = 50
const SERVER_CONNECTIONS = 2 // pgBouncer's default_pool_size
const CLIENT_CONNECTIONS = 10 // each integration's own pool, all through pgBouncer
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const jitter = () => sleep(Math.random() * 5)

let bouncer
before(async () => {
  bouncer = await startPgBouncer(await serverUrl(), { poolSize: SERVER_CONNECTIONS })
})
after(() => bouncer?.stop())

/**
 * A fresh database with a tracked `notes` table whose rows say who wrote them and on which
 * server connection (its backend pid), reached through pgBouncer.
 */
async function throughBouncer(t, via = bouncer) {
  const direct = await freshDatabase(t)
  const audit = await AuditLogs.connect(direct)
  await audit.migrate()
  await withClient(direct, (c) => c.query(`
    create table notes (id serial primary key, author text, pid int not null default pg_catalog.pg_backend_pid());
    create table users (id serial primary key, email text unique not null, name text,
                        pid int not null default pg_catalog.pg_backend_pid())`))
  await audit.enableTracking('notes')
  await audit.enableTracking('users')
  audit.close()
  const database = new URL(direct).pathname.slice(1)
  // Runs after the integration's own cleanup: pgBouncer lets go of the database before it is dropped.
  deferCleanup(t, () => via.kill(database))
  return { direct, database, url: via.url(database), via }
}

/**
 * Each actor: a transaction in its own context (two writes, interleaved with the others'), then
 * a plain write with no context at all. Asserts the log, and resolves to the figures.
 */
async function fiftyActors(t, { direct, database, via }, { attributed, plain }) {
  await Promise.all(Array.from({ length: ACTORS }, async (_, i) => {
    await jitter()
    await attributed(`actor-${i}`)
    await plain(`plain-${i}`)
  }))
  const rows = await withClient(direct, (c) => c.query(`select actor_id, actor_type, request_id, metadata,
      coalesce(new_values->>'author', new_values->>'name') as author, (new_values->>'pid')::int as pid
    from audit.audit_logs order by id`).then((r) => r.rows))
  const attributedRows = rows.filter((r) => r.author.startsWith('actor-'))
  assert.equal(attributedRows.length, 2 * ACTORS)
  for (const row of attributedRows) {
    assert.equal(row.actor_id, row.author, `a row of ${row.author} attributed to ${row.actor_id}`)
    assert.equal(row.request_id, `req-${row.author}`)
  }
  const plainRows = rows.filter((r) => r.author.startsWith('plain-'))
  assert.equal(plainRows.length, ACTORS)
  for (const row of plainRows) {
    assert.deepEqual([row.actor_id, row.actor_type, row.request_id, row.metadata], [null, null, null, null],
      `the plain write ${row.author} inherited a context`)
  }
  // Nor is anything left on the server connections themselves: each one, asked in turn.
  const probe = new pg.Pool({ connectionString: via.url(database), max: 2 * SERVER_CONNECTIONS })
  try {
    const settings = await Promise.all(Array.from({ length: 4 * SERVER_CONNECTIONS }, () =>
      probe.query("select pg_catalog.current_setting('audit.context', true) as context").then((r) => r.rows[0].context)))
    assert.ok(settings.every((value) => value === null || value === ''), `a context was left behind: ${settings}`)
  } finally {
    await probe.end()
  }
  const serverPids = new Set(rows.map((r) => r.pid))
  assert.ok(serverPids.size <= SERVER_CONNECTIONS, `${serverPids.size} server connections`)
  const pool = await via.pool(database)
  t.diagnostic(`${rows.length} audit rows from ${ACTORS} actors, ${pool.cl_active + pool.cl_waiting} client connections open at pgBouncer, ` +
    `${serverPids.size} server connection(s) (pgBouncer ${via.version}: ${pool.sv_idle + pool.sv_used + pool.sv_active} open)`)
}

const context = (actor) => ({ actorId: actor, actorType: 'user', requestId: `req-${actor}` })

/** The actors through a pool with pg's API: a write, then a nested call's (a savepoint, and the outer context put back). */
function throughPgPool(pool) {
  const insert = 'insert into notes (author) values ($1)'
  return {
    attributed: (actor) => withAuditContext(pool, context(actor), async (client) => {
      await client.query(insert, [actor])
      await jitter()
      await withAuditContext(client, { ...context(actor), reason: 'nested' }, (c) => c.query(insert, [actor]))
    }),
    plain: (author) => pool.query(insert, [author]),
  }
}

test('node-postgres through pgBouncer (transaction mode): 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const pool = new pg.Pool({ connectionString: db.url, max: CLIENT_CONNECTIONS })
  deferCleanup(t, () => pool.end())
  await fiftyActors(t, db, throughPgPool(pool))
})

test("Neon's serverless driver through pgBouncer (its WebSocket relayed to the pooler): 50 interleaved actors, nothing leaked", async (t) => {
  const db = await throughBouncer(t)
  await useNeonRelay(t)
  const pool = new NeonPool({ connectionString: db.url, max: CLIENT_CONNECTIONS })
  deferCleanup(t, () => pool.end())
  await fiftyActors(t, db, throughPgPool(pool))
})

test('Prisma 7 (adapter-pg) through pgBouncer: withAuditContext and auditExtension, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url, max: CLIENT_CONNECTIONS }) })
  deferCleanup(t, () => prisma.$disconnect())
  const extended = prisma.$extends(auditExtension())
  let n = 0
  await fiftyActors(t, db, {
    // Every other actor goes through the extension (one [set context, write] batch per write).
    attributed: (actor) => (n++ % 2 === 0
      ? withAuditContext(prisma, context(actor), async (tx) => {
        await tx.user.create({ data: { email: `${actor}-1@x.io`, name: actor } })
        await jitter()
        await tx.user.create({ data: { email: `${actor}-2@x.io`, name: actor } })
      })
      : runWithAuditContext(context(actor), async () => {
        await extended.user.create({ data: { email: `${actor}-1@x.io`, name: actor } })
        await jitter()
        await extended.user.create({ data: { email: `${actor}-2@x.io`, name: actor } })
      })),
    plain: (author) => prisma.user.create({ data: { email: `${author}@x.io`, name: author } }),
  })
})

const notes = pgTable('notes', { id: serial('id').primaryKey(), author: text('author') })

test('Drizzle through pgBouncer: 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const pool = new pg.Pool({ connectionString: db.url, max: CLIENT_CONNECTIONS })
  deferCleanup(t, () => pool.end())
  const orm = drizzle(pool)
  await fiftyActors(t, db, {
    attributed: (actor) => withAuditContext(orm, context(actor), async (tx) => {
      await tx.insert(notes).values({ author: actor })
      await jitter()
      await withAuditContext(tx, { ...context(actor), reason: 'nested' }, (inner) => inner.insert(notes).values({ author: actor }))
    }),
    plain: (author) => orm.insert(notes).values({ author }),
  })
})

test('Kysely through pgBouncer: withAuditContext and auditDialect, 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const pool = new pg.Pool({ connectionString: db.url, max: CLIENT_CONNECTIONS })
  const orm = new Kysely({ dialect: auditDialect(new PostgresDialect({ pool })) })
  deferCleanup(t, () => orm.destroy())
  let n = 0
  await fiftyActors(t, db, {
    // Every other actor writes through the dialect's hook alone (each write its own transaction).
    attributed: (actor) => (n++ % 2 === 0
      ? withAuditContext(orm, context(actor), async (trx) => {
        await trx.insertInto('notes').values({ author: actor }).execute()
        await jitter()
        await withAuditContext(trx, { ...context(actor), reason: 'nested' }, (inner) => inner.insertInto('notes').values({ author: actor }).execute())
      })
      : runWithAuditContext(context(actor), async () => {
        await orm.insertInto('notes').values({ author: actor }).execute()
        await jitter()
        await orm.insertInto('notes').values({ author: actor }).execute()
      })),
    plain: (author) => orm.insertInto('notes').values({ author }).execute(),
  })
})

test('Knex through pgBouncer: 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const orm = knex({ client: 'pg', connection: db.url, pool: { min: 0, max: CLIENT_CONNECTIONS } })
  deferCleanup(t, () => orm.destroy())
  await fiftyActors(t, db, {
    attributed: (actor) => withAuditContext(orm, context(actor), async (trx) => {
      await trx('notes').insert({ author: actor })
      await jitter()
      await withAuditContext(trx, { ...context(actor), reason: 'nested' }, (inner) => inner('notes').insert({ author: actor }))
    }),
    plain: (author) => orm('notes').insert({ author }),
  })
})

const Note = new EntitySchema({
  name: 'Note',
  tableName: 'notes',
  columns: { id: { type: Number, primary: true, generated: true }, author: { type: String, nullable: true } },
})

test('TypeORM through pgBouncer: 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const orm = new DataSource({ type: 'postgres', url: db.url, entities: [Note], poolSize: CLIENT_CONNECTIONS })
  await orm.initialize()
  deferCleanup(t, () => orm.destroy())
  await fiftyActors(t, db, {
    attributed: (actor) => withAuditContext(orm, context(actor), async (manager) => {
      await manager.getRepository(Note).insert({ author: actor })
      await jitter()
      await withAuditContext(manager, { ...context(actor), reason: 'nested' }, (inner) => inner.getRepository(Note).insert({ author: actor }))
    }),
    plain: (author) => orm.getRepository(Note).insert({ author }),
  })
})

test('Sequelize through pgBouncer: 50 interleaved actors, nothing leaked', async (t) => {
  const db = await throughBouncer(t)
  const orm = new Sequelize(db.url, { logging: false, pool: { min: 0, max: CLIENT_CONNECTIONS } })
  deferCleanup(t, () => orm.close())
  const Notes = orm.define('Note', { author: DataTypes.TEXT }, { tableName: 'notes', timestamps: false })
  await fiftyActors(t, db, {
    attributed: (actor) => withAuditContext(orm, context(actor), async (transaction) => {
      await Notes.create({ author: actor }, { transaction })
      await jitter()
      await withAuditContext(transaction, { ...context(actor), reason: 'nested' }, (inner) => Notes.create({ author: actor }, { transaction: inner }))
    }),
    plain: (author) => Notes.create({ author }),
  })
})
