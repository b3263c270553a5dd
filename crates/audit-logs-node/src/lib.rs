//! The Node.js face of audit-logs. Each export converts its arguments, calls the core and maps
//! the result; no SQL and no rule lives here.

mod protect;

use std::future::Future;

use audit_logs_core as core;
use chrono::{DateTime, Utc};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

/// The stable `code` of a core error, as `err.code` in JavaScript.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// A JavaScript `Error` with `.code` (e.g. `AUDIT_LOGS_NO_PRIMARY_KEY`) and the core's message.
fn js_error(env: &Env, e: core::Error) -> Error {
    let error = JsError::from(Error::new(Code(e.code()), e.to_string()));
    Error::from(error.into_unknown(*env))
}

fn sync_error(e: core::Error) -> Error<Code> {
    Error::new(Code(e.code()), e.to_string())
}

/// Runs a core future on napi's runtime; rejects with a coded error (a plain `async fn` could
/// only reject with napi's own statuses).
fn promise<'env, T, F>(env: &'env Env, future: F) -> Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = core::Result<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(future.await) }, |env, result| {
        result.map_err(|e| js_error(env, e))
    })
}

/// [`promise`] for the core calls that list entries.
fn entry_list<'env, F>(env: &'env Env, future: F) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>>
where
    F: Future<Output = core::Result<Vec<core::AuditEntry>>> + Send + 'static,
{
    promise(env, async move {
        Ok(future.await?.into_iter().map(Into::into).collect())
    })
}

/// A table named without SQL quoting: `{ schema: 'Sales', name: 'Order Items' }`.
#[napi(object)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

fn table_ref(table: Either<String, TableName>) -> core::TableRef {
    match table {
        Either::A(sql) => core::TableRef::Sql(sql),
        Either::B(TableName { schema, name }) => core::TableRef::Exact { schema, name },
    }
}

/// Options of {@link AuditLogs.enableTracking}.
#[napi(object)]
pub struct TrackingOptions {
    /// Columns whose values are never stored, e.g. `['password_hash']` (their changes are
    /// still named in `changedFields`). Default: none.
    pub exclude_columns: Option<Vec<String>>,
    /// Also record updates that change nothing. Default: false.
    pub record_unchanged: Option<bool>,
    /// Fail writes that carry no audit context (`AUDIT_LOGS_CONTEXT_REQUIRED` from the write)
    /// instead of recording them unattributed. Default: false.
    pub require_context: Option<bool>,
}

/// A tracked table.
#[napi(object)]
pub struct TrackedTable {
    pub schema: String,
    pub name: String,
    /// What `audit_logs.target_type` holds for its changes: `schema.table`, quoted as in SQL.
    pub target_type: String,
    pub primary_key: Vec<String>,
    pub excluded_columns: Vec<String>,
    pub skip_unchanged: bool,
    /// Whether a write without an audit context fails.
    pub require_context: bool,
    /// Empty when tracking is current; otherwise what changed since it was enabled
    /// (call `enableTracking` again to refresh). Includes every capture problem.
    pub needs_refresh: Vec<String>,
    /// The role capture runs as: `audit_writer`, or the audit log's owner where the migration
    /// could not create that role.
    pub capture_role: String,
    /// Capture triggers missing, disabled or firing only for replication: changes that go
    /// unrecorded until `enableTracking` runs again.
    pub capture_problems: Vec<String>,
}

impl From<core::TrackedTable> for TrackedTable {
    fn from(t: core::TrackedTable) -> Self {
        TrackedTable {
            schema: t.schema,
            name: t.name,
            target_type: t.target_type,
            primary_key: t.primary_key,
            excluded_columns: t.excluded_columns,
            skip_unchanged: t.skip_unchanged,
            require_context: t.require_context,
            needs_refresh: t.needs_refresh,
            capture_role: t.capture_role,
            capture_problems: t.capture_problems,
        }
    }
}

/// A migration and where it stands.
#[napi(object)]
pub struct Migration {
    pub version: i32,
    pub name: String,
    /// `applied`, `pending`, `diverged` (the shipped file differs) or `unknown` (not shipped).
    #[napi(ts_type = "'applied' | 'pending' | 'diverged' | 'unknown'")]
    pub state: String,
    pub applied_on: Option<String>,
}

impl From<core::MigrationInfo> for Migration {
    fn from(m: core::MigrationInfo) -> Self {
        Migration {
            version: m.version,
            name: m.name,
            state: match m.state {
                core::MigrationState::Applied => "applied",
                core::MigrationState::Pending => "pending",
                core::MigrationState::Diverged => "diverged",
                core::MigrationState::Unknown => "unknown",
            }
            .into(),
            applied_on: m.applied_on,
        }
    }
}

