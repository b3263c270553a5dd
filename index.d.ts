// The native API (generated: binding.d.ts), plus the JavaScript helpers of index.js.
import type {
  AuditContext,
  AuditLogEntry,
  CreateAuditLogInput as NativeEventInput,
  Filters,
  LogOptions,
  StreamOptions,
} from './binding'

export * from './binding'

/** The actions of row changes; application events use their own names (`user.login`). */
export type RowAction = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE'

/** Seed 004's actor types, as values: `actorType: ActorType.USER`. */
export declare const ActorType: {
  readonly USER: 'user'
  readonly SYSTEM: 'system'
  readonly API_KEY: 'api_key'
  readonly MODERATOR: 'moderator'
  readonly MIGRATION: 'migration'
}
/** One of seed 004's actor types, or any other string. */
export type ActorType = (typeof ActorType)[keyof typeof ActorType] | (string & {})

/**
 * An entry of the log whose event actions are narrowed to your own union:
 * `type AppAction = 'user.login' | 'project.created'; const e: AuditLog<AppAction>`.
 */
export type AuditLog<Action extends string = string> = Omit<AuditLogEntry, 'action' | 'actorType'> & {
  action: Action | RowAction
  actorType?: ActorType | null
}

/** An application event to record (seed 004), with `action` narrowed to your own union. */
export type CreateAuditLogInput<Action extends string = string> = Omit<NativeEventInput, 'action' | 'actorType'> & {
  action: Action
  actorType?: ActorType | null
}

/** What {@link AuditLogs.log} can write through: a pg client or a Prisma transaction client. */
export type EventClient = PgQueryable | { $queryRawUnsafe(query: string, ...values: unknown[]): Promise<unknown> }

/** Options of `log()` and `logMany()`. */
export interface LogEventOptions {
  /** Fills the context fields the event leaves empty. Default: the current request's context. */
  context?: AuditContext | null
  /**
   * Write the event in this client's transaction (a pg client, or the `tx` of a Prisma
   * `$transaction`), so it commits or rolls back with the change it describes.
   */
  client?: EventClient
}

// Names the augmentation below can see past the binding's own, non-generic ones.
type EventInput<Action extends string> = CreateAuditLogInput<Action>
type EventEntry<Action extends string> = AuditLog<Action>

declare module './binding' {
  interface AuditLogs {
    /** Records an application event, with the current request's context unless told otherwise. */
    log<Action extends string>(input: EventInput<Action>, options?: LogEventOptions): Promise<EventEntry<Action>>
    /** Records up to 10000 events in one statement, all or none; resolves to them in order. */
    logMany<Action extends string>(inputs: Array<EventInput<Action>>, options?: LogEventOptions): Promise<Array<EventEntry<Action>>>
    /**
     * Every entry matching `filters` (newest first unless `order: 'oldest'`), read in batches
     * from one consistent snapshot: `for await (const entry of audit.entries({ actorId }))`.
     * Breaking out of the loop ends the read and frees its connection.
     */
    entries(filters?: Filters | null, options?: StreamOptions | null): AsyncGenerator<AuditLogEntry, void, undefined>
  }
}

/** Options of {@link withAuditContext}. */
export interface WithAuditContextOptions {
  /** Fail (AUDIT_LOGS_CONTEXT_REQUIRED) rather than write unattributed when no context is given or current. */
  requireContext?: boolean
  /** Prisma only: options of the interactive transaction (`maxWait`, `timeout`, `isolationLevel`). */
  transaction?: { maxWait?: number; timeout?: number; isolationLevel?: string }
}

/** What {@link withAuditContext} accepts from node-postgres: a Pool, or a Client / PoolClient. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: any[] }>
}
export interface PgPoolLike<Client extends PgQueryable = PgQueryable> extends PgQueryable {
  connect(): Promise<Client & { release(error?: Error | boolean): void }>
  readonly totalCount: number
}
export interface PgClientLike extends PgQueryable {
  getTransactionStatus(): string | null
}

/** What {@link withAuditContext} accepts from Prisma: a client, extended or not. */
export interface PrismaLike {
  $transaction(...args: any[]): Promise<any>
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>
}

