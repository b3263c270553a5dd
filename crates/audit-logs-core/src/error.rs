//! Errors by domain. Each capability has its own error type ([`ConnectionError`],
//! [`MigrationError`], [`TrackingError`], [`ContextError`], [`EventError`], [`IntegrityError`],
//! [`RetentionError`], [`ErasureError`], [`PermissionError`], [`RevertError`], [`ArchiveError`]);
//! [`Error`] wraps them, so `?`
//! works across domains and callers match either level:
//! `Err(Error::Tracking(TrackingError::NoPrimaryKey { table }))`.
//!
//! Every error has a stable [`Code`] (`err.code` in JavaScript) and a message that names the
//! problem and the way out. Causes are kept: the driver's error is the `source()` where there is
//! one. [`Code::ALL`] lists every code, those only the JavaScript wrappers throw included, and
//! `index.d.ts` declares the same list as `AuditLogsErrorCode` (a test compares them).

use std::fmt;

/// The driver's error, kept as the cause of a connection or server error.
#[cfg(feature = "database")]
pub type DriverError = tokio_postgres::Error;
/// Without the `database` feature nothing talks to a server, so no driver error exists.
#[cfg(not(feature = "database"))]
pub type DriverError = std::convert::Infallible;

/// The migration runner's error, kept as the cause of a failed migration.
#[cfg(feature = "database")]
type MigrationRunnerError = refinery::Error;
#[cfg(not(feature = "database"))]
type MigrationRunnerError = std::convert::Infallible;

macro_rules! codes {
    ($($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)+) => {
        /// A stable error code for programs to switch on (`err.code` in JavaScript).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[doc = $doc])+ $variant,)+
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The code as JavaScript sees it: `AUDIT_LOGS_NO_PRIMARY_KEY`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)+
                }
            }
        }
    };
}

