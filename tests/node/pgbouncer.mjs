// Test support: a real pgBouncer (the distribution's `pgbouncer`) in transaction pooling mode in
// front of the test server, on a free port, its config in a temporary directory. A missing
// pgbouncer fails the test that asks for one: it is installed by .ci/run, never skipped.
import { spawn, spawnSync } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'

/** The pgbouncer binary: on PATH, or where Debian puts it (/usr/sbin, not on a user's PATH). */
export function pgbouncerBinary() {
  for (const candidate of ['pgbouncer', '/usr/sbin/pgbouncer']) {
    const probe = spawnSync(candidate, ['--version'], { encoding: 'utf8' })
    if (probe.status === 0) return { path: candidate, version: probe.stdout.match(/PgBouncer (\S+)/)?.[1] ?? 'unknown' }
  }
  throw new Error('pgbouncer is not installed, and the pooler tests need a real one: ' +
    'apt-get install pgbouncer (.ci/run installs it when missing)')
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** pgbouncer refuses to run as root: as root, run it as the `postgres` user, as the test server is. */
function runAs() {
  if (process.getuid?.() !== 0) return {}
  const id = (flag) => Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim())
  const uid = id('-u')
  if (!Number.isInteger(uid) || uid === 0) throw new Error('running as root, pgbouncer needs a `postgres` OS user to run as')
  return { uid, gid: id('-g') }
}

const quote = (value) => `'${String(value).replaceAll("'", "''")}'`

/**
 * Starts pgbouncer in transaction mode in front of the server of `serverUrl` (any database: the
 * tests' fresh ones pass through), with at most `poolSize` server connections per database and
 * user. Resolves to `{ url(database), serverConnections(), stop() }`.
 */
export async function startPgBouncer(serverUrl, { poolSize = 2, settings = {} } = {}) {
  const binary = pgbouncerBinary()
  const server = new URL(serverUrl)
  const user = decodeURIComponent(server.username || 'postgres')
  const password = decodeURIComponent(server.password)
  const dir = mkdtempSync(join(tmpdir(), 'audit-logs-pgbouncer-'))
  const owner = runAs()
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const target = [`host=${server.hostname}`, `port=${server.port || 5432}`, `user=${user}`,
      ...(password ? [`password=${quote(password)}`] : [])].join(' ')
    writeFileSync(join(dir, 'users.txt'), `"${user}" "${password.replaceAll('"', '""')}"\n`)
    writeFileSync(join(dir, 'pgbouncer.ini'), `[databases]
* = ${target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'users.txt')}
admin_users = ${user}
pool_mode = transaction
default_pool_size = ${poolSize}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
logfile = ${join(dir, 'pgbouncer.log')}
pidfile = ${join(dir, 'pgbouncer.pid')}
; pg and Prisma send these at startup; pgBouncer would refuse the connection otherwise.
ignore_startup_parameters = extra_float_digits,options
${Object.entries(settings).map(([key, value]) => `${key} = ${value}`).join('\n')}
`)
    if (owner.uid !== undefined) {
      for (const file of ['', 'users.txt', 'pgbouncer.ini']) chownSync(join(dir, file), owner.uid, owner.gid)
    }
    const child = spawn(binary.path, [join(dir, 'pgbouncer.ini')], { ...owner, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk) => { stderr += chunk })
    const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)))
    const url = (database) => {
      const parsed = new URL(`postgres://127.0.0.1:${port}/${database}`)
      parsed.username = encodeURIComponent(user)
      return parsed.toString()
    }
    const ready = await waitUntilReady(url('pgbouncer'), exited)
    if (ready) {
      return {
        version: binary.version,
        port,
        url,
        /** The server connections pgBouncer holds for `database`, from its admin console. */
        async serverConnections(database) {
          const rows = await adminQuery(url('pgbouncer'), 'show servers')
          return rows.filter((row) => row.database === database).length
        },
        /** pgBouncer's pool of `database`: client and server connection counts. */
        async pool(database) {
          return (await adminQuery(url('pgbouncer'), 'show pools')).find((row) => row.database === database)
        },
        /** Closes pgBouncer's connections to `database` (before it is dropped). */
        async kill(database) {
          await adminQuery(url('pgbouncer'), `kill ${database}`)
        },
        async stop() {
          child.kill('SIGTERM')
          await exited
          rmSync(dir, { recursive: true, force: true })
        },
      }
    }
    const log = readLog(dir)
    if (attempt >= 3 || !/Address already in use/.test(log + stderr)) {
      child.kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
      throw new Error(`pgbouncer did not start: ${stderr}${log}`)
    }
  }
}

function readLog(dir) {
  try {
    return readFileSync(join(dir, 'pgbouncer.log'), 'utf8')
  } catch {
    return ''
  }
}

/** Connects to the admin console until it answers (true), or pgbouncer exits first (false). */
async function waitUntilReady(adminUrl, exited) {
  let gone = false
  exited.then(() => { gone = true })
  for (let attempt = 0; attempt < 600; attempt++) {
    if (gone) return false
    try {
      await adminQuery(adminUrl, 'show version')
      return true
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  throw new Error('pgbouncer started but its admin console never answered')
}

/** The admin console takes the simple query protocol only: no parameters. */
async function adminQuery(adminUrl, command) {
  const client = new pg.Client({ connectionString: adminUrl })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query(command)).rows
  } finally {
    await client.end()
  }
}
