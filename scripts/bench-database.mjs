// A database of its own for a benchmark script: on DATABASE_URL's server when set, else on a
// throwaway server. `drop()` removes it (and stops the throwaway server).
import { createRequire } from 'node:module'
import pg from 'pg'

const require = createRequire(import.meta.url)
const { TemporaryPostgres } = require('../index.js')

export async function benchDatabase(name) {
  let server
  let admin = process.env.DATABASE_URL
  if (!admin) {
    server = await TemporaryPostgres.start()
    admin = server.url('postgres')
  }
  const database = `audit_logs_bench_${name}_${process.pid}`
  const url = new URL(admin)
  url.pathname = `/${database}`
  const adminClient = new pg.Client({ connectionString: admin })
  await adminClient.connect()
  await adminClient.query(`drop database if exists ${database}`)
  await adminClient.query(`create database ${database}`)
  return {
    url: url.toString(),
    async drop() {
      await adminClient.query(`drop database if exists ${database} with (force)`)
      await adminClient.end()
      server?.stop()
    },
  }
}
