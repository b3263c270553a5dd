// The questions an application asks of its audit log (those of the pull request the project
// grew from: a Drizzle app of users, organizations and moderations), each one call through the npm package, against a real PostgreSQL.
// Expected answers come from the live tables (snapshots taken as the story goes) or from a
// plain read of the whole log, never from the helper's own SQL.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import pg from 'pg'
import { ActorType, AuditLogs, runWithAuditContext, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, rejectsWithCode, withClient } from './helpers.mjs'

async function setup(t, ddl, tables) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(ddl))
  for (const table of tables) await audit.enableTracking(table)
  const pool = new pg.Pool({ connectionString: url, max: 4 })
  deferCleanup(t, () => pool.end())
  const raw = (sql, values) => withClient(url, (c) => c.query(sql, values).then((r) => r.rows))
  return { url, audit, pool, raw }
}

/** The live rows of a table now, by key, and the time: what stateAt must give back later. */
async function snapshot(raw, table, key) {
  await sleep(3)
  const rows = await raw(`select ${key} as key, to_jsonb(t) as row from ${table} t`)
  const [{ at }] = await raw('select clock_timestamp() as at')
  await sleep(3)
  return { at, rows: new Map(rows.map((r) => [r.key, r.row])) }
}

const MODERATION_APP = `
  create table users (id serial primary key, email text not null, given_name text);
  create table organizations (id serial primary key, siret text, cached_libelle text);
  create table users_organizations (user_id int references users, organization_id int references organizations,
                                    verification_type text, primary key (user_id, organization_id));
  create table moderations (id serial primary key, user_id int, organization_id int, type text,
                            created_at timestamptz not null default clock_timestamp());`

