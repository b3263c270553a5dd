//! audit-logs: a PostgreSQL audit trail. This crate holds all of it; the Node package and the
//! `audit-logs` command are thin layers over it.
//!
//! ```no_run
//! # async fn example() -> audit_logs_core::Result<()> {
//! use audit_logs_core::{AuditContext, AuditLogs, TrackingOptions};
//!
//! let audit = AuditLogs::connect("postgres://app@localhost/shop").await?;
//! audit.migrate(false).await?;
//! audit
//!     .enable_tracking(&"public.users".into(), &TrackingOptions {
//!         exclude_columns: Some(vec!["password_hash".into()]),
//!         ..Default::default()
//!     })
//!     .await?;
//!
//! // Attribute the changes of a transaction.
//! let mut client = audit.client().await?;
//! let tx = client.transaction().await?;
//! let who = AuditContext { actor_id: Some("42".into()), actor_type: Some("user".into()), ..Default::default() };
//! audit_logs_core::set_context(&*tx, &who).await?;
//! tx.execute("update users set name = 'Ann' where id = 1", &[]).await?;
//! tx.commit().await?;
//!
//! for entry in audit.history(&audit_logs_core::HistoryQuery::of_table("public.users", 1)).await? {
//!     println!("{} {} by {:?}: {:?}", entry.created_at, entry.action, entry.actor_id, entry.changed_fields);
//! }
//! # Ok(()) }
//! ```
//!
//! Everything that talks to PostgreSQL is behind the default feature `database`. Without it the
//! crate is its pure parts ([`context`], [`events`]' statement, [`history`]'s record ids,
//! [`tracking::TableRef`], [`integrity::digest`], [`error`]): what the WebAssembly build of the
//! Node binding is made of, for runtimes where no native addon loads.

// Without `database`, the helpers only the database code calls are unused, not wrong.
#![cfg_attr(not(feature = "database"), allow(dead_code))]

#[cfg(feature = "database")]
pub mod archive;
#[cfg(feature = "database")]
pub mod connection;
pub mod context;
#[cfg(feature = "database")]
pub mod erasure;
pub mod error;
pub mod events;
pub mod history;
pub mod integrity;
#[cfg(all(feature = "napi", feature = "database"))]
mod js;
#[cfg(feature = "database")]
pub mod migrate;
pub mod orm;
#[cfg(feature = "database")]
pub mod protect;
#[cfg(feature = "database")]
pub mod queries;
#[cfg(feature = "database")]
pub mod retention;
#[cfg(feature = "database")]
pub mod revert;
#[cfg(feature = "database")]
pub mod session;
#[cfg(feature = "database")]
pub mod subjects;
#[cfg(feature = "database")]
pub mod temporary;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "database")]
pub mod tls;
pub mod tracking;

// What the pool below uses.
#[cfg(feature = "database")]
use {
    chrono::{DateTime, Utc},
    serde::Serialize,
    serde_json::Value,
    std::collections::HashMap,
    std::sync::{Arc, Mutex},
    std::time::{Duration, Instant},
    tokio_postgres::types::Type,
    tokio_postgres::GenericClient,
};

#[cfg(feature = "database")]
pub use connection::ConnectOptions;
pub use context::AuditContext;
#[cfg(feature = "database")]
pub use erasure::{RedactReport, RedactRequest, RedactedEntry, Subject};
pub use error::{
    ArchiveError, Code, ConnectionError, ContextError, ErasureError, Error, ErrorFields,
    EventError, IntegrityError, MigrationError, PermissionError, Result, RetentionError,
    RevertError, TrackingError,
};
pub use events::{EventStatement, NewEvent};
pub use history::{AuditEntry, HistoryQuery, Target};
#[cfg(feature = "database")]
pub use integrity::{Problem, ProblemKind, SealReport, VerifyOptions, VerifyReport};
#[cfg(feature = "database")]
pub use migrate::{MigrateReport, MigrationInfo, MigrationState};
#[cfg(feature = "database")]
pub use queries::{
    Batches, Burst, BurstKey, CountKey, CountRow, EntryStream, FieldChange, Filters, Order, Page,
    PointState, SearchPage, StatePoint, TimeRange,
};
#[cfg(feature = "database")]
pub use retention::{MaintainOptions, MaintainReport, Settings};
#[cfg(feature = "database")]
pub use revert::{
    FieldRevert, OnConflict, RecordRevert, RevertConflict, RevertFields, RevertOptions,
    RevertReport, RevertTarget,
};
#[cfg(feature = "database")]
pub use subjects::{DataSubject, SubjectEntry, SubjectPage, SubjectStream};
#[cfg(feature = "database")]
pub use temporary::{Shutdown, TemporaryPostgres};
pub use tracking::{TableRef, TrackedTable, TrackingOptions};

