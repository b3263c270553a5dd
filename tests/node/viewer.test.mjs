// The history viewer in a real browser (Debian's Chromium, driven by playwright-core), mounted
// in a real Express app and a real Fastify app, and served by `audit-logs ui`.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import pg from 'pg'
import { chromium } from 'playwright-core'
import { AuditLogs, auditViewer, auditViewerPlugin, withAuditContext } from '../../index.js'
import { deferCleanup, freshDatabase, withClient } from './helpers.mjs'

const bin = fileURLToPath(new URL('../../bin/audit-logs.js', import.meta.url))
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// Screenshots of the main pages go to a temporary folder on every run; `npm run screenshots`
// points this at docs/viewer to refresh the README's, so a test run never rewrites them.
const SCREENSHOTS = process.env.AUDIT_LOGS_SCREENSHOTS ?? path.join(tmpdir(), 'audit-logs-viewer-screenshots')
// The screenshots' viewport, time zone and language, fixed so that refreshed ones differ only
// by what the viewer shows.
const DESKTOP = { viewport: { width: 1100, height: 720 }, timezoneId: 'UTC', locale: 'en-US' }
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Saves what the page shows: the whole page, one element (`of`), or the viewport scrolled to
 * an element (`from`).
 */
async function screenshot(tab, name, { of, from } = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true })
  // No caret, no hover: what the page shows, not where the mouse was.
  await tab.mouse.move(0, 0)
  const options = { path: path.join(SCREENSHOTS, `${name}.png`), caret: 'hide', animations: 'disabled' }
  if (of) return of.screenshot(options)
  if (from) await from.evaluate((element) => element.scrollIntoView({ block: 'start' }))
  await tab.screenshot({ ...options, fullPage: !from })
}

async function story(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  await withClient(url, (c) => c.query(
    'create table posts (id int primary key, title text, body text, secret text, tenant int)'))
  await audit.enableTracking('posts', { excludeColumns: ['secret'] })
  const pool = new pg.Pool({ connectionString: url, max: 2 })
  deferCleanup(t, () => pool.end())
  // Each transaction a few milliseconds after the last, so that a time between two of them can
  // be written to the millisecond (the precision of a JavaScript date).
  const as = async (context, sql) => {
    await pause(5)
    return withAuditContext(pool, context, (c) => c.query(sql))
  }
  await as({ actorId: 'ann', requestId: 'req-1', metadata: { tenant: 7 } },
    "insert into posts values (1, 'Draft', 'hello', 's1', 7), (2, 'Other', 'x', 's2', 8)")
  await as({ actorId: 'bob', requestId: 'req-2', metadata: { tenant: 7 } },
    "update posts set title = 'Final', secret = 's3' where id = 1")
  await as({ actorId: 'mallory', metadata: { tenant: 8, note: '<img src=x onerror="window.pwned=1">' } },
    'delete from posts where id = 2')
  await pause(5)
  return { url, audit }
}

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return server.address().port
}

/** Express with the viewer under /audit: admins see everything, tenants their own rows. */
async function expressApp(t, audit) {
  const app = express()
  app.use('/audit', auditViewer({
    audit,
    authorize: (req) => {
      if (req.headers['x-role'] === 'admin') return true
      if (req.headers['x-tenant']) return { filters: { metadataContains: { tenant: Number(req.headers['x-tenant']) } } }
      return false
    },
  }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  return `http://127.0.0.1:${server.address().port}/audit/`
}

async function browser(t) {
  assert.ok(existsSync(CHROMIUM), `the viewer tests need Chromium at ${CHROMIUM} (apt-get install chromium; .ci/run installs it)`)
  const instance = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  deferCleanup(t, () => instance.close())
  return instance
}

/** A page that fails the test on any request leaving 127.0.0.1 and on any script error. */
async function page(instance, options = {}) {
  const context = await instance.newContext(options)
  const outside = []
  await context.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url())
    if (hostname === '127.0.0.1') return route.continue()
    outside.push(route.request().url())
    return route.abort()
  })
  const tab = await context.newPage()
  const errors = []
  tab.on('pageerror', (error) => errors.push(error))
  return { tab, outside, errors, context }
}

