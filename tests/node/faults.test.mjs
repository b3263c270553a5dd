// Faults around withAuditContext, with real pg and Prisma against a real PostgreSQL: a backend
// terminated mid-transaction, the connection lost just before or just after COMMIT reached the
// server, and a connection lost inside a nested call. After each: no partial state (a change and
// its audit row commit together or not at all), no dead connection left in a pool, the next
// call works and is attributed, and the log seals and verifies.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { PrismaClient } from '@prisma/client'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { AuditLogs, withAuditContext } from '../../index.js'
import { startCommitProxy } from './commit_proxy.mjs'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

/** A migrated database with tracked `notes` (for pg) and `users` (for Prisma) tables. */
async function setup(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  await withClient(url, (c) => c.query(`
    create table notes (id serial primary key, author text not null,
                        body text constraint one_note_per_body unique deferrable initially deferred);
    create table users (id serial primary key, email text unique not null, name text)`))
  await audit.enableTracking('notes')
  await audit.enableTracking('users')
  audit.close()
  return url
}

/** A pool of one connection: a dead client handed out again would fail the next call. */
function onePool(t, url) {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  deferCleanup(t, () => pool.end())
  return pool
}

/** What the database holds, read on a connection of its own. */
const contents = (url, table = 'notes') => withClient(url, async (c) => ({
  rows: (await c.query(`select * from ${table} order by id`)).rows
    .map((row) => table === 'notes' ? row.author : row.email),
  audit: (await c.query('select action, target_type, actor_id, request_id from audit.audit_logs order by id')).rows
    .map((e) => [e.action, e.target_type, e.actor_id, e.request_id]),
}))

const backendPid = async (client) => (await client.query('select pg_catalog.pg_backend_pid() as pid')).rows[0].pid

/** Terminates backend `pid` from another connection and waits (up to 30 s) until it is gone. */
async function terminate(url, pid) {
  const { rows } = await withClient(url, (c) =>
    c.query('select pg_catalog.pg_terminate_backend($1, 30000) as gone', [pid]))
  assert.equal(rows[0].gone, true, `backend ${pid} was terminated`)
}

/** Waits until the server has noticed that backend `pid` lost its client, and ended it. */
async function backendEnded(url, pid) {
  for (let attempt = 0; attempt < 600; attempt++) {
    const { rows } = await withClient(url, (c) =>
      c.query('select count(*)::int as n from pg_catalog.pg_stat_activity where pid = $1', [pid]))
    if (rows[0].n === 0) return
    await sleep(50)
  }
  assert.fail(`backend ${pid} still exists 30 s after its connection was lost`)
}

/** The transaction's fate as the server tells it: 'committed', 'aborted' or 'in progress'. */
const transactionStatus = (url, xid) => withClient(url, (c) =>
  c.query('select pg_catalog.pg_xact_status($1::xid8) as status', [xid]).then((r) => r.rows[0].status))
const currentXid = async (client) => (await client.query('select pg_catalog.pg_current_xact_id()::text as xid')).rows[0].xid

/** Seals the log and verifies it: every audit row the test left is sealed and checks out. */
async function assertVerifies(url) {
  const audit = await AuditLogs.connect(url)
  try {
    await audit.seal()
    const report = await audit.verify()
    const { rows } = await withClient(url, (c) => c.query('select count(*)::int as n from audit.audit_logs'))
    assert.ok(report.ok, JSON.stringify(report))
    assert.equal(report.rowsChecked, rows[0].n, 'every audit row is sealed and checked')
  } finally {
    audit.close()
  }
}