/// A handle on one database: a connection pool plus the options it was opened with.
#[cfg(feature = "database")]
#[derive(Clone)]
pub struct AuditLogs {
    options: ConnectOptions,
    pool: deadpool_postgres::Pool,
    target_types: TargetTypeCache,
}

/// Table names resolved to `target_type`, so that reading a table's history is one round trip.
/// Entries live a minute: long enough for a busy page, short enough to follow a rename.
#[cfg(feature = "database")]
#[derive(Clone, Default)]
struct TargetTypeCache(Arc<Mutex<HashMap<TableRef, (String, Instant)>>>);

#[cfg(feature = "database")]
impl TargetTypeCache {
    const TTL: Duration = Duration::from_secs(60);
    const CAPACITY: usize = 1024;

    fn get(&self, table: &TableRef) -> Option<String> {
        let cache = self.0.lock().expect("cache lock");
        cache
            .get(table)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(target_type, _)| target_type.clone())
    }

    fn put(&self, table: &TableRef, target_type: &str) {
        let mut cache = self.0.lock().expect("cache lock");
        if cache.len() >= Self::CAPACITY {
            cache.clear();
        }
        cache.insert(table.clone(), (target_type.to_owned(), Instant::now()));
    }

    fn clear(&self) {
        self.0.lock().expect("cache lock").clear();
    }
}

/// What `status` reports: the Node object and the CLI's `status --json` alike.
#[cfg(feature = "database")]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct Status {
    /// `host:port/database`.
    pub database: String,
    pub migrations: Vec<MigrationInfo>,
    pub tracked_tables: Vec<TrackedTable>,
    /// Every shipped migration is applied.
    pub up_to_date: bool,
}

#[cfg(feature = "database")]
impl Status {
    /// Every migration shipped with this build is applied (the `up_to_date` field).
    pub fn is_up_to_date(&self) -> bool {
        self.up_to_date
    }
}

#[cfg(feature = "database")]
impl AuditLogs {
    /// Connects with a URL as psql and Prisma write it (see [`ConnectOptions::parse`]).
    /// Errors: [`ConnectionError::InvalidUrl`], [`ConnectionError::Connect`],
    /// [`ConnectionError::Authentication`], [`ConnectionError::Tls`].
    pub async fn connect(url: &str) -> Result<AuditLogs> {
        AuditLogs::connect_with(ConnectOptions::parse(url)?).await
    }

    pub async fn connect_with(options: ConnectOptions) -> Result<AuditLogs> {
        let pool = options.pool().await?;
        Ok(AuditLogs {
            options,
            pool,
            target_types: TargetTypeCache::default(),
        })
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// A pooled connection, for the caller's own work (and its transactions).
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.options.checkout(&self.pool).await
    }