/// What {@link AuditLogs.migrate} did, or would do with `dryRun`.
#[napi(object)]
pub struct MigrateReport {
    pub applied: Vec<Migration>,
    pub dry_run: bool,
    /// With `dryRun`: the SQL of each migration that would run.
    pub sql: Vec<String>,
}

/// What {@link AuditLogs.status} reports.
#[napi(object)]
pub struct Status {
    /// `host:port/database`.
    pub database: String,
    pub migrations: Vec<Migration>,
    pub tracked_tables: Vec<TrackedTable>,
    /// Every shipped migration is applied.
    pub up_to_date: bool,
}

/// One entry of the audit log: a row change or an application event.
#[napi(object)]
pub struct AuditLogEntry {
    pub id: i64,
    /// Transaction time.
    pub created_at: DateTime<Utc>,
    /// The transaction (entries of one transaction share it).
    pub txid: i64,
    /// `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, or an event name such as `user.login`.
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Set when an UPDATE changed the primary key: the key before.
    pub old_target_id: Option<String>,
    pub old_values: Option<Value>,
    pub new_values: Option<Value>,
    pub changed_fields: Option<Vec<String>>,
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub metadata: Option<Value>,
}

impl From<core::AuditEntry> for AuditLogEntry {
    fn from(e: core::AuditEntry) -> Self {
        AuditLogEntry {
            id: e.id,
            created_at: e.created_at,
            txid: e.txid,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            old_target_id: e.old_target_id,
            old_values: e.old_values,
            new_values: e.new_values,
            changed_fields: e.changed_fields,
            actor_id: e.actor_id,
            actor_type: e.actor_type,
            actor_email: e.actor_email,
            ip_address: e.ip_address,
            user_agent: e.user_agent,
            request_id: e.request_id,
            metadata: e.metadata,
        }
    }
}

/// Options of {@link AuditLogs.history}: give `table` (row changes) or `targetType` (events).
#[napi(object)]
pub struct HistoryOptions {
    /// The table whose row it is (it may have been dropped since).
    pub table: Option<Either<String, TableName>>,
    /// Any `target_type`, for application events.
    pub target_type: Option<String>,
    /// The primary key; an array for a composite key.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// Only entries older than this entry id (to page).
    pub before: Option<i64>,
}

/// A time: a `Date`, or an ISO 8601 string with a time zone.
type Time = Either<DateTime<Utc>, String>;

fn time(value: Time, name: &str) -> core::Result<DateTime<Utc>> {
    match value {
        Either::A(at) => Ok(at),
        Either::B(text) => core::queries::parse_time(&text, name),
    }
}

fn time_range(from: Option<Time>, to: Option<Time>) -> core::Result<core::TimeRange> {
    Ok(core::TimeRange {
        from: from.map(|t| time(t, "from")).transpose()?,
        to: to.map(|t| time(t, "to")).transpose()?,
    })
}

/// Which entries {@link AuditLogs.search}, `entries`, `counts` and `bursts` read. Every filter
/// given must hold.
#[napi(object)]
pub struct Filters {
    /// A table (its rows' changes); it may have been dropped since.
    pub table: Option<Either<String, TableName>>,
    /// Any `target_type` (a table's `schema.table`, or an event's).
    pub target_type: Option<String>,
    /// One record's key (an array for a composite key) or an event target's id.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub target_id: Option<Value>,
    /// One action or any of several: `'UPDATE'`, `['user.login', 'user.logout']`.
    pub action: Option<Either<String, Vec<String>>>,
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub request_id: Option<String>,
    pub txid: Option<i64>,
    /// UPDATEs that changed this column.
    pub changed_field: Option<String>,
    /// Entries whose metadata contains this object, e.g. `{ reason: 'gdpr' }`.
    pub metadata_contains: Option<Value>,
    /// `from <= createdAt`.
    #[napi(ts_type = "Date | string")]
    pub from: Option<Time>,
    /// `createdAt < to`.
    #[napi(ts_type = "Date | string")]
    pub to: Option<Time>,
}

fn filters(filters: Option<Filters>) -> core::Result<core::Filters> {
    let Some(f) = filters else {
        return Ok(core::Filters::default());
    };
    let range = time_range(f.from, f.to)?;
    Ok(core::Filters {
        table: f.table.map(table_ref),
        target_type: f.target_type,
        target_id: f.target_id,
        actions: match f.action {
            None => Vec::new(),
            Some(Either::A(action)) => vec![action],
            Some(Either::B(actions)) => actions,
        },
        actor_id: f.actor_id,
        actor_type: f.actor_type,
        actor_email: f.actor_email,
        request_id: f.request_id,
        txid: f.txid,
        changed_field: f.changed_field,
        metadata_contains: f.metadata_contains,
        from: range.from,
        to: range.to,
    })
}

