'use strict'
// The history viewer: a page and a small read-only JSON API over the query helpers, mounted in
// an Express or Fastify app (auditViewer, auditViewerPlugin) or served by `audit-logs ui`. Every
// asset ships in the package (no CDN, no build step); every route asks `authorize(req)` first.
const { readFileSync } = require('node:fs')
const path = require('node:path')
const { entryColumns, parseRecordId: recordId } = require('#binding')
const { codedError } = require('./context.js')

const ASSETS = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
}
const assets = new Map()
function asset(name) {
  if (!assets.has(name)) assets.set(name, readFileSync(path.join(__dirname, 'viewer', name)))
  return assets.get(name)
}

// No script, style or connection leaves the page's own origin; no framing by other sites.
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}

/** The filters a query string may set; anything else is ignored. */
const FILTER_PARAMS = ['table', 'targetId', 'action', 'actorId', 'actorType', 'actorEmail', 'requestId',
  'txid', 'changedField', 'from', 'to', 'metadataContains']
const PAGE_SIZE = 50
const MAX_PAGE = 500

function filtersFrom(query) {
  const filters = {}
  for (const name of FILTER_PARAMS) {
    const value = query.get(name)
    if (value == null || value === '') continue
    if (name === 'txid') filters.txid = integer(value, 'txid')
    else if (name === 'targetId') filters.targetId = recordId(value)
    else if (name === 'metadataContains') filters.metadataContains = json(value, 'metadataContains')
    else if (name === 'action' && value.includes(',')) filters.action = value.split(',').map((a) => a.trim())
    else filters[name] = value
  }
  return filters
}

function integer(text, name) {
  if (!/^\d{1,18}$/.test(text)) throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', `${name} must be a whole number`)
  return Number(text)
}

function json(text, name) {
  try {
    return JSON.parse(text)
  } catch {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', `${name} must be JSON`)
  }
}

/**
 * What `authorize(req)` allows: `true` everything; an object `{ filters }` only what those
 * filters select (they are applied to every query, over the user's own); anything else nothing.
 */
async function scopeOf(authorize, req) {
  const verdict = await authorize(req)
  if (verdict === true) return { full: true, filters: {} }
  if (verdict != null && typeof verdict === 'object' && verdict.filters != null && typeof verdict.filters === 'object') {
    return { full: false, filters: verdict.filters }
  }
  return null
}

function send(res, status, body, type) {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type })
  res.end(body)
}

function sendJson(res, status, value) {
  send(res, status, JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v)),
    'application/json; charset=utf-8')
}

function errorStatus(error) {
  switch (error?.code) {
    case 'AUDIT_LOGS_INVALID_ARGUMENT':
    case 'AUDIT_LOGS_INVALID_TABLE_NAME':
    case 'AUDIT_LOGS_INVALID_COLUMN':
      return 400
    case 'AUDIT_LOGS_TABLE_NOT_FOUND':
      return 404
    case 'AUDIT_LOGS_PERMISSION_DENIED':
      return 403
    default:
      return 500
  }
}

// The CLI's CSV: the log's column names as the header, each read from the entry's field.
const CSV_COLUMNS = entryColumns()
const fieldOf = (column) => column.replace(/_([a-z])/g, (_, letter) => letter.toUpperCase())

