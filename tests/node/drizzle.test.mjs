// withAuditContext with Drizzle (drizzle-orm/node-postgres over a pg Pool), the real package.
import { drizzle } from 'drizzle-orm/node-postgres'
import { PgTransaction, pgTable, serial, text } from 'drizzle-orm/pg-core'
import { is } from 'drizzle-orm'
import pg from 'pg'
import { deferCleanup } from './helpers.mjs'
import { ormSuite } from './orm_suite.mjs'

const notes = pgTable('notes', { id: serial('id').primaryKey(), author: text('author'), body: text('body') })

ormSuite('Drizzle', {
  async open(url, t, { max = 2 } = {}) {
    const pool = new pg.Pool({ connectionString: url, max })
    deferCleanup(t, () => pool.end())
    return {
      db: drizzle(pool, { schema: { notes } }),
      insert: (tx, author) => tx.insert(notes).values({ author }),
      isTransaction: (tx) => is(tx, PgTransaction),
      transaction: (db, fn) => db.transaction(fn),
    }
  },
})
