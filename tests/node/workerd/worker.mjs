// The Worker tests/node/workerd.test.mjs and tests/packaging/workerd.test.mjs run in workerd,
// written as the README's Workers example: `audit-logs` imported by its name, each request in
// its own context (withRequestContext). Neon's serverless driver reaches the test server through
// the test's relay (neon-relay.mjs).
//   POST /context: serializeContext of the JSON body, or the error's code and message
//   POST /notes?actor=... (x-request-id: ...) &fail=1: withAuditContext over a Neon Pool in the
//   request's context: a row and an event, one transaction (thrown away after both with fail=1)
import { Pool, neonConfig } from '@neondatabase/serverless'
import { AuditLogs, serializeContext, withAuditContext, withRequestContext } from 'audit-logs'

async function notes(url, env) {
  neonConfig.useSecureWebSocket = false
  neonConfig.pipelineTLS = false
  neonConfig.pipelineConnect = false
  neonConfig.wsProxy = (host, port) => `127.0.0.1:${env.RELAY_PORT}/v1?address=${host}:${port}`
  const actor = url.searchParams.get('actor')
  // Per request: a Worker cannot reuse one request's sockets in another.
  const pool = new Pool({ connectionString: env.DATABASE_URL })
  const audit = await AuditLogs.connect(env.DATABASE_URL)
  try {
    const result = await withAuditContext(pool, null, async (client) => {
      const { rows: [note] } = await client.query('insert into notes (author) values ($1) returning id', [actor])
      const event = await audit.log({ action: 'note.shared', targetType: 'note', targetId: note.id }, { client })
      if (url.searchParams.has('fail')) throw new Error('handler failed')
      return { id: note.id, eventActor: event.actorId, eventRequest: event.requestId }
    })
    return Response.json(result)
  } finally {
    audit.close()
    await pool.end()
  }
}

async function handle(request, env) {
  const url = new URL(request.url)
  try {
    if (url.pathname === '/context') return Response.json({ value: serializeContext(await request.json()) })
    if (url.pathname === '/notes') return await notes(url, env)
    return new Response('not found', { status: 404 })
  } catch (error) {
    return Response.json({ code: error.code, message: error.message }, { status: 500 })
  }
}

export default {
  fetch: withRequestContext(handle, { getActor: (request) => ({ actorId: new URL(request.url).searchParams.get('actor') }) }),
}