test('the viewer searches, shows a record with its diffs, verifies the chain, exports, and fetches nothing from outside', async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const { tab, outside, errors } = await page(await browser(t), { ...DESKTOP, extraHTTPHeaders: { 'x-role': 'admin' } })

  await tab.goto(base)
  const rows = tab.locator('#results table.results tbody tr')
  await rows.first().waitFor()
  assert.equal(await rows.count(), 4, 'two inserts, an update, a delete')
  assert.equal(await rows.first().locator('td').nth(1).textContent(), 'DELETE', 'newest first')
  await tab.locator('#chart rect').first().waitFor()
  assert.ok(await tab.locator('#chart rect').count() >= 1, 'a bar per day')
  await screenshot(tab, 'search')

  // Search by actor, from the keyboard: the label finds the field.
  await tab.getByLabel('Actor').focus()
  await tab.keyboard.type('bob')
  await tab.keyboard.press('Enter')
  await tab.waitForFunction(() => document.querySelectorAll('#results table.results tbody tr').length === 1)
  assert.match(tab.url(), /#\/search\?actorId=bob&by=hour$/, 'the whole log, counted per hour as the home page')

  // Export of the current search: the link the page shows, fetched by the page. (Debian's
  // Chromium under playwright cancels downloads, so the file is read this way.)
  const link = tab.getByRole('link', { name: 'Export CSV' })
  assert.equal(await link.getAttribute('download'), '')
  const href = await link.evaluate((a) => a.href)
  const exported = (await tab.evaluate(async (url) => (await fetch(url)).text(), href)).trim().split('\n')
  assert.equal(exported.length, 2, 'a header and bob\'s update')
  assert.match(exported[1], /,UPDATE,public\.posts,1,.*,bob,/)

  // The record's timeline: the change as old → new, the excluded field as not stored.
  await tab.locator('#results table.results tbody tr a', { hasText: '1' }).first().click()
  await tab.locator('article.entry').first().waitFor()
  assert.equal(await tab.locator('article.entry').count(), 2)
  const update = tab.locator('article.entry').first()
  assert.equal(await update.locator('h3').textContent(), 'UPDATE')
  const title = update.locator('table.diff tr', { has: tab.locator('th', { hasText: 'title' }) })
  assert.deepEqual(await title.locator('td').allTextContents(), ['"Draft"', '"Final"'])
  const secret = update.locator('table.diff tr', { has: tab.locator('th', { hasText: 'secret' }) })
  assert.deepEqual(await secret.locator('td').allTextContents(), ['(not stored)', '(not stored)'])
  // The whole record after the change, as statesAt gives it (the excluded field is not kept).
  await update.getByText('Record after this change').click()
  assert.deepEqual((await update.locator('table.state tr').allTextContents()).sort(),
    ['body"hello"', 'id1', 'tenant7', 'title"Final"'])
  await screenshot(tab, 'record', { from: tab.locator('#results h2') })

  // A transaction as a group, from the entry's link, read within its time as byTransaction does.
  await update.locator('a', { hasText: /^\d+$/ }).last().click()
  await tab.waitForFunction(() => location.hash.startsWith('#/search?txid=') && document.querySelector('#results table.results'))
  assert.equal(await tab.locator('#results table.results tbody tr').count(), 1)
  const [bobs] = (await audit.search({ actorId: 'bob' })).entries
  assert.deepEqual(await audit.byTransaction(bobs.txid, { at: bobs.createdAt }).then((es) => es.map((e) => e.id)), [bobs.id])
  assert.equal(new URLSearchParams(tab.url().split('?')[1]).get('from'), bobs.createdAt.toISOString())
  await screenshot(tab, 'transaction', { from: tab.locator('#results-title') })

  // A request as a group, within an hour of the entry (a request id is not indexed).
  await openRecord(tab, `${base}#/record?table=public.posts&id=1`)
  await tab.locator('article.entry').first().getByRole('link', { name: 'req-2' }).click()
  await tab.waitForFunction(() => location.hash.includes('requestId=req-2') && document.querySelector('#results table.results'))
  const request = new URLSearchParams(tab.url().split('?')[1])
  assert.equal(new Date(request.get('to')) - new Date(request.get('from')), 2 * 3600e3)
  assert.deepEqual(await tab.locator('#results table.results tbody tr td:nth-child(5)').allTextContents(), ['bob'])

  await tab.getByRole('button', { name: 'Verify chain' }).click()
  await tab.locator('#chain.ok').waitFor()
  assert.match(await tab.locator('#chain').textContent(), /Chain verified: \d+ rows/)

  // What an application wrote is shown as text, never run.
  await tab.goto(`${base}#/record?table=public.posts&id=2`)
  await tab.waitForFunction(() => document.querySelector('#results')?.textContent.includes('mallory'))
  assert.match(await tab.locator('#results').textContent(), /onerror/)
  assert.equal(await tab.evaluate(() => window.pwned), undefined)
  assert.equal(await tab.locator('#results img').count(), 0)

  assert.deepEqual(outside, [], 'every asset ships in the package')
  assert.deepEqual(errors, [])
})

