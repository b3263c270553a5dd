// Checked by `tsc --noEmit` with `strict: true` (never run): issue 13's "Types that help". Row
// types flow into results, the application's actions are declared once, the pg callback gets
// the PoolClient it is, and mistakes are reported where they are.
import {
  type Action,
  type AuditEntry,
  AuditLogs,
  type FieldChangeOf,
  type RowAction,
  type StateAt,
  runWithAuditContext,
  withAuditContext,
} from '../../index.js'
import pg from 'pg'
import { PrismaClient } from '@prisma/client'

// The application's event actions, declared once for the whole program.
declare module '../../index.js' {
  interface AuditLogsTypes {
    action: 'user.login' | 'project.created' | 'order.refunded' | 'read'
  }
}

interface User {
  id: number
  email: string
  name: string | null
}

/** Whether two types are the same (a compile-time check). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function same<A, B>(proof: Equal<A, B>): void {
  void proof
}

export async function rowTypes(audit: AuditLogs): Promise<void> {
  const [entry] = await audit.history<User>({ table: 'users', id: 42 })
  const email: string | undefined = entry.newValues?.email
  const before: string | null | undefined = entry.oldValues?.name
  same<typeof entry.metadata, Record<string, unknown> | undefined>(true)
  // @ts-expect-error no such column on User
  void entry.newValues?.emial
  // @ts-expect-error values are not `any`: a column's type is kept
  const wrong: number | undefined = entry.newValues?.email

  const state = await audit.stateAt<User>({ table: 'users', id: 42, at: '2026-11-30 09:27:03.02+00' })
  const name: string | null | undefined = state?.name
  const [point] = await audit.statesAt<User>({ table: 'users', points: [{ id: 42, at: new Date() }] })
  same<typeof point, StateAt<User>>(true)
  same<typeof point.state, User | null>(true)
  same<typeof point.entryId, number | null>(true)

  const [change] = await audit.fieldChanges<string>({ table: 'users', field: 'email' })
  same<typeof change, FieldChangeOf<string>>(true)
  const newEmail: string | null | undefined = change.newValue
  const page = await audit.search<User>({ table: 'users' })
  const fromPage: Partial<User> | null | undefined = page.entries[0]?.newValues
  for await (const streamed of audit.entries<User>({ table: 'users' })) void streamed.newValues?.id
  const byActor: Array<AuditEntry<User>> = await audit.byActor<User>('42')

  // Untyped, values are unknown, never `any`.
  const [plain] = await audit.history({ table: 'users', id: 42 })
  // @ts-expect-error an unknown value must be narrowed before use
  void plain.newValues?.email.toUpperCase()
  void [email, before, wrong, name, newEmail, fromPage, byActor]
}

export async function actions(audit: AuditLogs): Promise<void> {
  const [entry] = await audit.history({ table: 'users', id: 42 })
  same<typeof entry.action, RowAction | 'user.login' | 'project.created' | 'order.refunded' | 'read'>(true)
  same<Action, typeof entry.action>(true)
  if (entry.action === 'UPDATE' || entry.action === 'user.login') void entry.changedFields
  // @ts-expect-error not one of the declared actions
  if (entry.action === 'user.logn') void entry

  const logged = await audit.log({ action: 'order.refunded', targetType: 'order', targetId: 7, actorId: 42 })
  same<typeof logged.action, RowAction | 'order.refunded'>(true)
  // @ts-expect-error an action outside the declared union is refused when it is written
  await audit.log({ action: 'order.refundd' })
}

export async function pgClient(pool: pg.Pool, client: pg.Client): Promise<void> {
  const emails = await withAuditContext(pool, { actorId: '42' }, async (c) => {
    same<typeof c, pg.PoolClient>(true)
    const { rows } = await c.query<User>('select * from users where id = $1', [42])
    return rows.map((row) => row.email)
  })
  same<typeof emails, string[]>(true)
  await withAuditContext(client, null, async (c) => {
    same<typeof c, pg.Client>(true)
    return c.query<{ n: number }>('select 1 as n')
  })
  // A wrong context key is reported on the context itself (one directive per line: an error on
  // the pool, as "missing from type PrismaLike" was, would leave the directive unused).
  await withAuditContext(
    pool,
    // @ts-expect-error actorID is not a key of AuditContext
    { actorID: '42' },
    async () => {},
  )
  await withAuditContext(
    client,
    // @ts-expect-error the same for a client
    { actorid: '42' },
    async () => {},
  )
  // @ts-expect-error a pg Pool is not a Prisma client: the callback's client has no models
  await withAuditContext(pool, null, async (c) => c.user.findMany())
}

export async function prismaClient(prisma: PrismaClient): Promise<void> {
  const count: number = await withAuditContext(prisma, { actorId: '1' }, async (tx) => tx.user.count())
  await withAuditContext(
    prisma,
    // @ts-expect-error the context's keys are checked with Prisma too
    { actor: '1' },
    async (tx) => tx.user.count(),
  )
  // A lazy Prisma promise returned to runWithAuditContext comes back as a Promise of its result.
  const created = runWithAuditContext({ actorId: '1' }, () => prisma.user.create({ data: { email: 'a@x.io' } }))
  same<typeof created, Promise<User>>(true)
  void count
}
