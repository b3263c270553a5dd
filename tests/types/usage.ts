// Checked by `tsc --noEmit` (never run): the public types accept what the README shows and
// reject misuse.
import {
  ActorType,
  auditExtension,
  type AuditLog,
  type CreateAuditLogInput,
  AuditLogs,
  auditContextMiddleware,
  auditRead,
  auditViewer,
  currentAuditContext,
  runWithAuditContext,
  serializeContext,
  TemporaryPostgres,
  withAuditContext,
  type AuditContext,
  type AuditLogEntry,
  type AuditLogsError,
  type AuditLogsErrorCode,
  type RevertClientOptions,
  type RevertReport,
  type TrackedTable,
} from '../../index.js'
// @ts-expect-error the binding's internals are not part of the package's API
import { runCli } from '../../index.js'
import pg from 'pg'
import { PrismaClient } from '@prisma/client'

export async function readme(url: string): Promise<void> {
  const audit = await AuditLogs.connect(url)
  const report = await audit.migrate()
  const names: string[] = report.applied.map((m) => `V${m.version}__${m.name}`)
  const tracked: TrackedTable = await audit.enableTracking('users', { excludeColumns: ['password_hash'] })
  await audit.enableTracking({ schema: 'Sales', name: 'Order Items' })
  const history: AuditLogEntry[] = await audit.history({ table: 'users', id: 42, limit: 10 })
  const when: Date = history[0].createdAt
  const fields: string[] | undefined | null = history[0].changedFields
  await audit.history({ table: 'order_lines', id: [1, 'sku-1'] })
  await audit.history({ targetType: 'project', id: 'proj_456' })
  const setting: string | null = serializeContext({ actorId: '42', actorType: 'user', ipAddress: '10.0.0.1' })
  const state: 'applied' | 'pending' | 'diverged' | 'unknown' = (await audit.status()).migrations[0].state
  const server = await TemporaryPostgres.start()
  const local: string = server.url('postgres')
  server.stop()
  audit.close()
  void [names, tracked, when, fields, setting, state, local]
}

export async function misuse(audit: AuditLogs): Promise<void> {
  // @ts-expect-error a table is a string or { schema, name }
  await audit.enableTracking(42)
  // @ts-expect-error excludeColumns is a list of column names
  await audit.enableTracking('users', { excludeColumns: 'password_hash' })
  // @ts-expect-error history needs an id
  await audit.history({ table: 'users' })
  // @ts-expect-error the context's ipAddress is a string
  serializeContext({ ipAddress: 10 })
}

export async function context(pool: pg.Pool, client: pg.PoolClient): Promise<void> {
  const count: number = await withAuditContext(pool, { actorId: '42', actorType: 'user' }, async (c) => {
    const { rows } = await c.query('select 1 as n')
    return rows.length
  })
  await withAuditContext(client, null, async (c) => c.query('select 1'), { requireContext: true })
  const who: AuditContext | undefined = currentAuditContext()
  const value: string = runWithAuditContext({ actorId: '1' }, () => 'ok')
  const middleware = auditContextMiddleware({ getActor: (req) => ({ actorId: String(req.headers['x-user']) }) })
  const read = await auditRead(pool, 'public.patients', () => pool.query('select id from patients'), { maxIds: 10 })
  void [count, who, value, middleware, read]
  // @ts-expect-error the callback receives the client and must return a promise
  await withAuditContext(pool, null, 42)
  // @ts-expect-error a context is an object
  runWithAuditContext('user 42', () => {})
}

export async function prisma(base: PrismaClient): Promise<void> {
  const db = base.$extends(auditExtension({ readAudit: { models: { Patient: 'public.patients' } } }))
  // The extended client keeps the generated types.
  const user: { id: number; email: string; name: string | null } = await db.user.create({ data: { email: 'a@x.io' } })
  const count: number = await withAuditContext(base, { actorId: '1' }, async (tx) => tx.user.count())
  void [user, count]
  // @ts-expect-error unknown model fields are still refused
  await db.user.create({ data: { emial: 'typo' } })
}

// The event types an application declares, with its own action names.
type AppAction = 'user.login' | 'project.created'

