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
    /// (call `enableTracking` again to refresh).
    pub needs_refresh: Vec<String>,
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
                exclude_columns: o.exclude_columns.unwrap_or_default(),
                record_unchanged: o.record_unchanged.unwrap_or(false),
                require_context: o.require_context.unwrap_or(false),
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

    /// Closes the pool. Later calls fail.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Validates a context (`{ actorId, actorType, actorEmail, ipAddress, userAgent, requestId,
/// reason, migrationName, metadata }`) and returns the value for
/// `set_config('audit.context', value, true)`, or null for an empty context. Throws
/// `AUDIT_LOGS_INVALID_CONTEXT` naming the bad key or value.
#[napi(ts_args_type = "context: AuditContext")]
pub fn serialize_context(context: Value) -> Result<Option<String>, Code> {
    core::AuditContext::from_camel_case(context)
        .and_then(|c| c.to_setting())
        .map_err(sync_error)
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
    inner: &'static core::TemporaryPostgres,
}

#[napi]
impl TemporaryPostgres {
    /// Starts a server; takes a few seconds.
    #[napi(ts_return_type = "Promise<TemporaryPostgres>")]
    pub fn start(env: &Env) -> Result<PromiseRaw<'_, TemporaryPostgres>> {
        promise(env, async move {
            // Kept for the life of the process and stopped at exit, even if JavaScript never
            // calls stop() (finalizers do not run at exit).
            let inner: &'static core::TemporaryPostgres =
                Box::leak(Box::new(core::TemporaryPostgres::start().await?));
            core::testing::stop_at_exit(inner);
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
    pub actor_id: Option<String>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any string.
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    /// IPv4 or IPv6.
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub reason: Option<String>,
    pub migration_name: Option<String>,
    /// Free-form details, merged into the `metadata` column.
    pub metadata: Option<Value>,
}