codes! {
    /// [`ConnectionError::InvalidUrl`]
    InvalidUrl = "AUDIT_LOGS_INVALID_URL",
    /// [`ConnectionError::Connect`]
    ConnectionFailed = "AUDIT_LOGS_CONNECTION_FAILED",
    /// [`ConnectionError::Authentication`]
    AuthenticationFailed = "AUDIT_LOGS_AUTHENTICATION_FAILED",
    /// [`ConnectionError::Tls`]
    TlsFailed = "AUDIT_LOGS_TLS_FAILED",
    /// [`ConnectionError::PoolTimeout`]
    PoolTimeout = "AUDIT_LOGS_POOL_TIMEOUT",
    /// [`ConnectionError::Lost`]
    ConnectionLost = "AUDIT_LOGS_CONNECTION_LOST",
    /// [`ConnectionError::TemporaryPostgres`]
    TemporaryPostgresFailed = "AUDIT_LOGS_TEMPORARY_POSTGRES_FAILED",
    /// [`MigrationError::NotMigrated`]
    NotMigrated = "AUDIT_LOGS_NOT_MIGRATED",
    /// [`MigrationError::Failed`]
    MigrationFailed = "AUDIT_LOGS_MIGRATION_FAILED",
    /// [`MigrationError::Diverged`]
    MigrationDiverged = "AUDIT_LOGS_MIGRATION_DIVERGED",
    /// [`MigrationError::Unknown`]
    MigrationUnknown = "AUDIT_LOGS_MIGRATION_UNKNOWN",
    /// [`MigrationError::LockTimeout`]
    LockTimeout = "AUDIT_LOGS_LOCK_TIMEOUT",
    /// [`TrackingError::TableNotFound`]
    TableNotFound = "AUDIT_LOGS_TABLE_NOT_FOUND",
    /// [`TrackingError::InvalidTableName`]
    InvalidTableName = "AUDIT_LOGS_INVALID_TABLE_NAME",
    /// [`TrackingError::NoPrimaryKey`]
    NoPrimaryKey = "AUDIT_LOGS_NO_PRIMARY_KEY",
    /// [`TrackingError::NotATable`]
    NotATable = "AUDIT_LOGS_NOT_A_TABLE",
    /// [`TrackingError::InvalidColumn`]
    InvalidColumn = "AUDIT_LOGS_INVALID_COLUMN",
    /// [`TrackingError::ReservedTable`]
    ReservedTable = "AUDIT_LOGS_RESERVED_TABLE",
    /// [`TrackingError::TriggerNameTaken`]
    TriggerNameTaken = "AUDIT_LOGS_TRIGGER_NAME_TAKEN",
    /// [`TrackingError::CaptureRefused`]
    CaptureRefused = "AUDIT_LOGS_CAPTURE_REFUSED",
    /// [`ContextError::Invalid`]
    InvalidContext = "AUDIT_LOGS_INVALID_CONTEXT",
    /// [`ContextError::Required`]
    ContextRequired = "AUDIT_LOGS_CONTEXT_REQUIRED",
    /// [`EventError::Invalid`]
    InvalidEvent = "AUDIT_LOGS_INVALID_EVENT",
    /// [`IntegrityError::Seal`]
    SealFailed = "AUDIT_LOGS_SEAL_FAILED",
    /// [`IntegrityError::AppendOnly`]
    AppendOnly = "AUDIT_LOGS_APPEND_ONLY",
    /// [`RetentionError::InvalidSettings`]
    InvalidSettings = "AUDIT_LOGS_INVALID_SETTINGS",
    /// [`ErasureError::InvalidRedaction`]
    InvalidRedaction = "AUDIT_LOGS_INVALID_REDACTION",
    /// [`ErasureError::InvalidSubject`]
    InvalidSubject = "AUDIT_LOGS_INVALID_SUBJECT",
    /// [`PermissionError::Denied`] and [`PermissionError::NotAReader`]
    PermissionDenied = "AUDIT_LOGS_PERMISSION_DENIED",
    /// [`RevertError::Conflict`]
    RevertConflict = "AUDIT_LOGS_REVERT_CONFLICT",
    /// [`RevertError::Impossible`]
    CannotRevert = "AUDIT_LOGS_CANNOT_REVERT",
    /// [`RevertError::NotInTransaction`]
    NotInTransaction = "AUDIT_LOGS_NOT_IN_TRANSACTION",
    /// [`ArchiveError::Unsupported`]
    ArchiveUnsupported = "AUDIT_LOGS_ARCHIVE_UNSUPPORTED",
    /// [`ArchiveError::Storage`]
    ArchiveStorageFailed = "AUDIT_LOGS_ARCHIVE_STORAGE_FAILED",
    /// [`ArchiveError::Invalid`]
    ArchiveInvalid = "AUDIT_LOGS_ARCHIVE_INVALID",
    /// [`ArchiveError::MonthNotReady`]
    ArchiveMonthNotReady = "AUDIT_LOGS_ARCHIVE_MONTH_NOT_READY",
    /// [`ArchiveError::NotVerified`]
    ArchiveNotVerified = "AUDIT_LOGS_ARCHIVE_NOT_VERIFIED",
    /// [`ArchiveError::DropRefused`]
    ArchiveDropRefused = "AUDIT_LOGS_ARCHIVE_DROP_REFUSED",
    /// [`ArchiveError::LockUnavailable`]
    ArchiveLockUnavailable = "AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE",
    /// [`ArchiveError::Busy`]
    ArchiveBusy = "AUDIT_LOGS_ARCHIVE_BUSY",
    /// [`Error::InvalidArgument`]
    InvalidArgument = "AUDIT_LOGS_INVALID_ARGUMENT",
    /// [`Error::Output`]
    OutputFailed = "AUDIT_LOGS_OUTPUT_FAILED",
    /// [`Error::Database`]: any other error PostgreSQL reported, with its SQLSTATE.
    DatabaseError = "AUDIT_LOGS_DATABASE_ERROR",
    /// [`Error::Internal`]: audit-logs met something it does not expect (a bug to report).
    Internal = "AUDIT_LOGS_INTERNAL",
    /// The client given is in a failed transaction, which must be rolled back first: thrown by
    /// the JavaScript pg wrapper, and [`RevertError::TransactionFailed`].
    TransactionFailed = "AUDIT_LOGS_TRANSACTION_FAILED",
    /// Thrown by the JavaScript pg wrapper only: the connection broke while `COMMIT` was in
    /// flight, so whether the transaction committed is unknown.
    CommitUnknown = "AUDIT_LOGS_COMMIT_UNKNOWN",
    /// [`Error::NeedsNative`]
    NeedsNative = "AUDIT_LOGS_NEEDS_NATIVE",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connecting: the URL, the server, TLS, the pool, and the throwaway server for tests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The connection string could not be understood.
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },

    /// The server could not be reached or refused the connection.
    #[error("could not connect to PostgreSQL at {target}: {reason}")]
    Connect {
        target: String,
        reason: String,
        #[source]
        source: Option<DriverError>,
    },

    /// The server rejected the credentials.
    #[error("PostgreSQL at {target} rejected the login: {reason}")]
    Authentication {
        target: String,
        reason: String,
        #[source]
        source: Option<DriverError>,
    },

    /// The TLS handshake failed or TLS could not be set up as the URL asks.
    #[error("TLS with PostgreSQL at {target} failed: {reason}")]
    Tls {
        target: String,
        reason: String,
        #[source]
        source: Option<DriverError>,
    },

    /// The pool gave no connection within its timeout.
    #[error("no database connection became free within {seconds}s (pool of {size}); raise connection_limit or pool_timeout in the URL")]
    PoolTimeout { seconds: u64, size: usize },

    /// The connection broke while a request was in flight.
    #[error("the connection to PostgreSQL was lost: {reason}")]
    Lost {
        reason: String,
        #[source]
        source: Option<DriverError>,
    },

    /// A throwaway PostgreSQL cluster could not be started.
    #[error("could not start a temporary PostgreSQL: {reason}")]
    TemporaryPostgres { reason: String },
}

impl ConnectionError {
    pub fn code(&self) -> Code {
        match self {
            ConnectionError::InvalidUrl { .. } => Code::InvalidUrl,
            ConnectionError::Connect { .. } => Code::ConnectionFailed,
            ConnectionError::Authentication { .. } => Code::AuthenticationFailed,
            ConnectionError::Tls { .. } => Code::TlsFailed,
            ConnectionError::PoolTimeout { .. } => Code::PoolTimeout,
            ConnectionError::Lost { .. } => Code::ConnectionLost,
            ConnectionError::TemporaryPostgres { .. } => Code::TemporaryPostgresFailed,
        }
    }
}

