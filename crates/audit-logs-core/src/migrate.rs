//! The embedded migrations (`migrations/V{n}__name.sql`), applied with refinery under a
//! PostgreSQL advisory lock: refinery takes none, and two deploys migrating at once would
//! otherwise both try to apply the same migration.

use std::time::Duration;

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::connection::ConnectOptions;
use crate::error::{Error, MigrationError, PermissionError, Result};

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Where refinery keeps its history: in our schema, not the user's.
pub const HISTORY_TABLE: &str = "audit.refinery_schema_history";

/// Session advisory lock key held while migrating ("auditlog" in ASCII).
const LOCK_KEY: i64 = 0x6175_6469_746c_6f67;

/// A migration and where it stands in a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_from_js = false, js_name = "Migration")
)]
pub struct MigrationInfo {
    pub version: i32,
    pub name: String,
    /// `applied`, `pending`, `diverged` (the shipped file differs) or `unknown` (not shipped).
    #[cfg_attr(
        feature = "napi",
        napi(ts_type = "'applied' | 'pending' | 'diverged' | 'unknown'")
    )]
    pub state: MigrationState,
    /// When it was applied (RFC 3339), for applied migrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_on: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the shipped file differs from what was applied.
    Diverged,
    /// Applied, but not shipped with this version.
    Unknown,
}

