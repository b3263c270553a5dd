'use strict'
// The native binding is the API; this file adds what only JavaScript can do: request-scoped
// context and the wrappers for node-postgres, Prisma, the ORMs (lib/orms.js), Express, Fastify,
// NestJS and fetch-style handlers, and running a revert on the caller's own client.
const { runWithAuditContext, currentAuditContext, codedError, serialize, scopedTo } = require('./lib/context.js')
const { withPgContext, isPool, isPgClient } = require('./lib/pg.js')
const { auditContextMiddleware, auditContextPlugin } = require('./lib/http.js')
const { auditRead } = require('./lib/reads.js')
const { withPrismaContext, auditExtension } = require('./lib/prisma.js')
const { eventMethods } = require('./lib/events.js')
const { revertMethods } = require('./lib/revert.js')
const { guardArguments } = require('./lib/arguments.js')
const { auditViewer, auditViewerPlugin } = require('./lib/viewer.js')
const { ormOf, withOrmContext } = require('./lib/orms.js')
const { auditContextFromRequest, withRequestContext } = require('./lib/fetch.js')
const { AuditContextInterceptor } = require('./lib/nest.js')
const { auditDialect } = require('./lib/kysely.js')
// binding.js, or in a bundle for workerd audit-logs-workerd's WebAssembly build (package.json's imports).
const binding = require('#binding')

/**
 * Runs `fn` in a transaction whose changes are attributed to `context` (or, when it is null, to
 * the current request's context). `target` is a pg Pool or Client, a Prisma client, or a
 * Drizzle, Kysely, Knex, TypeORM or Sequelize database (or a transaction of one: a savepoint then).
 */
function withAuditContext(target, context, fn, options) {
  if (typeof context === 'function') return withAuditContext(target, undefined, context, fn)
  // Inside fn, this call's context is the current one: nested calls merge over it.
  const inScope = scopedTo(context, fn)
  if (target != null && typeof target.$transaction === 'function') {
    return withPrismaContext(target, context, inScope, options)
  }
  if (target != null && (isPool(target) || isPgClient(target))) {
    return withPgContext(target, context, inScope, options)
  }
  const orm = ormOf(target)
  if (orm) return withOrmContext(orm, target, context, inScope, options)
  return Promise.reject(codedError('AUDIT_LOGS_INVALID_ARGUMENT',
    'withAuditContext needs a pg Pool or Client, a Prisma client, or a Drizzle, Kysely, Knex, TypeORM or Sequelize database, as its first argument'))
}

// The native methods stay reachable from the ones that wrap them.
const { log, logMany, revert } = binding.AuditLogs.prototype
Object.assign(binding.AuditLogs.prototype, eventMethods({ log, logMany }), revertMethods({ revert }))
guardArguments(binding.AuditLogs)

/** The usual actor types; `actorType` also takes any other string. */
const ActorType = Object.freeze({
  USER: 'user',
  SYSTEM: 'system',
  API_KEY: 'api_key',
  MODERATOR: 'moderator',
  MIGRATION: 'migration',
})

// The public API, named one by one (the binding's helpers for lib/ and bin/ stay internal), and
// written so that Node's static export detection sees every name (ESM `import { x }` works).
module.exports.AuditLogs = binding.AuditLogs
module.exports.TemporaryPostgres = binding.TemporaryPostgres
module.exports.verifyArchive = binding.verifyArchive
module.exports.serializeContext = serialize
module.exports.ActorType = ActorType
module.exports.withAuditContext = withAuditContext
module.exports.runWithAuditContext = runWithAuditContext
module.exports.currentAuditContext = currentAuditContext
module.exports.auditContextMiddleware = auditContextMiddleware
module.exports.auditContextPlugin = auditContextPlugin
module.exports.withRequestContext = withRequestContext
module.exports.auditContextFromRequest = auditContextFromRequest
module.exports.AuditContextInterceptor = AuditContextInterceptor
module.exports.auditRead = auditRead
module.exports.auditExtension = auditExtension
module.exports.auditViewer = auditViewer
module.exports.auditViewerPlugin = auditViewerPlugin
module.exports.auditDialect = auditDialect