/// The audit schema's migrations (see `migrate.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The audit schema is missing: the migrations have not run on this database.
    #[error("the audit schema is not installed in this database; run `audit-logs migrate` first")]
    NotMigrated,

    /// A migration failed; `applied` lists the versions that were applied before it, and
    /// `sqlstate` is the server's code when the server refused it.
    #[error("migration {migration} failed: {reason}{}", applied_note(.applied))]
    Failed {
        migration: String,
        reason: String,
        applied: Vec<i32>,
        sqlstate: Option<String>,
        #[source]
        source: Option<Box<MigrationRunnerError>>,
    },

    /// An applied migration differs from the one shipped with this version of audit-logs.
    #[error("migration {migration} was applied to this database but differs from the one shipped with audit-logs {version}; migrations are never edited once applied, so this database was migrated by a different build")]
    Diverged { migration: String, version: String },

    /// The database has migrations this version of audit-logs does not know.
    #[error("this database has audit-logs migration {migration}, which this version ({version}) does not ship; upgrade audit-logs")]
    Unknown { migration: String, version: String },

    /// The migrations' advisory lock (which any session can take) was held longer than the
    /// wait allows.
    #[error("{purpose} waited {waited_seconds}s for its lock, held by {holders}; another {purpose} may still be running, otherwise end that session (select pg_terminate_backend(pid))")]
    LockTimeout {
        purpose: String,
        waited_seconds: f64,
        holders: String,
    },
}

impl MigrationError {
    pub fn code(&self) -> Code {
        match self {
            MigrationError::NotMigrated => Code::NotMigrated,
            MigrationError::Failed { .. } => Code::MigrationFailed,
            MigrationError::Diverged { .. } => Code::MigrationDiverged,
            MigrationError::Unknown { .. } => Code::MigrationUnknown,
            MigrationError::LockTimeout { .. } => Code::LockTimeout,
        }
    }
}

/// Naming tables and columns, and tracking them (see `tracking.rs`, and the capture triggers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackingError {
    /// The named table does not exist.
    #[error("table {table} does not exist{}", hint_note(.hint))]
    TableNotFound { table: String, hint: Option<String> },

    /// The table name is not valid SQL.
    #[error("{table:?} is not a valid table name: {reason}")]
    InvalidTableName { table: String, reason: String },

    /// Tracking needs a primary key to identify rows.
    #[error("cannot track {table} because it has no primary key; add one (alter table {table} add primary key (...)) and enable tracking again")]
    NoPrimaryKey { table: String },

    /// Only tables can be tracked (not views, sequences, partitions...).
    #[error("{message}")]
    NotATable { table: String, message: String },

    /// A column named (to exclude, or as a field to read) does not exist or cannot be used;
    /// `column` is set when one column is at fault.
    #[error("{message}")]
    InvalidColumn {
        table: String,
        column: Option<String>,
        message: String,
    },

    /// audit-logs' own tables and system catalogs cannot be tracked.
    #[error("{message}")]
    ReservedTable { table: String, message: String },

    /// The table has a trigger of its own under one of the capture triggers' names.
    #[error("{message}")]
    TriggerNameTaken { table: String, message: String },

    /// A capture function fired on a table it was not generated for (attached there by hand):
    /// it records nothing there, and the write fails.
    #[error("{message}")]
    CaptureRefused { message: String },
}

impl TrackingError {
    pub fn code(&self) -> Code {
        match self {
            TrackingError::TableNotFound { .. } => Code::TableNotFound,
            TrackingError::InvalidTableName { .. } => Code::InvalidTableName,
            TrackingError::NoPrimaryKey { .. } => Code::NoPrimaryKey,
            TrackingError::NotATable { .. } => Code::NotATable,
            TrackingError::InvalidColumn { .. } => Code::InvalidColumn,
            TrackingError::ReservedTable { .. } => Code::ReservedTable,
            TrackingError::TriggerNameTaken { .. } => Code::TriggerNameTaken,
            TrackingError::CaptureRefused { .. } => Code::CaptureRefused,
        }
    }

    /// The table the error is about, when it names one.
    pub fn table(&self) -> Option<&str> {
        match self {
            TrackingError::TableNotFound { table, .. }
            | TrackingError::InvalidTableName { table, .. }
            | TrackingError::NoPrimaryKey { table }
            | TrackingError::NotATable { table, .. }
            | TrackingError::InvalidColumn { table, .. }
            | TrackingError::ReservedTable { table, .. }
            | TrackingError::TriggerNameTaken { table, .. } => {
                (table != UNKNOWN_TABLE).then_some(table.as_str())
            }
            TrackingError::CaptureRefused { .. } => None,
        }
    }
}

/// The audit context: who, from where, why (see `context.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// An audit context was rejected (bad IP address, not an object, too large...).
    #[error("invalid audit context: {reason}")]
    Invalid { reason: String },

    /// The table requires an audit context and the write had none.
    #[error("{message}")]
    Required { message: String },
}

