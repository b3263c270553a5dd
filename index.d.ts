// The public API: the native classes and types (generated: binding.d.ts) named one by one, so
// that the binding's internals (openEntries, eventStatement, endsSession, runCli...) stay out,
// plus the JavaScript helpers of index.js.
import type {
  AuditContext,
  DataSubject,
  SubjectEntry,
  AuditLogEntry,
  RevertConflict,
  RevertOptions,
  RevertReport,
  RevertTarget,
  CreateAuditLogInput as NativeEventInput,
  FieldChange,
  FieldChangesOptions,
  Filters,
  HistoryOptions,
  PageOptions,
  PointState,
  RangeOptions,
  SearchPage,
  StateAtOptions,
  StatesAtOptions,
  StreamOptions,
  TransactionOptions,
} from './binding'
import { AuditLogs as NativeAuditLogs } from './binding'

export { TemporaryPostgres, serializeContext, verifyArchive } from './binding'
export type {
  ArchiveOptions,
  ArchiveReport,
  ArchiveVerifyReport,
  AuditContext,
  AuditLogEntry,
  Burst,
  BurstOptions,
  CountRow,
  FieldChange,
  FieldChangesOptions,
  Filters,
  HistoryOptions,
  LogOptions,
  MaintainOptions,
  MaintainReport,
  MigrateReport,
  Migration,
  PageOptions,
  PointState,
  RangeOptions,
  RecordRevert,
  FieldRevert,
  RedactReport,
  RedactRequest,
  RedactedEntry,
  DataSubject,
  SubjectEntry,
  SubjectPage,
  RetentionSettings,
  RevertConflict,
  RevertOptions,
  RevertReport,
  RevertTarget,
  SealReport,
  SearchPage,
  StateAtOptions,
  StatePoint,
  StatesAtOptions,
  Status,
  StreamOptions,
  TableName,
  TrackedTable,
  TrackingOptions,
  TransactionOptions,
  VerifyArchiveOptions,
  VerifyOptions,
  VerifyProblem,
  VerifyReport,
} from './binding'

/** The actions of row changes; application events use their own names (`user.login`). */
export type RowAction = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE'

/**
 * Every `code` an audit-logs error can have, to `switch` on: the native API's, the CLI's (`--json`
 * prints `{ error: { code, message } }`) and the JavaScript wrappers' (`AUDIT_LOGS_COMMIT_UNKNOWN`,
 * `AUDIT_LOGS_TRANSACTION_FAILED`). `AUDIT_LOGS_DATABASE_ERROR` is any other error PostgreSQL
 * reported (its SQLSTATE in `sqlstate`); `AUDIT_LOGS_INTERNAL` is a bug of audit-logs to report.
 * `AUDIT_LOGS_NEEDS_NATIVE` comes from the WebAssembly build (loaded where no native addon can
 * be): what uses audit-logs' own connections (the pool's methods, `verifyArchive`, the CLI,
 * `TemporaryPostgres`) needs the native one.
 */
