//! One error type for the whole core. Every variant has a stable [`Error::code`] that the Node
//! binding exposes as `err.code`, and a message that names the problem and the way out.

use std::fmt;

/// Errors returned by audit-logs. Match on the variant (or on [`Error::code`]), never on the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be understood.
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },

    /// The server could not be reached or refused the connection.
    #[error("could not connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },

    /// The server rejected the credentials.
    #[error("PostgreSQL at {target} rejected the login: {reason}")]
    Authentication { target: String, reason: String },

    /// The TLS handshake failed or TLS could not be set up as the URL asks.
    #[error("TLS with PostgreSQL at {target} failed: {reason}")]
    Tls { target: String, reason: String },

    /// The audit schema is missing: the migrations have not run on this database.
    #[error("the audit schema is not installed in this database; run `audit-logs migrate` first")]
    NotMigrated,

    /// A migration failed; `applied` lists the versions that were applied before it.
    #[error("migration {migration} failed: {reason}{}", applied_note(.applied))]
    Migration {
        migration: String,
        reason: String,
        applied: Vec<i32>,
    },

    /// An applied migration differs from the one shipped with this version of audit-logs.
    #[error("migration {migration} was applied to this database but differs from the one shipped with audit-logs {version}; migrations are never edited once applied, so this database was migrated by a different build")]
    MigrationDiverged { migration: String, version: String },

    /// The database has migrations this version of audit-logs does not know.
    #[error("this database has audit-logs migration {migration}, which this version ({version}) does not ship; upgrade audit-logs")]
    MigrationUnknown { migration: String, version: String },

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

    /// An excluded column does not exist or cannot be excluded.
    #[error("{message}")]
    InvalidColumn { table: String, message: String },

    /// audit-logs' own tables and system catalogs cannot be tracked.
    #[error("{message}")]
    ReservedTable { table: String, message: String },

    /// An audit context was rejected (bad IP address, not an object, too large...).
    #[error("invalid audit context: {reason}")]
    InvalidContext { reason: String },

    /// The table requires an audit context and the write had none.
    #[error("{message}")]
    ContextRequired { message: String },

    /// An application event was rejected (bad action name, reserved action, oversized metadata).
    #[error("invalid event: {reason}")]
    InvalidEvent { reason: String },

    /// An argument was out of range or of the wrong form.
    #[error("invalid argument {name}: {reason}")]
    InvalidArgument { name: String, reason: String },

    /// Output (an export's stdout or file) could not be written.
    #[error("cannot write the output: {reason}")]
    Output { reason: String },

    /// The role lacks a privilege the operation needs.
    #[error("permission denied: {reason}")]
    PermissionDenied { reason: String },

    /// The role may not read the log: it lacks `audit_reader` (same code as
    /// [`Error::PermissionDenied`], so that one `switch` case covers both). `role` is the
    /// connected role when it could be asked.
    #[error("{denied}: this role may not read the audit log; as the audit schema's owner, grant it the reader role: grant audit_reader to {}", role.as_deref().unwrap_or("<role>"))]
    NotAReader {
        denied: String,
        role: Option<String>,
    },

    /// A throwaway PostgreSQL cluster could not be started.
    #[error("could not start a temporary PostgreSQL: {reason}")]
    TemporaryPostgres { reason: String },

    /// The pool gave no connection within its timeout.
    #[error("no database connection became free within {seconds}s (pool of {size}); raise connection_limit or pool_timeout in the URL")]
    PoolTimeout { seconds: u64, size: usize },

    /// Any other error reported by PostgreSQL.
    #[error("PostgreSQL error {code}: {message}{}", hint_note(.hint))]
    Database {
        code: String,
        message: String,
        hint: Option<String>,
    },

    /// The connection broke while a request was in flight.
    #[error("the connection to PostgreSQL was lost: {reason}")]
    ConnectionLost { reason: String },

    /// An UPDATE, DELETE or TRUNCATE of the append-only log was refused.
    #[error("{message}")]
    AppendOnly { message: String },

    /// A redaction was refused (key too short, no subject, unknown field).
    #[error("invalid redaction: {reason}")]
    InvalidRedaction { reason: String },

    /// A retention setting was out of range.
    #[error("invalid retention settings: {reason}")]
    InvalidSettings { reason: String },

    /// A seal could not be made (for example inside a repeatable read transaction).
    #[error("cannot seal: {reason}")]
    Seal { reason: String },

    /// A capture function fired on a table it was not generated for (attached there by hand):
    /// it records nothing there, and the write fails.
    #[error("{message}")]
    CaptureRefused { message: String },

    /// A lock that any session can take (an advisory lock) was held longer than the wait allows.
    #[error("{purpose} waited {waited_seconds}s for its lock, held by {holders}; another {purpose} may still be running, otherwise end that session (select pg_terminate_backend(pid))")]
    LockTimeout {
        purpose: String,
        waited_seconds: f64,
        holders: String,
    },

    /// A revert would undo later changes to the records listed (see
    /// [`crate::revert::OnConflict`]); nothing was changed.
    #[error("{message}")]
    RevertConflict {
        message: String,
        conflicts: Vec<crate::revert::RevertConflict>,
    },

    /// A revert cannot be done as asked (a table no longer tracked, a column dropped since, a
    /// value the log does not hold); nothing was changed.
    #[error("{message}")]
    CannotRevert {
        table: String,
        column: Option<String>,
        message: String,
    },

    /// The table has a trigger of its own under one of the capture triggers' names.
    #[error("{message}")]
    TriggerNameTaken { table: String, message: String },
}

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

