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
//!         exclude_columns: vec!["password_hash".into()],
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

pub mod connection;
pub mod context;
pub mod error;
pub mod history;
pub mod migrate;
pub mod protect;
pub mod temporary;
pub mod testing;
pub mod tls;
pub mod tracking;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

pub use connection::ConnectOptions;
pub use context::AuditContext;
pub use error::{Error, Result};
pub use history::{AuditEntry, HistoryQuery, Target};
pub use migrate::{MigrateReport, MigrationInfo, MigrationState};
pub use protect::{
    MaintainOptions, MaintainReport, Problem, ProblemKind, RedactReport, RedactRequest, SealReport,
    Settings, Subject, VerifyOptions, VerifyReport,
};
pub use temporary::TemporaryPostgres;
pub use tracking::{TableRef, TrackedTable, TrackingOptions};

/// A handle on one database: a connection pool plus the options it was opened with.
#[derive(Clone)]
pub struct AuditLogs {
    options: ConnectOptions,
    pool: deadpool_postgres::Pool,
    target_types: TargetTypeCache,
}

/// Table names resolved to `target_type`, so that reading a table's history is one round trip.
/// Entries live a minute: long enough for a busy page, short enough to follow a rename.
#[derive(Clone, Default)]
struct TargetTypeCache(Arc<Mutex<HashMap<TableRef, (String, Instant)>>>);

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

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub database: String,
    pub migrations: Vec<MigrationInfo>,
    pub tracked_tables: Vec<TrackedTable>,
}

impl Status {
    /// Every migration shipped with this build is applied.
    pub fn is_up_to_date(&self) -> bool {
        self.migrations
            .iter()
            .all(|m| m.state == MigrationState::Applied)
    }
}

impl AuditLogs {
    /// Connects with a URL as psql and Prisma write it (see [`ConnectOptions::parse`]).
    /// Errors: [`Error::InvalidUrl`], [`Error::Connect`], [`Error::Authentication`], [`Error::Tls`].
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

    /// Applies pending migrations, one at a time per database however many processes try.
    /// With `dry_run`, reports what would run and changes nothing.
    pub async fn migrate(&self, dry_run: bool) -> Result<MigrateReport> {
        migrate::migrate(&self.options, dry_run).await
    }

    /// Applied and pending migrations, and the tracked tables.
    pub async fn status(&self) -> Result<Status> {
        let mut client = self.options.connect().await?;
        let migrations = migrate::status(&mut client).await?;
        let migrated = migrations
            .iter()
            .any(|m| m.state == MigrationState::Applied);
        let tracked_tables = if migrated {
            tracking::list(&client).await?
        } else {
            Vec::new()
        };
        Ok(Status {
            database: self.options.target(),
            migrations,
            tracked_tables,
        })
    }

    /// Starts recording the table's changes (idempotent; enabling again refreshes the
    /// capture after the table was altered). Errors: [`Error::NoPrimaryKey`],
    /// [`Error::TableNotFound`], [`Error::NotATable`], [`Error::InvalidColumn`], [`Error::NotMigrated`].
    pub async fn enable_tracking(
        &self,
        table: &TableRef,
        options: &TrackingOptions,
    ) -> Result<TrackedTable> {
        let client = self.client().await?;
        self.target_types.clear();
        tracking::enable(&**client, table, options).await
    }

    /// Stops recording the table's changes; its history stays. Returns whether it was tracked.
    pub async fn disable_tracking(&self, table: &TableRef) -> Result<bool> {
        let client = self.client().await?;
        self.target_types.clear();
        tracking::disable(&**client, table).await
    }

    pub async fn tracked_tables(&self) -> Result<Vec<TrackedTable>> {
        let client = self.client().await?;
        tracking::list(&**client).await
    }

    /// The entries of one record, newest first: row changes of a table's row (the table may
    /// have been dropped since) or events about a target. See [`HistoryQuery`].
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<AuditEntry>> {
        let client = self.client().await?;
        let target_type = match &query.target {
            Target::Table(table) => match self.target_types.get(table) {
                Some(target_type) => target_type,
                None => {
                    let target_type = table.target_type(&**client).await?;
                    self.target_types.put(table, &target_type);
                    target_type
                }
            },
            Target::Type(target_type) => target_type.clone(),
        };
        history::of_record(
            &**client,
            &target_type,
            &query.id,
            query.limit,
            query.before,
        )
        .await
    }

    /// Closes the pool; later calls fail.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// Attributes the rest of the transaction `client` is in (transaction-local, so safe behind
/// poolers). An empty context clears it.
pub async fn set_context(client: &impl GenericClient, context: &AuditContext) -> Result<()> {
    let setting = context.to_setting()?.unwrap_or_default();
    client
        .query_typed(
            "select pg_catalog.set_config('audit.context', $1, true)",
            &[(&setting, Type::TEXT)],
        )
        .await
        .map_err(|e| error::from_query(e, None))?;
    Ok(())
}
