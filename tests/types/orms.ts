// Checked by `tsc --noEmit` (never run): withAuditContext hands each ORM's callback the ORM's own
// Its own tsconfig (skipLibCheck): drizzle-orm's declarations of other dialects do not compile on their own.
// transaction type, and events take it as their client.
import { AuditLogs, auditDialect, withAuditContext } from '../../index.js'
import { drizzle } from 'drizzle-orm/node-postgres'
import { eq } from 'drizzle-orm'
import { pgTable, serial, text, type PgTransaction } from 'drizzle-orm/pg-core'
import { Kysely, PostgresDialect, type Generated, type Transaction } from 'kysely'
import knex, { type Knex } from 'knex'
import pg from 'pg'

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false
const same = <A, B>(_: Equal<A, B>): void => {}

const notes = pgTable('notes', { id: serial('id').primaryKey(), author: text('author') })
interface Database { notes: { id: Generated<number>; author: string | null } }

export async function orms(pool: pg.Pool, audit: AuditLogs): Promise<void> {
  const db = drizzle(pool, { schema: { notes } })
  const ids: number[] = await withAuditContext(db, { actorId: '42' }, async (tx) => {
    same<typeof tx, Parameters<Parameters<typeof db.transaction>[0]>[0]>(true)
    const _pg: PgTransaction<any, any, any> = tx
    await audit.log({ action: 'project.created', targetType: 'note' }, { client: tx })
    const rows = await tx.insert(notes).values({ author: '42' }).returning({ id: notes.id })
    // Nested: a savepoint, still Drizzle's transaction.
    await withAuditContext(tx, { actorId: '7' }, async (inner) => inner.update(notes).set({ author: '7' }).where(eq(notes.id, 1)))
    return rows.map((r) => r.id)
  })

  const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
  const author: string | null | undefined = await withAuditContext(kysely, null, async (trx) => {
    same<typeof trx, Transaction<Database>>(true)
    await audit.log({ action: 'project.created', targetType: 'note' }, { client: trx })
    const row = await trx.insertInto('notes').values({ author: '42' }).returning('author').executeTakeFirst()
    // @ts-expect-error a table Database does not have
    await trx.insertInto('users').values({}).execute()
    return row?.author
  })

  const k = knex({ client: 'pg' })
  await withAuditContext(k, { actorId: '42' }, async (trx) => {
    same<typeof trx, Knex.Transaction>(true)
    await audit.logMany([{ action: 'project.created', targetType: 'note' }], { client: trx })
    await trx('notes').insert({ author: '42' })
    await withAuditContext(trx, { actorId: '7' }, async (inner) => same<typeof inner, Knex.Transaction>(true))
  })
  // @ts-expect-error fn must return a promise
  await withAuditContext(k, null, (trx) => 42)
  void ids, author
}

import { DataSource, EntityManager } from 'typeorm'
import { Sequelize, Transaction as SequelizeTransaction } from 'sequelize'

export async function moreOrms(dataSource: DataSource, sequelize: Sequelize, audit: AuditLogs): Promise<void> {
  const n: number = await withAuditContext(dataSource, { actorId: '42' }, async (manager) => {
    same<typeof manager, EntityManager>(true)
    await audit.log({ action: 'project.created', targetType: 'note' }, { client: manager })
    await withAuditContext(manager, null, async (inner) => same<typeof inner, EntityManager>(true))
    return 1
  })
  await withAuditContext(sequelize, { actorId: '42' }, async (t) => {
    same<typeof t, SequelizeTransaction>(true)
    await audit.log({ action: 'project.created', targetType: 'note' }, { client: t })
    await withAuditContext(t, null, async (inner) => same<typeof inner, SequelizeTransaction>(true))
  })
  void n
}

export function kyselyHook(pool: pg.Pool): Kysely<Database> {
  return new Kysely<Database>({ dialect: auditDialect(new PostgresDialect({ pool }), { requireContext: true }) })
}
