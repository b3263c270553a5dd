'use strict'
// The request-scoped audit context: set once per request (or job), read by every wrapper below
// it, across await, timers and promise chains (AsyncLocalStorage).
const { AsyncLocalStorage } = require('node:async_hooks')
const { serializeContext } = require('../binding.js')

const storage = new AsyncLocalStorage()

/** Runs `fn` with `context` as the audit context of everything it starts. Validates first. */
function runWithAuditContext(context, fn) {
  serializeContext(context)
  return storage.run(Object.freeze({ ...context }), fn)
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

/** A JS error with a stable `code`, like the ones the native layer throws; `options.cause`. */
function codedError(code, message, options) {
  const error = new Error(message, options)
  error.code = code
  return error
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
  return (context == null ? serializeContext(current) : serializeContext(context, current)) ?? ''
}

/** Sets a setting from settingFor() for the rest of the transaction (marked as this transaction's). */
const SET_CONTEXT = 'select audit.set_checked_context($1)'

module.exports = { runWithAuditContext, currentAuditContext, effectiveContext, settingFor, codedError, SET_CONTEXT }