/**
 * Runs `fn` in one transaction whose changes are attributed to `context` (or, when it is null or
 * omitted, to the current request's context from {@link runWithAuditContext} or the middleware).
 * node-postgres: BEGIN, set the context, `fn(client)`, COMMIT; ROLLBACK and rethrow on error;
 * a pool's client is always released; nested calls on one client use a savepoint.
 * Prisma: an interactive `$transaction`, `fn(tx)`.
 * Throws AUDIT_LOGS_INVALID_CONTEXT before anything is written when the context is invalid, and
 * AUDIT_LOGS_TRANSACTION_FAILED for a pg client in a failed transaction.
 *
 * A connection lost before COMMIT rejects with the driver's error as is: nothing was committed,
 * and the pool discards the connection rather than hand it out again. A connection lost while
 * COMMIT is in flight rejects with AUDIT_LOGS_COMMIT_UNKNOWN (the driver's error as `cause`):
 * the transaction may or may not have committed, its changes and their audit rows together or
 * not at all. Find out before retrying: look for its audit rows with
 * `audit.byRequest(requestId)` (give the context a `requestId`), or re-read the data.
 */
export function withAuditContext<T, Client extends PgQueryable>(
  pool: PgPoolLike<Client>,
  context: AuditContext | null | undefined,
  fn: (client: Client) => Promise<T>,
  options?: WithAuditContextOptions,
): Promise<T>
export function withAuditContext<T, Client extends PgClientLike>(
  client: Client,
  context: AuditContext | null | undefined,
  fn: (client: Client) => Promise<T>,
  options?: WithAuditContextOptions,
): Promise<T>
export function withAuditContext<T, Prisma extends PrismaLike>(
  prisma: Prisma,
  context: AuditContext | null | undefined,
  fn: (tx: Omit<Prisma, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>) => Promise<T>,
  options?: WithAuditContextOptions,
): Promise<T>

/** Runs `fn` with `context` as the audit context of everything it starts (validated first). */
export function runWithAuditContext<T>(context: AuditContext, fn: () => T): T

/** The audit context of the current request or job, if any. */
export function currentAuditContext(): Readonly<AuditContext> | undefined

/** A request as the middleware reads it (Express and Fastify requests both fit). */
export interface RequestLike {
  ip?: string
  headers: Record<string, string | string[] | undefined>
  socket?: { remoteAddress?: string }
}

export interface AuditContextMiddlewareOptions<Request extends RequestLike = RequestLike> {
  /** Who is making the request: `(req) => ({ actorId: req.user.id, actorType: 'user' })`. May be async. */
  getActor?: (request: Request) => AuditContext | undefined | Promise<AuditContext | undefined>
  /** The header carrying the request id. Default: `x-request-id` (else the request's id, else a new UUID). */
  requestIdHeader?: string
}

/** Express middleware that sets the audit context of each request (IP, user agent, request id, actor). */
export function auditContextMiddleware<Request extends RequestLike = RequestLike>(
  options?: AuditContextMiddlewareOptions<Request>,
): (req: Request, res: unknown, next: (error?: unknown) => void) => void

/** Fastify plugin that sets the audit context of each request, at `preHandler` (after authentication). */
export function auditContextPlugin(
  fastify: { addHook(name: string, hook: (...args: any[]) => void): unknown },
  options: AuditContextMiddlewareOptions<any> & { hook?: 'onRequest' | 'preValidation' | 'preHandler' },
  done: (error?: Error) => void,
): void

/** Options of {@link auditRead}. */
export interface AuditReadOptions {
  /** The field of each row that identifies it. Default: `id`. */
  idField?: string
  /** At most this many ids are named in the event (the count is always there). Default: 100. */
  maxIds?: number
  /** Default: the current context. */
  context?: AuditContext
}

/**
 * Runs `read()` (a node-postgres query) and records one `read` event about `table`: who read it,
 * which ids (at most `maxIds`), and how many rows.
 */
export function auditRead<Result extends { rows: any[] }>(
  client: PgQueryable,
  table: string,
  read: () => Promise<Result>,
  options?: AuditReadOptions,
): Promise<Result>

/** Options of {@link auditExtension}. */
export interface AuditExtensionOptions {
  /** Who makes the writes. Default: the current request's context ({@link currentAuditContext}). */
  getContext?: () => AuditContext | null | undefined
  /** Fail writes (AUDIT_LOGS_CONTEXT_REQUIRED) when getContext() gives nothing. Default: false. */
  requireContext?: boolean
  /**
   * Record a `read` event for each findUnique / findFirst / findMany of these models: a list of model
   * names (the event's target type is the model name) or `{ Model: 'public.table' }`.
   */
  readAudit?: { models: string[] | Record<string, string>; maxIds?: number }
}

/**
 * A Prisma client extension: `const db = prisma.$extends(auditExtension())`. Writes of `db` are
 * attributed; writes inside `db.$transaction(...)` stay in that transaction and roll back with it;
 * reads add no round trip (except the models of `readAudit`).
 */
export function auditExtension(options?: AuditExtensionOptions): (client: any) => {
  // Adds no model, result or client members: the extended client keeps its exact types.
  $extends: { extArgs: { result: {}; model: {}; query: {}; client: {} } }
}
