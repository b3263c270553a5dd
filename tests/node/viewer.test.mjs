// The history viewer in a real browser (Debian's Chromium, driven by playwright-core), mounted
// in a real Express app and a real Fastify app, and served by `audit-logs ui`.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
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
  const as = (context, sql) => withAuditContext(pool, context, (c) => c.query(sql))
  await as({ actorId: 'ann', requestId: 'req-1', metadata: { tenant: 7 } },
    "insert into posts values (1, 'Draft', 'hello', 's1', 7), (2, 'Other', 'x', 's2', 8)")
  await as({ actorId: 'bob', requestId: 'req-2', metadata: { tenant: 7 } },
    "update posts set title = 'Final', secret = 's3' where id = 1")
  await as({ actorId: 'mallory', metadata: { tenant: 8, note: '<img src=x onerror="window.pwned=1">' } },
    'delete from posts where id = 2')
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

test('the viewer searches, shows a record with its diffs, verifies the chain, and fetches nothing from outside', async (t) => {
  const { audit } = await story(t)
  const base = await expressApp(t, audit)
  const { tab, outside, errors } = await page(await browser(t), { extraHTTPHeaders: { 'x-role': 'admin' } })

  await tab.goto(base)
  const rows = tab.locator('#results table.results tbody tr')
  await rows.first().waitFor()
  assert.equal(await rows.count(), 4, 'two inserts, an update, a delete')
  assert.equal(await rows.first().locator('td').nth(1).textContent(), 'DELETE', 'newest first')
  await tab.locator('#chart rect').first().waitFor()
  assert.ok(await tab.locator('#chart rect').count() >= 1, 'a bar per day')

  // Search by actor, from the keyboard: the label finds the field.
  await tab.getByLabel('Actor').focus()
  await tab.keyboard.type('bob')
  await tab.keyboard.press('Enter')
  await tab.waitForFunction(() => document.querySelectorAll('#results table.results tbody tr').length === 1)
  assert.match(tab.url(), /#\/search\?actorId=bob$/)

  // The record's timeline: the change as old → new, the excluded field as not stored.
  await tab.locator('#results table.results tbody tr a', { hasText: '1' }).first().click()
  await tab.locator('article.entry').first().waitFor()
  assert.equal(await tab.locator('article.entry').count(), 2)
  const update = tab.locator('article.entry').first()
  assert.equal(await update.locator('h3').textContent(), 'UPDATE')
  const title = update.locator('tr', { has: tab.locator('th', { hasText: 'title' }) })
  assert.deepEqual(await title.locator('td').allTextContents(), ['"Draft"', '"Final"'])
  const secret = update.locator('tr', { has: tab.locator('th', { hasText: 'secret' }) })
  assert.deepEqual(await secret.locator('td').allTextContents(), ['(not stored)', '(not stored)'])

  // A transaction as a group, from the entry's link.
  await update.locator('a', { hasText: /^\d+$/ }).last().click()
  await tab.waitForFunction(() => location.hash.startsWith('#/search?txid=') && document.querySelector('#results table.results'))
  assert.equal(await tab.locator('#results table.results tbody tr').count(), 1)

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
  assert.deepEqual((await record.json()).map((e) => e.action), ['post.published', 'UPDATE', 'INSERT'])
  const views = await audit.search({ action: 'audit_log.viewed' })
  assert.equal(views.entries.length, 1)
  assert.equal(views.entries[0].actorId, 'auditor-9')
  assert.deepEqual(views.entries[0].metadata, { page: 'record', table: 'posts', id: '1' })
})
