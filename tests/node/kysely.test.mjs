// withAuditContext with Kysely (PostgresDialect over a pg Pool), the real package.
import { Kysely, PostgresDialect, Transaction } from 'kysely'
import pg from 'pg'
import { deferCleanup } from './helpers.mjs'
import { ormSuite } from './orm_suite.mjs'

ormSuite('Kysely', {
  async open(url, t, { max = 2 } = {}) {
    const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max }) }) })
    deferCleanup(t, () => db.destroy())
    return {
      db,
      insert: (trx, author) => trx.insertInto('notes').values({ author }).execute(),
      isTransaction: (trx) => trx instanceof Transaction,
      transaction: (db, fn) => db.transaction().execute(fn),
    }
  },
})
