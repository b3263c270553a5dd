'use strict'
// withAuditContext for query builders and ORMs over PostgreSQL: Drizzle (node-postgres and
// pg-compatible drivers), Kysely, Knex, TypeORM, Sequelize. Each runs `fn` in the ORM's own transaction, typed as
// the ORM's, with the context set transaction-locally first, as the pg wrapper does. Nothing of
// an ORM is required here: each is recognised by its shape, and driven through its public API.
const { randomUUID } = require('node:crypto')
const { effectiveContext, settingFor, codedError, asOwnError, SET_CONTEXT } = require('./context.js')
const { commitUnknown, isConnectionError } = require('./pg.js')

const OUTER_CONTEXT = "select pg_catalog.current_setting('audit.context', true) as outer"
// Drizzle marks its classes with this symbol (its `is()` reads it): a stable way to know one.
const DRIZZLE_KIND = Symbol.for('drizzle:entityKind')

const drizzle = {
  name: 'Drizzle',
  accepts: (target) => typeof target?.constructor?.[DRIZZLE_KIND] === 'string' && typeof target.transaction === 'function',
  check(db) {
    // node-postgres and the pg-compatible drivers (Neon serverless, Vercel) hand the session a
    // client with pg's query(text, values): the transaction's own connection inside one.
    if (typeof db.session?.client?.query !== 'function') {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
        `withAuditContext takes a Drizzle database over node-postgres (drizzle-orm/node-postgres) or a pg-compatible driver; this one is a ${db.constructor[DRIZZLE_KIND]}`)
    }
  },
  inTransaction: (db) => typeof db.rollback === 'function',
  transaction: (db, fn, options) => db.transaction(fn, options.transaction),
  savepoint: (tx, fn) => tx.transaction(fn),
  query: async (tx, text, values) => (await tx.session.client.query(text, values)).rows,
  // pg reports a connection lost mid-transaction as an 'error' event on the checked-out client,
  // which nobody listens to (Drizzle does not): unheard, it would crash the process. The query
  // in flight fails anyway, and that failure is what the caller gets.
  listen(tx) {
    const client = tx.session.client
    if (typeof client.on !== 'function') return undefined
    const ignore = () => {}
    client.on('error', ignore)
    return () => client.removeListener('error', ignore)
  },
}

const kysely = {
  name: 'Kysely',
  accepts: (target) => typeof target?.selectFrom === 'function' && typeof target.executeQuery === 'function' &&
    typeof target.isTransaction === 'boolean',
  check() {},
  inTransaction: (db) => db.isTransaction,
  transaction(db, fn, options) {
    let builder = db.transaction()
    if (options.transaction?.isolationLevel) builder = builder.setIsolationLevel(options.transaction.isolationLevel)
    return builder.execute(fn)
  },
  // A Kysely Transaction has no nested transaction(): savepoints in SQL, on its one connection.
  savepoint: (trx, fn) => rawSavepoint(kysely, trx, fn),
  // A CompiledQuery, as Kysely's recipe for executing compiled queries builds one.
  query: async (trx, sql, parameters) => (await trx.executeQuery({
    sql, parameters, query: { kind: 'RawNode', sqlFragments: [sql], parameters: [] }, queryId: { queryId: randomUUID() },
  })).rows,
}

const knex = {
  name: 'Knex',
  accepts: (target) => typeof target === 'function' && typeof target.raw === 'function' &&
    typeof target.transaction === 'function' && target.client != null,
  check(db) {
    if (db.client.dialect !== 'postgresql') {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
        `withAuditContext takes a Knex instance for PostgreSQL (client: 'pg'); this one's dialect is ${db.client.dialect}`)
    }
  },
  inTransaction: (db) => db.isTransaction === true,
  transaction: (db, fn, options) => db.transaction(fn, options.transaction),
  savepoint: (trx, fn) => trx.transaction(fn),
  query: async (trx, text, values) => (await trx.raw(...knexPlaceholders(text, values))).rows,
}

// TypeORM marks its classes' instances with this property (its InstanceChecker reads it).
const TYPEORM_KIND = '@instanceof'

const typeorm = {
  name: 'TypeORM',
  accepts: (target) => target?.[TYPEORM_KIND] === Symbol.for('DataSource') || target?.[TYPEORM_KIND] === Symbol.for('EntityManager'),
  check(db) {
    const type = (db.dataSource ?? db.connection ?? db).options?.type
    if (type !== 'postgres') {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
        `withAuditContext takes a TypeORM DataSource or EntityManager of type 'postgres'; this one's type is ${type}`)
    }
  },
  // An EntityManager of a transaction runs on its query runner; its transaction() nests (savepoints).
  inTransaction: (db) => db.queryRunner?.isTransactionActive === true,
  transaction: (db, fn, options) => (options.transaction?.isolationLevel
    ? db.transaction(options.transaction.isolationLevel, fn)
    : db.transaction(fn)),
  savepoint: (manager, fn) => manager.transaction(fn),
  query: (manager, text, values) => manager.query(text, values),
}