impl Error {
    /// Whether the connection that raised this error is finished: lost, or its session ended
    /// by the server (see [`ends_session`]).
    pub fn ends_connection(&self) -> bool {
        match self {
            Error::ConnectionLost { .. } => true,
            Error::Database { code, .. } => ends_session(code),
            _ => false,
        }
    }

    /// A stable code for programs: `AUDIT_LOGS_NO_PRIMARY_KEY`, `AUDIT_LOGS_INVALID_URL`, ...
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidUrl { .. } => "AUDIT_LOGS_INVALID_URL",
            Error::Connect { .. } => "AUDIT_LOGS_CONNECTION_FAILED",
            Error::Authentication { .. } => "AUDIT_LOGS_AUTHENTICATION_FAILED",
            Error::Tls { .. } => "AUDIT_LOGS_TLS_FAILED",
            Error::NotMigrated => "AUDIT_LOGS_NOT_MIGRATED",
            Error::Migration { .. } => "AUDIT_LOGS_MIGRATION_FAILED",
            Error::MigrationDiverged { .. } => "AUDIT_LOGS_MIGRATION_DIVERGED",
            Error::MigrationUnknown { .. } => "AUDIT_LOGS_MIGRATION_UNKNOWN",
            Error::TableNotFound { .. } => "AUDIT_LOGS_TABLE_NOT_FOUND",
            Error::InvalidTableName { .. } => "AUDIT_LOGS_INVALID_TABLE_NAME",
            Error::NoPrimaryKey { .. } => "AUDIT_LOGS_NO_PRIMARY_KEY",
            Error::NotATable { .. } => "AUDIT_LOGS_NOT_A_TABLE",
            Error::InvalidColumn { .. } => "AUDIT_LOGS_INVALID_COLUMN",
            Error::ReservedTable { .. } => "AUDIT_LOGS_RESERVED_TABLE",
            Error::InvalidContext { .. } => "AUDIT_LOGS_INVALID_CONTEXT",
            Error::ContextRequired { .. } => "AUDIT_LOGS_CONTEXT_REQUIRED",
            Error::InvalidEvent { .. } => "AUDIT_LOGS_INVALID_EVENT",
            Error::Output { .. } => "AUDIT_LOGS_OUTPUT_FAILED",
            Error::InvalidArgument { .. } => "AUDIT_LOGS_INVALID_ARGUMENT",
            Error::PermissionDenied { .. } | Error::NotAReader { .. } => {
                "AUDIT_LOGS_PERMISSION_DENIED"
            }
            Error::TemporaryPostgres { .. } => "AUDIT_LOGS_TEMPORARY_POSTGRES_FAILED",
            Error::PoolTimeout { .. } => "AUDIT_LOGS_POOL_TIMEOUT",
            Error::Database { .. } => "AUDIT_LOGS_DATABASE_ERROR",
            Error::ConnectionLost { .. } => "AUDIT_LOGS_CONNECTION_LOST",
            Error::AppendOnly { .. } => "AUDIT_LOGS_APPEND_ONLY",
            Error::InvalidRedaction { .. } => "AUDIT_LOGS_INVALID_REDACTION",
            Error::InvalidSettings { .. } => "AUDIT_LOGS_INVALID_SETTINGS",
            Error::Seal { .. } => "AUDIT_LOGS_SEAL_FAILED",
            Error::CaptureRefused { .. } => "AUDIT_LOGS_CAPTURE_REFUSED",
            Error::TriggerNameTaken { .. } => "AUDIT_LOGS_TRIGGER_NAME_TAKEN",
            Error::LockTimeout { .. } => "AUDIT_LOGS_LOCK_TIMEOUT",
            Error::RevertConflict { .. } => "AUDIT_LOGS_REVERT_CONFLICT",
            Error::CannotRevert { .. } => "AUDIT_LOGS_CANNOT_REVERT",
        }
    }

    /// Whether the error is about the caller's input (as opposed to the database or network).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidUrl { .. }
                | Error::InvalidTableName { .. }
                | Error::InvalidContext { .. }
                | Error::InvalidArgument { .. }
                | Error::InvalidEvent { .. }
                | Error::InvalidColumn { .. }
                | Error::InvalidRedaction { .. }
                | Error::InvalidSettings { .. }
        )
    }

    /// An [`Error::InvalidArgument`] naming the argument and what is wrong with it.
    pub fn invalid_argument(name: &str, reason: impl fmt::Display) -> Error {
        Error::InvalidArgument {
            name: name.to_owned(),
            reason: reason.to_string(),
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
}

/// Maps an error from a query (not from connecting) to [`Error`]. `table` names the table the
/// statement was about, when there is one.
pub(crate) fn from_query(err: tokio_postgres::Error, table: Option<&str>) -> Error {
    let Some(db) = err.as_db_error() else {
        return if ends_connection(&err) {
            Error::ConnectionLost {
                reason: err.to_string(),
            }
        } else {
            // The driver's own complaint (a row count, a type conversion): the connection is fine.
            Error::Database {
                code: "XX000".into(),
                message: err.to_string(),
                hint: None,
            }
        };
    };
    from_server(db.code().code(), db.message(), db.hint(), table)
}

/// The error for one of audit-logs' own SQLSTATEs (class `AL`, raised by its SQL functions and
/// triggers) as another driver reports it (node-postgres, Prisma): the same variant, code and
/// message as through the core. `None` for any other SQLSTATE: the caller's own error stays as is.
pub fn from_own_sqlstate(code: &str, message: &str, hint: Option<&str>) -> Option<Error> {
    code.starts_with("AL")
        .then(|| from_server(code, message, hint, None))
}

/// Maps an error the server sent (its SQLSTATE, message and hint).
fn from_server(code: &str, message: &str, hint: Option<&str>, table: Option<&str>) -> Error {
    let table_name = || table.unwrap_or("?").to_owned();
    let full_message = message;
    // Our own SQL errors start with "audit-logs: " for psql users; here the caller adds context.
    let message = message.trim_start_matches("audit-logs: ").to_owned();
    match code {
        sqlstate::NO_PRIMARY_KEY => Error::NoPrimaryKey {
            table: table_name(),
        },
        sqlstate::NOT_A_TABLE => Error::NotATable {
            table: table_name(),
            message: with_hint(message, hint),
        },
        sqlstate::INVALID_COLUMN => Error::InvalidColumn {
            table: table_name(),
            message: with_hint(message, hint),
        },
        sqlstate::RESERVED_TABLE => Error::ReservedTable {
            table: table_name(),
            message,
        },
        sqlstate::INVALID_CONTEXT => Error::InvalidContext { reason: message },
        // Drivers that drop the hint (Prisma) still get the way out.
        sqlstate::CONTEXT_REQUIRED => Error::ContextRequired {
            message: with_hint(
                message,
                hint.or(Some(
                    "Make the change in withAuditContext(), or after select audit.set_context(...)",
                )),
            ),
        },
        sqlstate::INVALID_EVENT => Error::InvalidEvent { reason: message },
        sqlstate::APPEND_ONLY => Error::AppendOnly {
            message: with_hint(message, hint),
        },
        sqlstate::INVALID_REDACTION => Error::InvalidRedaction {
            reason: with_hint(message, hint),
        },
        sqlstate::INVALID_SETTINGS => Error::InvalidSettings {
            reason: with_hint(message, hint),
        },
        sqlstate::SEAL => Error::Seal {
            reason: with_hint(message, hint),
        },
        sqlstate::CAPTURE_REFUSED => Error::CaptureRefused {
            message: with_hint(message, hint),
        },
        sqlstate::TRIGGER_NAME_TAKEN => Error::TriggerNameTaken {
            table: table_name(),
            message: with_hint(message, hint),
        },
        // undefined_table: one of ours missing means the migrations have not run
        "42P01" if full_message.contains("\"audit.") => Error::NotMigrated,
        "42P01" => Error::TableNotFound {
            table: table_name(),
            hint: None,
        },
        // invalid_schema_name: the audit schema is missing
        "3F000" if full_message.contains("\"audit\"") => Error::NotMigrated,
        // undefined_function on one of ours also means the migrations have not run
        "42883" if full_message.contains("audit.") => Error::NotMigrated,
        // insufficient_privilege on the log itself: the role is not an audit_reader
        "42501" if is_about_the_log(full_message) => Error::NotAReader {
            denied: full_message.to_owned(),
            role: None,
        },
        // insufficient_privilege on a maintenance function: granted to audit_maintainer only
        "42501" if is_maintenance(full_message) => Error::PermissionDenied {
            reason: format!(
                "{full_message}: seal, maintain, redact and configure are for audit_maintainer; \
                 as the role that ran the migrations: grant audit_maintainer to <this role>"
            ),
        },
        // insufficient_privilege
        "42501" => Error::PermissionDenied {
            reason: with_hint(full_message.to_owned(), hint),
        },
        code => Error::Database {
            code: code.to_owned(),
            message: full_message.to_owned(),
            hint: hint.map(str::to_owned),
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

impl Error {
    /// Names the connected role in a [`Error::NotAReader`] (the server's message does not), so
    /// that its `grant audit_reader to ...` can be run as printed.
    pub(crate) async fn naming_the_role(
        self,
        client: &impl tokio_postgres::GenericClient,
    ) -> Error {
        match self {
            Error::NotAReader { denied, role: None } => {
                let role = client
                    .query_one(
                        "select pg_catalog.quote_ident(current_user::pg_catalog.text)",
                        &[],
                    )
                    .await
                    .ok()
                    .map(|row| row.get(0));
                Error::NotAReader { denied, role }
            }
            other => other,
        }
    }
}

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
        };
        assert!(terminated.ends_connection());
        assert!(Error::ConnectionLost {
            reason: "connection closed".into()
        }
        .ends_connection());
        assert!(!Error::NotMigrated.ends_connection());
    }
}
