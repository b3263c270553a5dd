'use strict'
// The request-scoped audit context: set once per request (or job), read by every wrapper below
// it, across await, timers and promise chains (AsyncLocalStorage).
const { AsyncLocalStorage } = require('node:async_hooks')
const { serializeContext, ownError } = require('#binding')

const storage = new AsyncLocalStorage()

/**
 * Runs `fn` with `context` as the audit context of everything it starts. Validates first.
 * A lazy thenable returned by `fn` (a Prisma query not awaited: `() => db.post.update(...)`)
 * only starts when someone calls its `then`, which the caller does outside `fn`: it is started
 * here, inside the context, and its result returned as a Promise. A Promise, already running,
 * is returned as is.
 */
function runWithAuditContext(context, fn) {
  serialize(context)
  return runInContext(context, fn)
}

/** runWithAuditContext without the validation, for a context already checked. */
function runInContext(context, fn) {
  return storage.run(Object.freeze({ ...context }), () => {
    const result = fn()
    if (result instanceof Promise || result == null || typeof result.then !== 'function') return result
    return new Promise((resolve, reject) => result.then(resolve, reject))
  })
}

/**
 * `fn` of a wrapper call, run with the call's context (given over the current one) as the
 * current one: a nested call's partial context (`{ reason }`) then merges over the enclosing
 * call's, as it does over the request's, and `log()` and `currentAuditContext()` inside `fn`
 * see it too. Without a context given, `fn` as is.
 */
function scopedTo(context, fn) {
  if (context == null || typeof fn !== 'function') return fn
  return (...args) => runInContext(effectiveContext(context), () => fn(...args))
}

/** The audit context of the current request or job, if any. */
function currentAuditContext() {
  return storage.getStore()
}

/** The context a wrapper call uses: the one given over the current one (shallow: for its ids). */
function effectiveContext(context) {
  const current = storage.getStore()
  return context == null ? current : { ...current, ...context }
}

/**
 * A JS error with a stable `code` (one of `AuditLogsErrorCode`), like the ones the native layer
 * throws; `options.cause`, and `fields` (`{ sqlstate, hint }`) set on it as the native layer sets
 * its structured fields.
 */
function codedError(code, message, options, fields) {
  const error = new Error(message, options)
  error.code = code
  for (const [name, value] of Object.entries(fields ?? {})) {
    if (value != null) error[name] = value
  }
  return error
}

/**
 * A driver's error as audit-logs' own when it carries one of its SQLSTATEs (a table requiring
 * a context refused an unattributed write: `AL006` from node-postgres, `P2039` wrapping it from
 * Prisma): the code and message the native API gives (`AUDIT_LOGS_CONTEXT_REQUIRED`), the
 * driver's error as `cause`. Any other error is returned as is.
 */
function asOwnError(error) {
  const raised = sqlstateOf(error)
  const own = raised && ownError(raised.code, raised.message, raised.hint ?? null)
  if (!own) return error
  return codedError(own.code, own.message, { cause: error }, { sqlstate: raised.code, hint: raised.hint })
}

const OWN_SQLSTATE = /^AL[0-9A-Z]{3}$/
const SQLSTATE = /^[0-9A-Z]{5}$/

/** The SQLSTATE, message and hint of one of audit-logs' own errors raised through a driver. */
function sqlstateOf(error) {
  const raised = raisedBy(error)
  return raised && OWN_SQLSTATE.test(raised.code) ? raised : undefined
}

/**
 * The SQLSTATE, message and hint of an error the server raised, as node-postgres (a
 * DatabaseError: it has a `severity`; Node's own `EPIPE` has not), Prisma (driver adapter) or an
 * ORM wrapping pg's error (as `cause`) reports it.
 */
function raisedBy(error, depth = 0) {
  if (error == null || typeof error !== 'object') return undefined
  if (typeof error.code === 'string' && (OWN_SQLSTATE.test(error.code) ||
      (SQLSTATE.test(error.code) && typeof error.severity === 'string'))) {
    return { code: error.code, message: error.message, hint: error.hint }
  }
  const cause = error.meta?.driverAdapterError?.cause
  if (cause != null && SQLSTATE.test(cause.originalCode ?? '')) {
    return { code: cause.originalCode, message: cause.originalMessage ?? error.message, hint: cause.hint }
  }
  return depth < 3 ? raisedBy(error.cause, depth + 1) : undefined
}

/**
 * The `audit.context` value for a wrapper call: the context given over the current one (a
 * `{ reason }` inside a request keeps the request's actor, IP and request id), else the current
 * one. Returns '' for none (which the triggers read as "no context"), or throws when
 * `requireContext` asks for one.
 */
function settingFor(context, options = {}) {
  const current = storage.getStore()
  if (context == null && current == null) {
    if (options.requireContext) {
      throw codedError(
        'AUDIT_LOGS_CONTEXT_REQUIRED',
        'no audit context: pass one to withAuditContext() or run inside runWithAuditContext() or the middleware',
      )
    }
    return ''
  }
  return (context == null ? serialize(current) : serialize(context, current)) ?? ''
}

/**
 * serializeContext, after refusing a number that is not finite (`Number(header)` of a bad
 * header is NaN) by name: the native layer cannot take one, and its error names no field.
 */
function serialize(context, base) {
  for (const value of [context, base]) {
    const found = nonFinite(value, '')
    if (found) {
      throw codedError('AUDIT_LOGS_INVALID_CONTEXT',
        `invalid audit context: ${found.path} is ${found.value}, which cannot be stored; pass a string or an integer`)
    }
  }
  return base === undefined ? serializeContext(context) : serializeContext(context, base)
}

/** Where a NaN or an infinity sits in a value (a key path), if anywhere. */
function nonFinite(value, path) {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : { path, value }
  if (value === null || typeof value !== 'object') return undefined
  for (const [key, inner] of Object.entries(value)) {
    const found = nonFinite(inner, path ? `${path}.${key}` : key)
    if (found) return found
  }
  return undefined
}

/** Sets a setting from settingFor() for the rest of the transaction (marked as this transaction's). */
const SET_CONTEXT = 'select audit.set_checked_context($1)'

module.exports = {
  runWithAuditContext, currentAuditContext, effectiveContext, scopedTo, settingFor, codedError, asOwnError,
  SET_CONTEXT, serialize, raisedBy,
}