export type AuditLogsErrorCode =
  | 'AUDIT_LOGS_INVALID_URL'
  | 'AUDIT_LOGS_CONNECTION_FAILED'
  | 'AUDIT_LOGS_AUTHENTICATION_FAILED'
  | 'AUDIT_LOGS_TLS_FAILED'
  | 'AUDIT_LOGS_POOL_TIMEOUT'
  | 'AUDIT_LOGS_CONNECTION_LOST'
  | 'AUDIT_LOGS_TEMPORARY_POSTGRES_FAILED'
  | 'AUDIT_LOGS_NOT_MIGRATED'
  | 'AUDIT_LOGS_MIGRATION_FAILED'
  | 'AUDIT_LOGS_MIGRATION_DIVERGED'
  | 'AUDIT_LOGS_MIGRATION_UNKNOWN'
  | 'AUDIT_LOGS_LOCK_TIMEOUT'
  | 'AUDIT_LOGS_TABLE_NOT_FOUND'
  | 'AUDIT_LOGS_INVALID_TABLE_NAME'
  | 'AUDIT_LOGS_NO_PRIMARY_KEY'
  | 'AUDIT_LOGS_NOT_A_TABLE'
  | 'AUDIT_LOGS_INVALID_COLUMN'
  | 'AUDIT_LOGS_RESERVED_TABLE'
  | 'AUDIT_LOGS_TRIGGER_NAME_TAKEN'
  | 'AUDIT_LOGS_CAPTURE_REFUSED'
  | 'AUDIT_LOGS_INVALID_CONTEXT'
  | 'AUDIT_LOGS_CONTEXT_REQUIRED'
  | 'AUDIT_LOGS_INVALID_EVENT'
  | 'AUDIT_LOGS_SEAL_FAILED'
  | 'AUDIT_LOGS_APPEND_ONLY'
  | 'AUDIT_LOGS_INVALID_SETTINGS'
  | 'AUDIT_LOGS_INVALID_REDACTION'
  | 'AUDIT_LOGS_INVALID_SUBJECT'
  | 'AUDIT_LOGS_PERMISSION_DENIED'
  | 'AUDIT_LOGS_REVERT_CONFLICT'
  | 'AUDIT_LOGS_CANNOT_REVERT'
  | 'AUDIT_LOGS_NOT_IN_TRANSACTION'
  | 'AUDIT_LOGS_ARCHIVE_UNSUPPORTED'
  | 'AUDIT_LOGS_ARCHIVE_STORAGE_FAILED'
  | 'AUDIT_LOGS_ARCHIVE_INVALID'
  | 'AUDIT_LOGS_ARCHIVE_MONTH_NOT_READY'
  | 'AUDIT_LOGS_ARCHIVE_NOT_VERIFIED'
  | 'AUDIT_LOGS_ARCHIVE_DROP_REFUSED'
  | 'AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE'
  | 'AUDIT_LOGS_ARCHIVE_BUSY'
  | 'AUDIT_LOGS_INVALID_ARGUMENT'
  | 'AUDIT_LOGS_OUTPUT_FAILED'
  | 'AUDIT_LOGS_DATABASE_ERROR'
  | 'AUDIT_LOGS_INTERNAL'
  | 'AUDIT_LOGS_TRANSACTION_FAILED'
  | 'AUDIT_LOGS_COMMIT_UNKNOWN'
  | 'AUDIT_LOGS_NEEDS_NATIVE'

/**
 * An error thrown by audit-logs: an `Error` with a stable `code` and a message that says what to
 * do, and, where the failure has them, structured fields (`catch (e) { if (e.code ===
 * 'AUDIT_LOGS_NO_PRIMARY_KEY') console.log(e.table) }`).
 */
export interface AuditLogsError extends Error {
  code: AuditLogsErrorCode
  /** The table at fault (`public.users`): tracking errors, unknown tables and columns. */
  table?: string
  /** The column at fault: `fieldChanges` of a field that is no column. */
  column?: string
  /** The migration at fault (`V3__events`): a failed, diverged or unknown migration. */
  migration?: string
  /** The migration versions applied before the one that failed. */
  applied?: number[]
  /** The argument at fault: `AUDIT_LOGS_INVALID_ARGUMENT`. */
  argument?: string
  /** PostgreSQL's SQLSTATE: a failed migration, `AUDIT_LOGS_DATABASE_ERROR`, or a driver's error recast (`AL006`). */
  sqlstate?: string
  /** PostgreSQL's hint, when it gave one. */
  hint?: string
  /** `AUDIT_LOGS_REVERT_CONFLICT`: each record changed since, with its later entries. */
  conflicts?: RevertConflict[]
}

/** The usual actor types, as values: `actorType: ActorType.USER`. */
export declare const ActorType: {
  readonly USER: 'user'
  readonly SYSTEM: 'system'
  readonly API_KEY: 'api_key'
  readonly MODERATOR: 'moderator'
  readonly MIGRATION: 'migration'
}
/** One of the usual actor types, or any other string. */
export type ActorType = (typeof ActorType)[keyof typeof ActorType] | (string & {})

/**
 * Declare your application's event actions once, for every read and write of the package:
 *
 * ```ts
 * declare module 'audit-logs' {
 *   interface AuditLogsTypes { action: 'user.login' | 'project.created' }
 * }
 * ```
 *
 * `log()` then refuses other actions, and `history()`, `search()`... type `action` as
 * `RowAction | 'user.login' | 'project.created'`. Undeclared, an event's action is any string.
 */
export interface AuditLogsTypes {}

/** The application's event actions ({@link AuditLogsTypes}), or any string when undeclared. */
export type EventAction = AuditLogsTypes extends { action: infer Action extends string } ? Action : string & {}