/// A page of a list, newest first.
#[napi(object)]
pub struct PageOptions {
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of {@link AuditLogs.search} results.
#[napi(object)]
pub struct SearchPage {
    pub entries: Vec<AuditLogEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Options of {@link AuditLogs.byActor} and {@link AuditLogs.byRequest}.
#[napi(object)]
pub struct RangeOptions {
    #[napi(ts_type = "Date | string")]
    pub from: Option<Time>,
    #[napi(ts_type = "Date | string")]
    pub to: Option<Time>,
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// Only entries older than this entry id (to page).
    pub before: Option<i64>,
}

fn range_and_page(options: Option<RangeOptions>) -> core::Result<(core::TimeRange, core::Page)> {
    let Some(o) = options else {
        return Ok(Default::default());
    };
    let page = core::Page {
        limit: o.limit,
        before: o.before,
    };
    Ok((time_range(o.from, o.to)?, page))
}

/// Options of {@link AuditLogs.byTransaction}.
#[napi(object)]
pub struct TransactionOptions {
    /// The `createdAt` of one of its entries (all share it).
    #[napi(ts_type = "Date | string")]
    pub at: Option<Time>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

/// Options of {@link AuditLogs.stateAt}.
#[napi(object)]
pub struct StateAtOptions {
    pub table: Either<String, TableName>,
    /// The primary key; an array for a composite key.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    #[napi(ts_type = "Date | string")]
    pub at: Time,
}

/// A record and a time, for {@link AuditLogs.statesAt}.
#[napi(object)]
pub struct StatePoint {
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    #[napi(ts_type = "Date | string")]
    pub at: Time,
}

/// Options of {@link AuditLogs.statesAt}.
#[napi(object)]
pub struct StatesAtOptions {
    pub table: Either<String, TableName>,
    /// At most 10000.
    pub points: Vec<StatePoint>,
}

/// A record's state at a time.
#[napi(object)]
pub struct PointState {
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    pub at: DateTime<Utc>,
    /// The row as it was, or null if it did not exist then (always present).
    #[napi(ts_type = "Record<string, unknown> | null")]
    pub state: Value,
    /// The entry the state comes from; null when there is none.
    pub entry_id: Either<i64, Null>,
}

/// Options of {@link AuditLogs.fieldChanges}.
#[napi(object)]
pub struct FieldChangesOptions {
    pub table: Either<String, TableName>,
    /// The column.
    pub field: String,
    /// Only this record's changes.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Option<Value>,
    #[napi(ts_type = "Date | string")]
    pub from: Option<Time>,
    #[napi(ts_type = "Date | string")]
    pub to: Option<Time>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

/// One change of one column.
#[napi(object)]
pub struct FieldChange {
    pub entry_id: i64,
    pub created_at: DateTime<Utc>,
    pub txid: i64,
    pub target_id: Option<String>,
    /// The value before and after (undefined for an excluded column).
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub request_id: Option<String>,
}

/// One group of {@link AuditLogs.counts}: the keys grouped by are set.
#[napi(object)]
pub struct CountRow {
    pub target_type: Option<String>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    /// The start of the hour, day, week or month (UTC).
    pub period: Option<DateTime<Utc>>,
    pub count: i64,
}

/// Options of {@link AuditLogs.bursts}.
#[napi(object)]
pub struct BurstOptions {
    /// A PostgreSQL interval: `'10 minutes'`, `'1 hour'`.
    pub window: String,
    /// At least this many entries within the window.
    pub threshold: i64,
    /// Default: `actorId`.
    #[napi(ts_type = "'actorId' | 'actorEmail' | 'ipAddress'")]
    pub by: Option<String>,
}

/// The busiest window of one actor that reached the threshold.
#[napi(object)]
pub struct Burst {
    /// The actor id, e-mail or IP address (null for entries without one).
    pub key: Option<String>,
    pub changes: i64,
    pub first_change: DateTime<Utc>,
    pub last_change: DateTime<Utc>,
}

/// Options of `entries()`.
#[napi(object)]
pub struct StreamOptions {
    /// Default: `newest`.
    #[napi(ts_type = "'newest' | 'oldest'")]
    pub order: Option<String>,
    /// Rows fetched per round trip, 1 to 10000. Default: 1000.
    pub batch_size: Option<u32>,
}

/// Options of {@link AuditLogs.log} and {@link AuditLogs.logMany}.
#[napi(object)]
pub struct LogOptions {
    /// Fills the context fields the event leaves empty (the JavaScript wrapper passes the
    /// current request's context).
    #[napi(ts_type = "AuditContext | null")]
    pub context: Option<Value>,
}

/// An application event to record (seed 004's `CreateAuditLogInput`). Declares the type only:
/// events are read by the core (`NewEvent::from_camel_case`), which names the field at fault
/// and takes an integer `actorId`.
#[napi(object)]
#[allow(dead_code)]
pub struct CreateAuditLogInput {
    /// What happened: `user.login`, `project.created`... (letters, digits, `_ . : -`).
    pub action: String,
    pub target_type: Option<String>,
    #[napi(ts_type = "string | number")]
    pub target_id: Option<Value>,
    pub metadata: Option<Value>,
    /// An integer (an ORM's `Int` id) is stored as its digits.
    #[napi(ts_type = "string | number")]
    pub actor_id: Option<Value>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any string.
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    #[napi(ts_type = "string | number")]
    pub request_id: Option<Value>,
    pub reason: Option<String>,
}

fn request_context(options: Option<LogOptions>) -> core::Result<Option<core::AuditContext>> {
    match options.and_then(|o| o.context) {
        None | Some(Value::Null) => Ok(None),
        Some(context) => core::AuditContext::from_camel_case(context).map(Some),
    }
}

fn events_and_context(
    inputs: Vec<Value>,
    options: Option<LogOptions>,
) -> core::Result<(Vec<core::NewEvent>, Option<core::AuditContext>)> {
    let events = inputs
        .into_iter()
        .map(core::NewEvent::from_camel_case)
        .collect::<core::Result<Vec<_>>>()?;
    Ok((events, request_context(options)?))
}

/// The SQL that records events on the caller's own connection: `client.query(text, values)`.
#[napi(object)]
pub struct EventStatement {
    pub text: String,
    pub values: Vec<String>,
}

/// The statement that records `inputs` in the caller's transaction (a pg client or a Prisma
/// transaction), so they commit or roll back with it; its rows are `AuditLogEntry` objects.
/// Throws `AUDIT_LOGS_INVALID_EVENT` or `AUDIT_LOGS_INVALID_CONTEXT` before anything runs.
#[napi(
    ts_args_type = "inputs: Array<CreateAuditLogInput>, options?: LogOptions | undefined | null"
)]
pub fn event_statement(
    inputs: Vec<Value>,
    options: Option<LogOptions>,
) -> Result<EventStatement, Code> {
    let (events, context) = events_and_context(inputs, options).map_err(sync_error)?;
    let statement = core::events::statement(&events, context.as_ref()).map_err(sync_error)?;
    Ok(EventStatement {
        text: statement.text,
        values: vec![statement.events],
    })
}

/// A driver's error recast as audit-logs' own (see {@link ownError}).
#[napi(object)]
pub struct OwnError {
    /// The stable code: `AUDIT_LOGS_CONTEXT_REQUIRED`, `AUDIT_LOGS_APPEND_ONLY`...
    pub code: String,
    pub message: String,
}

/// The audit-logs error for one of its own SQLSTATEs (class `AL`, raised by its triggers and
/// functions) as node-postgres or Prisma report it: the code and message the native API gives
/// for it. Null for any other SQLSTATE (the caller's own error stays as it is).
#[napi]
pub fn own_error(sqlstate: String, message: String, hint: Option<String>) -> Option<OwnError> {
    core::error::from_own_sqlstate(&sqlstate, &message, hint.as_deref()).map(|e| OwnError {
        code: e.code().to_owned(),
        message: e.to_string(),
    })
}

/// Batches of entries from one consistent snapshot (see `AuditLogs.entries`).
#[napi]
pub struct EntryBatches {
    stream: std::sync::Arc<tokio::sync::Mutex<Option<core::EntryStream>>>,
}

#[napi]
impl EntryBatches {
    /// The next batch, or null at the end.
    #[napi(ts_return_type = "Promise<AuditLogEntry[] | null>")]
    pub fn next<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Option<Vec<AuditLogEntry>>>> {
        let stream = self.stream.clone();
        promise(env, async move {
            let mut guard = stream.lock().await;
            let Some(open) = guard.as_mut() else {
                return Ok(None);
            };
            let batch = open.next_batch().await?;
            if batch.is_none() {
                *guard = None;
            }
            Ok(batch.map(|entries| entries.into_iter().map(Into::into).collect()))
        })
    }

