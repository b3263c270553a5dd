// Test support: a fresh database per test on DATABASE_URL's server, or on a throwaway server
// started through the package itself when DATABASE_URL is not set.
import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import pg from 'pg'
import { AuditLogs, TemporaryPostgres } from '../../index.js'
import { errorCodes } from '../../binding.js'

let server

/**
 * The native addon, loaded by its file whichever build binding.js chose (the same module when it
 * chose the native one). The suites run through the WebAssembly build (wasm.test.mjs), which
 * opens no connection of its own, set their databases up with it.
 */
export function nativeAddon() {
  const root = new URL('../../', import.meta.url)
  const file = readdirSync(root).find((name) =>
    name.startsWith(`audit-logs.${process.platform}-${process.arch}`) && name.endsWith('.node'))
  if (!file) throw new Error(`no native addon for ${process.platform}-${process.arch} in ${root.pathname}: run npm run build:debug`)
  return createRequire(import.meta.url)(new URL(file, root).pathname)
}

/**
 * The native AuditLogs, to set a test database up (migrate, enableTracking) in either build;
 * loaded on first use, so that a file importing these helpers needs no addon until then.
 */
export const NativeAuditLogs = { connect: (url) => nativeAddon().AuditLogs.connect(url) }

/** The URL of a database on the test server. */
export async function serverUrl() {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL
  server ??= TemporaryPostgres.start()
  return (await server).url('postgres')
}

function withDatabase(url, database) {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

const cleanups = new WeakMap()

/** Runs `fn` when `t` ends, before its database is dropped, last registered first. */
export function deferCleanup(t, fn) {
  cleanups.get(t).push(fn)
}

/** Creates an empty database for test `t` and drops it when `t` ends (after deferCleanup's). */
export async function freshDatabase(t) {
  const admin = await serverUrl()
  const name = `audit_logs_node_${randomUUID().replaceAll('-', '')}`
  await withClient(admin, (c) => c.query(`create database ${name}`))
  cleanups.set(t, [])
  t.after(async () => {
    for (const fn of cleanups.get(t).reverse()) await fn()
    await dropDatabase(admin, name)
  })
  return withDatabase(admin, name)
}

/**
 * Drops a test database. pg's `pool.end()` resolves before its sockets are closed, so a forced
 * drop right away can terminate a client that is still closing, and pg raises that as an
 * uncaught error: wait for the sessions to go first, and force only as a last resort.
 */
async function dropDatabase(admin, name) {
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      await withClient(admin, (c) => c.query(`drop database if exists ${name}`))
      return
    } catch (error) {
      if (error.code !== '55006') throw error // object_in_use: sessions still closing
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  await withClient(admin, (c) => c.query(`drop database if exists ${name} with (force)`))
}

/** Runs `fn` with a connected pg client, then closes it. */
export async function withClient(url, fn) {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** Asserts that `promise` rejects with a JS error carrying `code`, one of `AuditLogsErrorCode`. */
export async function rejectsWithCode(assert, promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof Error, 'an Error')
    assert.equal(error.code, code, error.message)
    assert.ok(errorCodes().includes(code), `${code} is one of errorCodes()`)
    return true
  })
}

/** A fresh database with the audit schema installed, and an AuditLogs on it (closed after the test). */
export async function migrated(t) {
  const url = await freshDatabase(t)
  const audit = await AuditLogs.connect(url)
  deferCleanup(t, () => audit.close())
  await audit.migrate()
  return { url, audit }
}