/** A Sequelize Transaction (what its transaction() hands the callback). */
const isSequelizeTransaction = (target) => typeof target?.sequelize?.getDialect === 'function' &&
  typeof target.commit === 'function' && typeof target.rollback === 'function'

const sequelize = {
  name: 'Sequelize',
  accepts: (target) => isSequelizeTransaction(target) || (typeof target?.getDialect === 'function' &&
    typeof target.transaction === 'function' && typeof target.query === 'function'),
  check(db) {
    const dialect = (isSequelizeTransaction(db) ? db.sequelize : db).getDialect()
    if (dialect !== 'postgres') {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
        `withAuditContext takes a Sequelize instance for PostgreSQL (dialect: 'postgres'); this one's dialect is ${dialect}`)
    }
  },
  inTransaction: isSequelizeTransaction,
  transaction: (db, fn, options) => db.transaction({ ...options.transaction }, fn),
  // A transaction given as `transaction` makes Sequelize open a savepoint in it.
  savepoint: (t, fn) => t.sequelize.transaction({ transaction: t }, fn),
  query(t, text, values) {
    const inTransaction = isSequelizeTransaction(t)
    return (inTransaction ? t.sequelize : t).query(text, { bind: values, transaction: inTransaction ? t : null, type: 'SELECT' })
  },
}

/** `$n` placeholders as Knex's `?` (its bindings in order), a literal `?` escaped. */
function knexPlaceholders(text, values) {
  const bindings = []
  const sql = text.replace(/\$(\d+)|\?/g, (match, index) => {
    if (index === undefined) return '\\?'
    bindings.push(values[Number(index) - 1])
    return '?'
  })
  return [sql, bindings]
}

const ORMS = [knex, kysely, drizzle, typeorm, sequelize]

/** The adapter of an ORM database or transaction, if `target` is one. */
function ormOf(target) {
  return target == null ? undefined : ORMS.find((orm) => orm.accepts(target))
}

/**
 * `fn(tx)` in a transaction of the ORM, attributed to `context`; inside a transaction of the ORM
 * already, in a savepoint of it, with the outer context put back afterwards.
 */
async function withOrmContext(orm, target, context, fn, options = {}) {
  const setting = settingFor(context, options)
  const requestId = effectiveContext(context)?.requestId
  orm.check(target)
  if (orm.inTransaction(target)) return nested(orm, target, setting, fn)
  let committing = false
  let stopListening
  try {
    return await orm.transaction(target, async (tx) => {
      stopListening = orm.listen?.(tx)
      await orm.query(tx, SET_CONTEXT, [setting])
      const result = await fn(tx)
      committing = true
      return result
    }, options)
  } catch (error) {
    // Once fn has resolved, the ORM has only the COMMIT left to send; a lost connection then
    // leaves the outcome unknown (the error may be the failed ROLLBACK the ORM tried after it).
    const lost = committing && [error, error?.cause, error?.original].find((e) => e != null && isConnectionError(e))
    throw lost ? commitUnknown(error, requestId) : ownError(error)
  } finally {
    stopListening?.()
  }
}

async function nested(orm, tx, setting, fn) {
  let result
  try {
    const [{ outer }] = await orm.query(tx, OUTER_CONTEXT, [])
    result = await orm.savepoint(tx, async (inner) => {
      await orm.query(inner, SET_CONTEXT, [setting])
      return fn(inner)
    })
    // Set inside the savepoint, the inner context would outlive it: put the outer one back
    // (a rollback to the savepoint restores it by itself).
    await orm.query(tx, SET_CONTEXT, [outer ?? ''])
  } catch (error) {
    throw ownError(error)
  }
  return result
}

// Savepoint depth per transaction, so nested calls get distinct names.
const depth = new WeakMap()

async function rawSavepoint(orm, tx, fn) {
  const level = (depth.get(tx) ?? 0) + 1
  const savepoint = `audit_logs_${level}`
  depth.set(tx, level)
  try {
    await orm.query(tx, `savepoint ${savepoint}`, [])
    let result
    try {
      result = await fn(tx)
    } catch (error) {
      await orm.query(tx, `rollback to savepoint ${savepoint}`, []).catch(() => {})
      throw error
    }
    await orm.query(tx, `release savepoint ${savepoint}`, [])
    return result
  } finally {
    depth.set(tx, level - 1)
  }
}

/**
 * asOwnError, also for a driver error the ORM wrapped (Drizzle's DrizzleQueryError: `cause`;
 * Sequelize's DatabaseError: `original`).
 */
function ownError(error) {
  const own = asOwnError(error)
  const wrapped = error?.cause ?? error?.original
  if (own !== error || wrapped == null) return own
  const inner = asOwnError(wrapped)
  return inner === wrapped ? error : codedError(inner.code, inner.message, { cause: error })
}

/** A `(text, values) => rows` running in the transaction `client` of an ORM, if it is one. */
function ormQuery(client) {
  const orm = ormOf(client)
  return orm && ((text, values) => orm.query(client, text, values))
}

module.exports = { ormOf, withOrmContext, ormQuery }
