'use strict'
// Request scope for NestJS: an interceptor, so that it runs after guards and getActor can read
// what authentication set (`req.user`), on Nest's Express or Fastify platform. Nothing of Nest is
// required here: the interceptor has the shape Nest calls, and returns Nest's own Observable.
const { runWithAuditContext } = require('./context.js')
const { requestContext, headerValue } = require('./http.js')

/**
 * `app.useGlobalInterceptors(new AuditContextInterceptor({ getActor: (req) => ({ actorId: req.user?.id }) }))`,
 * or `@UseInterceptors(new AuditContextInterceptor(...))` on a controller. The Express
 * middleware's header rules; the request id is echoed in the response. An error of getActor, or
 * a context that cannot be stored, goes to Nest's exception filters (a 500 unless handled).
 */
class AuditContextInterceptor {
  constructor(options = {}) {
    this.options = options
  }

  async intercept(executionContext, next) {
    if (executionContext.getType() !== 'http') return next.handle()
    const http = executionContext.switchToHttp()
    const context = await requestContext(http.getRequest(), this.options)
    const echo = this.options.requestIdHeader ?? 'x-request-id'
    const response = http.getResponse()
    const value = headerValue(String(context.requestId))
    // Express's response, or Fastify's reply.
    if (typeof response.setHeader === 'function' && !response.headersSent) response.setHeader(echo, value)
    else if (typeof response.header === 'function') response.header(echo, value)
    // Nest binds the rest of the pipeline (the handler) to the async scope handle() is called
    // in. A context that cannot be stored throws here: a rejection, for the exception filters.
    return runWithAuditContext(context, () => next.handle())
  }
}

module.exports = { AuditContextInterceptor }
