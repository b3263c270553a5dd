// Checked by `tsc --noEmit` (never run): the fetch-style helpers fit Hono, Next.js route handlers
// and server actions, and Remix actions, as the README shows them.
import { auditContextFromRequest, runWithAuditContext, withRequestContext, type AuditContext } from '../../index.js'
import { Hono } from 'hono'

const app = new Hono<{ Variables: { userId: string } }>()
app.use(withRequestContext((c, next) => next(), { getActor: (c) => ({ actorId: c.get('userId') }) }))
app.post('/notes', withRequestContext(async (c) => c.json({ ok: true }), { getIp: (c) => c.req.header('x-real-ip') }))

export const POST = withRequestContext(async (request: Request) => Response.json({ ok: true }),
  { getActor: (request) => ({ actorId: request.headers.get('x-user') ?? undefined }) })
const response: Promise<Response> = POST(new Request('http://x'))

export const action = withRequestContext(async ({ request, params }: { request: Request; params: { id?: string } }) =>
  new Response(params.id), { getActor: ({ request }) => ({ actorId: request.headers.get('x-user') ?? undefined }) })

export async function serverAction(headers: Headers): Promise<void> {
  const context: AuditContext & { requestId: string } = await auditContextFromRequest({ headers })
  await runWithAuditContext(context, async () => {})
  // @ts-expect-error a number is no request
  await auditContextFromRequest(42)
}
void response
// getActor receives what the handler receives.
// @ts-expect-error a Request has no `user`
withRequestContext(async (request: Request) => new Response(), { getActor: (request) => ({ actorId: request.user }) })

// NestJS: the interceptor fits useGlobalInterceptors and UseInterceptors.
import { AuditContextInterceptor } from '../../index.js'
import type { INestApplication } from '@nestjs/common'
import { UseInterceptors } from '@nestjs/common'
export function nest(nestApp: INestApplication): void {
  nestApp.useGlobalInterceptors(new AuditContextInterceptor<{ headers: Record<string, string | string[] | undefined>; user?: { id: string } }>({
    getActor: (req) => (req.user ? { actorId: req.user.id } : undefined),
  }))
  UseInterceptors(new AuditContextInterceptor())
}