test('every question the moderation app asks of the audit log is one call', async (t) => {
  const { url, audit, pool, raw } = await setup(t, MODERATION_APP, ['users', 'organizations', 'users_organizations'])
  const admin = { actorEmail: 'admin@gouv.fr', actorType: ActorType.USER, actorId: 'admin' }
  const moderator = { actorEmail: 'moderator@gouv.fr', actorType: ActorType.MODERATOR, actorId: 'mod-1' }

  await withAuditContext(pool, admin, async (c) => {
    await c.query("insert into users (email, given_name) values ('jean@x.fr', 'Jean'), ('marie@x.fr', 'Marie')")
    await c.query("insert into organizations (siret, cached_libelle) values ('111', 'Mairie'), ('222', 'DINUM')")
    await c.query("insert into users_organizations values (1, 1, 'none'), (2, 2, 'domain')")
  })
  await withAuditContext(pool, moderator, async (c) => {
    await c.query("update users set email = 'jean.dupont@x.fr' where id = 1")
    await c.query("update users_organizations set verification_type = 'official_contact' where user_id = 1")
  })
  // The moderations, and what users and organizations looked like at that moment.
  const moderated = []
  for (const [user, org] of [[1, 1], [2, 2]]) {
    const [m] = await raw('insert into moderations (user_id, organization_id, type) values ($1, $2, $3) returning *',
      [user, org, 'organization_join_block'])
    const users = await snapshot(raw, 'users', 'id')
    const orgs = await snapshot(raw, 'organizations', 'id')
    const links = await snapshot(raw, 'users_organizations', "user_id || '/' || organization_id")
    moderated.push({ m, user: users.rows.get(user), org: orgs.rows.get(org), link: links.rows.get(`${user}/${org}`) })
    // Changes after each moderation, which the answers must not include.
    await withAuditContext(pool, admin, async (c) => {
      await c.query('update users set given_name = given_name || $1 where id = $2', ['!', user])
      await c.query("update organizations set cached_libelle = cached_libelle || ' (renamed)' where id = $1", [org])
      await c.query('update users_organizations set verification_type = $1 where user_id = $2', ['later', user])
    })
  }
  // A data migration (the app's SET LOCAL app.current_migration).
  await withClient(url, async (c) => {
    await c.query('begin')
    await c.query(`select audit.set_context('{"actor_type": "migration", "migration_name": "1768213263725_apply-audit-triggers"}')`)
    await c.query("update organizations set cached_libelle = upper(cached_libelle)")
    await c.query('commit')
  })
  // A script that changes too much too fast.
  await withAuditContext(pool, { actorEmail: 'script@x.fr', actorId: 'script' }, async (c) => {
    for (let i = 0; i < 20; i++) await c.query('update users set given_name = $1 where id = 2', [`M${i}`])
  })
  const log = await raw('select id, target_type, target_id, action, actor_email, changed_fields, metadata from audit.audit_logs order by id desc')
  const idsOf = (rows) => rows.map((r) => Number(r.id))

  // "View all audit logs for a specific user", newest first.
  const history = await audit.history({ table: 'users', id: 1 })
  assert.deepEqual(history.map((e) => e.id), idsOf(log.filter((r) => r.target_type === 'public.users' && r.target_id === '1')))

  // "View recent changes by actor" (the app asks by e-mail).
  const byEmail = await audit.search({ actorEmail: 'moderator@gouv.fr' }, { limit: 100 })
  assert.deepEqual(byEmail.entries.map((e) => e.id), idsOf(log.filter((r) => r.actor_email === 'moderator@gouv.fr')))
  assert.equal(byEmail.nextCursor, undefined, 'no next page')
  const byActor = await audit.byActor('mod-1')
  assert.deepEqual(byActor.map((e) => e.id), byEmail.entries.map((e) => e.id))

  // "View all changes from a specific migration".
  const migration = await audit.search({ metadataContains: { migration_name: '1768213263725_apply-audit-triggers' } })
  assert.deepEqual(migration.entries.map((e) => e.id), idsOf(log.filter((r) => r.metadata?.migration_name)))
  assert.equal(migration.entries.length, 2)
  assert.ok(migration.entries.every((e) => e.actorType === 'migration'))

  // "State of the user / organization / link at the time of each moderation".
  const at = moderated.map(({ m }) => m.created_at)
  const users = await audit.statesAt({ table: 'users', points: moderated.map(({ m }) => ({ id: m.user_id, at: m.created_at })) })
  const orgs = await audit.statesAt({ table: 'organizations', points: moderated.map(({ m }) => ({ id: m.organization_id, at: m.created_at })) })
  const links = await audit.statesAt({
    table: 'users_organizations',
    points: moderated.map(({ m }) => ({ id: [m.user_id, m.organization_id], at: m.created_at })),
  })
  moderated.forEach((expected, i) => {
    assert.deepEqual(users[i].state, expected.user, `user at moderation ${i}`)
    assert.deepEqual(orgs[i].state, expected.org, `organization at moderation ${i}`)
    assert.deepEqual(links[i].state, expected.link, `membership at moderation ${i}`)
    assert.deepEqual(users[i].at, at[i])
  })
  assert.equal(moderated[0].user.email, 'jean.dupont@x.fr', 'the moderator change came before')
  assert.equal(moderated[0].user.given_name, 'Jean', 'the later change did not')
  // "Reconstruct user state at a specific timestamp": one record, one call.
  assert.deepEqual(await audit.stateAt({ table: 'users', id: 1, at: at[0] }), moderated[0].user)
  assert.equal(await audit.stateAt({ table: 'users', id: 1, at: new Date(0) }), null, 'not yet created')

  // "Find all changes to a specific field".
  const emails = await audit.fieldChanges({ table: 'users', field: 'email' })
  assert.deepEqual(emails.map((c) => [c.targetId, c.oldValue, c.newValue, c.actorEmail]),
    [['1', 'jean@x.fr', 'jean.dupont@x.fr', 'moderator@gouv.fr']])

  // "Count changes by table and action".
  const tally = new Map()
  for (const r of log) tally.set(`${r.target_type} ${r.action}`, (tally.get(`${r.target_type} ${r.action}`) ?? 0) + 1)
  const counts = await audit.counts(['targetType', 'action'])
  assert.deepEqual(new Map(counts.map((c) => [`${c.targetType} ${c.action}`, c.count])), tally)

  // "Find suspicious activity (many changes in short time)": the whole story took seconds, so
  // every actor's busiest hour holds all of its entries.
  const bursts = await audit.bursts({ window: '1 hour', threshold: 15, by: 'actorEmail' })
  const perEmail = new Map()
  for (const r of log) perEmail.set(r.actor_email, (perEmail.get(r.actor_email) ?? 0) + 1)
  assert.deepEqual(bursts.map((b) => [b.key, b.changes]), [...perEmail].filter(([, n]) => n >= 15))
  assert.deepEqual(bursts.map((b) => b.key), ['script@x.fr'])
})

