'use strict'
// Request scope for Express and Fastify (NestJS: lib/nest.js, fetch handlers: lib/fetch.js): every
// database call made while handling a request carries who made it, from where, and the request
// id. Headers are the attacker's: what cannot be stored is cut or dropped (by the core), and no
// error escapes to crash the server; each goes to the framework's error handling.
const { randomUUID } = require('node:crypto')
const { storableRequestParts } = require('#binding')
const { runWithAuditContext } = require('./context.js')

/**
 * A header's text. Node reads header bytes as Latin-1, while clients send UTF-8: bytes that are
 * valid UTF-8 are read as such (`req-café`, not `req-cafÃ©`); any others stay as Node read them.
 */
function headerText(value) {
  if (typeof value !== 'string' || !/[\u0080-\u00ff]/.test(value) || /[^\u0000-\u00ff]/.test(value)) return value
  const text = Buffer.from(value, 'latin1').toString('utf8')
  return text.includes('\ufffd') ? value : text
}

/** A request id as a header value: its UTF-8 bytes, as Node writes a Latin-1 string. */
function headerValue(text) {
  return /[^\u0000-\u00ff]/.test(text) ? Buffer.from(text, 'utf8').toString('latin1') : text
}

/** The context of a request: IP, user agent, request id, then whatever getActor adds. */
async function requestContext(request, { getActor, requestIdHeader = 'x-request-id' } = {}) {
  const headers = request.headers ?? {}
  const header = (name) => (typeof headers[name] === 'string' ? headerText(headers[name]) : undefined)
  const parts = storableRequestParts({
    ipAddress: request.ip ?? request.socket?.remoteAddress,
    userAgent: header('user-agent'),
    requestId: header(requestIdHeader) ?? request.id?.toString?.(),
  })
  const actor = getActor ? await getActor(request) : undefined
  const context = { ...parts, requestId: parts.requestId ?? randomUUID(), ...actor }
  return Object.fromEntries(Object.entries(context).filter(([, value]) => value !== undefined && value !== null))
}

/**
 * Express middleware: `app.use(auditContextMiddleware({ getActor: (req) => ({ actorId: req.user?.id }) }))`.
 * Echoes the request id in the response (`x-request-id`, or `requestIdHeader`).
 */
function auditContextMiddleware(options = {}) {
  const echo = options.requestIdHeader ?? 'x-request-id'
  return function auditContext(req, res, next) {
    requestContext(req, options)
      .then((context) => {
        if (!res.headersSent) res.setHeader(echo, headerValue(String(context.requestId)))
        runWithAuditContext(context, next)
      })
      .catch(next)
  }
}

/**
 * Fastify plugin: `app.register(auditContextPlugin, { getActor })`. Runs at `preHandler` by
 * default, after authentication hooks, so getActor can read what they set.
 */
function auditContextPlugin(fastify, options, done) {
  const echo = options.requestIdHeader ?? 'x-request-id'
  fastify.addHook(options.hook ?? 'preHandler', (request, reply, next) => {
    requestContext(request, options)
      .then((context) => {
        reply.header(echo, headerValue(String(context.requestId)))
        runWithAuditContext(context, () => next())
      })
      .catch(next)
  })
  done()
}
// Not encapsulated: the hook applies to every route of the instance that registers it.
auditContextPlugin[Symbol.for('skip-override')] = true

module.exports = { auditContextMiddleware, auditContextPlugin, requestContext, headerText, headerValue }
