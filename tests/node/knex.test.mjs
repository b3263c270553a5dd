// withAuditContext with Knex (client 'pg'), the real package.
import knex from 'knex'
import { deferCleanup } from './helpers.mjs'
import { ormSuite } from './orm_suite.mjs'

ormSuite('Knex', {
  async open(url, t, { max = 2 } = {}) {
    const db = knex({ client: 'pg', connection: url, pool: { min: 0, max } })
    deferCleanup(t, () => db.destroy())
    return {
      db,
      insert: (trx, author) => trx('notes').insert({ author }),
      isTransaction: (trx) => trx.isTransaction === true && typeof trx.commit === 'function',
      transaction: (db, fn) => db.transaction(fn),
    }
  },
})
