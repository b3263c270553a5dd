// Checked by `tsc --noEmit` (never run): Neon's serverless Pool and Client are accepted as pg's
// are, and the callback gets the driver's own client type.
import { Client, Pool, type PoolClient } from '@neondatabase/serverless'
import { AuditLogs, withAuditContext } from '../../index.js'

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false
const same = <A, B>(_: Equal<A, B>): void => {}

export async function neon(pool: Pool, client: Client, audit: AuditLogs): Promise<void> {
  const ids = await withAuditContext(pool, { actorId: '42' }, async (c) => {
    same<typeof c, PoolClient>(true)
    await audit.log({ action: 'note.exported', targetType: 'note' }, { client: c })
    const { rows } = await c.query<{ id: number }>('insert into notes default values returning id')
    return rows.map((row) => row.id)
  })
  same<typeof ids, number[]>(true)
  await withAuditContext(client, null, async (c) => {
    same<typeof c, Client>(true)
  })
}
