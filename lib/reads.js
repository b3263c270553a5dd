'use strict'
// Read auditing for sensitive tables (who read which records, as HIPAA asks), for node-postgres:
// one `read` event per query, naming at most `maxIds` of the ids read.
const { eventStatement } = require('#binding')
const { currentAuditContext } = require('./context.js')

/** The metadata of a read event: the first `maxIds` ids, how many rows, whether the list was cut. */
function readMetadata(rows, idField, maxIds) {
  const ids = rows.slice(0, maxIds).map((row) => String(row[idField]))
  return { ids, count: rows.length, truncated: rows.length > maxIds }
}

/** The statement recording that `rows` of `target` were read. */
function readEvent(target, metadata, context) {
  return eventStatement([{ action: 'read', targetType: target, metadata }], { context: context ?? currentAuditContext() ?? null })
}

/**
 * Runs `read()` (a pg query returning `{ rows }`) and records who read which rows of `table`.
 * Options: `idField` (default 'id'), `maxIds` (default 100), `context` (default: the current one).
 */
async function auditRead(client, table, read, options = {}) {
  const result = await read()
  const rows = result?.rows ?? result ?? []
  const metadata = readMetadata(rows, options.idField ?? 'id', options.maxIds ?? 100)
  const { text, values } = readEvent(table, metadata, options.context)
  await client.query(text, values)
  return result
}

module.exports = { auditRead, readMetadata, readEvent }