/** Any action of the log: a row change's or an application event's. */
export type Action = RowAction | EventAction

/**
 * A row of a table as the log stores it (JSON, as PostgreSQL's `to_jsonb` prints it): give your
 * own type, `history<User>()`. Timestamps are strings; numbers are numbers, except integers
 * beyond 2^53 (a `bigint` column past `Number.MAX_SAFE_INTEGER`), which come back as `bigint`:
 * declare such a column `number | bigint`, and give `JSON.stringify` a replacer for them.
 */
export type RowValues = Record<string, unknown>

/**
 * An entry of the log with its values typed as rows of `Row` (`history<User>(...)`) and its
 * action as a row change or one of `Action`. Old values hold the changed columns only, and
 * excluded columns are never stored: both are partial rows. Values are typed as {@link RowValues}
 * says (integers beyond 2^53 as `bigint`).
 */
export type AuditEntry<Row extends object = RowValues, Action extends string = EventAction> = Omit<
  AuditLogEntry,
  'action' | 'actorType' | 'oldValues' | 'newValues' | 'metadata'
> & {
  action: RowAction | Action
  actorType?: ActorType
  oldValues?: Partial<Row>
  newValues?: Partial<Row>
  metadata?: Record<string, unknown>
}

/**
 * An entry of the log whose event actions are narrowed to your own union:
 * `type AppAction = 'user.login' | 'project.created'; const e: AuditLog<AppAction>`.
 */
export type AuditLog<Action extends string = EventAction, Row extends object = RowValues> = AuditEntry<Row, Action>

/** An application event to record, with `action` narrowed to your own union. */
export type CreateAuditLogInput<Action extends string = EventAction> = Omit<NativeEventInput, 'action' | 'actorType'> & {
  action: Action
  actorType?: ActorType
}

/** {@link PointState} with the row typed: `statesAt<User>(...)`. */
export type StateAt<Row extends object = RowValues> = Omit<PointState, 'state' | 'entryId'> & {
  /** The row as it was, or null if it did not exist then. */
  state: Row | null
  /** The entry the state comes from; null when there is none. */
  entryId: number | null
}

/** {@link FieldChange} with the column's type: `fieldChanges<string>({ table: 'users', field: 'email' })`. */
export type FieldChangeOf<Value = unknown> = Omit<FieldChange, 'oldValue' | 'newValue'> & {
  /** Undefined for an excluded column. */
  oldValue?: Value | null
  newValue?: Value | null
}

/** {@link SearchPage} with typed entries. */
export type SearchPageOf<Row extends object = RowValues> = Omit<SearchPage, 'entries'> & {
  entries: Array<AuditEntry<Row>>
}

/**
 * What {@link AuditLogs.log} can write through: a pg client, a Prisma transaction client, or a
 * transaction of Drizzle, Kysely, Knex, TypeORM (its EntityManager) or Sequelize.
 */
export type EventClient = PgQueryable | { $queryRawUnsafe(query: string, ...values: unknown[]): Promise<unknown> } |
  DrizzleLike | KyselyLike | KnexLike | TypeOrmLike | SequelizeLike | SequelizeTransactionLike

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

/**
 * What {@link AuditLogs.revert} can run in: a connection in a transaction. A pg `Client` or
 * `PoolClient` after `begin` (or the client of `withAuditContext`), the `tx` of a Prisma
 * `$transaction(async (tx) => ...)`, or a transaction of Drizzle, Kysely, Knex, TypeORM or
 * Sequelize: anything {@link withAuditContext} hands its `fn`. A `pg.Pool`, a Prisma client or
 * an ORM's database itself is refused (`AUDIT_LOGS_INVALID_ARGUMENT`): each runs every query on
 * a connection, or in a transaction, of its own.
 */
export type RevertClient = EventClient

/** Options of {@link AuditLogs.revert}: the native ones, and `client`. */
export interface RevertClientOptions extends RevertOptions {
  /**
   * Revert in this client's transaction rather than in one of its own: it commits or rolls
   * back with the caller's other writes, sees the caller's uncommitted changes, and its entries
   * carry the transaction's audit context (`context`, when given, over it) plus
   * `metadata.reverts`. It runs in a savepoint: when it fails (`AUDIT_LOGS_REVERT_CONFLICT`...)
   * the transaction is as before and usable; a dry run leaves it as before. The rows it checked
   * and wrote stay locked until the transaction ends. Rejects with
   * `AUDIT_LOGS_NOT_IN_TRANSACTION` for a client in no transaction and
   * `AUDIT_LOGS_TRANSACTION_FAILED` for one whose transaction failed.
   */
  client?: RevertClient | null | undefined
}