test('events: log and logMany take the request context; in a caller transaction they roll back with it', async (t) => {
  const { audit, pool, raw } = await setup(t, 'create table orders (id int primary key, total int)', ['orders'])
  const request = { actorId: 'u-1', actorType: 'user', ipAddress: '203.0.113.9', requestId: 'req-42' }

  const login = await runWithAuditContext(request, () =>
    audit.log({ action: 'user.login', targetType: 'user', targetId: 'u-1', metadata: { method: 'password' } }))
  assert.equal(login.action, 'user.login')
  assert.equal(login.actorId, 'u-1')
  assert.equal(login.ipAddress, '203.0.113.9')
  assert.equal(login.requestId, 'req-42')
  assert.deepEqual(login.metadata, { method: 'password' })

  // The event's own fields win over the request's.
  const [denied, exported] = await runWithAuditContext(request, () => audit.logMany([
    { action: 'permission.denied', actorId: 'api-7', actorType: 'api_key', targetType: 'project', targetId: 3 },
    { action: 'report.exported', metadata: { rows: 10 } },
  ]))
  assert.deepEqual([denied.actorId, denied.actorType, denied.ipAddress, denied.targetId], ['api-7', 'api_key', '203.0.113.9', '3'])
  assert.equal(exported.actorId, 'u-1')
  assert.ok(exported.id > denied.id)

  // Inside withAuditContext: the event commits or rolls back with the order.
  for (const fail of [true, false]) {
    const attempt = withAuditContext(pool, { actorId: 'clerk' }, async (client) => {
      await client.query('insert into orders values ($1, 100)', [fail ? 1 : 2])
      const refund = await audit.log({ action: 'order.refunded', targetType: 'order', targetId: fail ? 1 : 2 }, { client })
      assert.equal(refund.actorId, 'clerk', "the transaction's context attributes it")
      assert.ok(refund.createdAt instanceof Date)
      assert.equal(typeof refund.id, 'number')
      if (fail) throw new Error('payment provider down')
    })
    if (fail) await assert.rejects(attempt, /payment provider down/)
    else await attempt
  }
  const refunds = await raw("select target_id from audit.audit_logs where action = 'order.refunded'")
  assert.deepEqual(refunds.map((r) => r.target_id), ['2'])
  assert.deepEqual((await raw('select id from orders')).map((r) => r.id), [2])

  // Bad events are refused before anything is written.
  const before = (await raw('select count(*)::int as n from audit.audit_logs'))[0].n
  await rejectsWithCode(assert, audit.log({ action: 'UPDATE' }), 'AUDIT_LOGS_INVALID_EVENT')
  await rejectsWithCode(assert, audit.log({ action: 'has space' }), 'AUDIT_LOGS_INVALID_EVENT')
  await rejectsWithCode(assert, audit.log({ action: 'ok', ipAddress: '999.1.1.1' }), 'AUDIT_LOGS_INVALID_CONTEXT')
  await rejectsWithCode(assert, audit.logMany([{ action: 'fine' }, { action: 'delete' }]), 'AUDIT_LOGS_INVALID_EVENT')
  await rejectsWithCode(assert, audit.log({ action: 'ok', metadata: [1] }), 'AUDIT_LOGS_INVALID_EVENT')
  await rejectsWithCode(assert, withAuditContext(pool, {}, (client) => audit.log({ action: 'bad action' }, { client })),
    'AUDIT_LOGS_INVALID_EVENT')
  assert.equal((await raw('select count(*)::int as n from audit.audit_logs'))[0].n, before)
})