impl ContextError {
    pub fn code(&self) -> Code {
        match self {
            ContextError::Invalid { .. } => Code::InvalidContext,
            ContextError::Required { .. } => Code::ContextRequired,
        }
    }
}

/// Application events (see `events.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// An application event was rejected (bad action name, reserved action, oversized metadata).
    #[error("invalid event: {reason}")]
    Invalid { reason: String },
}

impl EventError {
    pub fn code(&self) -> Code {
        match self {
            EventError::Invalid { .. } => Code::InvalidEvent,
        }
    }
}

/// The log's integrity: append-only and seals (see `integrity/`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// A seal could not be made (for example inside a repeatable read transaction, or its
    /// lock held too long).
    #[error("cannot seal: {reason}")]
    Seal { reason: String },

    /// An UPDATE, DELETE or TRUNCATE of the append-only log was refused.
    #[error("{message}")]
    AppendOnly { message: String },
}

impl IntegrityError {
    pub fn code(&self) -> Code {
        match self {
            IntegrityError::Seal { .. } => Code::SealFailed,
            IntegrityError::AppendOnly { .. } => Code::AppendOnly,
        }
    }
}

/// Retention: partitions kept, anonymization (see `retention.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A retention setting was out of range.
    #[error("invalid retention settings: {reason}")]
    InvalidSettings { reason: String },
}

impl RetentionError {
    pub fn code(&self) -> Code {
        match self {
            RetentionError::InvalidSettings { .. } => Code::InvalidSettings,
        }
    }
}

/// Erasure: redacting a subject's personal data (see `erasure.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// A redaction was refused (key too short, no subject, unknown field).
    #[error("invalid redaction: {reason}")]
    InvalidRedaction { reason: String },

    /// A data subject description was refused (nothing given, a value too short, an address
    /// that is a network): see [`crate::DataSubject`].
    #[error("invalid data subject: {reason}")]
    InvalidSubject { reason: String },
}

impl ErasureError {
    pub fn code(&self) -> Code {
        match self {
            ErasureError::InvalidRedaction { .. } => Code::InvalidRedaction,
            ErasureError::InvalidSubject { .. } => Code::InvalidSubject,
        }
    }
}

/// Archives: months written out as Parquet with their seals (see `archive.rs`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The destination is not one this version can write or read, or its URL is malformed.
    #[error("archive destination {url} is not supported: {reason}")]
    Unsupported { url: String, reason: String },

    /// Reading or writing the archive's storage failed.
    #[error("archive storage {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// An archive file could not be understood (a manifest or Parquet file that is not one).
    #[error("archive file {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },

    /// A month cannot be archived yet: not ended, rows not sealed, or rows still in the default
    /// partition.
    #[error("month {month} cannot be archived: {reason}")]
    MonthNotReady { month: String, reason: String },

    /// A month's archive, read back, did not verify: it was not completed (no manifest), and
    /// nothing was dropped.
    #[error("the archive of {month} did not verify: {problem}; nothing was dropped, run `audit-logs verify` on the live log")]
    NotVerified { month: String, problem: String },

    /// The database refused to drop an archived month's partition (`audit.drop_archived_month`).
    #[error("cannot drop the archived month: {reason}")]
    DropRefused { reason: String },

    /// Object lock was asked of a bucket that cannot lock objects: nothing was written.
    #[error("bucket {bucket} cannot lock objects: {reason}; archive to a bucket created with S3 Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket), or without a lock mode")]
    LockUnavailable { bucket: String, reason: String },

    /// Another archive run holds this database's archive lock: nothing was done.
    #[error("another archive is running on this database ({holders}); wait for it to end, or end that session (select pg_terminate_backend(pid))")]
    Busy { holders: String },
}

impl ArchiveError {
    pub fn code(&self) -> Code {
        match self {
            ArchiveError::Unsupported { .. } => Code::ArchiveUnsupported,
            ArchiveError::Storage { .. } => Code::ArchiveStorageFailed,
            ArchiveError::Invalid { .. } => Code::ArchiveInvalid,
            ArchiveError::MonthNotReady { .. } => Code::ArchiveMonthNotReady,
            ArchiveError::DropRefused { .. } => Code::ArchiveDropRefused,
            ArchiveError::NotVerified { .. } => Code::ArchiveNotVerified,
            ArchiveError::LockUnavailable { .. } => Code::ArchiveLockUnavailable,
            ArchiveError::Busy { .. } => Code::ArchiveBusy,
        }
    }
}

/// Undo (see `revert.rs`): nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevertError {
    /// Records were changed again after the changes to undo (see
    /// [`crate::revert::OnConflict`]); each is listed with its later entries.
    #[cfg(feature = "database")]
    #[error("{message}")]
    Conflict {
        message: String,
        conflicts: Vec<crate::revert::RevertConflict>,
    },

    /// A record cannot be put back as asked: its table is no longer tracked, a column was
    /// dropped since, the log does not hold a value a re-created row needs.
    #[error("{message}")]
    Impossible {
        table: String,
        column: Option<String>,
        message: String,
    },

    /// A revert given the caller's connection found it in no transaction: it runs in the
    /// caller's transaction, so there must be one.
    #[error("{message}")]
    NotInTransaction { message: String },

    /// A revert given the caller's connection found its transaction failed (a statement of
    /// the caller's failed in it): it accepts nothing more until rolled back.
    #[error("{message}")]
    TransactionFailed { message: String },
}