test('authorize decides: a tenant sees only its rows and cannot verify; nobody else sees anything', async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const instance = await browser(t)
  const tenant = await page(instance, { extraHTTPHeaders: { 'x-tenant': '8' } })
  await tenant.tab.goto(base)
  await tenant.tab.locator('#results table.results tbody tr').first().waitFor()
  assert.deepEqual(await tenant.tab.locator('#results table.results tbody tr td:nth-child(5)').allTextContents(), ['mallory'])
  assert.equal(await tenant.tab.getByRole('button', { name: 'Verify chain' }).isVisible(), false)
  const verify = await tenant.context.request.get(`${base}api/verify`)
  assert.equal(verify.status(), 403)
  // A tenant's own filter cannot be widened from the query string.
  const widened = await tenant.context.request.get(`${base}api/search?metadataContains=${encodeURIComponent('{"tenant": 7}')}`)
  assert.deepEqual((await widened.json()).entries.map((e) => e.actorId), ['mallory'])

  const stranger = await page(instance)
  const response = await stranger.tab.goto(base)
  assert.equal(response.status(), 403)
  assert.equal((await stranger.context.request.get(`${base}api/search`)).status(), 403)
})

test('the viewer is usable on a phone-width screen and in the dark', async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const { tab, errors } = await page(await browser(t), {
    extraHTTPHeaders: { 'x-role': 'admin' }, viewport: { width: 360, height: 740 }, colorScheme: 'dark',
  })
  await tab.goto(base)
  await tab.locator('#results table.results tbody tr').first().waitFor()
  const overflow = await tab.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  assert.ok(overflow <= 0, `no horizontal scrolling (${overflow}px too wide)`)
  const background = await tab.evaluate(() => getComputedStyle(document.body).backgroundColor)
  assert.equal(background, 'rgb(21, 25, 29)', 'the dark palette follows the system')
  await tab.getByRole('button', { name: 'Light theme' }).click()
  assert.equal(await tab.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(255, 255, 255)')
  // Every field has a label.
  const unlabelled = await tab.evaluate(() => [...document.querySelectorAll('input')].filter((i) => i.labels.length === 0).length)
  assert.equal(unlabelled, 0)
  assert.deepEqual(errors, [])
})