export async function events(audit: AuditLogs, client: pg.PoolClient): Promise<void> {
  const input: CreateAuditLogInput<AppAction> = {
    actorId: 'user_123',
    actorType: ActorType.USER,
    action: 'project.created',
    targetType: 'project',
    targetId: 'proj_456',
    metadata: { changes: { name: 'MyProject' } },
    ipAddress: '192.168.1.1',
    userAgent: 'Mozilla/5.0',
  }
  const entry: AuditLog<AppAction> = await audit.log(input)
  const action: AppAction | 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE' = entry.action
  const inTransaction: AuditLog<AppAction>[] = await audit.logMany([input], { client })
  const actorType: ActorType = 'moderator'
  void [action, inTransaction, actorType]
  // @ts-expect-error an action outside the application's union
  const typo: CreateAuditLogInput<AppAction> = { action: 'user.logn' }
  void typo

  const state: Record<string, unknown> | null = await audit.stateAt({ table: 'users', id: 42, at: new Date() })
  const states = await audit.statesAt({ table: 'users', points: [{ id: 1, at: '2026-01-01T00:00:00Z' }] })
  const page = await audit.search({ actorId: '42', action: ['UPDATE', 'DELETE'], from: new Date(0) }, { limit: 50 })
  const next = page.nextCursor ? await audit.search({ actorId: '42' }, { cursor: page.nextCursor }) : page
  for await (const e of audit.entries({ table: 'users' }, { order: 'oldest' })) void e.createdAt.getTime()
  const counts = await audit.counts(['targetType', 'day'], { from: new Date(0) })
  const bursts = await audit.bursts({ window: '10 minutes', threshold: 10 })
  const changes = await audit.fieldChanges({ table: 'users', field: 'email' })
  void [state, states[0].state, next.entries, counts[0].count, bursts[0].changes, changes[0].newValue]
  // @ts-expect-error groupBy takes known keys only
  await audit.counts(['actor_id; drop table users'])
}

export async function protect(audit: AuditLogs): Promise<void> {
  const sealed: number | null | undefined = (await audit.seal()).sealId
  const report = await audit.verify({ against: 'abcdef0123456789' })
  const ok: boolean = report.ok
  const kind: 'changed' | 'missing' | 'unexpected' | 'redaction_mismatch' | 'seal_mismatch' | 'digest_not_found' | 'guard_disabled' | 'capture_disabled' | 'file_mismatch' | 'manifest_invalid' | 'live_mismatch' | 'rewritten' | undefined =
    report.firstProblem?.kind
  const dropped: string[] = (await audit.maintain({ retentionMonths: 24 })).partitionsDropped
  const saved = await audit.configure({ anonymizeAfterDays: 30 })
  const redacted: number = (await audit.redact({ actorId: '42', reason: 'GDPR' }, Buffer.from('a secret of at least sixteen bytes'))).rowsRedacted
  void [sealed, ok, kind, dropped, saved, redacted]
  // @ts-expect-error the key is a string or a Buffer
  await audit.redact({ actorId: '42' }, 42)
}

export async function undo(audit: AuditLogs, txid: number, since: Date): Promise<void> {
  const dry: RevertReport = await audit.revert({ transaction: txid }, { dryRun: true })
  const operation: 'insert' | 'update' | 'delete' | undefined = dry.changes[0]?.operation
  const restored: unknown = dry.changes[0]?.fields[0]?.restored
  const sql: string[] = dry.statements
  await audit.revert({ request: 'req-1', from: since }, { context: { actorId: 'admin', reason: 'undo' } })
  await audit.revert({ actor: '42', from: since, to: new Date() }, { onConflict: 'overwrite' })
  await audit.revert({ table: 'users', id: 42, to: since.toISOString() })
  await audit.revert({ entry: 7 })
  void [operation, restored, sql]
  // @ts-expect-error onConflict is 'refuse' or 'overwrite'
  await audit.revert({ entry: 7 }, { onConflict: 'ignore' })
}

export async function undoInMyTransaction(audit: AuditLogs, pool: pg.Pool, prisma: PrismaClient): Promise<void> {
  const report: RevertReport = await withAuditContext(pool, { actorId: 'admin' }, async (client) => {
    await client.query('insert into notes (text) values ($1)', ['reverted req-1'])
    return audit.revert({ request: 'req-1' }, { client, onConflict: 'keep-later' })
  })
  const client = await pool.connect()
  await client.query('begin')
  await audit.revert({ entry: 7 }, { client, dryRun: true, context: { reason: 'check' } })
  await prisma.$transaction((tx) => audit.revert({ entry: 7 }, { client: tx }))
  const options: RevertClientOptions = { client: null }
  void [report, options]
  // @ts-expect-error client is a connection in a transaction
  await audit.revert({ entry: 7 }, { client: 'postgres://localhost/db' })
}

export function viewer(audit: AuditLogs): void {
  const handler = auditViewer<{ user?: { isAdmin: boolean; tenantId: number } }>({
    audit,
    authorize: (req) => (req.user?.isAdmin ? true : req.user ? { filters: { metadataContains: { tenant: req.user.tenantId } } } : false),
  })
  void handler
  // @ts-expect-error authorize is required
  auditViewer({ audit })
}

export async function errors(audit: AuditLogs): Promise<void> {
  try {
    await audit.enableTracking('logs')
  } catch (caught) {
    const error = caught as AuditLogsError
    switch (error.code) {
      case 'AUDIT_LOGS_NO_PRIMARY_KEY': {
        const table: string | undefined = error.table
        void table
        break
      }
      case 'AUDIT_LOGS_MIGRATION_FAILED': {
        const applied: number[] | undefined = error.applied
        void [applied, error.migration, error.sqlstate]
        break
      }
      // @ts-expect-error not a code of audit-logs
      case 'AUDIT_LOGS_NO_PRIMARY_KEYS':
        break
    }
  }
  const commitUnknown: AuditLogsErrorCode = 'AUDIT_LOGS_COMMIT_UNKNOWN'
  void commitUnknown
}
