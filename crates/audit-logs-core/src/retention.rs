//! Retention: the policy kept in `audit.settings` ([`AuditLogs::configure`],
//! [`AuditLogs::settings`]) and the maintenance run that applies it ([`AuditLogs::maintain`]):
//! partitions ahead, rows out of the default partition, a seal, expired months dropped, due
//! rows anonymized. The SQL side is `audit.configure` and `audit.maintain` (`schema/audit.sql`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::Type;

use crate::archive::ArchiveOptions;
use crate::error::{from_query, Error, Result};
use crate::AuditLogs;

/// The retention policy kept in `audit.settings`, which `maintain` applies (`configure` saves it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, js_name = "RetentionSettings")
)]
pub struct Settings {
    /// Monthly partitions created ahead. Default: 2.
    #[serde(alias = "months_ahead", skip_serializing_if = "Option::is_none")]
    pub months_ahead: Option<i32>,
    /// Months kept: partitions whose month ended more than this many months ago are dropped;
    /// 0 (absent when read) keeps everything. Default: keep everything.
    #[serde(alias = "retention_months", skip_serializing_if = "Option::is_none")]
    pub retention_months: Option<i32>,
    /// Days before IP addresses and user agents are anonymized; 0 (absent when read) never.
    /// Default: 90.
    #[serde(
        alias = "anonymize_after_days",
        skip_serializing_if = "Option::is_none"
    )]
    pub anonymize_after_days: Option<i32>,
    /// `ip_address` and/or `user_agent`. Default: both.
    #[serde(alias = "anonymize_fields", skip_serializing_if = "Option::is_none")]
    pub anonymize_fields: Option<Vec<String>>,
    /// Where `maintain` archives a month before retention drops it (`file:///dir`,
    /// `s3://bucket/prefix`, as for `archive`); `""` (absent when read) drops without archiving.
    /// With it, `audit.maintain()` in SQL leaves such months for `maintain` of the package.
    /// Default: none.
    #[serde(alias = "archive_to", skip_serializing_if = "Option::is_none")]
    pub archive_to: Option<String>,
    /// S3 Object Lock mode of those archives: `compliance` or `governance`, with
    /// `archive_lock_days`; `""` turns it off. Default: none.
    #[serde(alias = "archive_lock_mode", skip_serializing_if = "Option::is_none")]
    pub archive_lock_mode: Option<String>,
    /// Days each archived object is locked, from its archiving.
    #[serde(alias = "archive_lock_days", skip_serializing_if = "Option::is_none")]
    pub archive_lock_days: Option<i32>,
}

/// Options of one `maintain` run, for that run only: the saved policy (`configure`) is left as
/// it is, and supplies the options not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_to_js = false))]
pub struct MaintainOptions {
    /// Monthly partitions to create ahead. Default: the saved policy's (2 unless configured).
    pub months_ahead: Option<i32>,
    /// Drop partitions whose month ended more than this many months ago; 0 skips retention.
    /// Default: the saved policy's (keep everything unless configured).
    pub retention_months: Option<i32>,
    /// Anonymize IP addresses and user agents of rows older than this; 0 skips it. Default:
    /// the saved policy's (90 unless configured).
    pub anonymize_after_days: Option<i32>,
}

/// What `maintain` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct MaintainReport {
    pub partitions_created: Vec<String>,
    /// Rows moved from the default partition into monthly partitions.
    pub rows_moved: i64,
    /// Partitions dropped: past retention, or archived first when the policy has `archive_to`.
    pub partitions_dropped: Vec<String>,
    /// Months archived by this run before retention dropped them (`YYYY-MM`).
    #[serde(default)]
    pub months_archived: Vec<String>,
    /// Partitions past retention left in place for want of their archive: by `audit.maintain()`
    /// in SQL, which cannot archive; empty after `maintain` of the package unless it failed.
    #[serde(default)]
    pub partitions_awaiting_archive: Vec<String>,
    pub rows_anonymized: i64,
    /// Rows sealed before retention ran.
    pub sealed_rows: i64,
    /// The retention this run applied; absent when it kept everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_months: Option<i32>,
    /// The anonymization this run applied; absent when it anonymized nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymize_after_days: Option<i32>,
}

impl AuditLogs {
    /// Changes the retention policy (`None` leaves a setting as it is) and returns it.
    /// Errors: [`RetentionError::InvalidSettings`].
    pub async fn configure(&self, settings: &Settings) -> Result<Settings> {
        self.with_client(async |client| {
            let row = client
                .query_typed_one(
                    "select audit.configure($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        (&settings.months_ahead, Type::INT4),
                        (&settings.retention_months, Type::INT4),
                        (&settings.anonymize_after_days, Type::INT4),
                        (&settings.anonymize_fields, Type::TEXT_ARRAY),
                        (&settings.archive_to, Type::TEXT),
                        (&settings.archive_lock_mode, Type::TEXT),
                        (&settings.archive_lock_days, Type::INT4),
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
    /// audit event. Safe to run from cron, concurrently with writers. When the policy has an
    /// `archive_to`, a month past retention is archived, read back and verified before it is
    /// dropped; if that fails, nothing is dropped and the archive's error is returned (the other
    /// steps are done). Errors: [`crate::ArchiveError`], as `archive`'s.
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
        let (mut report, archive) = self
            .with_client(async |client| {
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
                let unexpected =
                    |e| Error::internal(format!("unexpected maintain() result: {e}"), e);
                let report: MaintainReport =
                    serde_json::from_value(value.clone()).map_err(unexpected)?;
                let archive: PolicyArchive = serde_json::from_value(value).map_err(unexpected)?;
                Ok((report, archive))
            })
            .await?;
        // The months past retention that audit.maintain() left for want of their archive:
        // archived, read back, verified, then dropped, as `archive --then-drop` does.
        if let (Some(to), false) = (
            archive.archive_to,
            report.partitions_awaiting_archive.is_empty(),
        ) {
            let archived = self
                .archive(&ArchiveOptions {
                    to,
                    older_than_months: report.retention_months,
                    then_drop: Some(true),
                    lock_mode: archive.archive_lock_mode,
                    lock_days: archive.archive_lock_days,
                    ..Default::default()
                })
                .await?;
            let dropped: Vec<String> = archived
                .months_dropped
                .iter()
                .map(|month| format!("audit_logs_p{}", month.replace('-', "_")))
                .collect();
            report
                .partitions_awaiting_archive
                .retain(|name| !dropped.contains(name));
            report.partitions_dropped.extend(dropped);
            report.months_archived = archived.months_archived;
        }
        Ok(report)
    }
}

/// The archive destination `audit.maintain()` reports from the policy.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyArchive {
    archive_to: Option<String>,
    archive_lock_mode: Option<String>,
    archive_lock_days: Option<i32>,
}

fn settings_from(value: Value) -> Result<Settings> {
    serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("unexpected audit.settings row: {e}"), e))
}