test('export gives the current search as CSV and JSON lines; bad parameters get a coded 400', async (t) => {
  const { url, audit } = await story(t)
  const base = await expressApp(t, audit)
  const admin = { 'x-role': 'admin' }
  const csv = await fetch(`${base}api/export?format=csv&actorId=ann`, { headers: admin })
  assert.equal(csv.status, 200)
  const lines = (await csv.text()).trim().split('\n')
  assert.equal(lines.length, 3, 'a header and the two inserts')
  // The CLI's export, column for column.
  const fromCli = spawnSync(process.execPath, [bin, 'export', '--format', 'csv', '--actor', 'ann'],
    { env: { ...process.env, DATABASE_URL: url }, encoding: 'utf8' })
  assert.equal(fromCli.status, 0, fromCli.stderr)
  const cliLines = fromCli.stdout.trim().split('\n')
  // Identical but for the time: JavaScript dates keep milliseconds, the CLI prints microseconds.
  const timeless = (line) => line.replace(/^(\d+),[^,]*,/, '$1,,')
  assert.equal(lines[0], cliLines[0])
  assert.deepEqual(lines.map(timeless), cliLines.map(timeless))
  const jsonl = await fetch(`${base}api/export?format=jsonl&table=posts`, { headers: admin })
  const entries = (await jsonl.text()).trim().split('\n').map((line) => JSON.parse(line))
  assert.deepEqual(entries.map((e) => e.action), ['INSERT', 'INSERT', 'UPDATE', 'DELETE'], 'oldest first')
  const burst = await fetch(`${base}api/bursts?threshold=2`, { headers: admin })
  assert.deepEqual((await burst.json()).map((b) => [b.key, b.changes]), [['ann', 2]])
  const badWindow = await fetch(`${base}api/bursts?window=${encodeURIComponent("1 day'; drop table x")}`, { headers: admin })
  assert.equal(badWindow.status, 400)
  const bad = await fetch(`${base}api/search?txid=abc`, { headers: admin })
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).error.code, 'AUDIT_LOGS_INVALID_ARGUMENT')
  // Whatever a client puts in the URL gets a coded answer, never a crash nor a stack.
  for (const [path, status] of [['api/__proto__', 404], ['api/constructor', 404], ['api/search?metadataContains=%7B', 400],
    ['api/search?limit=99999999999999999999', 400], ['api/search?cursor=%00%ff', 400], ['api/record?table=posts', 400],
    ['api/search?from=yesterday', 400], ['api/search?table=%22%3B%20drop%20table%20posts', 400]]) {
    const response = await fetch(`${base}${path}`, { headers: admin })
    assert.equal(response.status, status, path)
    assert.match((await response.json()).error.code, /^AUDIT_LOGS_[A-Z_]+$/, path)
  }
  assert.equal((await fetch(`${base}api/export?format=csv&actorId=ann`, { headers: admin })).status, 200, 'still serving')
  const post = await fetch(`${base}api/search`, { method: 'POST', headers: admin })
  assert.equal(post.status, 405)
  const page = await fetch(base, { headers: admin })
  assert.match(page.headers.get('content-security-policy'), /default-src 'none'/)
})

test('in Fastify, mounted under a prefix', async (t) => {
  const { audit } = await story(t)
  const app = Fastify()
  deferCleanup(t, () => app.close())
  await app.register(auditViewerPlugin, { audit, authorize: () => true, prefix: '/history' })
  const html = await app.inject({ method: 'GET', url: '/history/' })
  assert.equal(html.statusCode, 200)
  assert.match(html.body, /<title>Audit log<\/title>/)
  const search = await app.inject({ method: 'GET', url: '/history/api/search?actorId=bob' })
  assert.deepEqual(JSON.parse(search.body).entries.map((e) => e.actorId), ['bob'])
  assert.throws(() => auditViewer({ audit }), { code: 'AUDIT_LOGS_INVALID_ARGUMENT' })
})

test('audit-logs ui serves the viewer on loopback, and elsewhere only with its token', async (t) => {
  const { url } = await story(t)
  const start = async (...args) => {
    const child = spawn(process.execPath, [bin, 'ui', '--port', '0', ...args], { env: { ...process.env, DATABASE_URL: url } })
    deferCleanup(t, () => child.kill())
    let output = ''
    for await (const chunk of child.stdout) {
      output += chunk
      const found = /on (http:\/\/\S+)/.exec(output)
      if (found) return found[1]
    }
    throw new Error(`no URL printed: ${output}`)
  }
  const local = await start()
  assert.match(local, /^http:\/\/127\.0\.0\.1:\d+\/$/)
  const search = await fetch(`${local}api/search?actorId=ann`)
  assert.equal((await search.json()).entries.length, 2)

  const open = await start('--host', '0.0.0.0')
  const withToken = new URL(open)
  assert.ok(withToken.searchParams.get('token'), open)
  const origin = `http://127.0.0.1:${withToken.port}`
  assert.equal((await fetch(`${origin}/api/search`)).status, 403)
  const first = await fetch(`${origin}/?token=${withToken.searchParams.get('token')}`)
  assert.equal(first.status, 200)
  const cookie = first.headers.get('set-cookie').split(';')[0]
  assert.equal((await fetch(`${origin}/api/search`, { headers: { cookie } })).status, 200)
})