impl MigrationInfo {
    /// `V1__audit_schema`, the file name without `.sql`.
    pub fn file_name(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

/// What a `migrate` run did (or would do, with `dryRun`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct MigrateReport {
    /// Applied by this run (with `dryRun`: the ones that would be).
    pub applied: Vec<MigrationInfo>,
    pub dry_run: bool,
    /// With `dryRun`: the SQL of each migration that would run.
    pub sql: Vec<String>,
}

/// The migrations this build ships, by version.
pub fn shipped() -> Vec<(i32, String, String)> {
    let runner = embedded::migrations::runner();
    let mut list: Vec<(i32, String, String)> = runner
        .get_migrations()
        .iter()
        .map(|m| {
            (
                m.version(),
                m.name().to_owned(),
                m.sql().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // refinery lists them by file path, so V10 would come before V2.
    list.sort_by_key(|(version, _, _)| *version);
    list
}

/// Applied and pending migrations of a database.
pub async fn status(client: &mut Client) -> Result<Vec<MigrationInfo>> {
    let runner = embedded::migrations::runner();
    let mut shipped: Vec<_> = runner.get_migrations().clone();
    shipped.sort_by_key(|m| m.version());
    let applied = applied_migrations(client).await?;
    let mut list = Vec::new();
    for migration in &shipped {
        let found = applied.iter().find(|a| a.version() == migration.version());
        let state = match found {
            None => MigrationState::Pending,
            Some(a) if a.checksum() != migration.checksum() || a.name() != migration.name() => {
                MigrationState::Diverged
            }
            Some(_) => MigrationState::Applied,
        };
        list.push(MigrationInfo {
            version: migration.version(),
            name: migration.name().to_owned(),
            state,
            applied_on: found
                .and_then(|a| a.applied_on())
                .map(|t| rfc3339(t.unix_timestamp(), t.nanosecond())),
        });
    }
    for extra in applied
        .iter()
        .filter(|a| shipped.iter().all(|m| m.version() != a.version()))
    {
        list.push(MigrationInfo {
            version: extra.version(),
            name: extra.name().to_owned(),
            state: MigrationState::Unknown,
            applied_on: extra
                .applied_on()
                .map(|t| rfc3339(t.unix_timestamp(), t.nanosecond())),
        });
    }
    list.sort_by_key(|m| m.version);
    Ok(list)
}

async fn applied_migrations(client: &mut Client) -> Result<Vec<refinery::Migration>> {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    match runner.get_applied_migrations_async(client).await {
        Ok(applied) => Ok(applied),
        // No history table yet: nothing applied.
        Err(e) if matches!(source_db_code(&e), Some(c) if c == SqlState::UNDEFINED_TABLE || c == SqlState::INVALID_SCHEMA_NAME) => {
            Ok(Vec::new())
        }
        // A role that is not an audit_reader: name the grant, as reads of the log do.
        Err(e) if source_db_code(&e) == Some(SqlState::INSUFFICIENT_PRIVILEGE) => {
            let denied = Error::Permission(PermissionError::NotAReader {
                denied: format!("permission denied for table {HISTORY_TABLE}"),
                role: None,
            });
            Err(denied.naming_the_role(&*client).await)
        }
        Err(e) => Err(from_refinery(e)),
    }
}

/// How [`run`] migrates.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// List what would be applied, and the SQL, without applying anything.
    pub dry_run: bool,
    /// Apply up to this version only (an install as an earlier release left it, for upgrade
    /// tests); all when `None`.
    pub until: Option<i32>,
    /// How long to wait for another migrate (or any session holding its advisory lock).
    pub lock_wait: Duration,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            dry_run: false,
            until: None,
            lock_wait: Duration::from_secs(60),
        }
    }
}

/// Applies the pending migrations (or lists them, with `dry_run`), holding the advisory lock.
pub async fn migrate(options: &ConnectOptions, dry_run: bool) -> Result<MigrateReport> {
    run(
        options,
        &MigrateOptions {
            dry_run,
            ..MigrateOptions::default()
        },
    )
    .await
}

/// Applies the pending migrations as `how` says, holding the advisory lock.
pub async fn run(options: &ConnectOptions, how: &MigrateOptions) -> Result<MigrateReport> {
    // Its own connection: the lock is held by the session.
    let mut client = options.connect().await?;
    lock(&client, how.lock_wait).await?;
    let result = migrate_locked(&mut client, how.dry_run, how.until).await;
    // Released explicitly; closing the connection would release it too.
    let _ = client
        .execute("select pg_catalog.pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

/// Takes the migrate lock, polling rather than waiting in the server: any role can take the
/// same advisory lock, and a server-side wait would outlive a client that gave up.
async fn lock(client: &Client, max_wait: Duration) -> Result<()> {
    match crate::connection::advisory_lock(client, LOCK_KEY, max_wait).await? {
        None => Ok(()),
        Some(holders) => Err(Error::Migration(MigrationError::LockTimeout {
            purpose: "migrate".into(),
            waited_seconds: max_wait.as_secs_f64(),
            holders,
        })),
    }
}

async fn migrate_locked(
    client: &mut Client,
    dry_run: bool,
    version: Option<i32>,
) -> Result<MigrateReport> {
    let current = status(client).await?;
    if let Some(diverged) = current.iter().find(|m| m.state == MigrationState::Diverged) {
        return Err(Error::Migration(MigrationError::Diverged {
            migration: diverged.file_name(),
            version: env!("CARGO_PKG_VERSION").into(),
        }));
    }
    if let Some(unknown) = current.iter().find(|m| m.state == MigrationState::Unknown) {
        return Err(Error::Migration(MigrationError::Unknown {
            migration: unknown.file_name(),
            version: env!("CARGO_PKG_VERSION").into(),
        }));
    }
    let pending: Vec<MigrationInfo> = current
        .into_iter()
        .filter(|m| m.state == MigrationState::Pending && version.is_none_or(|v| m.version <= v))
        .collect();
    if dry_run {
        let shipped = shipped();
        let sql = pending
            .iter()
            .filter_map(|p| {
                shipped
                    .iter()
                    .find(|(v, _, _)| *v == p.version)
                    .map(|(_, _, sql)| sql.clone())
            })
            .collect();
        return Ok(MigrateReport {
            applied: pending,
            dry_run: true,
            sql,
        });
    }
    // refinery creates its history table but not the schema it lives in.
    client
        .batch_execute("create schema if not exists audit")
        .await
        .map_err(|e| crate::error::from_query(e, None))?;
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .set_target(version.map_or(refinery::Target::Latest, refinery::Target::Version));
    runner.set_migration_table_name(HISTORY_TABLE);
    let report = runner.run_async(client).await.map_err(from_refinery)?;
    let applied = report
        .applied_migrations()
        .iter()
        .map(|m| MigrationInfo {
            version: m.version(),
            name: m.name().to_owned(),
            state: MigrationState::Applied,
            applied_on: None,
        })
        .collect();
    Ok(MigrateReport {
        applied,
        dry_run: false,
        sql: Vec::new(),
    })
}

fn source_db_code(e: &refinery::Error) -> Option<SqlState> {
    let refinery::error::Kind::Connection(_, source) = e.kind() else {
        return None;
    };
    source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|pg| pg.code().cloned())
}

fn from_refinery(e: refinery::Error) -> Error {
    use refinery::error::Kind;
    let applied: Vec<i32> = e
        .report()
        .map(|r| r.applied_migrations().iter().map(|m| m.version()).collect())
        .unwrap_or_default();
    match e.kind() {
        Kind::DivergentVersion(_, shipped) => Error::Migration(MigrationError::Diverged {
            migration: shipped.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        Kind::MissingVersion(migration) => Error::Migration(MigrationError::Unknown {
            migration: migration.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        Kind::Connection(message, source) => {
            // refinery's message is "error applying migration V2__name"; the cause is in the source.
            let migration = message
                .rsplit(' ')
                .next()
                .filter(|m| m.starts_with('V'))
                .unwrap_or("history")
                .to_owned();
            let pg = source.downcast_ref::<tokio_postgres::Error>();
            let sqlstate = pg
                .and_then(|pg| pg.as_db_error())
                .map(|db| db.code().code().to_owned());
            let reason = match pg {
                Some(pg) => match pg.as_db_error() {
                    Some(db) => format!("{} ({})", db.message(), db.code().code()),
                    None if pg.is_closed() => "the connection was lost".into(),
                    None => pg.to_string(),
                },
                None => source.to_string(),
            };
            Error::Migration(MigrationError::Failed {
                migration,
                reason,
                applied,
                sqlstate,
                source: Some(Box::new(e)),
            })
        }
        _ => Error::Migration(MigrationError::Failed {
            migration: "?".into(),
            reason: e.kind().to_string(),
            applied,
            sqlstate: None,
            source: Some(Box::new(e)),
        }),
    }
}

/// refinery's time as RFC 3339 in UTC, to the millisecond (`2026-11-30T09:29:11.739Z`): its
/// own `Display` (`2026-11-30 9:29:11.739798435 +00:00:00`) is neither readable nor parseable.
fn rfc3339(seconds: i64, nanoseconds: u32) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, nanoseconds)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
