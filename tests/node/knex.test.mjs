// withAuditContext with Knex (client 'pg'), the real package.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import knex from 'knex'
import { withAuditContext } from '../../index.js'
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

test('Knex: an instance for another database is refused with AUDIT_LOGS_INVALID_ARGUMENT, before fn runs', async () => {
  const mysql = knex({ client: 'mysql2' })
  let ran = false
  await assert.rejects(withAuditContext(mysql, { actorId: '1' }, async () => { ran = true }), (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_INVALID_ARGUMENT')
    assert.match(error.message, /client: 'pg'.*mysql/)
    return true
  })
  assert.equal(ran, false)
})