test("a record's page shows the events about it beside its changes, and views are recorded when asked", async (t) => {
  const { audit } = await story(t)
  await audit.log({ action: 'post.published', targetType: 'posts', targetId: 1, actorId: 'ann' })
  const app = express()
  app.use('/audit', auditViewer({
    audit,
    authorize: () => true,
    recordViews: (req) => ({ actorId: String(req.headers['x-user']), actorType: 'user' }),
  }))
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  const base = `http://127.0.0.1:${server.address().port}/audit/`
  const record = await fetch(`${base}api/record?table=posts&id=1`, { headers: { 'x-user': 'auditor-9' } })
  const { entries, states } = await record.json()
  assert.deepEqual(entries.map((e) => e.action), ['post.published', 'UPDATE', 'INSERT'])
  assert.deepEqual(states.map((s) => s?.state?.title ?? null), [null, 'Final', 'Draft'], 'an event has no state')
  const views = await audit.search({ action: 'audit_log.viewed' })
  assert.equal(views.entries.length, 1)
  assert.equal(views.entries[0].actorId, 'auditor-9')
  assert.deepEqual(views.entries[0].metadata, { page: 'record', table: 'posts', id: '1' })
})

/** Opens a record's page and waits for it (not the previous page's entries). */
async function openRecord(tab, url) {
  await tab.goto(url)
  const title = new URL(url).hash.replace(/^.*\?/, '')
  await tab.waitForFunction((query) => {
    const params = new URLSearchParams(query)
    return document.querySelector('#results h2')?.textContent === `${params.get('table')} ${params.get('id')}` &&
      document.querySelector('article.entry')
  }, title)
}

test("a deleted record's timeline shows the record after each change, and the record at any time", async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const { tab, errors } = await page(await browser(t), { ...DESKTOP, extraHTTPHeaders: { 'x-role': 'admin' } })
  const [remove, insert] = await audit.history({ table: 'posts', id: 2 })
  const [update, create] = await audit.history({ table: 'posts', id: 1 })

  await tab.goto(`${base}#/record?table=public.posts&id=2`)
  await tab.locator('article.entry').nth(1).waitFor()
  assert.match(await tab.locator('#gone').textContent(), /does not exist since .* \(DELETE\)/)
  const [deleted, inserted] = [tab.locator('article.entry').nth(0), tab.locator('article.entry').nth(1)]
  assert.equal(await deleted.locator('summary').textContent(), 'Record after this change: did not exist')
  await inserted.getByText('Record after this change').click()
  // What statesAt says of the record just before its DELETE, field for field.
  const [beforeDelete] = await audit.statesAt({ table: 'posts', points: [{ id: 2, at: new Date(remove.createdAt.getTime() - 1) }] })
  assert.equal(beforeDelete.entryId, insert.id)
  const shown = Object.fromEntries(await inserted.locator('table.state tr').evaluateAll((trs) =>
    trs.map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent])))
  assert.deepEqual(shown, Object.fromEntries(Object.entries(beforeDelete.state).map(([k, v]) => [k, JSON.stringify(v)])))
  assert.deepEqual(shown, { id: '2', title: '"Other"', body: '"x"', tenant: '8' })

  // The record at a time typed in: between the insert and the update of post 1, after the update.
  await openRecord(tab, `${base}#/record?table=public.posts&id=1`)
  const at = tab.getByLabel('Record as it was at')
  // (playwright's fill takes a datetime-local to the minute only: the value is set as typing would.)
  const typeTime = (input, date) => input.evaluate((element, value) => { element.value = value }, date.toISOString().slice(0, 23))
  await typeTime(at, new Date(create.createdAt.getTime() + 2))
  await at.press('Enter')
  await tab.waitForFunction(() => document.querySelector('#state-at table'))
  assert.match(await tab.locator('#state-at').textContent(), new RegExp(`as left by entry #${create.id}:.*title"Draft"`))
  await typeTime(at, new Date(update.createdAt.getTime() + 2))
  await tab.getByRole('button', { name: 'Show' }).click()
  await tab.waitForFunction(() => document.querySelector('#state-at')?.textContent.includes('Final'))
  await openRecord(tab, `${base}#/record?table=public.posts&id=2`)
  await typeTime(tab.getByLabel('Record as it was at'), new Date(remove.createdAt.getTime() + 2))
  await tab.getByRole('button', { name: 'Show' }).click()
  await tab.waitForFunction(() => document.querySelector('#state-at p'))
  assert.match(await tab.locator('#state-at').textContent(), /the record did not exist/)
  await screenshot(tab, 'deleted-record', { from: tab.locator('#results h2') })
  assert.deepEqual(errors, [])
})

