// Checked by `tsc --noEmit -p tests/types/tsconfig.exact.json` (never run): an application that
// compiles with `exactOptionalPropertyTypes` can pass what it naturally has, an optional value
// (`req.user?.id`), where the package takes an optional field.
import { auditContextMiddleware, type AuditContext, type Filters, type RevertClientOptions, type RevertOptions, type RevertTarget } from '../../index.js'

// Express's request, as @types/express declares the parts the middleware reads.
interface AppRequest {
  ip: string | undefined
  headers: Record<string, string | string[] | undefined>
  socket: { remoteAddress?: string | undefined }
  user?: { id: string; email?: string | undefined }
}

declare const req: AppRequest

export const context: AuditContext = {
  actorId: req.user?.id,
  actorEmail: req.user?.email,
  ipAddress: req.ip,
  requestId: undefined,
}

export const filters: Filters = { actorId: req.user?.id, table: 'users', txid: undefined }

export const middleware = auditContextMiddleware<AppRequest>({
  getActor: (request) => ({ actorId: request.user?.id, actorType: 'user' }),
})

export const revertTarget: RevertTarget = { transaction: undefined, entry: 7, at: undefined }
export const revertOptions: RevertOptions = { dryRun: undefined, onConflict: undefined, context: undefined }
export const revertClientOptions: RevertClientOptions = { client: undefined, dryRun: true }
