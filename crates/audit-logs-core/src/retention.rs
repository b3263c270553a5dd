//! Retention: the policy kept in `audit.settings` ([`AuditLogs::configure`],
//! [`AuditLogs::settings`]) and the maintenance run that applies it ([`AuditLogs::maintain`]):
//! partitions ahead, rows out of the default partition, a seal, expired months dropped, due
//! rows anonymized. The SQL side is `audit.configure` and `audit.maintain` (`schema/audit.sql`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::Type;

use crate::error::{from_query, Error, Result};
use crate::AuditLogs;

/// The retention policy kept in `audit.settings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Monthly partitions created ahead (default 2).
    #[serde(alias = "months_ahead")]
    pub months_ahead: Option<i32>,
    /// Partitions whose month ended more than this many months ago are dropped; 0 keeps all.
    #[serde(alias = "retention_months")]
    pub retention_months: Option<i32>,
    /// Rows older than this have `anonymize_fields` anonymized; 0 never (default 90).
    #[serde(alias = "anonymize_after_days")]
    pub anonymize_after_days: Option<i32>,
    /// `ip_address` and/or `user_agent` (default both).
    #[serde(alias = "anonymize_fields")]
    pub anonymize_fields: Option<Vec<String>>,
}

/// Options of one [`AuditLogs::maintain`] run; unset ones come from [`Settings`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainOptions {
    pub months_ahead: Option<i32>,
    /// 0 skips retention for this run.
    pub retention_months: Option<i32>,
    /// 0 skips anonymization for this run.
    pub anonymize_after_days: Option<i32>,
}

/// What [`AuditLogs::maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MaintainReport {
    pub partitions_created: Vec<String>,
    /// Rows moved from the default partition into monthly partitions.
    pub rows_moved: i64,
    pub partitions_dropped: Vec<String>,
    pub rows_anonymized: i64,
    /// Rows sealed before retention ran.
    pub sealed_rows: i64,
    pub retention_months: Option<i32>,
    pub anonymize_after_days: Option<i32>,
}

impl AuditLogs {
    /// Changes the retention policy (`None` leaves a setting as it is) and returns it.
    /// Errors: [`Error::InvalidSettings`].
    pub async fn configure(&self, settings: &Settings) -> Result<Settings> {
        self.with_client(async |client| {
            let row = client
                .query_typed_one(
                    "select audit.configure($1, $2, $3, $4)",
                    &[
                        (&settings.months_ahead, Type::INT4),
                        (&settings.retention_months, Type::INT4),
                        (&settings.anonymize_after_days, Type::INT4),
                        (&settings.anonymize_fields, Type::TEXT_ARRAY),
                    ],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            let value: Value = row.get(0);
            settings_from(value)
        })
        .await
    }

    /// The retention policy.
    pub async fn settings(&self) -> Result<Settings> {
        self.with_client(async |client| {
            let row = client
                .query_one("select to_jsonb(s) from audit.settings s", &[])
                .await
                .map_err(|e| from_query(e, None))?;
            settings_from(row.get(0))
        })
        .await
    }

    /// Creates the coming months' partitions, moves rows out of the default partition, seals,
    /// drops partitions past retention and anonymizes due rows; each step is recorded as an
    /// audit event. Safe to run from cron, concurrently with writers.
    pub async fn maintain(&self, options: &MaintainOptions) -> Result<MaintainReport> {
        for (name, value) in [
            ("months_ahead", options.months_ahead),
            ("retention_months", options.retention_months),
            ("anonymize_after_days", options.anonymize_after_days),
        ] {
            if matches!(value, Some(v) if v < 0) {
                return Err(Error::invalid_argument(name, "must not be negative"));
            }
        }
        self.with_client(async |client| {
            let row = client
                .query_typed_one(
                    "select audit.maintain($1, $2, $3)",
                    &[
                        (&options.months_ahead, Type::INT4),
                        (&options.retention_months, Type::INT4),
                        (&options.anonymize_after_days, Type::INT4),
                    ],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            let value: Value = row.get(0);
            serde_json::from_value(value).map_err(|e| Error::Database {
                code: "XX000".into(),
                message: format!("unexpected maintain() result: {e}"),
                hint: None,
            })
        })
        .await
    }
}

fn settings_from(value: Value) -> Result<Settings> {
    serde_json::from_value(value).map_err(|e| Error::Database {
        code: "XX000".into(),
        message: format!("unexpected audit.settings row: {e}"),
        hint: None,
    })
}