test("a scoped viewer gets no state built from an entry it may not see", async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  // Tenant 7 sees post 1's insert and update; post 2 became tenant 8's only in its delete.
  const tenant = { 'x-tenant': '7' }
  const record = await (await fetch(`${base}api/record?table=posts&id=1`, { headers: tenant })).json()
  assert.deepEqual(record.entries.map((e) => e.action), ['UPDATE', 'INSERT'])
  assert.equal(record.states[0].state.title, 'Final')
  const later = new Date(Date.now() + 60_000).toISOString()
  const other = await (await fetch(`${base}api/state?table=posts&id=2&at=${later}`, { headers: { 'x-tenant': '7' } })).json()
  assert.equal(other.entryId, null, 'the state comes from tenant 8\'s delete')
  assert.equal(other.withheld, true)
  const before = new Date((await audit.history({ table: 'posts', id: 2 }))[0].createdAt.getTime() - 1).toISOString()
  const own = await (await fetch(`${base}api/state?table=posts&id=2&at=${before}`, { headers: tenant })).json()
  assert.equal(own.state.title, 'Other', 'the insert was tenant 7\'s')
  const bad = await fetch(`${base}api/state?table=posts&id=2&at=yesterday`, { headers: tenant })
  assert.equal(bad.status, 400)
  assert.equal((await bad.json()).error.code, 'AUDIT_LOGS_INVALID_ARGUMENT')
})

test('the counts chart: per hour, day or week from the keyboard, each bar a labelled link to its period', async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const { tab, errors } = await page(await browser(t), { ...DESKTOP, extraHTTPHeaders: { 'x-role': 'admin' } })
  await tab.goto(base)
  await tab.locator('#chart a').first().waitFor()
  const labels = () => tab.locator('#chart a').evaluateAll((links) => links.map((a) => a.getAttribute('aria-label')))
  // The core's counts, as the viewer asks for them: one bar per bucket it returns.
  const expected = async (by, label) => (await audit.counts([by], { from: new Date(Date.now() - 365 * 86400e3) }))
    .map((row) => `${label(row.period)}: ${row.count} ${row.count === 1 ? 'entry' : 'entries'}`)
  const day = (d) => d.toISOString().slice(0, 10)
  const hour = (d) => `${d.toISOString().slice(0, 13).replace('T', ' ')}:00 UTC`
  // Home: the last 24 hours, per hour.
  assert.equal(await tab.locator('#chart-title').textContent(), 'Changes per hour, last 24 hours')
  assert.equal(await tab.getByRole('radio', { name: 'hour' }).isChecked(), true)
  assert.deepEqual(await labels(), await expected('hour', hour))

  await tab.getByRole('radio', { name: 'hour' }).focus()
  await tab.keyboard.press('ArrowRight')
  await tab.waitForFunction(() => document.querySelector('#chart-title').textContent === 'Changes per day')
  assert.match(tab.url(), /by=day/)
  assert.equal(await tab.getByRole('radio', { name: 'day' }).isChecked(), true)
  await tab.waitForFunction(() => !document.querySelector('#chart a')?.getAttribute('aria-label').includes(' UTC: '))
  assert.deepEqual(await labels(), await expected('day', day))

  await tab.keyboard.press('ArrowRight')
  await tab.waitForFunction(() => document.querySelector('#chart-title').textContent === 'Changes per week')
  await tab.waitForFunction(() => document.querySelector('#chart a')?.getAttribute('aria-label').startsWith('week of '))
  assert.deepEqual(await labels(), await expected('week', (d) => `week of ${day(d)}`))

  // A bar, reached and followed from the keyboard, searches its week.
  await tab.locator('#chart a').last().focus()
  await tab.keyboard.press('Enter')
  await tab.waitForFunction(() => location.hash.includes('from='))
  const params = new URLSearchParams(tab.url().split('?')[1])
  assert.equal(new Date(params.get('to')) - new Date(params.get('from')), 7 * 86400e3)
  assert.equal(params.get('by'), 'week')
  const inWeek = await audit.search({ from: params.get('from'), to: params.get('to') })
  await tab.waitForFunction((n) => document.querySelectorAll('#results table.results tbody tr').length === n, inWeek.entries.length)
  assert.ok(inWeek.entries.length > 0)
  assert.equal(await tab.getByRole('radio', { name: 'week' }).isChecked(), true, 'the choice is kept')
  // A search without a range counts over a recent span.
  await tab.goto(`${base}#/search?actorId=ann`)
  await tab.waitForFunction(() => document.querySelector('#chart-title').textContent === 'Changes per day, last 30 days')
  const bad = await fetch(`${base}api/counts?by=minute`, { headers: { 'x-role': 'admin' } })
  assert.equal(bad.status, 400)
  assert.deepEqual(errors, [])
})