    /// Ends the stream early and gives its connection back.
    #[napi]
    pub fn close(&self) {
        if let Ok(mut guard) = self.stream.try_lock() {
            *guard = None;
        } else {
            // A batch is being read: drop the stream when it is done.
            let stream = self.stream.clone();
            napi::bindgen_prelude::spawn(async move {
                *stream.lock().await = None;
            });
        }
    }
}

/// A connection pool on one database, and everything audit-logs does with it.
#[napi]
pub struct AuditLogs {
    inner: core::AuditLogs,
}

#[napi]
impl AuditLogs {
    /// Connects with a URL as psql and Prisma write it (`?sslmode=`, `?schema=`,
    /// `?connection_limit=`... are understood). Rejects with `AUDIT_LOGS_INVALID_URL`,
    /// `AUDIT_LOGS_CONNECTION_FAILED`, `AUDIT_LOGS_AUTHENTICATION_FAILED` or `AUDIT_LOGS_TLS_FAILED`.
    #[napi(ts_return_type = "Promise<AuditLogs>")]
    pub fn connect(env: &Env, url: String) -> Result<PromiseRaw<'_, AuditLogs>> {
        promise(env, async move {
            core::AuditLogs::connect(&url)
                .await
                .map(|inner| AuditLogs { inner })
        })
    }