test('search pages by cursor; entries() streams everything and frees its connection on break', async (t) => {
  const { audit, raw } = await setup(t, 'create table items (id int primary key, n int)', ['items'])
  await raw('insert into items select g, g from generate_series(1, 2500) g')
  await raw('update items set n = n + 1 where id % 10 = 0')

  const updates = []
  let page = await audit.search({ table: 'items', action: 'UPDATE' }, { limit: 40 })
  for (;;) {
    updates.push(...page.entries.map((e) => Number(e.targetId)))
    if (!page.nextCursor) break
    page = await audit.search({ table: 'items', action: 'UPDATE' }, { limit: 40, cursor: page.nextCursor })
  }
  assert.equal(updates.length, 250)
  assert.deepEqual(updates, Array.from({ length: 250 }, (_, i) => 2500 - i * 10), 'newest first, each once')

  const seen = []
  for await (const entry of audit.entries({ action: ['INSERT'] }, { order: 'oldest', batchSize: 300 })) {
    seen.push(Number(entry.targetId))
  }
  assert.deepEqual(seen, Array.from({ length: 2500 }, (_, i) => i + 1))
  // Twenty streams left early: each gives its connection back (the pool is smaller).
  for (let i = 0; i < 20; i++) {
    for await (const entry of audit.entries({}, { batchSize: 5 })) {
      assert.equal(entry.action, 'UPDATE')
      break
    }
  }
  const last = page.entries[0]
  assert.equal((await audit.byTransaction(last.txid, { limit: 1000 })).length, 250, 'one UPDATE statement, one transaction')
  assert.equal((await audit.byTransaction(last.txid, { at: last.createdAt, limit: 1000 })).length, 250)

  await rejectsWithCode(assert, audit.search({}, { cursor: '-1' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.search({}, { cursor: "1; drop table items" }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.search({}, { limit: 0 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.search({ from: 'yesterday' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.search({ metadataContains: 'x' }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.counts(['actorId; drop table items']), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await rejectsWithCode(assert, audit.bursts({ window: 'soon', threshold: 3 }), 'AUDIT_LOGS_INVALID_ARGUMENT')
  await assert.rejects(async () => { for await (const _ of audit.entries({}, { order: 'sideways' })) break },
    (e) => e.code === 'AUDIT_LOGS_INVALID_ARGUMENT')
  assert.equal((await raw('select count(*)::int as n from items'))[0].n, 2500)
})

/** Every entry of the log read with pg, by id, named as the API names them, a null left out. */
async function entriesAsPgReadsThem(raw) {
  const rows = await raw(`select id, created_at, txid, action, target_type, target_id, old_target_id, old_values, new_values,
                                 changed_fields, actor_id, actor_type, actor_email, host(ip_address) as ip_address,
                                 user_agent, request_id, metadata
                            from audit.audit_logs`)
  const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase())
  return new Map(rows.map((row) => [Number(row.id), Object.fromEntries(Object.entries(row)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => [camel(name), ['id', 'txid'].includes(name) ? Number(value) : value]))]))
}

test('every helper that gives entries (log() too) gives them as pg reads the same rows: dates as Date, values as JSON.parse reads them', async (t) => {
  const { audit, pool, raw } = await setup(t, 'create table notes (id int primary key, body jsonb, title text)', ['notes'])
  const awkward = {
    text: 'quote " backslash \\ newline \n tab \t é ß 漢字 🙂 \u2028',
    numbers: [0, -1, 1.5, 1e-7, 123456789012, 2 ** 60, 9007199254740993],
    nested: { empty: {}, none: null, list: [[], [{ deep: [true, false] }]] },
  }
  await withAuditContext(pool, { actorId: 'writer', actorEmail: 'w@x.io', requestId: 'req-1' }, async (c) => {
    await c.query('insert into notes values (1, $1, $2)', [awkward, 'first'])
    await c.query(`update notes set body = body || '{"more": "ünïcode"}', title = null where id = 1`)
  })
  await audit.logMany([{ action: 'note.read', targetType: 'note', targetId: '1', metadata: awkward }], { context: { actorId: 'writer' } })

  const all = async (iterable) => {
    const items = []
    for await (const item of iterable) items.push(item)
    return items
  }
  const history = await audit.history({ table: 'notes', id: 1 })
  const lists = {
    history,
    byActor: await audit.byActor('writer'),
    byRequest: await audit.byRequest('req-1'),
    byTransaction: await audit.byTransaction(history.at(-1).txid),
    search: (await audit.search({ actorId: 'writer' })).entries,
    entries: await all(audit.entries({}, { order: 'newest' })),
    logMany: await audit.logMany([{ action: 'note.shared', targetType: 'note', targetId: '1', metadata: awkward }]),
    log: [await audit.log({ action: 'note.printed', targetType: 'note', targetId: '1', metadata: awkward })],
  }

  const expected = await entriesAsPgReadsThem(raw)
  assert.equal(expected.size, 5)
  assert.equal(lists.entries.length, 3)
  for (const [helper, entries] of Object.entries(lists)) {
    assert.ok(entries.length > 0, helper)
    assert.deepStrictEqual(entries, entries.map((e) => expected.get(e.id)), `${helper} gives the entries as pg reads them`)
    for (const entry of entries) assert.ok(entry.createdAt instanceof Date, `${helper}: createdAt is a Date`)
  }
  // Absent, not null or undefined: the insert has no old values, the event no new ones.
  assert.equal('oldValues' in history.at(-1), false)
  assert.equal('newValues' in lists.logMany[0], false)
  assert.equal(history.find((e) => e.action === 'UPDATE').newValues.body.text, awkward.text)
  assert.equal(lists.logMany[0].metadata.numbers.at(-1), 9007199254740992, 'a number past 2^53 as JSON.parse reads it, as pg gives it')
  assert.equal(lists.log[0].metadata.numbers.at(-1), 9007199254740992, 'log() as history() reads it back')
})

test('every helper that gives recorded values (states, field changes, data subject pages and streams, reverts) gives them as pg reads them: JSON.stringify never throws', async (t) => {
  const { audit, pool, raw } = await setup(t, 'create table ledger (id int primary key, n bigint, body jsonb, owner text)', ['ledger'])
  const body = { big: 2 ** 60, text: 'quote " backslash \\ \u2028 🙂', nested: { empty: {}, none: null } }
  await withAuditContext(pool, { actorId: 'clerk' }, async (c) => {
    await c.query(`insert into ledger values (1, 1152921504606846976, $1, 'Ann Example')`, [body])
  })
  // A key an attacker may store: JSON.parse (and pg) make it an own property; set through napi it
  // would replace the object's prototype.
  await withAuditContext(pool, { actorId: 'clerk' }, (c) =>
    c.query(`update ledger set n = n + 1, body = body || '{"__proto__": {"isAdmin": true}}' where id = 1`))
  const expected = await entriesAsPgReadsThem(raw)
  const [update] = [...expected.values()].filter((e) => e.action === 'UPDATE')
  const now = new Date()
  // What pg gives for the row: past 2^53, a number rounded as JSON.parse rounds it.
  assert.equal(update.newValues.n, 1152921504606846977)

  const state = await audit.stateAt({ table: 'ledger', id: 1, at: now })
  assert.deepStrictEqual(state, update.newValues, 'stateAt gives the row as pg reads it')
  assert.equal(Object.getPrototypeOf(state.body), Object.prototype, 'a "__proto__" key stays a key')
  assert.equal(state.body.isAdmin, undefined)
  const [point] = await audit.statesAt({ table: 'ledger', points: [{ id: 1, at: now }] })
  assert.deepStrictEqual(point.state, update.newValues, 'statesAt gives the row as pg reads it')
  assert.ok(point.at instanceof Date, 'statesAt: at is a Date')
  const [change] = await audit.fieldChanges({ table: 'ledger', field: 'n' })
  assert.deepStrictEqual([change.oldValue, change.newValue], [update.oldValues.n, update.newValues.n], 'fieldChanges as pg reads them')
  assert.ok(change.createdAt instanceof Date, 'fieldChanges: createdAt is a Date')

  const page = await audit.subject({ values: ['Ann Example'] })
  const streamed = []
  for await (const found of audit.subjectEntries({ values: ['Ann Example'] })) streamed.push(found)
  for (const [helper, found] of [['subject', page.entries], ['subjectEntries', streamed]]) {
    assert.equal(found.length, 2, helper)
    assert.deepStrictEqual(found.map((f) => f.entry), found.map((f) => expected.get(f.entry.id)), `${helper} gives the entries as pg reads them`)
    for (const f of found) assert.ok(f.entry.createdAt instanceof Date, `${helper}: createdAt is a Date`)
  }

  const revert = await audit.revert({ entry: update.id }, { dryRun: true })
  const field = revert.changes[0].fields.find((f) => f.field === 'n')
  assert.deepStrictEqual([field.current, field.restored], [update.newValues.n, update.oldValues.n], 'revert reports values as pg reads them')

  for (const [helper, value] of Object.entries({ state, point, change, page, streamed, revert })) {
    assert.doesNotThrow(() => JSON.stringify(value), `${helper} can be sent as JSON`)
  }
})