test('the verify badge turns red after a superuser edits an audit row', async (t) => {
  const { url, audit } = await story(t)
  await audit.seal()
  const base = await expressApp(t, audit)
  const { tab, errors } = await page(await browser(t), { ...DESKTOP, extraHTTPHeaders: { 'x-role': 'admin' } })
  await tab.goto(base)
  await tab.locator('#results table.results tbody tr').first().waitFor()
  const verify = tab.getByRole('button', { name: 'Verify chain' })
  await verify.click()
  await tab.locator('#chain.ok').waitFor()
  const sound = await audit.verify()
  assert.equal(await tab.locator('#chain').textContent(), `Chain verified: ${sound.rowsChecked} rows, head ${sound.shortHead}`)
  await screenshot(tab, 'badge-ok', { of: tab.locator('header') })

  const [{ id }] = (await audit.search({ actorId: 'bob' })).entries
  await withClient(url, (c) => c.query(`set session_replication_role = replica;
    update audit.audit_logs set actor_id = 'ann' where id = ${id}`))
  await verify.click()
  await tab.locator('#chain.bad').waitFor()
  const report = await audit.verify()
  assert.equal(report.ok, false)
  assert.equal(await tab.locator('#chain').textContent(),
    `Chain FAILED: ${report.problemCount} problem(s), first: ${report.firstProblem.message}`)
  assert.equal(report.firstProblem.rowId, id)
  const color = await tab.locator('#chain').evaluate((badge) => getComputedStyle(badge).color)
  assert.equal(color, 'rgb(163, 22, 29)', 'red')
  await screenshot(tab, 'badge-failed', { of: tab.locator('header') })

  await tab.getByRole('button', { name: 'Dark theme' }).click()
  assert.equal(await tab.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(21, 25, 29)')
  await screenshot(tab, 'dark')
  assert.deepEqual(errors, [])
})

/** The README's js blocks of "See it: the viewer", each run as written with its names given. */
function readmeViewerBlocks() {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('### See it: the viewer'), readme.indexOf('### From SQL'))
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map(([, code]) => {
    const [, names] = /^import \{ ([^}]+) \} from 'audit-logs'\n/m.exec(code)
    const body = code.replace(/^import .*\n/m, '')
    return { names: names.split(',').map((n) => n.trim()), run: (scope) => new AsyncFunction(...Object.keys(scope), body)(...Object.values(scope)) }
  })
}
const AsyncFunction = (async () => {}).constructor
const users = {
  admin: { id: 'u1', isAdmin: true },
  tenant8: { id: 'u2', tenantId: 8 },
}