    /// Installs or upgrades the audit schema; concurrent calls apply each migration once.
    /// With `dryRun`, reports what would run and changes nothing.
    #[napi(ts_return_type = "Promise<MigrateReport>")]
    pub fn migrate<'env>(
        &self,
        env: &'env Env,
        dry_run: Option<bool>,
    ) -> Result<PromiseRaw<'env, MigrateReport>> {
        let inner = self.inner.clone();
        promise(env, async move {
            let report = inner.migrate(dry_run.unwrap_or(false)).await?;
            Ok(MigrateReport {
                applied: report.applied.into_iter().map(Into::into).collect(),
                dry_run: report.dry_run,
                sql: report.sql,
            })
        })
    }

    /// Applied and pending migrations, and the tracked tables.
    #[napi(ts_return_type = "Promise<Status>")]
    pub fn status<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Status>> {
        let inner = self.inner.clone();
        promise(env, async move {
            let status = inner.status().await?;
            Ok(Status {
                up_to_date: status.is_up_to_date(),
                database: status.database,
                migrations: status.migrations.into_iter().map(Into::into).collect(),
                tracked_tables: status.tracked_tables.into_iter().map(Into::into).collect(),
            })
        })
    }

    /// Records every INSERT, UPDATE, DELETE and TRUNCATE of the table. Idempotent; call it
    /// again after altering the table. Rejects with `AUDIT_LOGS_NO_PRIMARY_KEY`,
    /// `AUDIT_LOGS_TABLE_NOT_FOUND`, `AUDIT_LOGS_INVALID_TABLE_NAME`, `AUDIT_LOGS_NOT_A_TABLE`,
    /// `AUDIT_LOGS_INVALID_COLUMN` or `AUDIT_LOGS_NOT_MIGRATED`.
    #[napi(ts_return_type = "Promise<TrackedTable>")]
    pub fn enable_tracking<'env>(
        &self,
        env: &'env Env,
        table: Either<String, TableName>,
        options: Option<TrackingOptions>,
    ) -> Result<PromiseRaw<'env, TrackedTable>> {
        let inner = self.inner.clone();
        let table = table_ref(table);
        let options =
            options.map_or_else(core::TrackingOptions::default, |o| core::TrackingOptions {
                exclude_columns: o.exclude_columns,
                record_unchanged: o.record_unchanged,
                require_context: o.require_context,
            });
        promise(env, async move {
            inner
                .enable_tracking(&table, &options)
                .await
                .map(Into::into)
        })
    }

    /// Stops recording the table's changes (its history is kept). Resolves to whether it was tracked.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn disable_tracking<'env>(
        &self,
        env: &'env Env,
        table: Either<String, TableName>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let inner = self.inner.clone();
        let table = table_ref(table);
        promise(env, async move { inner.disable_tracking(&table).await })
    }

    /// The tracked tables and their options.
    #[napi(ts_return_type = "Promise<TrackedTable[]>")]
    pub fn tracked_tables<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Vec<TrackedTable>>> {
        let inner = self.inner.clone();
        promise(env, async move {
            Ok(inner
                .tracked_tables()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// The entries of one record, newest first. Rejects with `AUDIT_LOGS_INVALID_ARGUMENT` for
    /// a bad `limit`, `before` or `id`.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn history<'env>(
        &self,
        env: &'env Env,
        options: HistoryOptions,
    ) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>> {
        let inner = self.inner.clone();
        let target = match (options.table, options.target_type) {
            (Some(table), None) => Ok(core::Target::Table(table_ref(table))),
            (None, Some(target_type)) => Ok(core::Target::Type(target_type)),
            _ => Err(core::Error::InvalidArgument {
                name: "table".into(),
                reason: "give either table or targetType".into(),
            }),
        };
        promise(env, async move {
            let query = core::HistoryQuery {
                target: target?,
                id: options.id,
                limit: options.limit,
                before: options.before,
            };
            Ok(inner
                .history(&query)
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
    }

    /// Records an application event; the context fields it leaves empty come from
    /// `options.context`, then from nothing. Rejects with `AUDIT_LOGS_INVALID_EVENT` or
    /// `AUDIT_LOGS_INVALID_CONTEXT` before anything is written.
    #[napi(
        ts_args_type = "input: CreateAuditLogInput, options?: LogOptions | undefined | null",
        ts_return_type = "Promise<AuditLogEntry>"
    )]
    pub fn log<'env>(
        &self,
        env: &'env Env,
        input: Value,
        options: Option<LogOptions>,
    ) -> Result<PromiseRaw<'env, AuditLogEntry>> {
        let inner = self.inner.clone();
        let prepared = events_and_context(vec![input], options);
        promise(env, async move {
            let (events, context) = prepared?;
            let mut entries = inner.log_many(&events, context.as_ref()).await?;
            Ok(entries.remove(0).into())
        })
    }

    /// Records up to 10000 events in one statement, all or none; resolves to them in order.
    #[napi(
        ts_args_type = "inputs: Array<CreateAuditLogInput>, options?: LogOptions | undefined | null",
        ts_return_type = "Promise<AuditLogEntry[]>"
    )]
    pub fn log_many<'env>(
        &self,
        env: &'env Env,
        inputs: Vec<Value>,
        options: Option<LogOptions>,
    ) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>> {
        let inner = self.inner.clone();
        let prepared = events_and_context(inputs, options);
        promise(env, async move {
            let (events, context) = prepared?;
            let entries = inner.log_many(&events, context.as_ref()).await?;
            Ok(entries.into_iter().map(Into::into).collect())
        })
    }

    /// The record as it was at `at`, or null if it did not exist then (or was not tracked yet).
    #[napi(ts_return_type = "Promise<Record<string, unknown> | null>")]
    pub fn state_at<'env>(
        &self,
        env: &'env Env,
        options: StateAtOptions,
    ) -> Result<PromiseRaw<'env, Option<Value>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let at = time(options.at, "at");
        promise(env, async move {
            inner.state_at(&table, &options.id, at?).await
        })
    }

    /// Many records at many times in one query, in the order given.
    #[napi(ts_return_type = "Promise<PointState[]>")]
    pub fn states_at<'env>(
        &self,
        env: &'env Env,
        options: StatesAtOptions,
    ) -> Result<PromiseRaw<'env, Vec<PointState>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let points = options
            .points
            .into_iter()
            .map(|p| {
                Ok(core::StatePoint {
                    id: p.id,
                    at: time(p.at, "at")?,
                })
            })
            .collect::<core::Result<Vec<_>>>();
        promise(env, async move {
            let states = inner.states_at(&table, &points?).await?;
            Ok(states
                .into_iter()
                .map(|s| PointState {
                    id: s.id,
                    at: s.at,
                    state: s.state.unwrap_or(Value::Null),
                    entry_id: s.entry_id.map_or(Either::B(Null), Either::A),
                })
                .collect())
        })
    }

    /// Entries matching `filters`, newest first, a page at a time (keyset: pass `nextCursor`).
    #[napi(ts_return_type = "Promise<SearchPage>")]
    pub fn search<'env>(
        &self,
        env: &'env Env,
        filters: Option<Filters>,
        page: Option<PageOptions>,
    ) -> Result<PromiseRaw<'env, SearchPage>> {
        let inner = self.inner.clone();
        let filters = self::filters(filters);
        let page = page.map_or(Ok(core::Page::default()), |p| {
            Ok::<_, core::Error>(core::Page {
                limit: p.limit,
                before: p
                    .cursor
                    .as_deref()
                    .map(core::queries::parse_cursor)
                    .transpose()?,
            })
        });
        promise(env, async move {
            let result = inner.search(&filters?, &page?).await?;
            Ok(SearchPage {
                entries: result.entries.into_iter().map(Into::into).collect(),
                next_cursor: result.next_cursor.map(|id| id.to_string()),
            })
        })
    }

    /// Opens a stream of every entry matching `filters` (see `entries()`, which iterates it).
    #[napi(ts_return_type = "Promise<EntryBatches>")]
    pub fn open_entries<'env>(
        &self,
        env: &'env Env,
        filters: Option<Filters>,
        options: Option<StreamOptions>,
    ) -> Result<PromiseRaw<'env, EntryBatches>> {
        let inner = self.inner.clone();
        let filters = self::filters(filters);
        let (order, batch_size) = options.map_or((None, None), |o| (o.order, o.batch_size));
        let order = order
            .as_deref()
            .map_or(Ok(core::Order::default()), core::Order::parse);
        promise(env, async move {
            let stream = inner
                .stream(&filters?, order?, batch_size.unwrap_or(1000))
                .await?;
            Ok(EntryBatches {
                stream: std::sync::Arc::new(tokio::sync::Mutex::new(Some(stream))),
            })
        })
    }

    /// What one actor did, newest first.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_actor<'env>(
        &self,
        env: &'env Env,
        actor_id: String,
        options: Option<RangeOptions>,
    ) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>> {
        let inner = self.inner.clone();
        let options = range_and_page(options);
        entry_list(env, async move {
            let (range, page) = options?;
            inner.by_actor(&actor_id, range, &page).await
        })
    }

    /// What one request did, newest first. Give `from`/`to` around the request when you can:
    /// request ids are not indexed, and a time range reads only those blocks.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_request<'env>(
        &self,
        env: &'env Env,
        request_id: String,
        options: Option<RangeOptions>,
    ) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>> {
        let inner = self.inner.clone();
        let options = range_and_page(options);
        entry_list(env, async move {
            let (range, page) = options?;
            inner.by_request(&request_id, range, &page).await
        })
    }

    /// What one transaction (an entry's `txid`) did, newest first. Pass `at`, the `createdAt`
    /// of one of its entries, to read only that part of the log.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_transaction<'env>(
        &self,
        env: &'env Env,
        txid: i64,
        options: Option<TransactionOptions>,
    ) -> Result<PromiseRaw<'env, Vec<AuditLogEntry>>> {
        let inner = self.inner.clone();
        let (at, page) = options.map_or((None, core::Page::default()), |o| {
            (
                o.at,
                core::Page {
                    limit: o.limit,
                    before: o.before,
                },
            )
        });
        let at = at.map(|at| time(at, "at")).transpose();
        entry_list(
            env,
            async move { inner.by_transaction(txid, at?, &page).await },
        )
    }

    /// Every UPDATE of one column, newest first, with the old and new value.
    #[napi(ts_return_type = "Promise<FieldChange[]>")]
    pub fn field_changes<'env>(
        &self,
        env: &'env Env,
        options: FieldChangesOptions,
    ) -> Result<PromiseRaw<'env, Vec<FieldChange>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let range = time_range(options.from, options.to);
        let page = core::Page {
            limit: options.limit,
            before: options.before,
        };
        promise(env, async move {
            let changes = inner
                .field_changes(&table, &options.field, options.id.as_ref(), range?, &page)
                .await?;
            Ok(changes
                .into_iter()
                .map(|c| FieldChange {
                    entry_id: c.entry_id,
                    created_at: c.created_at,
                    txid: c.txid,
                    target_id: c.target_id,
                    old_value: c.old_value,
                    new_value: c.new_value,
                    actor_id: c.actor_id,
                    actor_type: c.actor_type,
                    actor_email: c.actor_email,
                    request_id: c.request_id,
                })
                .collect())
        })
    }

    /// The number of entries matching `filters`, grouped by `targetType`, `action`, `actorId`,
    /// `actorType`, `actorEmail` and at most one of `hour`, `day`, `week`, `month`.
    #[napi(
        ts_args_type = "groupBy: Array<'targetType' | 'action' | 'actorId' | 'actorType' | 'actorEmail' | 'hour' | 'day' | 'week' | 'month'>, filters?: Filters",
        ts_return_type = "Promise<CountRow[]>"
    )]
    pub fn counts<'env>(
        &self,
        env: &'env Env,
        group_by: Vec<String>,
        filters: Option<Filters>,
    ) -> Result<PromiseRaw<'env, Vec<CountRow>>> {
        let inner = self.inner.clone();
        let keys = group_by
            .iter()
            .map(|k| core::CountKey::parse(k))
            .collect::<core::Result<Vec<_>>>();
        let filters = self::filters(filters);
        promise(env, async move {
            let rows = inner.counts(&keys?, &filters?).await?;
            Ok(rows
                .into_iter()
                .map(|r| CountRow {
                    target_type: r.target_type,
                    action: r.action,
                    actor_id: r.actor_id,
                    actor_type: r.actor_type,
                    actor_email: r.actor_email,
                    period: r.period,
                    count: r.count,
                })
                .collect())
        })
    }

    /// Actors with at least `threshold` entries within some `window`, busiest first (seed
    /// 000's suspicious activity). Looks at the last 24 hours unless `filters.from` is given.
    #[napi(ts_return_type = "Promise<Burst[]>")]
    pub fn bursts<'env>(
        &self,
        env: &'env Env,
        options: BurstOptions,
        filters: Option<Filters>,
    ) -> Result<PromiseRaw<'env, Vec<Burst>>> {
        let inner = self.inner.clone();
        let by = options
            .by
            .as_deref()
            .map_or(Ok(core::BurstKey::default()), core::BurstKey::parse);
        let filters = self::filters(filters);
        promise(env, async move {
            let bursts = inner
                .bursts(&options.window, options.threshold, by?, &filters?)
                .await?;
            Ok(bursts
                .into_iter()
                .map(|b| Burst {
                    key: b.key,
                    changes: b.changes,
                    first_change: b.first_change,
                    last_change: b.last_change,
                })
                .collect())
        })
    }

    /// Closes the pool. Later calls fail.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Whether a SQLSTATE means the server ended the session (its backend terminated, a crash, a
