'use strict'
// napi converts each argument before the core sees it; what it cannot convert (a NaN or an
// Infinity where JSON is stored, a string where a number goes) fails with napi's own error
// (`InvalidArg`, `NumberExpected`...). Recast as audit-logs' coded error naming the field, and
// rejected rather than thrown, as every other failure of these methods is.
const { codedError } = require('./context.js')

const NAPI_ARGUMENT_CODES = /^(InvalidArg|\w+Expected)$/

/** The path of the first NaN or infinity in `value` (`input.metadata.score`), if any. */
function nonFinitePath(value, path, seen = new Set()) {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path
  if (value === null || typeof value !== 'object' || value instanceof Date || seen.has(value)) return undefined
  seen.add(value)
  for (const [key, item] of Object.entries(value)) {
    const found = nonFinitePath(item, Array.isArray(value) ? `${path}[${key}]` : `${path}.${key}`, seen)
    if (found) return found
  }
  return undefined
}

function recastArgumentError(error, args = []) {
  if (!NAPI_ARGUMENT_CODES.test(String(error?.code))) return error
  const message = String(error.message ?? '')
  const notJson = /serde_json::Number/.test(message)
  // napi names the field for some conversions: "... on HistoryOptions.id".
  const field = (notJson && args.map((arg) => nonFinitePath(arg, '')).find(Boolean)?.replace(/^\./, ''))
    || / on [A-Za-z]+\.([\w.]+)$/.exec(message)?.[1]
  const reason = notJson ? 'NaN and Infinity are not numbers JSON can hold' : message
  return codedError('AUDIT_LOGS_INVALID_ARGUMENT', `invalid argument${field ? ` ${field}` : ''}: ${reason}`,
    { cause: error }, { argument: field })
}

/** Wraps every method of `klass` so that napi's argument errors become coded rejections. */
function guardArguments(klass) {
  for (const name of Object.getOwnPropertyNames(klass.prototype)) {
    const method = klass.prototype[name]
    if (typeof method !== 'function' || name === 'constructor') continue
    // `entries` (an async generator) recasts its own errors as it iterates.
    if (Object.getPrototypeOf(method) === Object.getPrototypeOf(async function* () {})) continue
    const guarded = function (...args) {
      let result
      try {
        result = method.apply(this, args)
      } catch (error) {
        const recast = recastArgumentError(error, args)
        if (recast !== error) return Promise.reject(recast)
        throw error
      }
      return result instanceof Promise ? result.catch((error) => { throw recastArgumentError(error, args) }) : result
    }
    Object.defineProperty(klass.prototype, name, { ...Object.getOwnPropertyDescriptor(klass.prototype, name), value: guarded })
  }
}

module.exports = { guardArguments, recastArgumentError }