/** What pg raises for a connection that its server ended: the FATAL itself, or the lost socket. */
function lostConnection(error) {
  assert.ok(error instanceof Error, 'an Error')
  assert.notEqual(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', 'no COMMIT was sent: this is not the indeterminate case')
  assert.ok(error.code === '57P01' || /Connection terminated unexpectedly|not queryable/.test(error.message),
    `a lost-connection error, not: ${error.code} ${error.message}`)
  return true
}

test('pg: a backend terminated while fn runs rejects, leaves no row and no audit row, the pool discards its client, and the next call is attributed', async (t) => {
  const url = await setup(t)
  const pool = onePool(t, url)
  let killed
  await assert.rejects(withAuditContext(pool, { actorId: 'doomed' }, async (client) => {
    await client.query("insert into notes (author) values ('doomed-1'), ('doomed-2')")
    killed = await backendPid(client)
    await terminate(url, killed)
    await client.query("insert into notes (author) values ('doomed-3')")
  }), lostConnection)
  assert.equal(pool.totalCount, 0, 'the dead client is not back in the pool')
  assert.deepEqual(await contents(url), { rows: [], audit: [] })

  // The pool has room for one connection: this works only on a new, live one.
  const pid = await withAuditContext(pool, { actorId: 'next', requestId: 'req-next' }, async (client) => {
    await client.query("insert into notes (author) values ('next')")
    return backendPid(client)
  })
  assert.notEqual(pid, killed)
  assert.deepEqual(await contents(url), { rows: ['next'], audit: [['INSERT', 'public.notes', 'next', 'req-next']] })
  assert.equal(pool.idleCount, 1, 'the live client went back to the pool')
  await assertVerifies(url)
})

test('pg: the connection lost after COMMIT reached the server rejects with AUDIT_LOGS_COMMIT_UNKNOWN; row and audit row committed together', async (t) => {
  const url = await setup(t)
  const proxy = await startCommitProxy(url)
  deferCleanup(t, () => proxy.close())
  const pool = onePool(t, proxy.url)
  let xid
  const lost = proxy.loseNextCommit('after')
  const error = await withAuditContext(pool, { actorId: 'ann', requestId: 'req-commit-after' }, async (client) => {
    await client.query("insert into notes (author) values ('ann')")
    xid = await currentXid(client)
  }).then(() => assert.fail('withAuditContext resolved although its COMMIT was never answered'), (e) => e)
  await lost

  assert.ok(error instanceof Error)
  assert.equal(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', error.message)
  assert.match(error.message, /connection was lost while COMMIT was in flight/)
  assert.match(error.message, /may or may not have committed/)
  assert.match(error.message, /together or not at all/)
  assert.match(error.message, /audit\.byRequest\("req-commit-after"\)/, 'names the request id to look for')
  assert.ok(error.cause instanceof Error, 'keeps what pg raised')
  assert.match(error.cause.message, /Connection terminated unexpectedly/)
  assert.equal(pool.totalCount, 0, 'the dead client is not back in the pool')

  // The server did commit, and the change and its audit row together.
  assert.equal(await transactionStatus(url, xid), 'committed')
  assert.deepEqual(await contents(url), { rows: ['ann'], audit: [['INSERT', 'public.notes', 'ann', 'req-commit-after']] })
  // The way to find out that the message gives works.
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  assert.deepEqual((await audit.byRequest('req-commit-after')).map((e) => [e.action, e.actorId]), [['INSERT', 'ann']])

  await withAuditContext(pool, { actorId: 'bob' }, (client) => client.query("insert into notes (author) values ('bob')"))
  assert.deepEqual((await contents(url)).audit.map(([, , actor]) => actor), ['ann', 'bob'])
  await assertVerifies(url)
})

test('pg: the connection lost before COMMIT reached the server rejects with AUDIT_LOGS_COMMIT_UNKNOWN; nothing committed', async (t) => {
  const url = await setup(t)
  const proxy = await startCommitProxy(url)
  deferCleanup(t, () => proxy.close())
  const pool = onePool(t, proxy.url)
  let pid
  let xid
  const lost = proxy.loseNextCommit('before')
  await assert.rejects(withAuditContext(pool, { actorId: 'ann', requestId: 'req-commit-before' }, async (client) => {
    await client.query("insert into notes (author) values ('ann')")
    pid = await backendPid(client)
    xid = await currentXid(client)
  }), (error) => {
    // The client cannot tell this case from the one above.
    assert.equal(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', error.message)
    assert.match(error.message, /may or may not have committed/)
    assert.match(error.cause.message, /Connection terminated unexpectedly/)
    return true
  })
  await lost
  assert.equal(pool.totalCount, 0, 'the dead client is not back in the pool')

  // Once the server has ended the session, its transaction is rolled back: no row, no audit row.
  await backendEnded(url, pid)
  assert.equal(await transactionStatus(url, xid), 'aborted')
  assert.deepEqual(await contents(url), { rows: [], audit: [] })

  await withAuditContext(pool, { actorId: 'bob', requestId: 'req-retry' }, (client) =>
    client.query("insert into notes (author) values ('bob')"))
  assert.deepEqual(await contents(url), { rows: ['bob'], audit: [['INSERT', 'public.notes', 'bob', 'req-retry']] })
  await assertVerifies(url)
})

test('pg: a COMMIT the server refuses (a deferred constraint) rejects with its own error, not AUDIT_LOGS_COMMIT_UNKNOWN', async (t) => {
  const url = await setup(t)
  const pool = onePool(t, url)
  await assert.rejects(withAuditContext(pool, { actorId: 'ann' }, (client) =>
    client.query("insert into notes (author, body) values ('ann', 'same'), ('ann', 'same')")), (error) => {
    assert.equal(error.code, '23505', error.message)
    assert.equal(error.constraint, 'one_note_per_body')
    return true
  })
  assert.deepEqual(await contents(url), { rows: [], audit: [] })
  assert.equal(pool.totalCount, 1, 'a connection that answered is kept')
  assert.equal(pool.idleCount, 1)
  await withAuditContext(pool, { actorId: 'bob' }, (client) => client.query("insert into notes (author) values ('bob')"))
  assert.deepEqual(await contents(url), { rows: ['bob'], audit: [['INSERT', 'public.notes', 'bob', null]] })
  await assertVerifies(url)
})

test('pg: a connection lost inside a nested call propagates its error through the savepoint, and nothing of the outer transaction commits', async (t) => {
  const url = await setup(t)
  const pool = onePool(t, url)
  let inner
  await assert.rejects(withAuditContext(pool, { actorId: 'outer' }, async (client) => {
    await client.query("insert into notes (author) values ('outer')")
    await withAuditContext(client, { actorId: 'inner' }, async (c) => {
      await c.query("insert into notes (author) values ('inner')")
      await terminate(url, await backendPid(c))
      await c.query("insert into notes (author) values ('inner-2')")
    }).catch((error) => {
      inner = error
      throw error
    })
  }), (error) => error === inner && lostConnection(error))
  assert.equal(pool.totalCount, 0, 'the dead client is not back in the pool')
  assert.deepEqual(await contents(url), { rows: [], audit: [] })

  await withAuditContext(pool, { actorId: 'next' }, (client) => client.query("insert into notes (author) values ('next')"))
  assert.deepEqual(await contents(url), { rows: ['next'], audit: [['INSERT', 'public.notes', 'next', null]] })
  await assertVerifies(url)
})

test('pg: when fn swallows a nested call\'s lost connection, the outer call rejects without sending COMMIT and nothing commits', async (t) => {
  const url = await setup(t)
  const pool = onePool(t, url)
  let swallowed
  await assert.rejects(withAuditContext(pool, { actorId: 'outer' }, async (client) => {
    await client.query("insert into notes (author) values ('outer')")
    swallowed = await withAuditContext(client, { actorId: 'inner' }, async (c) => {
      await terminate(url, await backendPid(c))
      await c.query("insert into notes (author) values ('inner')")
    }).then(() => undefined, (error) => error)
    return 'carry on'
  }), (error) => {
    lostConnection(swallowed)
    // The connection was known to be dead before COMMIT: a definite failure, not an unknown one.
    return lostConnection(error)
  })
  assert.equal(pool.totalCount, 0, 'the dead client is not back in the pool')
  assert.deepEqual(await contents(url), { rows: [], audit: [] })
  await assertVerifies(url)
})

test('Prisma: a backend terminated inside withAuditContext rejects, leaves nothing, and the next call works and is attributed', async (t) => {
  const url = await setup(t)
  // One connection: a dead one handed out again would fail the next call.
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 1 }) })
  deferCleanup(t, () => prisma.$disconnect())
  let killed
  await assert.rejects(withAuditContext(prisma, { actorId: 'doomed' }, async (tx) => {
    await tx.user.create({ data: { email: 'doomed@x.io' } })
    killed = (await tx.$queryRaw`select pg_catalog.pg_backend_pid() as pid`)[0].pid
    await terminate(url, killed)
    await tx.user.create({ data: { email: 'doomed-2@x.io' } })
  }), (error) => {
    // Prisma passes pg's error on, or wraps the FATAL one (P2010 for a raw query).
    assert.ok(error instanceof Error)
    assert.notEqual(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN')
    assert.match(error.message, /not queryable|terminating connection due to administrator command|Connection terminated unexpectedly/)
    return true
  })
  assert.deepEqual(await contents(url, 'users'), { rows: [], audit: [] })

  const pid = await withAuditContext(prisma, { actorId: 'next', requestId: 'req-next' }, async (tx) => {
    await tx.user.create({ data: { email: 'next@x.io' } })
    return (await tx.$queryRaw`select pg_catalog.pg_backend_pid() as pid`)[0].pid
  })
  assert.notEqual(pid, killed)
  assert.deepEqual(await contents(url, 'users'), { rows: ['next@x.io'], audit: [['INSERT', 'public.users', 'next', 'req-next']] })
  await assertVerifies(url)
})

