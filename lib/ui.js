'use strict'
// `audit-logs ui`: the viewer on a local port, for whoever can read the log with DATABASE_URL.
// Bound to 127.0.0.1 by default; bound elsewhere, every request needs the token printed in
// the URL (kept in a cookie after the first page).
const http = require('node:http')
const { randomBytes, timingSafeEqual } = require('node:crypto')
const { execFile } = require('node:child_process')
const { auditViewer } = require('./viewer.js')

const USAGE = `Usage: audit-logs ui [--port N] [--host ADDRESS] [--open] [-D DATABASE_URL]

Serves the history viewer at http://127.0.0.1:PORT (default 4680). It only reads: it needs the
audit_reader role. Bound to another address than loopback, it asks for a token, printed in the URL.`

function parse(args) {
  const options = { port: 4680, host: '127.0.0.1', open: false, url: process.env.DATABASE_URL }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]
    const value = () => {
      if (i + 1 >= args.length) throw new Error(`${arg} needs a value`)
      return args[++i]
    }
    if (arg === '--port') options.port = Number(value())
    else if (arg === '--host') options.host = value()
    else if (arg === '--open') options.open = true
    else if (arg === '-D' || arg === '--database-url') options.url = value()
    else if (arg === '--help' || arg === '-h') options.help = true
    else throw new Error(`unknown argument ${arg}`)
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) throw new Error('--port is 0 to 65535')
  return options
}

function isLoopback(host) {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost'
}

function tokenGate(token) {
  const expected = Buffer.from(token)
  const matches = (given) => given != null && given.length === token.length && timingSafeEqual(Buffer.from(given), expected)
  return (req) => {
    const url = new URL(req.url, 'http://ui.invalid')
    const cookie = /(?:^|;\s*)audit_logs_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1]
    return matches(url.searchParams.get('token')) || matches(cookie)
  }
}

async function runUi(args, { AuditLogs }) {
  let options
  try {
    options = parse(args)
  } catch (error) {
    console.error(`error[AUDIT_LOGS_INVALID_ARGUMENT]: ${error.message}\n\n${USAGE}`)
    return 2
  }
  if (options.help) {
    console.log(USAGE)
    return 0
  }
  if (!options.url) {
    console.error('error[AUDIT_LOGS_INVALID_URL]: no database given: set DATABASE_URL or pass --database-url (-D)')
    return 1
  }
  const audit = await AuditLogs.connect(options.url)
  const token = isLoopback(options.host) ? null : randomBytes(18).toString('base64url')
  const allowed = token ? tokenGate(token) : () => true
  const viewer = auditViewer({ audit, authorize: (req) => allowed(req) })
  const server = http.createServer((req, res) => {
    if (token && allowed(req)) {
      res.setHeader('set-cookie', `audit_logs_token=${token}; HttpOnly; SameSite=Strict; Path=/`)
    }
    viewer(req, res)
  })
  await new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, resolve)
  })
  const { port } = server.address()
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  const url = `http://${host}:${port}/${token ? `?token=${token}` : ''}`
  console.log(`audit-logs viewer on ${url} (read-only; Ctrl+C stops it)`)
  if (options.open) {
    const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
    execFile(opener, [url], () => {})
  }
  await new Promise((resolve) => {
    const stop = () => server.close(() => resolve())
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  audit.close()
  return 0
}

module.exports = { runUi }
