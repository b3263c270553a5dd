#!/usr/bin/env node
// The viewer's API at scale: `node scripts/bench-viewer.mjs [--rows N]` (default 1,000,000; run by
// `npm run bench` with 200,000, and 1,000,000 with --full). Loads a year of synthetic audit rows
// shaped like the Rust benchmark's, serves the viewer over real HTTP, and times each page's call
// against the helper it makes (the indexed query behind it, through the binding): median ms per
// call. A page much slower than its helper spends its time outside the query. DATABASE_URL is
// used when set; figures go to bench-results/viewer.json.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import pg from 'pg'
import { benchDatabase } from './bench-database.mjs'

const require = createRequire(import.meta.url)
const { AuditLogs, auditViewer } = require('../index.js')
const root = new URL('..', import.meta.url).pathname
const rowsArg = process.argv.indexOf('--rows')
const ROWS = rowsArg > 0 ? Number(process.argv[rowsArg + 1]) : 1_000_000
const TARGETS = 200_000
const ACTORS = 10_000
const MONTHS = 12 // the partitions of crates/audit-logs-bench/sql/past-partitions.sql
const CALLS = 20
const ROUNDS = 5

const bench = await benchDatabase('viewer')
const url = bench.url
let report
try {
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const started = Date.now()
  // A year of monthly partitions, and a year of UPDATEs of 200,000 accounts by 10,000 actors,
  // one per transaction, created_at growing with the row number (as the Rust benchmark loads).
  await client.query(readFileSync(`${root}crates/audit-logs-bench/sql/past-partitions.sql`, 'utf8'))
  await client.query('create table public.accounts (id int primary key, bid int, abalance int, filler char(84))')
  for (let first = 1; first <= ROWS; first += 250_000) {
    const last = Math.min(first + 249_999, ROWS)
    console.error(`[bench] viewer: loading audit rows ${first}..${last} of ${ROWS}`)
    await client.query(`
      insert into audit.audit_logs (created_at, txid, action, target_type, target_id, old_values, new_values,
                                    changed_fields, actor_id, actor_type, ip_address, request_id)
      select now() - interval '${MONTHS} months' + (g::float8 / ${ROWS}) * interval '${MONTHS} months' * 0.999,
             1000 + g, 'UPDATE', 'public.accounts', (1 + (g * 7919) % ${TARGETS})::text,
             jsonb_build_object('abalance', g % 1000),
             jsonb_build_object('id', 1 + (g * 7919) % ${TARGETS}, 'bid', 1, 'abalance', g % 997, 'filler', repeat(' ', 84)),
             '{abalance}', 'user-' || g % ${ACTORS}, 'user', '10.0.0.1', 'synthetic-' || g
      from generate_series(${first}::bigint, ${last}) g`)
  }
  await client.query('vacuum analyze audit.audit_logs')
  const loadSeconds = (Date.now() - started) / 1000

  const viewer = auditViewer({ audit, authorize: () => true })
  const httpServer = http.createServer((req, res) => viewer(req, res))
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${httpServer.address().port}/api/`
  const agent = new http.Agent({ keepAlive: true })
  const get = (path) => new Promise((resolve, reject) => {
    http.get(`${base}${path}`, { agent }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${path}: ${res.statusCode} ${Buffer.concat(chunks)}`)))
    }).on('error', reject)
  })

  // Arguments as the pages make them, varied per call over the loaded year.
  const { rows: [span] } = await client.query('select min(id) as first, max(id) as last from audit.audit_logs')
  const record = (i) => String(1 + ((i * 104729) % TARGETS))
  const actor = (i) => `user-${(i * 7) % ACTORS}`
  const entryAt = async (i) => (await client.query(
    `select id, txid, created_at, request_id from audit.audit_logs where id = $1`,
    [Math.floor(Number(span.first) + (Number(span.last) - Number(span.first)) * ((i * 0.618) % 1))])).rows[0]
  const samples = []
  for (let i = 0; i < CALLS; i++) samples.push(await entryAt(i))
  const iso = (date, ms = 0) => new Date(date.getTime() + ms).toISOString()
  const thirtyDaysAgo = iso(new Date(), -30 * 86400e3)
  const dayAgo = iso(new Date(), -86400e3)
  // Cursors inside the last 24 hours, a few pages down.
  const { rows: lastDay } = await client.query('select id from audit.audit_logs where created_at >= $1 order by id desc', [dayAgo])
  const recent = Array.from({ length: CALLS }, (_, i) => lastDay[Math.min(lastDay.length - 1, 100 + i * 50)].id)
  const ROW_CHANGES = new Set(['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])
  const pages = [
    {
      // The home page: the last 24 hours, newest first, then the next page.
      page: 'home, first page',
      http: () => get(`search?from=${dayAgo}`),
      helper: () => audit.search({ from: dayAgo }, { limit: 50 }),
    },
    {
      page: 'home, a later page',
      http: (i) => get(`search?from=${dayAgo}&cursor=${recent[i]}`),
      helper: (i) => audit.search({ from: dayAgo }, { limit: 50, cursor: String(recent[i]) }),
    },
    {
      // A search with no filter at all (asked for): no index orders the whole log by id.
      page: 'no filter, first page',
      http: () => get('search'),
      helper: () => audit.search({}, { limit: 50 }),
    },
    {
      page: 'no filter, a later page',
      http: (i) => get(`search?cursor=${samples[i].id}`),
      helper: (i) => audit.search({}, { limit: 50, cursor: String(samples[i].id) }),
    },
    {
      page: "a record's timeline",
      http: (i) => get(`record?table=public.accounts&id=${record(i)}`),
      // history, then statesAt at each row change's time: the two helpers the page makes.
      helper: async (i) => {
        const entries = await audit.history({ table: 'public.accounts', id: Number(record(i)), limit: 500 })
        const changes = entries.filter((e) => ROW_CHANGES.has(e.action))
        return audit.statesAt({ table: 'public.accounts', points: changes.map((e) => ({ id: Number(record(i)), at: e.createdAt.toISOString().replace('Z', '999Z') })) })
      },
    },
    {
      page: 'counts per day, 30 days',
      http: () => get(`counts?by=day&from=${thirtyDaysAgo}`),
      helper: () => audit.counts(['day'], { from: thirtyDaysAgo }),
    },
    {
      page: 'bursts, last 24 hours',
      http: () => get('bursts'),
      helper: () => audit.bursts({ window: '10 minutes', threshold: 20 }, {}),
    },
    {
      page: 'a transaction',
      http: (i) => get(`search?txid=${samples[i].txid}&from=${iso(samples[i].created_at)}&to=${iso(samples[i].created_at, 1)}`),
      helper: (i) => audit.byTransaction(Number(samples[i].txid), { at: samples[i].created_at }),
    },
    {
      // As the viewer linked a transaction before it passed the time: every partition's BRIN.
      page: 'a transaction, no time',
      http: (i) => get(`search?txid=${samples[i].txid}`),
      helper: (i) => audit.byTransaction(Number(samples[i].txid)),
    },
    {
      page: 'a request',
      http: (i) => get(`search?requestId=${samples[i].request_id}&from=${iso(samples[i].created_at, -3600e3)}&to=${iso(samples[i].created_at, 3600e3)}`),
      helper: (i) => audit.byRequest(samples[i].request_id, { from: iso(samples[i].created_at, -3600e3), to: iso(samples[i].created_at, 3600e3) }),
    },
    {
      page: "an actor's activity",
      http: (i) => get(`search?actorId=${actor(i)}`),
      helper: (i) => audit.byActor(actor(i), { limit: 50 }),
    },
  ]
  const timeOf = async (fn) => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < CALLS; i++) await fn(i)
    return Number(process.hrtime.bigint() - start) / 1e6 / CALLS
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  report = { auditRows: ROWS, loadSeconds, calls: CALLS, rounds: ROUNDS, pages: [] }
  for (const p of pages) {
    console.error(`[bench] viewer: ${p.page}`)
    await timeOf(p.helper)
    await timeOf(p.http)
    const times = { helper: [], http: [] }
    for (let r = 0; r < ROUNDS; r++) {
      times.helper.push(await timeOf(p.helper))
      times.http.push(await timeOf(p.http))
    }
    report.pages.push({ page: p.page, helperMs: median(times.helper), httpMs: median(times.http), times })
  }
  agent.destroy()
  httpServer.close()
  await client.end()
  audit.close()
} finally {
  await bench.drop()
}

console.log(`\nThe viewer's API at ${report.auditRows} audit rows (${MONTHS} monthly partitions, loaded in ${report.loadSeconds.toFixed(0)}s); median ms per call (${CALLS} calls x ${ROUNDS} rounds):`)
console.log(`  ${'page'.padEnd(26)} ${'helper'.padStart(8)} ${'HTTP'.padStart(8)} ${'ratio'.padStart(7)}`)
for (const p of report.pages) {
  console.log(`  ${p.page.padEnd(26)} ${p.helperMs.toFixed(2).padStart(8)} ${p.httpMs.toFixed(2).padStart(8)} ${(p.httpMs / p.helperMs).toFixed(2).padStart(6)}x`)
}
mkdirSync(`${root}bench-results`, { recursive: true })
writeFileSync(`${root}bench-results/viewer.json`, JSON.stringify(report, null, 2))
