'use strict'
// withAuditContext for node-postgres: one transaction, the context set transaction-locally first
// (so it is safe behind transaction-mode poolers and never leaks to the connection's next user).
const { settingFor, codedError } = require('./context.js')

const SET_CONTEXT = "select pg_catalog.set_config('audit.context', $1, true)"

/** A pg.Pool (or anything with connect() handing out clients that release()). */
function isPool(target) {
  return typeof target.connect === 'function' && typeof target.query === 'function' && 'totalCount' in target
}

function isPgClient(target) {
  return typeof target.query === 'function' && typeof target.getTransactionStatus === 'function'
}

// Savepoint depth per client, so nested calls get distinct names.
const depth = new WeakMap()

/**
 * Runs `fn(client)` in a transaction attributed to `context`: BEGIN, set the context, `fn`,
 * COMMIT; ROLLBACK and rethrow on error. Given a pool it checks a client out and always releases
 * it. On a client already in a transaction (a nested call, or one the caller began) it uses a
 * savepoint instead, and restores the outer context afterwards.
 */
async function withPgContext(target, context, fn, options) {
  const setting = settingFor(context, options)
  const client = isPool(target) ? await target.connect() : target
  let broken
  try {
    const status = client.getTransactionStatus()
    if (status === 'E') {
      throw codedError('AUDIT_LOGS_TRANSACTION_FAILED',
        'the client is in a failed transaction: roll it back before withAuditContext()')
    }
    return status === 'T' ? await nested(client, setting, fn) : await outermost(client, setting, fn)
  } catch (error) {
    broken = isConnectionError(error) ? error : undefined
    throw error
  } finally {
    if (client !== target) client.release(broken)
  }
}

async function outermost(client, setting, fn) {
  await client.query('begin')
  try {
    await client.query(SET_CONTEXT, [setting])
    const result = await fn(client)
    await client.query('commit')
    return result
  } catch (error) {
    await client.query('rollback').catch(() => {})
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

/** Errors after which the connection must not go back to the pool. */
function isConnectionError(error) {
  return error != null && (error.code === 'ECONNRESET' || error.code === 'EPIPE' ||
    /Connection terminated|connection is closed|not queryable/i.test(String(error.message)))
}

module.exports = { withPgContext, isPool, isPgClient }
