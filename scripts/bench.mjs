#!/usr/bin/env node
// `npm run bench` (quick, under 3 minutes) or `npm run bench -- --full` (under 20): the Rust
// benchmark (capture cost and query latency), then the Node helper against the same SQL sent
// through pg. Figures go to bench-results/latest.json. DATABASE_URL is used when set.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import pg from 'pg'

const require = createRequire(import.meta.url)
const { AuditLogs, TemporaryPostgres } = require('../index.js')
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
const historySql = rust.queries[0].rows.find((r) => r.query === 'history of one record').sql

// The Node helper against raw pg, end to end (round trip, decoding), on the same data and SQL.
const calls = full ? 2000 : 500
const rounds = full ? 7 : 5
let server
let admin = process.env.DATABASE_URL
if (!admin) {
  server = await TemporaryPostgres.start()
  admin = server.url('postgres')
}
const database = `audit_logs_bench_node_${process.pid}`
const url = new URL(admin)
url.pathname = `/${database}`
const adminClient = new pg.Client({ connectionString: admin })
await adminClient.connect()
await adminClient.query(`drop database if exists ${database}`)
await adminClient.query(`create database ${database}`)
let report
try {
  const audit = await AuditLogs.connect(url.toString())
  await audit.migrate()
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  console.error('[bench] node: loading 200000 audit rows')
  await client.query(`
    insert into audit.audit_logs (action, target_type, target_id, old_values, new_values, changed_fields, actor_id, actor_type)
    select 'UPDATE', 'public.accounts', (1 + (g * 7919) % 40000)::text, '{"abalance": 1}',
           jsonb_build_object('id', 1 + (g * 7919) % 40000, 'abalance', g), '{abalance}', 'user-' || g % 1000, 'user'
    from generate_series(1::bigint, 200000) g`)
  await client.query('vacuum analyze audit.audit_logs')

  const id = (i) => String(1 + ((i * 104729) % 40000))
  const viaHelper = (i) => audit.history({ targetType: 'public.accounts', id: id(i), limit: 50 })
  const viaTable = (i) => audit.history({ table: 'public.accounts', id: id(i), limit: 50 })
  const viaPg = (i) => client.query(historySql, ['public.accounts', JSON.stringify(id(i)), '9223372036854775807', 50])

  // Same rows either way, or the comparison means nothing.
  for (let i = 0; i < 20; i++) {
    const [a, b] = await Promise.all([viaHelper(i), viaPg(i)])
    if (JSON.stringify(a.map((e) => e.id)) !== JSON.stringify(b.rows.map((r) => Number(r.id)))) {
      throw new Error(`helper and pg disagree for id ${id(i)}`)
    }
  }
  const timeOf = async (fn) => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) await fn(i)
    return Number(process.hrtime.bigint() - start) / 1000 / calls
  }
  const samples = { pg: [], helper: [], helperByTable: [] }
  await timeOf(viaPg)
  await timeOf(viaHelper)
  for (let r = 0; r < rounds; r++) {
    samples.pg.push(await timeOf(viaPg))
    samples.helper.push(await timeOf(viaHelper))
    samples.helperByTable.push(await timeOf(viaTable))
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  report = {
    calls,
    rounds,
    microsecondsPerCall: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, { median: median(v), samples: v }])),
  }
  report.helperOverPg = report.microsecondsPerCall.helper.median / report.microsecondsPerCall.pg.median
  report.helperByTableOverPg = report.microsecondsPerCall.helperByTable.median / report.microsecondsPerCall.pg.median
  await client.end()
  audit.close()
} finally {
  await adminClient.query(`drop database if exists ${database} with (force)`)
  await adminClient.end()
  server?.stop()
}

const us = report.microsecondsPerCall
console.log(`\nNode helper against the same SQL through pg (history of one record, ${calls} calls x ${rounds} rounds):`)
console.log(`  pg client.query                          ${us.pg.median.toFixed(0)} µs/call`)
console.log(`  audit.history({ targetType, id })        ${us.helper.median.toFixed(0)} µs/call  ${report.helperOverPg.toFixed(2)}x  (target <= 1.2x)`)
console.log(`  audit.history({ table, id })             ${us.helperByTable.median.toFixed(0)} µs/call  ${report.helperByTableOverPg.toFixed(2)}x`)
writeFileSync(`${results}/latest.json`, JSON.stringify({ ...rust, node: report }, null, 2))
console.log(`\nFigures written to bench-results/latest.json`)