impl RevertError {
    pub fn code(&self) -> Code {
        match self {
            #[cfg(feature = "database")]
            RevertError::Conflict { .. } => Code::RevertConflict,
            RevertError::Impossible { .. } => Code::CannotRevert,
            RevertError::NotInTransaction { .. } => Code::NotInTransaction,
            RevertError::TransactionFailed { .. } => Code::TransactionFailed,
        }
    }
}

/// Privileges: the roles `audit_reader` and `audit_maintainer`, a table's owner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// The role lacks a privilege the operation needs.
    #[error("permission denied: {reason}")]
    Denied { reason: String },

    /// The role may not read the log: it lacks `audit_reader` (same code as
    /// [`PermissionError::Denied`], so that one `switch` case covers both). `role` is the
    /// connected role when it could be asked.
    #[error("{denied}: this role may not read the audit log; as the audit schema's owner, grant it the reader role: grant audit_reader to {}", role.as_deref().unwrap_or("<role>"))]
    NotAReader {
        denied: String,
        role: Option<String>,
    },
}

impl PermissionError {
    pub fn code(&self) -> Code {
        Code::PermissionDenied
    }
}

/// Errors returned by audit-logs: one variant per domain, and the few that belong to none.
/// Match on the variants (or on [`Error::code`]), never on the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Tracking(#[from] TrackingError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    #[error(transparent)]
    Retention(#[from] RetentionError),
    #[error(transparent)]
    Erasure(#[from] ErasureError),
    #[error(transparent)]
    Permission(#[from] PermissionError),
    #[error(transparent)]
    Revert(#[from] RevertError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),

    /// An argument was out of range or of the wrong form.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument { name: String, reason: String },

    /// Output (an export's stdout or file) could not be written.
    #[error("cannot write the output: {source}")]
    Output {
        #[source]
        source: std::io::Error,
    },

    /// Any other error reported by PostgreSQL, with its SQLSTATE as `code`.
    #[error("PostgreSQL error {code}: {message}{}", hint_note(.hint))]
    Database {
        code: String,
        message: String,
        hint: Option<String>,
        #[source]
        source: Option<DriverError>,
    },

    /// What was asked needs a connection of audit-logs' own (its pool, the CLI, verify, the
    /// throwaway server), which only the native build opens: the WebAssembly build, for Edge
    /// and serverless runtimes where no native addon loads, has the pure parts only.
    #[error("{operation} needs the native build of audit-logs, which opens PostgreSQL connections of its own; this is its WebAssembly build, loaded where no native addon can be (an Edge or serverless runtime, or NAPI_RS_FORCE_WASI set), in which withAuditContext(), runWithAuditContext(), the request middleware and log()/logMany() given your client work. Run {operation} from Node on Linux, macOS or Windows, where the native addon loads")]
    NeedsNative { operation: String },

    /// Something audit-logs does not expect happened on its side: the driver's own complaint
    /// about one of audit-logs' queries (a row count, a type), a server answer of an unexpected
    /// shape, a thread that could not start. Not the caller's input, nor a server error: a bug
    /// to report, with the message.
    #[error("audit-logs internal error: {reason}; please report it")]
    Internal {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// The table name of an error raised by SQL that named none (a `from_own_sqlstate` error).
const UNKNOWN_TABLE: &str = "?";

fn applied_note(applied: &[i32]) -> String {
    if applied.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = applied.iter().map(|v| format!("V{v}")).collect();
        format!(" (applied before it: {})", list.join(", "))
    }
}

fn hint_note(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

/// The structured facts of an error, beside its code and message: what the Node binding sets
/// on the JavaScript error (`err.table`, `err.migration`...), as lightningcss attaches `loc`.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFields {
    /// The table the error is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The column at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The migration at fault (`V3__events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// The migrations applied before a failed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<i32>>,
    /// The argument at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
    /// PostgreSQL's SQLSTATE, for an error the server reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// PostgreSQL's hint, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The records a revert found changed since, each with its later entries.
    #[cfg(feature = "database")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<crate::revert::RevertConflict>>,
}

impl Error {
    /// A stable code for programs: `AUDIT_LOGS_NO_PRIMARY_KEY`, `AUDIT_LOGS_INVALID_URL`, ...
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The [`Code`] of the error.
    pub fn kind(&self) -> Code {
        match self {
            Error::Connection(e) => e.code(),
            Error::Migration(e) => e.code(),
            Error::Tracking(e) => e.code(),
            Error::Context(e) => e.code(),
            Error::Event(e) => e.code(),
            Error::Integrity(e) => e.code(),
            Error::Retention(e) => e.code(),
            Error::Erasure(e) => e.code(),
            Error::Permission(e) => e.code(),
            Error::Revert(e) => e.code(),
            Error::Archive(e) => e.code(),
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::Output { .. } => Code::OutputFailed,
            Error::Database { .. } => Code::DatabaseError,
            Error::Internal { .. } => Code::Internal,
            Error::NeedsNative { .. } => Code::NeedsNative,
        }
    }

    /// The structured facts the error carries (table, column, migration, SQLSTATE...).
    pub fn fields(&self) -> ErrorFields {
        let mut fields = ErrorFields::default();
        match self {
            Error::Tracking(e) => {
                fields.table = e.table().map(str::to_owned);
                if let TrackingError::InvalidColumn { column, .. } = e {
                    fields.column.clone_from(column);
                }
            }
            Error::Migration(MigrationError::Failed {
                migration,
                applied,
                sqlstate,
                ..
            }) => {
                fields.migration = Some(migration.clone());
                fields.applied = Some(applied.clone());
                fields.sqlstate.clone_from(sqlstate);
            }
            Error::Migration(
                MigrationError::Diverged { migration, .. }
                | MigrationError::Unknown { migration, .. },
            ) => fields.migration = Some(migration.clone()),
            Error::InvalidArgument { name, .. } => fields.argument = Some(name.clone()),
            #[cfg(feature = "database")]
            Error::Revert(RevertError::Conflict { conflicts, .. }) => {
                fields.conflicts = Some(conflicts.clone())
            }
            Error::Revert(RevertError::Impossible { table, column, .. }) => {
                fields.table = Some(table.clone());
                fields.column.clone_from(column);
            }
            Error::Database { code, hint, .. } => {
                fields.sqlstate = Some(code.clone());
                fields.hint.clone_from(hint);
            }
            _ => {}
        }
        fields
    }

    /// Whether the connection that raised this error is finished: lost, or its session ended
    /// by the server (see [`ends_session`]).
    pub fn ends_connection(&self) -> bool {
        match self {
            Error::Connection(ConnectionError::Lost { .. }) => true,
            Error::Database { code, .. } => ends_session(code),
            _ => false,
        }
    }

    /// An [`Error::InvalidArgument`] naming the argument and what is wrong with it.
    pub fn invalid_argument(name: &str, reason: impl fmt::Display) -> Error {
        Error::InvalidArgument {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Internal`] with its cause.
    pub(crate) fn internal(
        reason: impl fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Internal {
            reason: reason.to_string(),
            source: Some(source.into()),
        }
    }
}

/// Whether a SQLSTATE means the server ended the session: class 57P (terminated, shut down,
/// crashed, database dropped), class 08 (connection exception), or an idle-in-transaction or
/// transaction timeout (25P03, 25P04).
pub fn ends_session(code: &str) -> bool {
    code.starts_with("57P") || code.starts_with("08") || code == "25P03" || code == "25P04"
}

/// Whether a driver error means its connection is finished: the socket closed or failed, or
/// the server ended the session.
#[cfg(feature = "database")]
pub fn ends_connection(err: &tokio_postgres::Error) -> bool {
    match err.as_db_error() {
        Some(db) => ends_session(db.code().code()),
        None => {
            err.is_closed()
                || std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// Errors raised by our own SQL functions carry these SQLSTATEs (see the migrations).
pub(crate) mod sqlstate {
    pub const NO_PRIMARY_KEY: &str = "AL001";
    pub const NOT_A_TABLE: &str = "AL002";
    pub const INVALID_COLUMN: &str = "AL003";
    pub const INVALID_CONTEXT: &str = "AL004";
    pub const RESERVED_TABLE: &str = "AL005";
    pub const CONTEXT_REQUIRED: &str = "AL006";
    pub const INVALID_EVENT: &str = "AL007";
    pub const APPEND_ONLY: &str = "AL008";
    pub const INVALID_REDACTION: &str = "AL009";
    pub const INVALID_SETTINGS: &str = "AL010";
    pub const SEAL: &str = "AL011";
    pub const CAPTURE_REFUSED: &str = "AL013";
    pub const TRIGGER_NAME_TAKEN: &str = "AL014";
    pub const INVALID_SUBJECT: &str = "AL015";
    pub const ARCHIVE_DROP_REFUSED: &str = "AL016";
}

/// Maps an error from a query (not from connecting) to [`Error`]. `table` names the table the
/// statement was about, when there is one.
#[cfg(feature = "database")]
pub(crate) fn from_query(err: tokio_postgres::Error, table: Option<&str>) -> Error {
    let Some(db) = err.as_db_error() else {
        return if ends_connection(&err) {
            ConnectionError::Lost {
                reason: err.to_string(),
                source: Some(err),
            }
            .into()
        } else {
            // The driver's own complaint about one of our queries (a row count, a type
            // conversion): the connection is fine, and the fault is ours.
            Error::internal(err.to_string(), err)
        };
    };
    let (code, message, hint) = (
        db.code().code().to_owned(),
        db.message().to_owned(),
        db.hint().map(str::to_owned),
    );
    match from_server(&code, &message, hint.as_deref(), table) {
        Error::Database { source: None, .. } => Error::Database {
            code,
            message,
            hint,
            source: Some(err),
        },
        mapped => mapped,
    }
}

/// The error for one of audit-logs' own SQLSTATEs (class `AL`, raised by its SQL functions and
/// triggers) as another driver reports it (node-postgres, Prisma): the same variant, code and
/// message as through the core. `None` for any other SQLSTATE: the caller's own error stays as is.
pub fn from_own_sqlstate(code: &str, message: &str, hint: Option<&str>) -> Option<Error> {
    code.starts_with("AL")
        .then(|| from_server(code, message, hint, None))
}

/// Maps an error the server sent (its SQLSTATE, message and hint).
pub(crate) fn from_server(
    code: &str,
    message: &str,
    hint: Option<&str>,
    table: Option<&str>,
) -> Error {
    let table_name = || table.unwrap_or(UNKNOWN_TABLE).to_owned();
    let full_message = message;
    // Our own SQL errors start with "audit-logs: " for psql users; here the caller adds context.
    let message = message.trim_start_matches("audit-logs: ").to_owned();
    match code {
        sqlstate::NO_PRIMARY_KEY => TrackingError::NoPrimaryKey {
            table: table_name(),
        }
        .into(),
        sqlstate::NOT_A_TABLE => TrackingError::NotATable {
            table: table_name(),
            message: with_hint(message, hint),
        }
        .into(),
        sqlstate::INVALID_COLUMN => TrackingError::InvalidColumn {
            table: table_name(),
            column: None,
            message: with_hint(message, hint),
        }
        .into(),
        sqlstate::RESERVED_TABLE => TrackingError::ReservedTable {
            table: table_name(),
            message,
        }
        .into(),
        sqlstate::INVALID_CONTEXT => ContextError::Invalid { reason: message }.into(),
        // Drivers that drop the hint (Prisma) still get the way out.
        sqlstate::CONTEXT_REQUIRED => ContextError::Required {
            message: with_hint(
                message,
                hint.or(Some(
                    "Make the change in withAuditContext(), or after select audit.set_context(...)",
                )),
            ),
        }
        .into(),
        sqlstate::INVALID_EVENT => EventError::Invalid { reason: message }.into(),
        sqlstate::APPEND_ONLY => IntegrityError::AppendOnly {
            message: with_hint(message, hint),
        }
        .into(),
        sqlstate::INVALID_REDACTION => ErasureError::InvalidRedaction {
            reason: with_hint(message, hint),
        }
        .into(),
        sqlstate::INVALID_SUBJECT => ErasureError::InvalidSubject {
            reason: with_hint(message, hint),
        }
        .into(),
        sqlstate::ARCHIVE_DROP_REFUSED => ArchiveError::DropRefused {
            reason: with_hint(message, hint),
        }
        .into(),
        sqlstate::INVALID_SETTINGS => RetentionError::InvalidSettings {
            reason: with_hint(message, hint),
        }
        .into(),
        sqlstate::SEAL => IntegrityError::Seal {
            reason: with_hint(message, hint),
        }
        .into(),
        sqlstate::CAPTURE_REFUSED => TrackingError::CaptureRefused {
            message: with_hint(message, hint),
        }
        .into(),
        sqlstate::TRIGGER_NAME_TAKEN => TrackingError::TriggerNameTaken {
            table: table_name(),
            message: with_hint(message, hint),
        }
        .into(),
        // undefined_table: one of ours missing means the migrations have not run
        "42P01" if full_message.contains("\"audit.") => MigrationError::NotMigrated.into(),
        "42P01" => TrackingError::TableNotFound {
            table: table_name(),
            hint: None,
        }
        .into(),
        // invalid_schema_name: the audit schema is missing
        "3F000" if full_message.contains("\"audit\"") => MigrationError::NotMigrated.into(),
        // undefined_function on one of ours also means the migrations have not run
        "42883" if full_message.contains("audit.") => MigrationError::NotMigrated.into(),
        // insufficient_privilege on the log itself: the role is not an audit_reader
        "42501" if is_about_the_log(full_message) => PermissionError::NotAReader {
            denied: full_message.to_owned(),
            role: None,
        }
        .into(),
        // insufficient_privilege on a maintenance function: granted to audit_maintainer only
        "42501" if is_maintenance(full_message) => PermissionError::Denied {
            reason: format!(
                "{full_message}: seal, maintain, redact and configure are for audit_maintainer; \
                 as the role that ran the migrations: grant audit_maintainer to <this role>"
            ),
        }
        .into(),
        // insufficient_privilege
        "42501" => PermissionError::Denied {
            reason: with_hint(full_message.to_owned(), hint),
        }
        .into(),
        code => Error::Database {
            code: code.to_owned(),
            message: full_message.to_owned(),
            hint: hint.map(str::to_owned),
            source: None,
        },
    }
}

/// Whether a "permission denied" names one of the tables `audit_reader` may read.
fn is_about_the_log(message: &str) -> bool {
    const READABLE: [&str; 7] = [
        "table audit_logs",
        "table seals",
        "table seal_chunks",
        "table redactions",
        "table dropped_partitions",
        "table anonymization_watermark",
        "view tracked_tables",
    ];
    READABLE.iter().any(|name| message.ends_with(name))
}

/// Whether a "permission denied" names one of the functions granted to `audit_maintainer`.
fn is_maintenance(message: &str) -> bool {
    const MAINTENANCE: [&str; 4] = [
        "function seal",
        "function maintain",
        "function redact",
        "function configure",
    ];
    MAINTENANCE.iter().any(|name| message.ends_with(name))
}

#[cfg(feature = "database")]
impl Error {
    /// Names the connected role in a [`PermissionError::NotAReader`] (the server's message
    /// does not), so that its `grant audit_reader to ...` can be run as printed.
    pub(crate) async fn naming_the_role(
        self,
        client: &impl tokio_postgres::GenericClient,
    ) -> Error {
        match self {
            Error::Permission(PermissionError::NotAReader { denied, role: None }) => {
                let role = client
                    .query_one(
                        "select pg_catalog.quote_ident(current_user::pg_catalog.text)",
                        &[],
                    )
                    .await
                    .ok()
                    .map(|row| row.get(0));
                PermissionError::NotAReader { denied, role }.into()
            }
            other => other,
        }
    }
}

#[cfg(feature = "database")]
impl From<tokio_postgres::Error> for Error {
    /// For callers running their own statements next to ours.
    fn from(e: tokio_postgres::Error) -> Self {
        from_query(e, None)
    }
}

fn with_hint(message: String, hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("{message}. {h}"),
        None => message,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_session_knows_the_codes_that_end_a_session_and_no_others() {
        for code in [
            "57P01", "57P02", "57P03", "57P04", "08006", "08003", "25P03", "25P04",
        ] {
            assert!(ends_session(code), "{code}");
        }
        for code in ["23505", "40P01", "40001", "25P02", "42P01", "XX000"] {
            assert!(!ends_session(code), "{code}");
        }
        let terminated = Error::Database {
            code: "57P01".into(),
            message: "terminating connection due to administrator command".into(),
            hint: None,
            source: None,
        };
        assert!(terminated.ends_connection());
        assert!(Error::from(ConnectionError::Lost {
            reason: "connection closed".into(),
            source: None,
        })
        .ends_connection());
        assert!(!Error::from(MigrationError::NotMigrated).ends_connection());
    }

    #[test]
    fn codes_are_distinct_and_all_start_with_audit_logs() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(code.as_str().starts_with("AUDIT_LOGS_"), "{code}");
            assert!(seen.insert(code.as_str()), "{code} twice");
        }
    }

    #[test]
    fn every_own_sqlstate_maps_to_its_domain_with_the_same_code_as_before() {
        let cases = [
            (sqlstate::NO_PRIMARY_KEY, "AUDIT_LOGS_NO_PRIMARY_KEY"),
            (sqlstate::NOT_A_TABLE, "AUDIT_LOGS_NOT_A_TABLE"),
            (sqlstate::INVALID_COLUMN, "AUDIT_LOGS_INVALID_COLUMN"),
            (sqlstate::INVALID_CONTEXT, "AUDIT_LOGS_INVALID_CONTEXT"),
            (sqlstate::RESERVED_TABLE, "AUDIT_LOGS_RESERVED_TABLE"),
            (sqlstate::CONTEXT_REQUIRED, "AUDIT_LOGS_CONTEXT_REQUIRED"),
            (sqlstate::INVALID_EVENT, "AUDIT_LOGS_INVALID_EVENT"),
            (sqlstate::APPEND_ONLY, "AUDIT_LOGS_APPEND_ONLY"),
            (sqlstate::INVALID_REDACTION, "AUDIT_LOGS_INVALID_REDACTION"),
            (sqlstate::INVALID_SUBJECT, "AUDIT_LOGS_INVALID_SUBJECT"),
            (
                sqlstate::ARCHIVE_DROP_REFUSED,
                "AUDIT_LOGS_ARCHIVE_DROP_REFUSED",
            ),
            (sqlstate::INVALID_SETTINGS, "AUDIT_LOGS_INVALID_SETTINGS"),
            (sqlstate::SEAL, "AUDIT_LOGS_SEAL_FAILED"),
            (sqlstate::CAPTURE_REFUSED, "AUDIT_LOGS_CAPTURE_REFUSED"),
            (
                sqlstate::TRIGGER_NAME_TAKEN,
                "AUDIT_LOGS_TRIGGER_NAME_TAKEN",
            ),
        ];
        for (sqlstate, code) in cases {
            let err = from_own_sqlstate(sqlstate, "audit-logs: refused", None).unwrap();
            assert_eq!(err.code(), code, "{sqlstate}");
            assert!(!err.to_string().contains("audit-logs: "), "{err}");
        }
        assert!(from_own_sqlstate("23505", "duplicate key", None).is_none());
    }

    #[test]
    fn a_server_error_keeps_its_sqlstate_and_hint_as_fields() {
        let err = from_server("23505", "duplicate key", Some("use another id"), None);
        assert_eq!(err.code(), "AUDIT_LOGS_DATABASE_ERROR");
        let fields = err.fields();
        assert_eq!(fields.sqlstate.as_deref(), Some("23505"));
        assert_eq!(fields.hint.as_deref(), Some("use another id"));
        let no_pk = from_server(sqlstate::NO_PRIMARY_KEY, "no key", None, Some("public.t"));
        assert_eq!(no_pk.fields().table.as_deref(), Some("public.t"));
        // Raised through another driver, the table is not known: no made-up name.
        let no_pk = from_own_sqlstate(sqlstate::NO_PRIMARY_KEY, "no key", None).unwrap();
        assert_eq!(no_pk.fields().table, None);
    }
}