function csvField(value) {
  if (value == null) return ''
  const text = value instanceof Date ? value.toISOString()
    : typeof value === 'object' ? JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
      : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

function recordOf(query) {
  const table = query.get('table')
  const id = query.get('id')
  if (!table || !id) throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', 'a record needs table and id')
  return { table, id: recordId(id) }
}

const ROW_CHANGES = new Set(['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])

// JavaScript dates drop the microseconds of createdAt: the end of its millisecond is at or
// after the entry, and before any entry of a later millisecond.
const endOfMillisecond = (date) => date.toISOString().replace(/Z$/, '999Z')

/**
 * The whole record after each of `entries` (null for an event), as `statesAt` gives it at the
 * entry's time: one query. A state that comes from an entry a scoped viewer cannot see is
 * withheld; a target that is not a table has none.
 */
async function statesAfter(audit, table, id, entries, scope) {
  const changes = entries.filter((entry) => ROW_CHANGES.has(entry.action))
  if (changes.length === 0) return entries.map(() => null)
  let points
  try {
    points = await audit.statesAt({ table, points: changes.map((entry) => ({ id, at: endOfMillisecond(entry.createdAt) })) })
  } catch (error) {
    if (error?.code === 'AUDIT_LOGS_TABLE_NOT_FOUND') return entries.map(() => null)
    throw error
  }
  const visible = new Set(entries.map((entry) => entry.id))
  const byEntry = new Map(changes.map((entry, i) => [entry.id, points[i]]))
  return entries.map((entry) => {
    const point = byEntry.get(entry.id)
    if (point == null) return null
    if (!scope.full && point.entryId != null && !visible.has(point.entryId)) return { state: null, entryId: null, withheld: true }
    return { state: point.state, entryId: point.entryId }
  })
}

/** The ids of a record's entries a scoped viewer may see. */
async function visibleIds(audit, table, id, scope) {
  const page = await audit.search({ table, targetId: id, ...scope.filters }, { limit: MAX_PAGE })
  return new Set(page.entries.map((entry) => entry.id))
}

/** The API routes: each reads through the query helpers, scoped by `authorize`. */
const ROUTES = {
  async search(audit, query, scope) {
    const limit = Math.min(query.has('limit') ? integer(query.get('limit'), 'limit') : PAGE_SIZE, MAX_PAGE)
    const page = { limit }
    if (query.get('cursor')) page.cursor = query.get('cursor')
    return audit.search({ ...filtersFrom(query), ...scope.filters }, page)
  },
  // A record's entries as history gives them (following renames and key changes, with the
  // events about it), each with the whole record after it (statesAt: the core's state rule); a
  // scoped viewer gets them through search, where its filters apply.
  async record(audit, query, scope) {
    const { table, id } = recordOf(query)
    const entries = scope.full
      ? await audit.history({ table, id, limit: MAX_PAGE })
      : (await audit.search({ table, targetId: id, ...scope.filters }, { limit: MAX_PAGE })).entries
    return { entries, states: await statesAfter(audit, table, id, entries, scope) }
  },
  // The record as it was at a time the viewer picks.
  async state(audit, query, scope) {
    const { table, id } = recordOf(query)
    const at = query.get('at')
    if (!at) throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', 'state needs at: a time with its zone')
    const [point] = await audit.statesAt({ table, points: [{ id, at }] })
    if (!scope.full && point.entryId != null && !(await visibleIds(audit, table, id, scope)).has(point.entryId)) {
      return { at: point.at, state: null, entryId: null, withheld: true }
    }
    return point
  },
  async counts(audit, query, scope) {
    const by = query.get('by') ?? 'day'
    if (!['hour', 'day', 'week', 'month'].includes(by)) {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', 'by is hour, day, week or month')
    }
    return audit.counts([by], { ...filtersFrom(query), ...scope.filters })
  },
  // Who made many changes in a short time, over the last 24 hours unless the search says.
  async bursts(audit, query, scope) {
    const window = query.get('window') ?? '10 minutes'
    if (!/^\d{1,4} (second|minute|hour)s?$/.test(window)) {
      throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', "window is like '10 minutes' or '1 hour'")
    }
    const threshold = query.has('threshold') ? integer(query.get('threshold'), 'threshold') : 20
    return audit.bursts({ window, threshold }, { ...filtersFrom(query), ...scope.filters })
  },
  async verify(audit, query, scope) {
    if (!scope.full) throw codedError('AUDIT_LOGS_PERMISSION_DENIED', 'the chain is verified for the whole log: only a full viewer may')
    return audit.verify()
  },
}

/**
 * Records, as an `audit_log.viewed` event, who looked at what: the context `recordViews(req)`
 * returns (who is viewing), the page and its filters.
 */
async function recordView(audit, recordViews, req, route, query) {
  const context = await recordViews(req)
  const filters = Object.fromEntries([...query].filter(([name]) => FILTER_PARAMS.includes(name) || name === 'id' || name === 'at'))
  await audit.log({ action: 'audit_log.viewed', targetType: 'audit.audit_logs', metadata: { page: route, ...filters } },
    { context: context ?? null })
}

async function exportEntries(audit, query, scope, res) {
  const format = query.get('format') === 'csv' ? 'csv' : 'jsonl'
  const filters = { ...filtersFrom(query), ...scope.filters }
  const entries = audit.entries(filters, { order: 'oldest' })
  res.writeHead(200, {
    ...SECURITY_HEADERS,
    'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
    'content-disposition': `attachment; filename="audit-log.${format}"`,
  })
  if (format === 'csv') res.write(CSV_COLUMNS.join(',') + '\n')
  try {
    for await (const entry of entries) {
      const line = format === 'csv'
        ? CSV_COLUMNS.map((c) => csvField(entry[fieldOf(c)])).join(',')
        : JSON.stringify(entry, (_, v) => (typeof v === 'bigint' ? v.toString() : v))
      if (!res.write(line + '\n')) await new Promise((resolve) => res.once('drain', resolve))
      if (res.destroyed) break
    }
  } finally {
    res.end()
  }
}

/**
 * The viewer as a request handler `(req, res, next?)` for Node's http server or Express, mounted
 * under any path. `authorize(req)` is required: it returns `true` (everything), `{ filters }`
 * (only what those filters select, e.g. `{ filters: { table: 'posts' } }` or
 * `{ filters: { metadataContains: { tenant: 7 } } }`), or anything else to refuse (403).
 */
function auditViewer(options) {
  const { audit, authorize, recordViews } = options ?? {}
  if (audit == null || typeof audit.search !== 'function') {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', 'auditViewer needs { audit }: an AuditLogs instance')
  }
  if (recordViews != null && typeof recordViews !== 'function') {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT', 'recordViews is a function (req) => the viewer\'s audit context')
  }
  if (typeof authorize !== 'function') {
    throw codedError('AUDIT_LOGS_INVALID_ARGUMENT',
      'auditViewer needs { authorize(req) }: return true, { filters }, or false; no route works without it')
  }
  return async function viewer(req, res, next) {
    try {
      // Express strips the mount path into req.url; a bare http server gives it whole.
      const url = new URL(req.url ?? '/', 'http://viewer.invalid')
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { error: { code: 'AUDIT_LOGS_INVALID_ARGUMENT', message: 'the viewer only reads' } })
      const scope = await scopeOf(authorize, req)
      if (scope == null) return sendJson(res, 403, { error: { code: 'AUDIT_LOGS_PERMISSION_DENIED', message: 'not authorized to view the audit log' } })
      const assetEntry = ASSETS[url.pathname]
      if (assetEntry) return send(res, 200, asset(assetEntry[0]), assetEntry[1])
      const route = url.pathname.startsWith('/api/') ? url.pathname.slice(5) : null
      if (route === 'export') {
        if (recordViews) await recordView(audit, recordViews, req, route, url.searchParams)
        return await exportEntries(audit, url.searchParams, scope, res)
      }
      if (route === 'scope') return sendJson(res, 200, { full: scope.full, filters: scope.filters })
      if (route != null && Object.hasOwn(ROUTES, route)) {
        const result = await ROUTES[route](audit, url.searchParams, scope)
        if (recordViews && route !== 'verify') await recordView(audit, recordViews, req, route, url.searchParams)
        return sendJson(res, 200, result)
      }
      // Its own API answers for itself; any other path is the host app's.
      if (route == null && typeof next === 'function') return next()
      return sendJson(res, 404, { error: { code: 'AUDIT_LOGS_INVALID_ARGUMENT', message: `no such page: ${url.pathname}` } })
    } catch (error) {
      // Never past the framework: a bad query string is the client's, a failure is logged.
      if (res.headersSent) return res.destroy(error)
      const code = typeof error?.code === 'string' && error.code.startsWith('AUDIT_LOGS_') ? error.code : 'AUDIT_LOGS_INTERNAL'
      return sendJson(res, errorStatus(error), { error: { code, message: String(error?.message ?? error) } })
    }
  }
}

/**
 * The viewer for Fastify: `app.register(auditViewerPlugin, { audit, authorize, prefix: '/audit' })`.
 * `authorize` and `recordViews` get Fastify's request (with what its hooks set, `request.user`);
 * the handler answers on the raw request, so Fastify's body parsing and serializers stay out.
 */
async function auditViewerPlugin(fastify, options) {
  const requests = new WeakMap()
  const fastifyRequest = (raw) => requests.get(raw) ?? raw
  const { authorize, recordViews } = options ?? {}
  const handler = auditViewer({
    ...options,
    authorize: typeof authorize === 'function' ? (raw) => authorize(fastifyRequest(raw)) : authorize,
    recordViews: typeof recordViews === 'function' ? (raw) => recordViews(fastifyRequest(raw)) : recordViews,
  })
  const prefix = options.prefix ?? ''
  const serve = (request, reply) => {
    reply.hijack()
    const raw = request.raw
    requests.set(raw, request)
    const originalUrl = raw.url
    raw.url = originalUrl.startsWith(prefix) ? originalUrl.slice(prefix.length) || '/' : originalUrl
    return handler(raw, reply.raw).finally(() => { raw.url = originalUrl })
  }
  fastify.get('/', serve)
  fastify.get('/*', serve)
}

module.exports = { auditViewer, auditViewerPlugin }