test("the README's Express and Fastify mounting, run as written, in a browser and over HTTP", async (t) => {
  const { audit } = await story(t)
  const exported = await import('../../index.js')
  const [expressBlock, fastifyBlock] = readmeViewerBlocks()
  const given = (block) => Object.fromEntries(block.names.map((name) => {
    assert.equal(typeof exported[name], 'function', `audit-logs exports ${name}`)
    return [name, exported[name]]
  }))

  // Express: your sign-in sets req.user (here from a header), then the README's lines.
  const app = express()
  app.use((req, res, next) => { req.user = users[req.headers['x-user']]; next() })
  await expressBlock.run({ app, audit, ...given(expressBlock) })
  const server = app.listen(0, '127.0.0.1')
  await once(server, 'listening')
  deferCleanup(t, () => new Promise((resolve) => server.close(resolve)))
  const expressBase = `http://127.0.0.1:${server.address().port}/admin/audit/`

  // Fastify: a hook sets request.user, as @fastify/jwt or a session plugin does.
  const fastify = Fastify()
  deferCleanup(t, () => fastify.close())
  fastify.decorateRequest('user', null)
  fastify.addHook('onRequest', async (request) => { request.user = users[request.headers['x-user']] })
  await fastifyBlock.run({ app: fastify, audit, ...given(fastifyBlock) })
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const fastifyBase = `http://127.0.0.1:${fastify.server.address().port}/admin/audit/`

  const instance = await browser(t)
  for (const base of [expressBase, fastifyBase]) {
    const actors = async (user) => {
      const response = await fetch(`${base}api/search`, { headers: user ? { 'x-user': user } : {} })
      return response.ok ? (await response.json()).entries.map((e) => e.actorId) : response.status
    }
    assert.deepEqual(await actors('admin'), ['mallory', 'bob', 'ann', 'ann'], base)
    assert.deepEqual(await actors('tenant8'), ['mallory'], base)
    assert.equal(await actors(), 403, base)
    const { tab, errors, outside } = await page(instance, { extraHTTPHeaders: { 'x-user': 'admin' } })
    await tab.goto(base)
    await tab.locator('#results table.results tbody tr').nth(3).waitFor()
    await tab.locator('#results a', { hasText: /^2$/ }).first().click()
    await tab.locator('article.entry').nth(1).waitFor()
    assert.equal(await tab.locator('#gone').count(), 1, base)
    await tab.getByRole('button', { name: 'Verify chain' }).click()
    await tab.locator('#chain.ok').waitFor()
    assert.deepEqual([errors, outside], [[], []], base)
  }
})

test('audit-logs ui on the demo database', async (t) => {
  const admin = await (await import('./helpers.mjs')).serverUrl()
  const demo = spawnSync(process.execPath, [bin, 'demo', '--keep', '-D', admin], { encoding: 'utf8' })
  assert.equal(demo.status, 0, demo.stderr)
  const [, name] = /Kept database (\w+)/.exec(demo.stdout)
  t.after(() => withClient(admin, (c) => c.query(`drop database if exists ${name} with (force)`)))
  const database = new URL(admin)
  database.pathname = `/${name}`
  const child = spawn(process.execPath, [bin, 'ui', '--port', '0', '-D', database.toString()])
  t.after(() => child.kill())
  let output = ''
  let base
  for await (const chunk of child.stdout) {
    output += chunk
    base = /on (http:\/\/\S+)/.exec(output)?.[1]
    if (base) break
  }
  assert.ok(base, output)
  const { entries } = await (await fetch(`${base}api/search`)).json()
  assert.ok(entries.length > 0, 'the demo\'s history')
  const instance = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => instance.close())
  const { tab, errors } = await page(instance)
  await tab.goto(base)
  await tab.locator('#results table.results tbody tr').nth(entries.length - 1).waitFor()
  await tab.locator('#results a', { hasText: entries.find((e) => e.targetId).targetId }).first().click()
  await tab.locator('article.entry').first().waitFor()
  assert.deepEqual(errors, [])
})
