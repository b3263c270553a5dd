'use strict'
// revert(target, { client }): the core's revert, run on the caller's own connection in the
// caller's transaction. The core decides every statement (RevertRun hands them out one at a
// time); this file only runs each on the client and passes back its answer.
const { revertRun } = require('#binding')
const { codedError, raisedBy } = require('./context.js')
const { isPool, isConnectionError } = require('./pg.js')
const { runOn } = require('./events.js')
const { ormOf } = require('./orms.js')

/** Refuses a client that is no transaction's own connection, naming what to give instead. */
function checkClient(client) {
  if (isPool(client)) {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
      'invalid argument client: a pg.Pool runs each query on whichever connection is free, so a revert cannot ' +
      'run in one transaction on it; give a client in a transaction (withAuditContext(pool, context, (client) => ' +
      'audit.revert(target, { client }))), or leave out client', undefined, { argument: 'client' })
  }
  // A transaction client (the tx of $transaction) has no $extends.
  if (typeof client.$extends === 'function') {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
      'invalid argument client: a Prisma client runs each query in a transaction of its own; give the tx of ' +
      'prisma.$transaction(async (tx) => audit.revert(target, { client: tx }))', undefined, { argument: 'client' })
  }
  const orm = ormOf(client)
  if (orm && !orm.inTransaction(client)) {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
      `invalid argument client: a ${orm.name} database runs each query on whichever connection is free; give ` +
      `the transaction its transaction() hands you (or withAuditContext(db, context, (tx) => ...) does)`,
      undefined, { argument: 'client' })
  }
  if (typeof client.$queryRawUnsafe !== 'function' && typeof client.query !== 'function' && !orm) {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
      'invalid argument client: expected a pg client, the tx of a Prisma $transaction, or a transaction of ' +
      'Drizzle, Kysely, Knex, TypeORM or Sequelize', undefined, { argument: 'client' })
  }
}

/** The first column of each row, as the core reads it: text or null. */
function firstColumn(rows) {
  return (rows ?? []).map((row) => {
    const value = Array.isArray(row) ? row[0] : Object.values(row ?? {})[0]
    return value == null ? null : String(value)
  })
}

/** A statement's failure as the core takes it: what the server raised, else whether the connection is lost. */
function failureOf(error) {
  const raised = raisedBy(error)
  if (raised) return { sqlstate: raised.code, message: String(raised.message), hint: raised.hint ?? undefined }
  return { message: String(error?.message ?? error), lost: isConnectionError(error) }
}

// Core errors that come from a statement the client failed to run, whose error is their cause.
const FROM_A_STATEMENT = new Set([
  'AUDIT_LOGS_NOT_IN_TRANSACTION', 'AUDIT_LOGS_TRANSACTION_FAILED', 'AUDIT_LOGS_CONNECTION_LOST',
  'AUDIT_LOGS_PERMISSION_DENIED', 'AUDIT_LOGS_DATABASE_ERROR',
])

/**
 * Runs the revert on `client`. A statement the client failed to run without the server saying
 * why (the client's own error: a Prisma transaction already closed) ends the revert with that
 * error as is; one the server refused ends it with the core's error, the driver's as `cause`.
 */
async function revertOn(client, target, options) {
  checkClient(client)
  const { client: _client, ...rest } = options
  const run = revertRun(target, rest)
  let rows
  let failure
  let refused // the driver's error of the latest statement the client failed to run
  let own // the first failure that was the client's own
  for (;;) {
    let step
    try {
      step = run.resume(rows, failure)
    } catch (error) {
      if (own !== undefined) throw own
      if (refused !== undefined && error.cause === undefined && FROM_A_STATEMENT.has(error.code)) error.cause = refused
      throw error
    }
    if (step.report) return step.report
    try {
      rows = firstColumn(await runOn(client, step.statement))
      failure = undefined
    } catch (error) {
      rows = undefined
      failure = failureOf(error)
      refused = error
      if (failure.sqlstate === undefined && !failure.lost) own ??= error
    }
  }
}

/** `revert(target, options)`: with `options.client`, on that client; otherwise the native one. */
function revertMethods(native) {
  return {
    revert(target, options) {
      if (options?.client == null) return native.revert.call(this, target, options)
      return revertOn(options.client, target, options)
    },
  }
}

module.exports = { revertMethods }
