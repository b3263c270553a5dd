// withAuditContext with TypeORM (a DataSource of type 'postgres', EntitySchema), the real package.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DataSource, EntitySchema } from 'typeorm'
import { withAuditContext } from '../../index.js'
import { deferCleanup } from './helpers.mjs'
import { ormSuite } from './orm_suite.mjs'

const Note = new EntitySchema({
  name: 'Note',
  tableName: 'notes',
  columns: {
    id: { type: Number, primary: true, generated: true },
    author: { type: String, nullable: true },
    body: { type: String, nullable: true },
  },
})

ormSuite('TypeORM', {
  async open(url, t, { max = 2 } = {}) {
    const db = new DataSource({ type: 'postgres', url, entities: [Note], poolSize: max, logging: false })
    await db.initialize()
    deferCleanup(t, () => db.destroy())
    return {
      db,
      insert: (manager, author) => manager.getRepository(Note).insert({ author }),
      isTransaction: (manager) => manager.queryRunner?.isTransactionActive === true,
      transaction: (db, fn) => db.transaction(fn),
    }
  },
})

test('TypeORM: a DataSource of another type is refused with AUDIT_LOGS_INVALID_ARGUMENT, before fn runs', async () => {
  let ran = false
  await assert.rejects(withAuditContext(new DataSource({ type: 'mysql' }), { actorId: '1' }, async () => { ran = true }), (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_INVALID_ARGUMENT')
    assert.match(error.message, /'postgres'.*mysql/)
    return true
  })
  assert.equal(ran, false)
})