test('Prisma: the connection lost around COMMIT rejects with AUDIT_LOGS_COMMIT_UNKNOWN; row and audit row commit together or not at all', async (t) => {
  const url = await setup(t)
  const proxy = await startCommitProxy(url)
  deferCleanup(t, () => proxy.close())
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: proxy.url, max: 1 }) })
  deferCleanup(t, () => prisma.$disconnect())
  const commitUnknown = (requestId) => (error) => {
    assert.equal(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', error.message)
    assert.match(error.message, /may or may not have committed/)
    assert.ok(error.message.includes(`audit.byRequest("${requestId}")`), error.message)
    assert.match(error.cause.message, /Connection terminated unexpectedly/)
    return true
  }

  // Prisma sends COMMIT through the extended protocol; the proxy finds it there too.
  let lost = proxy.loseNextCommit('after')
  await assert.rejects(withAuditContext(prisma, { actorId: 'ann', requestId: 'req-after' }, (tx) =>
    tx.user.create({ data: { email: 'ann@x.io' } })), commitUnknown('req-after'))
  await lost
  assert.deepEqual(await contents(url, 'users'), { rows: ['ann@x.io'], audit: [['INSERT', 'public.users', 'ann', 'req-after']] })

  let pid
  let xid
  lost = proxy.loseNextCommit('before')
  await assert.rejects(withAuditContext(prisma, { actorId: 'bob', requestId: 'req-before' }, async (tx) => {
    await tx.user.create({ data: { email: 'bob@x.io' } })
    ;[{ pid, xid }] = await tx.$queryRaw`select pg_catalog.pg_backend_pid() as pid, pg_catalog.pg_current_xact_id()::text as xid`
  }), commitUnknown('req-before'))
  await lost
  await backendEnded(url, pid)
  assert.equal(await transactionStatus(url, xid), 'aborted')
  assert.deepEqual(await contents(url, 'users'), { rows: ['ann@x.io'], audit: [['INSERT', 'public.users', 'ann', 'req-after']] })

  // The client carries on, on a new connection.
  await withAuditContext(prisma, { actorId: 'cid' }, (tx) => tx.user.create({ data: { email: 'cid@x.io' } }))
  assert.deepEqual((await contents(url, 'users')).audit.map(([, , actor]) => actor), ['ann', 'cid'])
  await assertVerifies(url)
})

test('Prisma: when fn swallows a lost connection, the call rejects with it, not AUDIT_LOGS_COMMIT_UNKNOWN, and nothing commits', async (t) => {
  const url = await setup(t)
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 1 }) })
  deferCleanup(t, () => prisma.$disconnect())
  let swallowed
  await assert.rejects(withAuditContext(prisma, { actorId: 'doomed' }, async (tx) => {
    await tx.user.create({ data: { email: 'doomed@x.io' } })
    await terminate(url, (await tx.$queryRaw`select pg_catalog.pg_backend_pid() as pid`)[0].pid)
    swallowed = await tx.user.create({ data: { email: 'doomed-2@x.io' } }).then(() => undefined, (error) => error)
  }), (error) => {
    assert.ok(swallowed instanceof Error, 'the write after the kill failed')
    assert.notEqual(error.code, 'AUDIT_LOGS_COMMIT_UNKNOWN', 'COMMIT was never sent on the dead connection')
    assert.match(error.message, /not queryable/)
    return true
  })
  assert.deepEqual(await contents(url, 'users'), { rows: [], audit: [] })
  await assertVerifies(url)
})
