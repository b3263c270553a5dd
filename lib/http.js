'use strict'
// Request scope for Express and Fastify: every database call made while handling a request
// carries who made it, from where, and the request id.
const { randomUUID } = require('node:crypto')
const { runWithAuditContext } = require('./context.js')

/** The client address, with IPv4-mapped IPv6 (::ffff:1.2.3.4) shown as the IPv4 it is. */
function clientIp(address) {
  if (typeof address !== 'string' || address === '') return undefined
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** The context of a request: IP, user agent, request id, then whatever getActor adds. */
async function requestContext(request, { getActor, requestIdHeader = 'x-request-id' } = {}) {
  const headers = request.headers ?? {}
  const actor = getActor ? await getActor(request) : undefined
  const context = {
    ipAddress: clientIp(request.ip ?? request.socket?.remoteAddress),
    userAgent: headers['user-agent'] || undefined,
    requestId: headers[requestIdHeader] || request.id?.toString?.() || randomUUID(),
    ...actor,
  }
  return Object.fromEntries(Object.entries(context).filter(([, value]) => value !== undefined && value !== null))
}

/** Express middleware: `app.use(auditContextMiddleware({ getActor: (req) => ({ actorId: req.user?.id }) }))`. */
function auditContextMiddleware(options = {}) {
  return function auditContext(req, res, next) {
    requestContext(req, options).then((context) => runWithAuditContext(context, next), next)
  }
}

/**
 * Fastify plugin: `app.register(auditContextPlugin, { getActor })`. Runs at `preHandler` by
 * default, after authentication hooks, so getActor can read what they set.
 */
function auditContextPlugin(fastify, options, done) {
  fastify.addHook(options.hook ?? 'preHandler', (request, reply, next) => {
    requestContext(request, options).then((context) => runWithAuditContext(context, () => next()), next)
  })
  done()
}
// Not encapsulated: the hook applies to every route of the instance that registers it.
auditContextPlugin[Symbol.for('skip-override')] = true

module.exports = { auditContextMiddleware, auditContextPlugin, requestContext }
