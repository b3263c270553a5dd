'use strict'
// Request scope for fetch-style handlers, `(Request) => Response`: Next.js route handlers, Remix
// and React Router loaders and actions (`{ request }`), SvelteKit and Astro endpoints, Hono
// (`c`, its `c.req.raw`), Bun and Deno servers. The Express middleware's header rules: what
// cannot be stored is cut or dropped, and an error (getActor's) rejects the handler, for the
// framework's error handling, and never escapes elsewhere.
const { randomUUID } = require('node:crypto')
const { storableRequestParts } = require('#binding')
const { runWithAuditContext } = require('./context.js')
const { headerText, headerValue } = require('./http.js')

/** The Request in what a handler receives: itself, `{ request }`, or Hono's context. */
function requestOf(input) {
  if (typeof input?.headers?.get === 'function') return input
  if (typeof input?.request?.headers?.get === 'function') return input.request
  if (typeof input?.req?.raw?.headers?.get === 'function') return input.req.raw
  return undefined
}

/**
 * The audit context of a fetch request (or of anything whose `headers` has `get()`, such as
 * Next.js's `headers()` in a server action): user agent, request id (the header, else a new
 * UUID), the IP `getIp` gives (a fetch Request carries none), then what `getActor` adds.
 * `getActor` and `getIp` receive `input` as given.
 */
async function auditContextFromRequest(input, options = {}) {
  const request = requestOf(input)
  const header = (name) => {
    const value = request?.headers.get(name)
    return typeof value === 'string' ? headerText(value) : undefined
  }
  const ip = options.getIp ? await options.getIp(input) : undefined
  const parts = storableRequestParts({
    ipAddress: typeof ip === 'string' ? ip : undefined,
    userAgent: header('user-agent'),
    requestId: header(options.requestIdHeader ?? 'x-request-id'),
  })
  const actor = options.getActor ? await options.getActor(input) : undefined
  const context = { ...parts, requestId: parts.requestId ?? randomUUID(), ...actor }
  return Object.fromEntries(Object.entries(context).filter(([, value]) => value !== undefined && value !== null))
}

/**
 * Wraps a fetch-style handler: `export const POST = withRequestContext(async (request) => ...,
 * { getActor })`. The handler runs with the request's audit context, and the request id is
 * echoed in its response (`x-request-id`, or `requestIdHeader`) unless the handler set it.
 */
function withRequestContext(handler, options = {}) {
  const echo = options.requestIdHeader ?? 'x-request-id'
  return async function handleWithAuditContext(input, ...rest) {
    const context = await auditContextFromRequest(input, options)
    const response = await runWithAuditContext(context, () => handler.call(this, input, ...rest))
    const value = headerValue(String(context.requestId))
    // Hono middleware resolves to what next() gives (the context): the response is on the context.
    if ((response === undefined || response === input) && typeof input?.header === 'function' && input.res) {
      if (!input.res.headers.has(echo)) input.header(echo, value)
      return response
    }
    return withHeader(response, echo, value)
  }
}

/** The response with `name` set, unless it has one; a copy when its headers are immutable. */
function withHeader(response, name, value) {
  if (typeof response?.headers?.set !== 'function' || response.headers.has(name)) return response
  try {
    response.headers.set(name, value)
    return response
  } catch {
    // Response.redirect() and fetch() responses have immutable headers.
    const copy = new Response(response.body, response)
    copy.headers.set(name, value)
    return copy
  }
}

module.exports = { auditContextFromRequest, withRequestContext }
