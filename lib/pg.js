'use strict'
// withAuditContext for node-postgres: one transaction, the context set transaction-locally first
// (so it is safe behind transaction-mode poolers and never leaks to the connection's next user).
const { endsSession } = require('#binding')
const { effectiveContext, settingFor, codedError, asOwnError, SET_CONTEXT } = require('./context.js')

/** A pg.Pool (or anything with connect() handing out clients that release()). */
function isPool(target) {
  return typeof target.connect === 'function' && typeof target.query === 'function' && 'totalCount' in target
}

/** A pg.Client, or one of a driver built on pg's (Neon's serverless Client), of any version. */
function isPgClient(target) {
  return typeof target.query === 'function' &&
    (typeof target.getTransactionStatus === 'function' ||
      (typeof target.escapeLiteral === 'function' && typeof target.escapeIdentifier === 'function'))
}

// Savepoint depth per client, so nested calls get distinct names.
const depth = new WeakMap()

/**
 * Runs `fn(client)` in a transaction attributed to `context`: BEGIN, set the context, `fn`,
 * COMMIT; ROLLBACK and rethrow on error. Given a pool it checks a client out and always releases
 * it, discarding it if its connection was lost. On a client already in a transaction (a nested
 * call, or one the caller began) it uses a savepoint instead, and restores the outer context
 * afterwards.
 */
async function withPgContext(target, context, fn, options) {
  const setting = settingFor(context, options)
  const requestId = effectiveContext(context)?.requestId
  const client = isPool(target) ? await target.connect() : target
  // pg reports a connection lost between queries as an 'error' event, which crashes the process
  // when nobody listens (a checked-out client has no listener): note it, and let queries fail.
  let lost
  const onError = (error) => { lost ??= error }
  client.on('error', onError)
  try {
    const status = await transactionStatus(client, client !== target)
    if (status === 'E') {
      throw codedError('AUDIT_LOGS_TRANSACTION_FAILED',
        'the client is in a failed transaction: roll it back before withAuditContext()')
    }
    return status === 'T'
      ? await nested(client, setting, fn)
      : await outermost(client, setting, fn, requestId)
  } catch (error) {
    if (isConnectionError(error)) lost ??= error
    throw asOwnError(error)
  } finally {
    client.removeListener('error', onError)
    // Released with an error, the pool destroys the client instead of handing it out again.
    if (client !== target) client.release(lost)
  }
}

async function outermost(client, setting, fn, requestId) {
  await client.query('begin')
  let result
  try {
    await client.query(SET_CONTEXT, [setting])
    result = await fn(client)
  } catch (error) {
    await client.query('rollback').catch(() => {})
    throw error
  }
  try {
    await client.query('commit')
  } catch (error) {
    throw commitFailure(error, requestId)
  }
  return result
}

/**
 * The error to throw for a failed COMMIT. The server rolls back a COMMIT it answers with an
 * error (a deferred constraint, a serialization failure): that error as is. A COMMIT whose
 * answer was lost may have committed: AUDIT_LOGS_COMMIT_UNKNOWN, unless pg never sent it.
 */
function commitFailure(error, requestId) {
  if (!isConnectionError(error) || NOT_SENT.test(String(error.message))) return error
  return commitUnknown(error, requestId)
}

/** AUDIT_LOGS_COMMIT_UNKNOWN, `error` as its cause. */
function commitUnknown(error, requestId) {
  const lookup = requestId == null
    ? 'look for its audit rows (give the context a requestId and use audit.byRequest(requestId))'
    : `look for its audit rows with audit.byRequest(${JSON.stringify(requestId)})`
  return codedError('AUDIT_LOGS_COMMIT_UNKNOWN',
    'the connection was lost while COMMIT was in flight, so the transaction may or may not have ' +
    'committed; its changes and their audit rows committed together or not at all. Before ' +
    `retrying, find out: ${lookup}, or re-read the data it changed`, { cause: error })
}

/**
 * 'I' (idle), 'T' (in a transaction) or 'E' (in a failed one). pg 8.14+ clients say; older ones,
 * and drivers built on them (Neon's serverless Pool), do not. A client just checked out of a pool
 * is idle; another is asked: only the first statement of a transaction starts when it does, and
 * in a transaction block that is BEGIN. In a failed transaction the question fails with 25P02.
 */
async function transactionStatus(client, checkedOut) {
  if (typeof client.getTransactionStatus === 'function') return client.getTransactionStatus()
  if (checkedOut) return 'I'
  try {
    const { rows } = await client.query(
      'select pg_catalog.statement_timestamp() operator(pg_catalog.=) pg_catalog.transaction_timestamp() as idle')
    return rows[0].idle ? 'I' : 'T'
  } catch (error) {
    if (error?.code === '25P02') return 'E'
    throw error
  }
}

async function nested(client, setting, fn) {
  const level = (depth.get(client) ?? 0) + 1
  const savepoint = `audit_logs_${level}`
  depth.set(client, level)
  try {
    const { rows } = await client.query("select pg_catalog.current_setting('audit.context', true) as outer")
    await client.query(`savepoint ${savepoint}`)
    try {
      await client.query(SET_CONTEXT, [setting])
      const result = await fn(client)
      await client.query(`release savepoint ${savepoint}`)
      // Set inside the savepoint, the inner context would outlive it: put the outer one back.
      await client.query(SET_CONTEXT, [rows[0].outer ?? ''])
      return result
    } catch (error) {
      // Rolling back to the savepoint also restores the outer context.
      await client.query(`rollback to savepoint ${savepoint}`).catch(() => {})
      throw error
    }
  } finally {
    depth.set(client, level - 1)
  }
}

const SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'])
// pg's error for a query it did not send, its connection being already lost or closed.
const NOT_SENT = /not queryable/

/** Errors after which the connection must not go back to the pool. */
function isConnectionError(error) {
  if (error == null) return false
  const code = typeof error.code === 'string' ? error.code : ''
  return (/^[0-9A-Z]{5}$/.test(code) && endsSession(code)) || SOCKET_ERRORS.has(code) ||
    // pg's own errors for a lost or closed connection carry no code.
    /Connection terminated|connection is closed|not queryable/i.test(String(error.message))
}

module.exports = { withPgContext, isPool, isPgClient, commitFailure, commitUnknown, isConnectionError }
