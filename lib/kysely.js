'use strict'
// Kysely's client-wide hook: a dialect whose driver attributes every write of the Kysely
// instance to the current request, as auditExtension does for Prisma. Kysely's Dialect and
// Driver interfaces are its public extension points; nothing of Kysely is required here.
const { randomUUID } = require('node:crypto')
const { currentAuditContext, settingFor, asOwnError, SET_CONTEXT } = require('./context.js')
const { READ_ONLY_SQL } = require('./prisma.js')

const compiled = (sql, parameters) => ({
  sql, parameters, query: { kind: 'RawNode', sqlFragments: [sql], parameters: [] }, queryId: { queryId: randomUUID() },
})

/** Whether a compiled query may change rows: anything but a plain SELECT (a CTE may write). */
function mayWrite({ query, sql }) {
  if (query?.kind === 'SelectQueryNode') return query.with != null
  if (query?.kind === 'RawNode') return !READ_ONLY_SQL.test(sql)
  return true
}

/**
 * `new Kysely({ dialect: auditDialect(new PostgresDialect({ pool })) })`. Every transaction of
 * the instance sets `getContext()` (default: the current request's) as its first statement; a
 * write outside a transaction runs as BEGIN, set context, write, COMMIT on its connection;
 * reads are untouched, and nothing is moved out of a transaction. `requireContext` fails writes
 * with AUDIT_LOGS_CONTEXT_REQUIRED when there is no context.
 */
function auditDialect(dialect, options = {}) {
  const getContext = options.getContext ?? currentAuditContext
  return {
    createAdapter: () => dialect.createAdapter(),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createDriver: () => auditDriver(dialect.createDriver(), () => settingFor(getContext(), options)),
  }
}

/** A write on its own: BEGIN, set the context, the write, COMMIT, on one connection. */
async function attributed(connection, setting, query) {
  await connection.executeQuery(compiled('begin', []))
  try {
    await connection.executeQuery(compiled(SET_CONTEXT, [setting]))
    const result = await connection.executeQuery(query)
    await connection.executeQuery(compiled('commit', []))
    return result
  } catch (error) {
    await connection.executeQuery(compiled('rollback', [])).catch(() => {})
    throw error
  }
}

function auditDriver(driver, settingNow) {
  // Our connection -> the driver's, and the connections in a transaction.
  const inner = new WeakMap()
  const inTransaction = new WeakSet()
  const of = (connection) => inner.get(connection)
  const forward = (name) => (connection, ...args) => driver[name](of(connection), ...args)

  return {
    init: () => driver.init(),
    destroy: () => driver.destroy(),
    async acquireConnection() {
      const connection = await driver.acquireConnection()
      const ours = {
        async executeQuery(query) {
          if (!mayWrite(query)) return connection.executeQuery(query)
          try {
            // In a transaction, its first statement set the context: the write stays in it.
            if (inTransaction.has(ours)) return await connection.executeQuery(query)
            const setting = settingNow()
            if (setting === '') return await connection.executeQuery(query)
            return await attributed(connection, setting, query)
          } catch (error) {
            throw asOwnError(error)
          }
        },
        streamQuery: (query, chunkSize) => connection.streamQuery(query, chunkSize),
      }
      inner.set(ours, connection)
      return ours
    },
    releaseConnection: forward('releaseConnection'),
    async beginTransaction(connection, settings) {
      const setting = settingNow()
      await driver.beginTransaction(of(connection), settings)
      inTransaction.add(connection)
      if (setting !== '') await of(connection).executeQuery(compiled(SET_CONTEXT, [setting]))
    },
    async commitTransaction(connection) {
      inTransaction.delete(connection)
      await driver.commitTransaction(of(connection))
    },
    async rollbackTransaction(connection) {
      inTransaction.delete(connection)
      await driver.rollbackTransaction(of(connection))
    },
    ...Object.fromEntries(['savepoint', 'rollbackToSavepoint', 'releaseSavepoint']
      .filter((name) => typeof driver[name] === 'function').map((name) => [name, forward(name)])),
  }
}

module.exports = { auditDialect }
