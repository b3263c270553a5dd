// withAuditContext with Sequelize (dialect 'postgres'), the real package.
import { DataTypes, Sequelize, Transaction } from 'sequelize'
import { deferCleanup } from './helpers.mjs'
import { ormSuite } from './orm_suite.mjs'

ormSuite('Sequelize', {
  async open(url, t, { max = 2 } = {}) {
    const db = new Sequelize(url, { logging: false, pool: { min: 0, max } })
    deferCleanup(t, () => db.close())
    const Note = db.define('Note', { author: DataTypes.TEXT, body: DataTypes.TEXT }, { tableName: 'notes', timestamps: false })
    return {
      db,
      insert: (transaction, author) => Note.create({ author }, { transaction }),
      isTransaction: (transaction) => transaction instanceof Transaction,
      transaction: (db, fn) => db.transaction(fn),
    }
  },
})
