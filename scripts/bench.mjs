#!/usr/bin/env node
// `npm run bench` (quick, under 3 minutes) or `npm run bench -- --full` (under 20): the Rust
// benchmark (capture cost and query latency), then the Node helper against the same SQL sent
// through pg, then the viewer's pages over HTTP (scripts/bench-viewer.mjs). Figures go to
// bench-results/latest.json and viewer.json. DATABASE_URL is used when set.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import pg from 'pg'
import { benchDatabase } from './bench-database.mjs'

const require = createRequire(import.meta.url)
const { AuditLogs } = require('../index.js')
const root = new URL('..', import.meta.url).pathname
const full = process.argv.includes('--full')
const results = `${root}bench-results`
mkdirSync(results, { recursive: true })

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: process.env })
  if (result.status !== 0) process.exit(result.status ?? 1)
}

// Both binaries fresh: a stale addon would time old code.
run('npx', ['napi', 'build', '-p', 'audit-logs-node', '--platform', '--release', '--js', 'binding.js', '--dts', 'binding.d.ts', '-o', '.'])
run('cargo', ['build', '--release', '-q', '-p', 'audit-logs-bench'])
run(`${root}target/release/audit-logs-bench`, [...(full ? ['--full'] : []), '--json', `${results}/rust.json`])
const rust = JSON.parse(readFileSync(`${results}/rust.json`, 'utf8'))
const sqlOf = (query) => rust.queries[0].rows.find((r) => r.query === query).sql

// The Node helper against raw pg, end to end (round trip, decoding), on the same data and SQL.
const calls = full ? 2000 : 500
const rounds = full ? 7 : 5
const bench = await benchDatabase('node')
const url = bench.url
let report
try {
  const audit = await AuditLogs.connect(url)
  await audit.migrate()
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  console.error('[bench] node: loading 200000 audit rows')
  await client.query(`
    insert into audit.audit_logs (action, target_type, target_id, old_values, new_values, changed_fields, actor_id, actor_type)
    select 'UPDATE', 'public.accounts', (1 + (g * 7919) % 40000)::text, '{"abalance": 1}',
           jsonb_build_object('id', 1 + (g * 7919) % 40000, 'abalance', g), '{abalance}', 'user-' || g % 1000, 'user'
    from generate_series(1::bigint, 200000) g`)
  await client.query('vacuum analyze audit.audit_logs')

  const id = (i) => String(1 + ((i * 104729) % 40000))
  const actor = (i) => `user-${(i * 7) % 1000}`
  const [{ at }] = (await client.query('select min(created_at) + (max(created_at) - min(created_at)) / 2 as at from audit.audit_logs')).rows
  const never = '9223372036854775807'
  // Each helper and the same SQL through pg (the SQL the Rust benchmark timed), with a check
  // that both give the same answer, or the comparison means nothing.
  const comparisons = [
    {
      query: 'history of one record',
      helper: (i) => audit.history({ table: 'public.accounts', id: id(i), limit: 50 }),
      // $5: the names events about an account may carry (events::table_aliases), as the helper sends.
      pg: (i) => client.query(sqlOf('history of one record'),
        ['public.accounts', JSON.stringify(id(i)), never, 50, ['accounts', 'Accounts', 'account', 'Account']]),
      same: (a, b) => JSON.stringify(a.map((e) => e.id)) === JSON.stringify(b.rows.map((r) => Number(r.id))),
    },
    {
      query: 'state at a time',
      helper: (i) => audit.stateAt({ table: 'public.accounts', id: id(i), at }),
      pg: (i) => client.query(sqlOf('state at a time'), ['public.accounts', JSON.stringify(id(i)), at]),
      same: (a, b) => JSON.stringify(a) === JSON.stringify(b.rows[0]?.state ?? null),
    },
    {
      query: 'by actor, first page',
      helper: (i) => audit.byActor(actor(i), { limit: 50 }),
      pg: (i) => client.query(sqlOf('by actor, first page'), [actor(i), never, 51]),
      same: (a, b) => JSON.stringify(a.map((e) => e.id)) === JSON.stringify(b.rows.slice(0, 50).map((r) => Number(r.id))),
    },
  ]
  const timeOf = async (fn) => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) await fn(i)
    return Number(process.hrtime.bigint() - start) / 1000 / calls
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  report = { calls, rounds, helpers: [] }
  for (const c of comparisons) {
    for (let i = 0; i < 20; i++) {
      const [a, b] = await Promise.all([c.helper(i), c.pg(i)])
      if (!c.same(a, b)) throw new Error(`${c.query}: helper and pg disagree for sample ${i}`)
    }
    await timeOf(c.pg)
    await timeOf(c.helper)
    const samples = { pg: [], helper: [] }
    for (let r = 0; r < rounds; r++) {
      samples.pg.push(await timeOf(c.pg))
      samples.helper.push(await timeOf(c.helper))
    }
    const pgMedian = median(samples.pg)
    const helperMedian = median(samples.helper)
    report.helpers.push({ query: c.query, pgMicroseconds: pgMedian, helperMicroseconds: helperMedian, helperOverPg: helperMedian / pgMedian, samples })
  }
  await client.end()
  audit.close()
} finally {
  await bench.drop()
}

console.log(`\nNode helpers against the same SQL through pg (${calls} calls x ${rounds} rounds, median µs per call):`)
console.log(`  ${'query'.padEnd(24)} ${'pg'.padStart(8)} ${'helper'.padStart(8)} ${'ratio'.padStart(7)}  target <= 1.1x (issue 14)`)
for (const h of report.helpers) {
  const verdict = h.helperOverPg <= 1.1 ? 'met' : 'MISSED'
  console.log(`  ${h.query.padEnd(24)} ${h.pgMicroseconds.toFixed(0).padStart(8)} ${h.helperMicroseconds.toFixed(0).padStart(8)} ${(h.helperOverPg.toFixed(2) + 'x').padStart(7)}  ${verdict}`)
}
writeFileSync(`${results}/latest.json`, JSON.stringify({ ...rust, node: report }, null, 2))
// The viewer's pages over HTTP against the helpers behind them (bench-results/viewer.json).
run(process.execPath, [`${root}scripts/bench-viewer.mjs`, '--rows', full ? '1000000' : '200000'])
console.log(`\nFigures written to bench-results/latest.json and bench-results/viewer.json`)
