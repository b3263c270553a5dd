'use strict'
// Read auditing for sensitive tables (seed 003: who read which records), for node-postgres:
// one `read` event per query, naming at most `maxIds` of the ids read.
const { settingFor } = require('./context.js')

const LOG_READ = "select audit.log_event('read', $1, null, $2::jsonb, nullif($3, '')::jsonb)"

/** The metadata of a read event: the first `maxIds` ids, how many rows, whether the list was cut. */
function readMetadata(rows, idField, maxIds) {
  const ids = rows.slice(0, maxIds).map((row) => String(row[idField]))
  return { ids, count: rows.length, truncated: rows.length > maxIds }
}

/**
 * Runs `read()` (a pg query returning `{ rows }`) and records who read which rows of `table`.
 * Options: `idField` (default 'id'), `maxIds` (default 100), `context` (default: the current one).
 */
async function auditRead(client, table, read, options = {}) {
  const result = await read()
  const rows = result?.rows ?? result ?? []
  const metadata = readMetadata(rows, options.idField ?? 'id', options.maxIds ?? 100)
  await client.query(LOG_READ, [table, JSON.stringify(metadata), settingFor(options.context)])
  return result
}

module.exports = { auditRead, readMetadata }