    /// Runs `work` on a pooled connection. A connection that `work`'s error shows to be dead
    /// leaves the pool: a backend that has sent its FATAL error takes a moment to close its
    /// socket, and until then the pool would hand it to the next caller.
    pub(crate) async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T>,
    ) -> Result<T> {
        let client = self.client().await?;
        let result = match work(&client).await {
            Err(e @ Error::Permission(PermissionError::NotAReader { .. })) => {
                Err(e.naming_the_role(&**client).await)
            }
            result => result,
        };
        if result.as_ref().is_err_and(Error::ends_connection) {
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    /// Applies pending migrations, one at a time per database however many processes try.
    /// With `dry_run`, reports what would run and changes nothing.
    pub async fn migrate(&self, dry_run: bool) -> Result<MigrateReport> {
        migrate::migrate(&self.options, dry_run).await
    }

    /// Applied and pending migrations, and the tracked tables.
    pub async fn status(&self) -> Result<Status> {
        let mut client = self.options.connect().await?;
        let migrations = migrate::status(&mut client).await?;
        // Nothing, or half, migrated (a migration failed): no tracking functions yet, and the
        // status must still say which migrations are pending.
        let tracked_tables = match tracking::list(&client).await {
            Err(Error::Migration(MigrationError::NotMigrated)) => Vec::new(),
            listed => listed?,
        };
        Ok(Status {
            database: self.options.target(),
            up_to_date: migrations
                .iter()
                .all(|m| m.state == MigrationState::Applied),
            migrations,
            tracked_tables,
        })
    }

    /// Starts recording the table's changes (idempotent; enabling again refreshes the
    /// capture after the table was altered). Errors: [`TrackingError::NoPrimaryKey`],
    /// [`TrackingError::TableNotFound`], [`TrackingError::NotATable`],
    /// [`TrackingError::InvalidColumn`], [`MigrationError::NotMigrated`].
    pub async fn enable_tracking(
        &self,
        table: &TableRef,
        options: &TrackingOptions,
    ) -> Result<TrackedTable> {
        self.with_client(async |client| {
            self.target_types.clear();
            tracking::enable(client, table, options).await
        })
        .await
    }

    /// Stops recording the table's changes; its history stays. Returns whether it was tracked.
    pub async fn disable_tracking(&self, table: &TableRef) -> Result<bool> {
        self.with_client(async |client| {
            self.target_types.clear();
            tracking::disable(client, table).await
        })
        .await
    }

    pub async fn tracked_tables(&self) -> Result<Vec<TrackedTable>> {
        self.with_client(async |client| tracking::list(client).await)
            .await
    }

    /// The `target_type` of a table's changes, cached (see [`TargetTypeCache`]).
    async fn target_type_of(
        &self,
        client: &impl GenericClient,
        table: &TableRef,
    ) -> Result<String> {
        if let Some(target_type) = self.target_types.get(table) {
            return Ok(target_type);
        }
        let target_type = table.target_type(client).await?;
        self.target_types.put(table, &target_type);
        Ok(target_type)
    }

    /// `filters` with its table replaced by the table's `target_type`.
    async fn resolve(&self, client: &impl GenericClient, filters: &Filters) -> Result<Filters> {
        let Some(table) = &filters.table else {
            return Ok(filters.clone());
        };
        if filters.target_type.is_some() {
            return Err(Error::invalid_argument(
                "table",
                "give either table or targetType, not both",
            ));
        }
        Ok(Filters {
            table: None,
            target_type: Some(self.target_type_of(client, table).await?),
            ..filters.clone()
        })
    }

    /// The entries of one record, newest first: row changes of a table's row (the table may
    /// have been dropped since) or events about a target. See [`HistoryQuery`].
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<AuditEntry>> {
        self.with_client(async |client| {
            let (target_type, aliases) = match &query.target {
                Target::Table(table) => {
                    let target_type = self.target_type_of(client, table).await?;
                    let aliases = events::table_aliases(&target_type);
                    (target_type, aliases)
                }
                Target::Type(target_type) => (target_type.clone(), Vec::new()),
            };
            let mut entries = history::of_record(
                client,
                &target_type,
                &aliases,
                &query.id,
                query.limit,
                query.before,
            )
            .await?;
            if query.include_archive {
                // The months dropped whole, read from their archives. Their ids are older than
                // the live months', except around a month's end (a transaction's rows go to the
                // month it began in), so the two are merged by id; with a full page, only
                // archived entries newer than its oldest can still be in it.
                let limit = history::page_size(query.limit)? as usize;
                let newer_than = match entries.last() {
                    Some(oldest) if entries.len() == limit => oldest.id,
                    _ => 0,
                };
                let archived = archive::history::of_record(
                    client,
                    &target_type,
                    &aliases,
                    &query.id,
                    limit,
                    (newer_than, query.before.unwrap_or(i64::MAX)),
                )
                .await?;
                entries.extend(archived);
                entries.sort_by_key(|e| std::cmp::Reverse(e.id));
                entries.truncate(limit);
            }
            if let (true, Target::Table(table)) = (entries.is_empty(), &query.target) {
                // A name that is no table and has no entries is a typo (`Post` for `posts`),
                // not an empty history: say so, with the table it may mean.
                if let Err(not_found @ Error::Tracking(TrackingError::TableNotFound { .. })) =
                    table.resolve(client).await
                {
                    return Err(not_found);
                }
            }
            Ok(entries)
        })
        .await
    }

    /// Records an application event; context fields it leaves empty come from `request` (the
    /// current request's context). Errors: [`EventError::Invalid`], [`ContextError::Invalid`].
    pub async fn log(
        &self,
        event: &NewEvent,
        request: Option<&AuditContext>,
    ) -> Result<AuditEntry> {
        let mut entries = self.log_many(std::slice::from_ref(event), request).await?;
        Ok(entries.remove(0))
    }

    /// Records up to 10,000 events in one statement, all or none; returns them in order.
    pub async fn log_many(
        &self,
        events: &[NewEvent],
        request: Option<&AuditContext>,
    ) -> Result<Vec<AuditEntry>> {
        self.with_client(async |client| events::log(client, events, request).await)
            .await
    }

    /// The record as it was at `at` (after its last change at or before then), or `None` if it
    /// did not exist then. Knows only what was recorded: nothing before tracking began.
    pub async fn state_at(
        &self,
        table: &TableRef,
        id: &Value,
        at: DateTime<Utc>,
    ) -> Result<Option<Value>> {
        self.with_client(async |client| {
            let target_type = self.target_type_of(client, table).await?;
            queries::state_at(client, &target_type, id, at).await
        })
        .await
    }

    /// [`AuditLogs::state_at`] for many records and times at once, in the order given.
    pub async fn states_at(
        &self,
        table: &TableRef,
        points: &[StatePoint],
    ) -> Result<Vec<PointState>> {
        self.with_client(async |client| {
            let target_type = self.target_type_of(client, table).await?;
            queries::states_at(client, &target_type, points).await
        })
        .await
    }

    /// Entries matching `filters`, newest first, one page; pass `next_cursor` as `before` for
    /// the next.
    pub async fn search(&self, filters: &Filters, page: &Page) -> Result<SearchPage> {
        self.with_client(async |client| {
            let filters = self.resolve(client, filters).await?;
            queries::search(client, &filters, page).await
        })
        .await
    }

    /// Every entry matching `filters`, in batches of `batch_size` (1 to
    /// [`queries::MAX_BATCH`], default [`queries::DEFAULT_BATCH`]), from one consistent snapshot.
    pub async fn stream(
        &self,
        filters: &Filters,
        order: Order,
        batch_size: Option<u32>,
    ) -> Result<EntryStream> {
        let client = self.client().await?;
        let filters = self.resolve(&**client, filters).await?;
        queries::stream(client, &filters, order, batch_size)
    }

    /// What one actor did, newest first.
    pub async fn by_actor(
        &self,
        actor_id: &str,
        range: TimeRange,
        page: &Page,
    ) -> Result<Vec<AuditEntry>> {
        let filters = Filters {
            actor_id: Some(actor_id.to_owned()),
            from: range.from,
            to: range.to,
            ..Default::default()
        };
        Ok(self.search(&filters, page).await?.entries)
    }

    /// What one request did, newest first. Give the time range when you know it: request ids
    /// are not indexed, and the range lets PostgreSQL read only those blocks.
    pub async fn by_request(
        &self,
        request_id: &str,
        range: TimeRange,
        page: &Page,
    ) -> Result<Vec<AuditEntry>> {
        let filters = Filters {
            request_id: Some(request_id.to_owned()),
            from: range.from,
            to: range.to,
            ..Default::default()
        };
        Ok(self.search(&filters, page).await?.entries)
    }

    /// What one transaction did, newest first. `at`, the `created_at` of one of its entries
    /// (they all share it: the transaction's start), lets PostgreSQL read one partition's blocks.
    pub async fn by_transaction(
        &self,
        txid: i64,
        at: Option<DateTime<Utc>>,
        page: &Page,
    ) -> Result<Vec<AuditEntry>> {
        let filters = Filters {
            txid: Some(txid),
            from: at,
            // A millisecond: JavaScript dates drop the microseconds.
            to: at.map(|at| at + chrono::Duration::milliseconds(1)),
            ..Default::default()
        };
        Ok(self.search(&filters, page).await?.entries)
    }

    /// Every UPDATE of one column of a table (of one record when `id` is given), newest first,
    /// with the old and new value.
    pub async fn field_changes(
        &self,
        table: &TableRef,
        field: &str,
        id: Option<&Value>,
        range: TimeRange,
        page: &Page,
    ) -> Result<Vec<FieldChange>> {
        self.with_client(async |client| {
            let target_type = self.target_type_of(client, table).await?;
            let within = Filters {
                from: range.from,
                to: range.to,
                ..Default::default()
            };
            let changes =
                queries::field_changes(client, &target_type, field, id, &within, page).await?;
            if changes.is_empty() {
                if let Some(unknown) = tracking::unknown_column(client, &target_type, field).await {
                    return Err(unknown);
                }
            }
            Ok(changes)
        })
        .await
    }

    /// Undoes what `target` names, newest change first, in one transaction recorded like any
    /// change (with `metadata.reverts`); [`revert::revert`] runs it in a transaction of the
    /// caller's, and [`revert::revert_steps`] on a connection the caller drives. Refuses, changing nothing, when a record was changed
    /// again since ([`RevertError::Conflict`](crate::error::RevertError::Conflict), unless [`OnConflict::Overwrite`]) or cannot be put
    /// back ([`RevertError::Impossible`](crate::error::RevertError::Impossible)). With `dry_run`, runs it and rolls it back.
    pub async fn revert(
        &self,
        target: &RevertTarget,
        options: &RevertOptions,
    ) -> Result<RevertReport> {
        self.with_client(async |client| {
            let report = revert::revert(client, target, options);
            in_transaction(client, "begin", report, !options.dry_run).await
        })
        .await
    }

    /// The number of entries matching `filters`, grouped by `group_by`.
    pub async fn counts(&self, group_by: &[CountKey], filters: &Filters) -> Result<Vec<CountRow>> {
        self.with_client(async |client| {
            let filters = self.resolve(client, filters).await?;
            queries::counts(client, group_by, &filters).await
        })
        .await
    }

    /// Actors (or e-mails, or addresses) with at least `threshold` entries within some `window`
    /// (a PostgreSQL interval, `'10 minutes'`), busiest first. The last 24 hours unless
    /// `filters.from` is given.
    pub async fn bursts(
        &self,
        window: &str,
        threshold: i64,
        by: BurstKey,
        filters: &Filters,
    ) -> Result<Vec<Burst>> {
        self.with_client(async |client| {
            let filters = self.resolve(client, filters).await?;
            queries::bursts(client, window, threshold, by, &filters).await
        })
        .await
    }

    /// Closes the pool; later calls fail.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Runs `work` in a transaction opened by `begin` (`begin` and any set-up): commits when it
/// succeeds and `commit` says so, else rolls back. A failed `commit` is the error.
#[cfg(feature = "database")]
async fn in_transaction<T>(
    client: &tokio_postgres::Client,
    begin: &str,
    work: impl std::future::Future<Output = Result<T>>,
    commit: bool,
) -> Result<T> {
    client
        .batch_execute(begin)
        .await
        .map_err(|e| error::from_query(e, None))?;
    let result = work.await;
    let end = if result.is_ok() && commit {
        "commit"
    } else {
        "rollback"
    };
    let ended = client.batch_execute(end).await;
    let value = result?;
    ended.map_err(|e| error::from_query(e, None))?;
    Ok(value)
}

/// Attributes the rest of the transaction `client` is in (transaction-local, so safe behind
/// poolers). An empty context clears it.
#[cfg(feature = "database")]
pub async fn set_context(client: &impl GenericClient, context: &AuditContext) -> Result<()> {
    let setting = context.to_setting()?.unwrap_or_default();
    client
        .query_typed(
            "select audit.set_checked_context($1)",
            &[(&setting, Type::TEXT)],
        )
        .await
        .map_err(|e| error::from_query(e, None))?;
    Ok(())
}