/**
 * The binding's `AuditLogs`, with row types and the application's actions (a subclass in types
 * only: its methods replace the native ones' signatures instead of adding overloads beside them,
 * so that a wrong action is refused rather than matched by the native `action: string`), and the
 * methods index.js adds. See binding.d.ts for the others.
 */
export declare class AuditLogs extends NativeAuditLogs {
  /** Connects with a URL as psql and Prisma write it; see binding.d.ts. */
  static connect(url: string): Promise<AuditLogs>
  /** Records an application event, with the current request's context unless told otherwise. */
  log<Action extends EventAction>(input: CreateAuditLogInput<Action>, options?: LogEventOptions): Promise<AuditLog<Action>>
  /** Records up to 10000 events in one statement, all or none; resolves to them in order. */
  logMany<Action extends EventAction>(inputs: Array<CreateAuditLogInput<Action>>, options?: LogEventOptions): Promise<Array<AuditLog<Action>>>
  /**
   * Every entry matching `filters` (newest first unless `order: 'oldest'`), read in batches
   * from one consistent snapshot: `for await (const entry of audit.entries({ actorId }))`.
   * Breaking out of the loop ends the read and frees its connection.
   */
  entries<Row extends object = RowValues>(filters?: Filters | null, options?: StreamOptions | null): AsyncGenerator<AuditEntry<Row>, void, undefined>
  /**
   * Every entry that mentions a data subject, with where (as `subject()` finds them; oldest
   * first with `order: 'oldest'`), from one snapshot in one scan: an access request's export.
   */
  subjectEntries(subject: DataSubject, options?: StreamOptions | null): AsyncGenerator<SubjectEntry, void, undefined>
  /**
   * One record's entries, newest first: its row changes, and the events about it (an event's
   * `targetType` names the table as the README's "Events in a record's history" says). With
   * `includeArchive`, also the months archived and dropped from the live log, read from their
   * archives; rejects with `AUDIT_LOGS_ARCHIVE_INVALID` if an archive changed since its month was
   * dropped.
   */
  history<Row extends object = RowValues>(options: HistoryOptions): Promise<Array<AuditEntry<Row>>>
  /** The record as it was at `at`, or null if it did not exist then (or was not tracked yet). */
  stateAt<Row extends object = RowValues>(options: StateAtOptions): Promise<Row | null>
  /** Many records at many times in one query, in the order given; `state` is null where none. */
  statesAt<Row extends object = RowValues>(options: StatesAtOptions): Promise<Array<StateAt<Row>>>
  /** Entries matching `filters`, newest first, a page at a time (keyset: pass `nextCursor`). */
  search<Row extends object = RowValues>(filters?: Filters | null, page?: PageOptions | null): Promise<SearchPageOf<Row>>
  /** What one actor did, newest first. */
  byActor<Row extends object = RowValues>(actorId: string, options?: RangeOptions | null): Promise<Array<AuditEntry<Row>>>
  /** What one request did, newest first. */
  byRequest<Row extends object = RowValues>(requestId: string, options?: RangeOptions | null): Promise<Array<AuditEntry<Row>>>
  /** What one transaction did, newest first. */
  byTransaction<Row extends object = RowValues>(txid: number, options?: TransactionOptions | null): Promise<Array<AuditEntry<Row>>>
  /** Every change of one column, newest first, typed as `Value`. */
  fieldChanges<Value = unknown>(options: FieldChangesOptions): Promise<Array<FieldChangeOf<Value>>>
  /**
   * Undoes what `target` names, in a transaction of its own or, with `options.client`, in the
   * caller's (see {@link RevertClientOptions}); binding.d.ts says the rest.
   */
  revert(target: RevertTarget, options?: RevertClientOptions | null): Promise<RevertReport>
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
export interface PgPoolLike extends PgQueryable {
  connect(): Promise<PgQueryable & { release(error?: Error | boolean): void }>
  readonly totalCount: number
}
/** A pg Client / PoolClient; or one of an older pg line, or of a driver built on it (Neon's serverless Client). */
export type PgClientLike = PgQueryable & (
  | { getTransactionStatus(): string | null }
  | { escapeLiteral(text: string): string; escapeIdentifier(text: string): string }
)

/** What {@link withAuditContext} accepts from Prisma: a client, extended or not. */
export interface PrismaLike {
  $transaction(...args: any[]): Promise<any>
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>
}

/**
 * What {@link withAuditContext} accepts from Drizzle: a database over node-postgres (or a
 * pg-compatible driver), or a transaction of one. Structural, so that this package needs no
 * drizzle-orm types of its own; `fn` receives Drizzle's own `PgTransaction`.
 */
export interface DrizzleLike {
  transaction(fn: (tx: any) => Promise<any>, config?: any): Promise<any>
  select(...args: any[]): unknown
}
/** What {@link withAuditContext} accepts from Kysely: a `Kysely` or a `Transaction`; `fn` gets a `Transaction<DB>`. */
export interface KyselyLike {
  transaction(): { execute(fn: (trx: any) => Promise<any>): Promise<any> }
  selectFrom(...args: any[]): unknown
  readonly isTransaction: boolean
}
/** What {@link withAuditContext} accepts from Knex (client 'pg'): an instance or a transaction; `fn` gets a `Knex.Transaction`. */
export interface KnexLike {
  (...args: any[]): unknown
  raw(...args: any[]): unknown
  transaction(fn: (trx: any) => any, config?: any): Promise<any>
}

/** What {@link withAuditContext} accepts from TypeORM (type 'postgres'): a DataSource or an EntityManager; `fn` gets an `EntityManager`. */
export interface TypeOrmLike {
  readonly '@instanceof': symbol
  transaction(...args: any[]): Promise<any>
  query(query: string, parameters?: any[]): Promise<any>
}
/** What {@link withAuditContext} accepts from Sequelize (dialect 'postgres'): an instance; `fn` gets its `Transaction`. */
export interface SequelizeLike {
  getDialect(): string
  transaction(...args: any[]): Promise<any>
  query(...args: any[]): Promise<any>
}
/** A Sequelize `Transaction`: withAuditContext(t, ...) opens a savepoint in it. */
export interface SequelizeTransactionLike {
  commit(): Promise<void>
  rollback(): Promise<void>
  afterCommit(fn: (...args: any[]) => unknown): void
}

/** The transaction an ORM's database hands its callback (Drizzle's, Kysely's, Knex's... own type). */
export type OrmTransactionOf<Target> =
  Target extends KnexLike ? (Target extends { transaction(fn: (trx: infer Trx) => any, ...rest: any[]): Promise<any> } ? Trx : never)
    : Target extends KyselyLike ? (Target extends { transaction(): { execute(fn: (trx: infer Trx) => Promise<any>): Promise<any> } } ? Trx : never)
      : Target extends TypeOrmLike ? (Target extends { manager: infer Manager; createQueryRunner(...args: any[]): any } ? Manager : Target)
        : Target extends SequelizeTransactionLike ? Target
          : Target extends SequelizeLike ? (Target extends { transaction(options?: any): Promise<infer Tx> } ? Tx : never)
            : Target extends { transaction(fn: (tx: infer Tx) => Promise<any>, ...rest: any[]): Promise<any> } ? Tx : never

/**
 * The client a pool hands out: pg's `PoolClient` for a `pg.Pool` (read from its callback form
 * of `connect`, so that this package needs no `@types/pg` of its own).
 */
export type PoolClientOf<Pool> =
  Pool extends { connect(callback: (error: any, client: infer Client, done: any) => void): void }
    ? Exclude<Client, undefined>
    : Pool extends { connect(): Promise<infer Client> } ? Client : PgQueryable

/** What `fn` of {@link withAuditContext} receives for a target: a transaction client. */
export type AuditTransactionClient<Target> =
  Target extends PrismaLike ? Omit<Target, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>
    : Target extends KnexLike | KyselyLike | TypeOrmLike | SequelizeTransactionLike | SequelizeLike | DrizzleLike ? OrmTransactionOf<Target>
      : Target extends PgPoolLike ? PoolClientOf<Target>
        : Target

/**
 * Runs `fn` in one transaction whose changes are attributed to `context` (or, when it is null or
 * omitted, to the current request's context from {@link runWithAuditContext} or the middleware).
 * The context given is merged over the current one, and is the current one inside `fn`: a
 * nested call's partial context (`{ reason }`) merges over it.
 * node-postgres: BEGIN, set the context, `fn(client)` (a `pg.PoolClient` for a pool), COMMIT;
 * ROLLBACK and rethrow on error; a pool's client is always released; nested calls on one client
 * use a savepoint.
 * Prisma: an interactive `$transaction`, `fn(tx)`.
 * Drizzle (node-postgres), Kysely, Knex, TypeORM, Sequelize (PostgreSQL): the ORM's own
 * transaction, `fn(tx)` typed as the ORM's (a Drizzle or Kysely transaction, a `Knex.Transaction`,
 * a TypeORM `EntityManager`, a Sequelize `Transaction`); given a transaction of the ORM, a
 * savepoint in it, the outer context put back after.
 * Throws AUDIT_LOGS_INVALID_CONTEXT before anything is written when the context is invalid,
 * AUDIT_LOGS_TRANSACTION_FAILED for a pg client in a failed transaction, and
 * AUDIT_LOGS_CONTEXT_REQUIRED (the driver's error as `cause`) when a table requiring a context
 * refused a write without one.
 *
 * A connection lost before COMMIT rejects with the driver's error as is: nothing was committed,
 * and the pool discards the connection rather than hand it out again. A connection lost while
 * COMMIT is in flight rejects with AUDIT_LOGS_COMMIT_UNKNOWN (the driver's error as `cause`):
 * the transaction may or may not have committed, its changes and their audit rows together or
 * not at all. Find out before retrying: look for its audit rows with
 * `audit.byRequest(requestId)` (give the context a `requestId`), or re-read the data.
 */
export function withAuditContext<
  Target extends PgPoolLike | PgClientLike | PrismaLike | DrizzleLike | KyselyLike | KnexLike | TypeOrmLike | SequelizeLike | SequelizeTransactionLike,
  T,
>(
  target: Target,
  context: AuditContext | null | undefined,
  fn: (client: AuditTransactionClient<Target>) => Promise<T>,
  options?: WithAuditContextOptions,
): Promise<T>

/**
 * Runs `fn` with `context` as the audit context of everything it starts (validated first). A
 * lazy thenable `fn` returns (a Prisma query not awaited) is started inside the context and
 * comes back as a Promise.
 */
export function runWithAuditContext<T>(context: AuditContext, fn: () => T): T extends PromiseLike<infer U> ? Promise<U> : T

/** The audit context of the current request or job, if any. */
export function currentAuditContext(): Readonly<AuditContext> | undefined

/** A request as the middleware reads it (Express and Fastify requests both fit). */
export interface RequestLike {
  ip?: string | undefined
  headers: Record<string, string | string[] | undefined>
  socket?: { remoteAddress?: string | undefined } | undefined
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

/** What {@link AuditViewerOptions.authorize} allows: everything, only what `filters` select, or nothing. */
export type ViewerScope = true | { filters: Filters } | false | null | undefined

export interface AuditViewerOptions<Request = any> {
  audit: AuditLogs
  /**
   * Required: who may see what. `true` shows everything (and lets the viewer verify the chain);
   * `{ filters }` applies those filters over every query (`{ filters: { table: 'posts' } }`,
   * `{ filters: { metadataContains: { tenant: 7 } } }`); anything else answers 403. May be async.
   */
  authorize: (request: Request) => ViewerScope | Promise<ViewerScope>
  /**
   * Record who viewed what: each page read is logged as an `audit_log.viewed` event with the
   * context this returns (the viewer's identity) and the page's filters.
   */
  recordViews?: ((request: Request) => AuditContext | undefined | Promise<AuditContext | undefined>) | undefined
}

/**
 * The history viewer (a page and a read-only JSON API) as a request handler for Express or
 * Node's http server, mounted under any path: `app.use('/audit', auditViewer({ audit, authorize }))`.
 */
export function auditViewer<Request = any>(
  options: AuditViewerOptions<Request>,
): (req: Request, res: unknown, next?: (error?: unknown) => void) => Promise<void>

/**
 * The viewer for Fastify: `app.register(auditViewerPlugin, { audit, authorize, prefix: '/audit' })`.
 * `authorize` and `recordViews` get Fastify's request, with what its hooks set (`request.user`).
 */
export function auditViewerPlugin(
  fastify: { get(path: string, handler: (...args: any[]) => unknown): unknown },
  options: AuditViewerOptions<any> & { prefix?: string },
): Promise<void>

/** What a fetch-style handler's request carries: a `Request`, or Next.js's `headers()` as `{ headers }`. */
export interface FetchRequestLike {
  headers: { get(name: string): string | null }
}
/**
 * What a fetch-style handler receives first: a `Request` (Next.js route handlers, Bun, Deno),
 * `{ request }` (Remix and React Router loaders and actions, SvelteKit, Astro), or Hono's
 * context (`c.req.raw`).
 */
export type FetchHandlerInput = FetchRequestLike | { request: FetchRequestLike } | { req: { raw: FetchRequestLike } }

export interface RequestContextOptions<Input = FetchHandlerInput> {
  /** Who is making the request, from what the handler receives. May be async. */
  getActor?: (input: Input) => AuditContext | undefined | Promise<AuditContext | undefined>
  /** The client's address (a fetch Request carries none): Hono's `getConnInfo(c).remote.address`, a trusted proxy's header. Dropped when it is not an IP. */
  getIp?: (input: Input) => string | undefined | Promise<string | undefined>
  /** The header carrying the request id. Default: `x-request-id` (else a new UUID). */
  requestIdHeader?: string
}

/**
 * The audit context of a fetch request, with the Express middleware's header rules (a user agent
 * over 1024 bytes cut at a character boundary, a request id that cannot be stored replaced by a
 * new UUID, a bad IP dropped). Rejects only with what `getActor` or `getIp` throws.
 */
export function auditContextFromRequest<Input extends FetchHandlerInput>(
  input: Input,
  options?: RequestContextOptions<Input>,
): Promise<AuditContext & { requestId: string }>

/**
 * Wraps a fetch-style handler so that it runs with its request's audit context, and echoes the
 * request id in its response (`x-request-id`, unless the handler set it):
 * `export const POST = withRequestContext(async (request) => Response.json(...), { getActor })`.
 * An error of `getActor`, or a context that cannot be stored, rejects the wrapped handler (the
 * framework's error handling: a 500 unless you handle it); the handler does not run.
 */
export function withRequestContext<Handler extends (input: any, ...rest: any[]) => unknown>(
  handler: Handler,
  options?: RequestContextOptions<Parameters<Handler>[0]>,
): (...args: Parameters<Handler>) => Promise<Awaited<ReturnType<Handler>>>

/**
 * A NestJS interceptor that sets the audit context of each HTTP request, after guards (so
 * `getActor` reads what authentication set): `app.useGlobalInterceptors(new
 * AuditContextInterceptor({ getActor: (req) => ({ actorId: req.user?.id }) }))`. The middleware's
 * header rules; the request id is echoed. An error of `getActor`, or a context that cannot be
 * stored, goes to Nest's exception filters.
 */
export declare class AuditContextInterceptor<Request extends RequestLike = any> {
  constructor(options?: AuditContextMiddlewareOptions<Request>)
  intercept(
    context: { getType(): string; switchToHttp(): { getRequest(): any; getResponse(): any } },
    next: { handle(): any },
  ): Promise<any>
}

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

/** Options of {@link auditDialect}. */
export interface AuditDialectOptions {
  /** Who makes the writes. Default: the current request's context ({@link currentAuditContext}). */
  getContext?: () => AuditContext | null | undefined
  /** Fail writes and transactions (AUDIT_LOGS_CONTEXT_REQUIRED) when getContext() gives nothing. Default: false. */
  requireContext?: boolean
}

/** A Kysely dialect, as {@link auditDialect} wraps it. */
export interface KyselyDialectLike {
  createDriver(): unknown
  createAdapter(): unknown
  createQueryCompiler(): unknown
  createIntrospector(db: any): unknown
}

/**
 * Kysely's client-wide hook: `new Kysely<DB>({ dialect: auditDialect(new PostgresDialect({ pool })) })`.
 * Every transaction of the instance sets the current request's context as its first statement;
 * a write outside a transaction runs as BEGIN, set context, write, COMMIT on its connection;
 * reads (a SELECT without a CTE, raw SQL starting with SELECT) are untouched, and no write leaves
 * its transaction.
 */
export function auditDialect<Dialect extends KyselyDialectLike>(
  dialect: Dialect,
  options?: AuditDialectOptions,
): Pick<Dialect, keyof KyselyDialectLike>

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
