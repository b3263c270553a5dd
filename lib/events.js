'use strict'
// What AuditLogs gains in JavaScript: the request's context for events, events in the caller's
// own transaction, and `for await` over a stream. Everything else is native.
const { eventStatement, openEntries, openSubjectEntries } = require('#binding')
const { currentAuditContext } = require('./context.js')
const { recastArgumentError } = require('./arguments.js')
const { ormQuery } = require('./orms.js')

/**
 * Runs an event statement on a pg client, a Prisma (transaction) client, or a Drizzle, Kysely
 * or Knex transaction; resolves to its rows.
 */
async function runOn(client, { text, values }) {
  if (typeof client.$queryRawUnsafe === 'function') return client.$queryRawUnsafe(text, ...values)
  const ormQueryOn = ormQuery(client)
  if (ormQueryOn) return ormQueryOn(text, values)
  return (await client.query(text, values)).rows
}

/**
 * The methods added to the native AuditLogs class. `log(input, { client, context })`:
 * - `context` (default: the current request's) fills the context fields `input` leaves empty;
 * - with `client` (a pg client or a Prisma transaction), the event is written in that client's
 *   transaction and commits or rolls back with it; there, the transaction's own audit context
 *   fills what is still empty.
 */
function eventMethods(native) {
  return {
    async log(input, options = {}) {
      const context = options.context ?? currentAuditContext() ?? null
      if (options.client) return (await runOn(options.client, eventStatement([input], { context })))[0]
      return native.log.call(this, input, { context })
    },

    async logMany(inputs, options = {}) {
      const context = options.context ?? currentAuditContext() ?? null
      if (options.client) return runOn(options.client, eventStatement(inputs, { context }))
      return native.logMany.call(this, inputs, { context })
    },

    /** Every entry matching `filters`, read in batches from one snapshot, in bounded memory. */
    entries(filters, options) {
      return streamed(() => openEntries(this, filters, options), [filters, options])
    },

    /** Every entry mentioning a data subject, with where: an access request's export. */
    subjectEntries(subject, options) {
      return streamed(() => openSubjectEntries(this, subject, options), [subject, options])
    },
  }
}

/** Yields the items of the batches `open` resolves to, closing them however the loop ends. */
async function* streamed(open, args) {
  let batches
  try {
    batches = await open()
  } catch (error) {
    throw recastArgumentError(error, args)
  }
  try {
    for (let batch = await batches.next(); batch !== null; batch = await batches.next()) {
      yield* batch
    }
  } finally {
    batches.close()
  }
}

module.exports = { eventMethods, runOn }
