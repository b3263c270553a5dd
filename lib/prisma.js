'use strict'
// Prisma 7 (with a driver adapter such as @prisma/adapter-pg): the same transaction-local
// context, set as the first statement of a transaction. No import of @prisma/client: the user's
// own client is extended.
const { currentAuditContext, effectiveContext, settingFor, asOwnError, SET_CONTEXT } = require('./context.js')
const { readMetadata, readEvent } = require('./reads.js')
const { commitFailure } = require('./pg.js')

const WRITES = new Set([
  'create', 'createMany', 'createManyAndReturn', 'update', 'updateMany', 'updateManyAndReturn',
  'upsert', 'delete', 'deleteMany', '$executeRaw', '$executeRawUnsafe',
])
// A raw query may write too (`update ... returning`): one that does not start with SELECT is
// attributed like a write. (A SELECT calling a function that writes is not: use withAuditContext.)
const RAW_QUERIES = new Set(['$queryRaw', '$queryRawUnsafe'])
const READ_ONLY_SQL = /^(?:\s|\(|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(?:select|values|table|show)\b/i

/** Whether an operation may change rows: a write, or a raw query that is not a SELECT. */
function mayWrite(operation, args) {
  if (WRITES.has(operation)) return true
  if (!RAW_QUERIES.has(operation)) return false
  // $queryRawUnsafe(text, ...values); $queryRaw`...` (a Prisma.Sql: its `strings`).
  const text = Array.isArray(args) ? args[0] : args?.sql ?? args?.strings?.join(' ')
  return !READ_ONLY_SQL.test(typeof text === 'string' ? text : '')
}

const READS = new Set([
  'findUnique', 'findUniqueOrThrow', 'findFirst', 'findFirstOrThrow', 'findMany',
])

/** `fn(tx)` in an interactive transaction whose first statement sets the context. */
async function withPrismaContext(prisma, context, fn, options = {}) {
  const setting = settingFor(context, options)
  const requestId = effectiveContext(context)?.requestId
  // A transaction client (from `db.$transaction(async (tx) => ...)`, which has no $extends) is
  // already in a transaction: opening another would run on that one, and the inner context
  // would outlive `fn`, attributing the rest of the outer transaction to it.
  if (typeof prisma.$extends !== 'function') return nestedPrisma(prisma, setting, fn)
  let committing = false
  try {
    return await prisma.$transaction(async (tx) => {
      await tx.$executeRawUnsafe(SET_CONTEXT, setting)
      const result = await fn(tx)
      committing = true
      return result
    }, options.transaction)
  } catch (error) {
    // Once fn has resolved, Prisma has only the COMMIT left to send.
    throw committing ? commitFailure(error, requestId) : asOwnError(error)
  }
}

/**
 * `fn(tx)` inside the transaction `tx` is already in: the context set for `fn`, then the outer
 * one put back (Prisma has no savepoints to do it; a failed `fn` fails the outer transaction).
 */
async function nestedPrisma(tx, setting, fn) {
  const [{ outer }] = await tx.$queryRawUnsafe("select pg_catalog.current_setting('audit.context', true) as outer")
  await tx.$executeRawUnsafe(SET_CONTEXT, setting)
  try {
    return await fn(tx)
  } catch (error) {
    throw asOwnError(error)
  } finally {
    // After a failed statement the transaction accepts nothing more; it can only roll back.
    await tx.$executeRawUnsafe(SET_CONTEXT, outer ?? '').catch(() => {})
  }
}

/**
 * A client extension: `const db = prisma.$extends(auditExtension())`. Every write of `db` is
 * attributed to `getContext()` (default: the current request's context):
 * - a write inside `db.$transaction(...)` stays in that transaction: the context is its first
 *   statement;
 * - a write on its own runs as `[set context, write]` in one batch transaction;
 * - reads add nothing, except for the models of `readAudit`, which record a `read` event.
 */
function auditExtension(options = {}) {
  const getContext = options.getContext ?? currentAuditContext
  const settingNow = () => settingFor(getContext(), options)
  const auditedModels = readAuditTargets(options.readAudit)
  const maxIds = options.readAudit?.maxIds ?? 100
  // A fallback should Prisma drop the (undocumented) transaction marker of query hooks.
  const { AsyncLocalStorage } = require('node:async_hooks')
  const inOurTransaction = new AsyncLocalStorage()

  return (client) => {
    // `client` is the client before this extension: its queries do not come back through our hooks.
    const parentTransaction = client.$transaction
    return client.$extends({
      name: 'audit-logs',
      client: {
        $transaction(input, transactionOptions) {
          // A transaction client has no $extends: we are inside a transaction that set the context.
          if (typeof this.$extends !== 'function') {
            if (typeof input === 'function') return parentTransaction.call(this, input, transactionOptions)
            // Prisma would run a batch from a transaction client on another connection, outside it.
            return (async () => {
              const results = []
              for (const query of input) results.push(await query)
              return results
            })()
          }
          const setting = settingNow()
          if (typeof input === 'function') {
            return parentTransaction.call(this, (tx) => inOurTransaction.run(true, async () => {
              await tx.$executeRawUnsafe(SET_CONTEXT, setting)
              return input(tx)
            }), transactionOptions)
          }
          return inOurTransaction.run(true, () =>
            parentTransaction.call(this, [client.$executeRawUnsafe(SET_CONTEXT, setting), ...input], transactionOptions))
            .then((results) => results.slice(1), (error) => { throw asOwnError(error) })
        },
      },
      query: {
        async $allOperations({ model, operation, args, query, __internalParams }) {
          if (mayWrite(operation, args)) {
            const inTransaction = __internalParams
              ? __internalParams.transaction !== undefined
              : inOurTransaction.getStore() === true
            try {
              // Re-wrapping a write that is in a transaction would move it out of that transaction.
              if (inTransaction) return await query(args)
              const setting = settingNow()
              if (setting === '') return await query(args)
              const [, result] = await client.$transaction([client.$executeRawUnsafe(SET_CONTEXT, setting), query(args)])
              return result
            } catch (error) {
              throw asOwnError(error)
            }
          }
          const result = await query(args)
          const target = READS.has(operation) && auditedModels.get(model)
          if (target) {
            const rows = Array.isArray(result) ? result : result == null ? [] : [result]
            const metadata = { model, operation, ...readMetadata(rows, 'id', maxIds) }
            const { text, values } = readEvent(target, metadata, getContext())
            await client.$queryRawUnsafe(text, ...values)
          }
          return result
        },
      },
    })
  }
}

/** `['Patient']` (target type: the model name) or `{ Patient: 'public.patients' }`. */
function readAuditTargets(readAudit) {
  const models = readAudit?.models ?? []
  return new Map(Array.isArray(models) ? models.map((m) => [m, m]) : Object.entries(models))
}

module.exports = { withPrismaContext, auditExtension, READ_ONLY_SQL }