/// shutdown, a connection exception, an idle-in-transaction timeout): the connection is dead.
#[napi]
pub fn ends_session(code: String) -> bool {
    core::error::ends_session(&code)
}

/// Validates a context (`{ actorId, actorType, actorEmail, ipAddress, userAgent, requestId,
/// reason, migrationName, metadata }`), over `base` when given (its fields win; metadata is
/// merged key by key), and returns the value for `audit.set_checked_context(value)`, or null
/// for an empty context. Throws `AUDIT_LOGS_INVALID_CONTEXT` naming the bad key or value.
#[napi(ts_args_type = "context: AuditContext, base?: AuditContext | null")]
pub fn serialize_context(context: Value, base: Option<Value>) -> Result<Option<String>, Code> {
    let own = core::AuditContext::from_camel_case(context).map_err(sync_error)?;
    let merged = match base.filter(|b| !b.is_null()) {
        Some(base) => own.over(&core::AuditContext::from_camel_case(base).map_err(sync_error)?),
        None => own,
    };
    merged.to_setting().map_err(sync_error)
}

/// What an HTTP request says about itself (all attacker-controlled), made storable; never
/// throws.
#[napi(object)]
pub struct RequestParts {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// The request parts of a context, made storable: an address that is not one is dropped, a
/// user agent cut to 1024 bytes at a character boundary, and a request id that cannot be stored
/// (over 1024 bytes, a control character) dropped, for the caller to make one. Never throws.
#[napi]
pub fn storable_request_parts(parts: RequestParts) -> RequestParts {
    let context = core::context::from_request(
        parts.ip_address.as_deref(),
        parts.user_agent.as_deref(),
        parts.request_id.as_deref(),
    );
    RequestParts {
        ip_address: context.ip_address.map(|ip| ip.to_string()),
        user_agent: context.user_agent,
        request_id: context.request_id,
    }
}

/// Runs the `audit-logs` command line (without the program name) and returns its exit status.
#[napi]
pub fn run_cli(argv: Vec<String>) -> i32 {
    block_on(audit_logs_cli::run(argv))
}

/// A throwaway PostgreSQL server (initdb + postgres in a temporary directory), for tests and
/// demos. Needs the PostgreSQL server binaries on PATH or in `pg_config --bindir`.
#[napi]
pub struct TemporaryPostgres {
    inner: std::sync::Arc<core::TemporaryPostgres>,
}

#[napi]
impl TemporaryPostgres {
    /// Starts a server; takes a few seconds.
    #[napi(ts_return_type = "Promise<TemporaryPostgres>")]
    pub fn start(env: &Env) -> Result<PromiseRaw<'_, TemporaryPostgres>> {
        promise(env, async move {
            // Stopped at exit even if JavaScript never calls stop() (finalizers do not run at
            // exit); freed once stopped and collected.
            let inner = std::sync::Arc::new(core::TemporaryPostgres::start().await?);
            inner.stop_at_exit();
            Ok(TemporaryPostgres { inner })
        })
    }

    /// The port on 127.0.0.1.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        u32::from(self.inner.port())
    }

    /// A URL for a database of this server (user postgres, no password). Default: `postgres`.
    #[napi]
    pub fn url(&self, database: Option<String>) -> String {
        self.inner.url(database.as_deref().unwrap_or("postgres"))
    }

    /// Stops the server and deletes its directory (also done when the process exits).
    #[napi]
    pub fn stop(&self) {
        self.inner.stop();
    }
}

/// The context shape accepted by {@link serializeContext}.
#[napi(object)]
pub struct AuditContext {
    /// Stored as text: an integer id (an ORM's `Int` key) is stored as its digits.
    #[napi(ts_type = "string | number")]
    pub actor_id: Option<String>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any string.
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    /// IPv4 or IPv6.
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// Stored as text: an integer is stored as its digits.
    #[napi(ts_type = "string | number")]
    pub request_id: Option<String>,
    pub reason: Option<String>,
    pub migration_name: Option<String>,
    /// Free-form details, merged into the `metadata` column.
    pub metadata: Option<Value>,
}
