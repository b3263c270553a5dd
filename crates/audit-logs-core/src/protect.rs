//! Protecting the log: seals (a hash chain over the rows), verification, retention and
//! anonymization, and GDPR erasure. The SQL side is `migrations/V4__protect.sql`; this module
//! calls it, and recomputes the chain itself in [`AuditLogs::verify`] so that verification does
//! not trust any function stored in the database.
//!
//! Canonical serialization v1 (the same as `audit.row_digest` in SQL):
//!
//! ```text
//! field(v)        = 0x00 if v is null, else 0x01 || u32 big-endian byte length || UTF-8 bytes
//! personal digest = sha256(field(target_id) || field(old_target_id) || field(old_values::text) ||
//!                          field(new_values::text) || field(actor_id) || field(actor_email) ||
//!                          field(ip_address::text) || field(user_agent) || field(metadata::text))
//! row digest      = sha256("audit-logs:row:v1" || field(id) || field(created_at, UTC, microseconds) ||
//!                          field(txid) || field(action) || field(target_type) ||
//!                          field(changed_fields::text) || field(actor_type) || field(request_id) ||
//!                          personal digest)
//! chunk head      = sha256(row digest || row digest || ...)    rows of one month, (txid, id) order
//! seal head       = sha256("audit-logs:seal:v1" || previous head || i64 seal id || i64 from_txid ||
//!                          i64 to_txid || i64 row_count || (i32 month || i64 rows || chunk head)...)
//! ```
//!
//! A redacted (or anonymized) row is chained with its original personal digest, recorded in
//! `audit.redactions` with the digest of the new values, which verification checks too.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel};

use crate::error::{from_query, Error, Result};
use crate::AuditLogs;

/// What `seal` sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct SealReport {
    /// The new seal; absent when every committed row was already sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<i64>,
    /// Rows sealed.
    pub row_count: i64,
    /// Rows with `fromTxid <= txid < toTxid` are covered.
    pub from_txid: i64,
    pub to_txid: i64,
    /// The chain's head after this call (64 hex digits): the new seal's, or, when nothing was
    /// waiting, the latest seal's; absent only when nothing was ever sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// Options of [`AuditLogs::verify`].
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// A head exported earlier (hex, at least 16 digits; the short form is 32): verification
    /// fails unless the recomputed chain passes through it. Detects a rewrite of the whole chain.
    pub against: Option<String>,
    /// Called every few thousand rows with (rows checked, rows sealed in total).
    pub progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

/// What kind of difference verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A sealed row's content differs from what was sealed.
    Changed,
    /// A sealed row is gone (and its month was not dropped by retention).
    Missing,
    /// A row sits in a sealed range but was not sealed: inserted afterwards, or moved in order.
    Unexpected,
    /// A redacted row's values differ from what the redaction recorded.
    RedactionMismatch,
    /// A chunk's or seal's stored head differs from the recomputed one, or seals do not link up.
    SealMismatch,
    /// The exported head given with `against` is not in the recomputed chain.
    DigestNotFound,
    /// An append-only trigger is missing or disabled.
    GuardDisabled,
    /// A tracked table's capture does not fire (a trigger dropped, disabled or replica-only):
    /// its changes go unrecorded, and no seal can notice.
    CaptureDisabled,
}

/// The first difference `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_from_js = false, js_name = "VerifyProblem")
)]
pub struct Problem {
    #[cfg_attr(
        feature = "napi",
        napi(
            ts_type = "'changed' | 'missing' | 'unexpected' | 'redaction_mismatch' | 'seal_mismatch' | 'digest_not_found' | 'guard_disabled' | 'capture_disabled'"
        )
    )]
    pub kind: ProblemKind,
    /// The audit row (`audit_logs.id`), for row problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txid: Option<i64>,
    /// The seal it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<i64>,
    pub message: String,
}

/// What `verify` found; `ok` is true when nothing differs. Counts are `i64`, as every count of
/// rows is (numbers in JavaScript, not BigInts).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct VerifyReport {
    pub ok: bool,
    pub rows_checked: i64,
    pub seals_checked: i64,
    /// Sealed rows whose month was dropped by retention (acknowledged, not a problem).
    pub rows_expired: i64,
    /// Sealed rows checked through a redaction or anonymization record.
    pub rows_redacted: i64,
    /// Rows not sealed yet (committed after the last seal, or still in progress).
    pub rows_unsealed: i64,
    pub rows_changed: i64,
    pub rows_missing: i64,
    pub rows_unexpected: i64,
    /// All problems found (rows, heads, links, triggers).
    pub problem_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<Problem>,
    /// The head of the last seal (64 hex digits), as recomputed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Its first 32 hex digits: export it, and pass it later as `against`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_head: Option<String>,
    /// Whether the chain passes through `against`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_found: Option<bool>,
    /// Append-only triggers that are missing or disabled.
    pub guard_problems: Vec<String>,
    /// Tracked tables whose capture does not fire (`table: problem`).
    pub capture_problems: Vec<String>,
}

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
    pub partitions_dropped: Vec<String>,
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

/// Whose data a redaction erases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every row attributed to this actor.
    Actor(String),
    /// Every row about this record (`target_type` as in `audit_logs`, e.g. `public.users`;
    /// the key as for history: a string, a number or an array for a composite key).
    Target { target_type: String, id: Value },
}

impl Subject {
    /// The subject named by `actorId`, or by `targetType` and `targetId` together: the one rule
    /// of every caller.
    pub fn one_of(
        actor_id: Option<String>,
        target_type: Option<String>,
        target_id: Option<Value>,
    ) -> Result<Subject> {
        match (actor_id, target_type, target_id) {
            (Some(actor), None, None) => Ok(Subject::Actor(actor)),
            (None, Some(target_type), Some(id)) => Ok(Subject::Target { target_type, id }),
            _ => Err(Error::InvalidRedaction {
                reason: "give either actorId, or targetType and targetId".into(),
            }),
        }
    }
}

/// A GDPR erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactRequest {
    pub subject: Subject,
    /// Columns to redact (`actor_id`, `actor_email`, `ip_address`, `user_agent`, `target_id`,
    /// `old_target_id`, `old_values`, `new_values`, `metadata`), `values.KEY` or `metadata.KEY`.
    /// Default: the actor columns for an actor, `old_values` and `new_values` for a target.
    pub fields: Option<Vec<String>>,
    /// Recorded in the redaction event.
    pub reason: Option<String>,
}

/// What `redact` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RedactReport {
    pub rows_redacted: i64,
    /// The `audit.redaction` event recording it.
    pub event_id: i64,
    pub fields: Vec<String>,
}

/// The smallest key accepted by [`AuditLogs::redact`].
pub const MIN_KEY_BYTES: usize = 16;

impl AuditLogs {
    /// Chains every committed, not yet sealed row into a new seal. Never blocks writers; rows
    /// of transactions still in progress are sealed next time. Safe to run concurrently.
    pub async fn seal(&self) -> Result<SealReport> {
        self.with_client(async |client| {
            let row = client
                .query_one(
                    // With nothing to seal, the head is still the chain's: the latest seal's.
                    "select s.seal_id, s.row_count, s.from_txid, s.to_txid,
                            coalesce(s.head, (select pg_catalog.encode(l.head, 'hex') from audit.seals l
                                               order by l.id desc limit 1))
                       from audit.seal() s",
                    &[],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            Ok(SealReport {
                seal_id: row.get(0),
                row_count: row.get(1),
                from_txid: row.get(2),
                to_txid: row.get(3),
                head: row.get(4),
            })
        })
        .await
    }

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

    /// Replaces a data subject's personal values with keyed hashes (HMAC-SHA256 under `key`,
    /// which is never stored) and records a redaction event; verification still passes.
    /// Errors: [`Error::InvalidRedaction`] (key shorter than [`MIN_KEY_BYTES`], bad fields).
    pub async fn redact(&self, request: &RedactRequest, key: &[u8]) -> Result<RedactReport> {
        if key.len() < MIN_KEY_BYTES {
            return Err(Error::InvalidRedaction {
                reason: format!(
                    "the key is {} bytes; use a random secret of at least {MIN_KEY_BYTES} bytes, kept outside the database",
                    key.len()
                ),
            });
        }
        let (actor, target_type, target_id) = match &request.subject {
            Subject::Actor(actor) => (Some(actor.clone()), None, None),
            Subject::Target { target_type, id } => {
                crate::history::check_target_id(id)?;
                (None, Some(target_type.clone()), Some(id.clone()))
            }
        };
        self.with_client(async |client| {
            // The key goes as a bound parameter, never into the SQL text.
            let row = client
                .query_typed_one(
                    &format!(
                        "select audit.redact($1, actor_id => $2, target_type => $3, target_id => {},
                           fields => $5, reason => $6)",
                        crate::history::key_sql("$4")
                    ),
                    &[
                        (&key, Type::BYTEA),
                        (&actor, Type::TEXT),
                        (&target_type, Type::TEXT),
                        (&target_id, Type::JSONB),
                        (&request.fields, Type::TEXT_ARRAY),
                        (&request.reason, Type::TEXT),
                    ],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            let value: Value = row.get(0);
            serde_json::from_value(value).map_err(|e| Error::Database {
                code: "XX000".into(),
                message: format!("unexpected redact() result: {e}"),
                hint: None,
            })
        })
        .await
    }

    /// Recomputes the chain from the rows and reports the first difference, with counts.
    /// Streams the log (bounded memory) in one consistent snapshot. A failed verification is
    /// a report with `ok: false`, not an error; errors are for bad input and the database.
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let against = match &options.against {
            Some(text) => Some(parse_against(text)?),
            None => None,
        };
        // The three streams and the hashing run on a thread of their own, on a single-threaded
        // runtime: each read of a connection reaches the verifier without waking another
        // thread (on a multi-thread runtime those wake-ups cost more than the hashing).
        let connect = self.options.clone();
        let progress = options.progress.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("audit-logs-verify".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Database {
                        code: "XX000".into(),
                        message: format!("could not start the verifier: {e}"),
                        hint: None,
                    })
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let mut rows_conn = connect.connect().await?;
                            let mut chunks_conn = connect.connect().await?;
                            let mut redactions_conn = connect.connect().await?;
                            verify::run(
                                &mut rows_conn,
                                &mut chunks_conn,
                                &mut redactions_conn,
                                against,
                                progress,
                            )
                            .await
                        })
                    });
                let _ = sender.send(result);
            })
            .map_err(|e| Error::Database {
                code: "XX000".into(),
                message: format!("could not start the verifier: {e}"),
                hint: None,
            })?;
        receiver.await.unwrap_or_else(|_| {
            Err(Error::ConnectionLost {
                reason: "the verifier stopped unexpectedly".into(),
            })
        })
    }
}

fn settings_from(value: Value) -> Result<Settings> {
    serde_json::from_value(value).map_err(|e| Error::Database {
        code: "XX000".into(),
        message: format!("unexpected audit.settings row: {e}"),
        hint: None,
    })
}

/// A hex prefix of a head, lowercased.
fn parse_against(text: &str) -> Result<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < 16 || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_argument(
            "against",
            format!("{text:?} is not a head: expected 16 to 64 hex digits, as printed by `audit-logs seal` or `verify`"),
        ));
    }
    Ok(text)
}

/// `field(v)` of the canonical serialization.
fn put_field(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => buf.push(0),
        Some(bytes) => {
            buf.push(1);
            buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            buf.extend_from_slice(bytes);
        }
    }
}

/// The columns the verifier reads, as text exactly as `audit.row_digest` renders them.
/// `created_at` travels in binary and is formatted here, as `to_char(created_at at time zone
/// 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` prints it: cheaper than having the server do it.
const ROW_COLUMNS: &str = "l.txid, l.id, l.created_at, \
    l.action, l.target_type::pg_catalog.text, l.changed_fields::pg_catalog.text, l.actor_type, l.request_id, \
    l.target_id::pg_catalog.text, l.old_target_id::pg_catalog.text, l.old_values::pg_catalog.text, \
    l.new_values::pg_catalog.text, l.actor_id::pg_catalog.text, l.actor_email, l.ip_address::pg_catalog.text, \
    l.user_agent, l.metadata::pg_catalog.text";

/// Digests of one row from a verification stream: (personal digest, row digest for a given
/// personal digest). Text columns are declared `bytea` to the binary COPY decoder: both travel
/// as their raw bytes, and this skips a UTF-8 check and a type check per column.
struct RowDigests;

impl RowDigests {
    fn personal(row: &BinaryCopyOutRow, buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        for i in 8..17 {
            put_field(buf, row.get::<Option<&[u8]>>(i));
        }
        Sha256::digest(&buf[..]).into()
    }

    fn row(row: &BinaryCopyOutRow, personal: &[u8; 32], buf: &mut Vec<u8>) -> [u8; 32] {
        let txid: i64 = row.get(0);
        let id: i64 = row.get(1);
        let mut text = [0u8; 40];
        buf.clear();
        buf.extend_from_slice(b"audit-logs:row:v1");
        let n = write_integer(&mut text, id);
        put_field(buf, Some(&text[..n]));
        let n = write_timestamp(&mut text, row.get::<i64>(2));
        put_field(buf, Some(&text[..n]));
        let n = write_integer(&mut text, txid);
        put_field(buf, Some(&text[..n]));
        for i in 3..8 {
            put_field(buf, row.get::<Option<&[u8]>>(i));
        }
        buf.extend_from_slice(personal);
        Sha256::digest(&buf[..]).into()
    }
}

/// Writes `value` in decimal at the start of `out`; returns the length.
fn write_integer(out: &mut [u8; 40], value: i64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = value.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    if value < 0 {
        out[0] = b'-';
        len = 1;
    }
    out[len..len + digits.len() - i].copy_from_slice(&digits[i..]);
    len + digits.len() - i
}

/// `to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` of a timestamptz given
/// as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC.
fn write_timestamp(out: &mut [u8; 40], micros_since_2000: i64) -> usize {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    // 2000-01-01 is day 10957 after 1970-01-01.
    let micros = micros_since_2000.saturating_add(10_957 * MICROS_PER_DAY);
    let days = micros.div_euclid(MICROS_PER_DAY);
    let mut rest = micros.rem_euclid(MICROS_PER_DAY);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let us = rest % 1_000_000;
    rest /= 1_000_000;
    let (hour, minute, second) = (rest / 3600, rest / 60 % 60, rest % 60);
    let mut len = 0;
    let mut put = |value: i64, width: usize, after: u8| {
        let mut digits = [0u8; 40];
        let n = write_integer(&mut digits, value);
        for _ in n..width {
            out[len] = b'0';
            len += 1;
        }
        out[len..len + n].copy_from_slice(&digits[..n]);
        len += n;
        if after != 0 {
            out[len] = after;
            len += 1;
        }
    };
    put(year, 4, b'-');
    put(month, 2, b'-');
    put(day, 2, b'T');
    put(hour, 2, b':');
    put(minute, 2, b':');
    put(second, 2, b'.');
    put(us, 6, b'Z');
    len
}

mod verify {
    use super::*;

    type Copy = Pin<Box<BinaryCopyOutStream>>;

    async fn copy(
        client: &tokio_postgres::Transaction<'_>,
        sql: &str,
        types: &[Type],
    ) -> Result<Copy> {
        let stream = client
            .copy_out(sql)
            .await
            .map_err(|e| from_query(e, None))?;
        Ok(Box::pin(BinaryCopyOutStream::new(stream, types)))
    }

    async fn next(stream: &mut Copy) -> Result<Option<BinaryCopyOutRow>> {
        match stream.next().await {
            None => Ok(None),
            Some(row) => row.map(Some).map_err(|e| from_query(e, None)),
        }
    }

    struct Redaction {
        key: (i64, i64),
        original: Vec<u8>,
        redacted: Vec<u8>,
    }

    struct Verifier {
        report: VerifyReport,
    }

    impl Verifier {
        fn problem(
            &mut self,
            kind: ProblemKind,
            row: Option<(i64, i64)>,
            seal_id: Option<i64>,
            message: String,
        ) {
            match kind {
                ProblemKind::Changed | ProblemKind::RedactionMismatch => {
                    self.report.rows_changed += 1
                }
                ProblemKind::Missing => self.report.rows_missing += 1,
                ProblemKind::Unexpected => self.report.rows_unexpected += 1,
                _ => {}
            }
            self.report.problem_count += 1;
            if self.report.first_problem.is_none() {
                self.report.first_problem = Some(Problem {
                    kind,
                    row_id: row.map(|r| r.1),
                    txid: row.map(|r| r.0),
                    seal_id,
                    message,
                });
            }
        }
    }

    pub(super) async fn run(
        rows_conn: &mut Client,
        chunks_conn: &mut Client,
        redactions_conn: &mut Client,
        against: Option<String>,
        progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
    ) -> Result<VerifyReport> {
        // One snapshot for the three streams.
        let rows_tx = rows_conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| from_query(e, None))?;
        let snapshot: String = rows_tx
            .query_one("select pg_catalog.pg_export_snapshot()", &[])
            .await
            .map_err(|e| from_query(e, None))?
            .get(0);
        let mut others = Vec::new();
        for conn in [chunks_conn, redactions_conn] {
            let tx = conn
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| from_query(e, None))?;
            // Snapshot ids are [0-9A-F-]; checked before being spliced into SQL.
            if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(Error::Database {
                    code: "XX000".into(),
                    message: format!("unexpected snapshot id {snapshot:?}"),
                    hint: None,
                });
            }
            tx.batch_execute(&format!("set transaction snapshot '{snapshot}'"))
                .await
                .map_err(|e| from_query(e, None))?;
            others.push(tx);
        }
        let redactions_tx = others.pop().expect("two transactions");
        let chunks_tx = others.pop().expect("two transactions");

        let bounds = rows_tx
            .query_one(
                "select min(from_txid), max(to_txid), coalesce(sum(row_count), 0)::bigint from audit.seals",
                &[],
            )
            .await
            .map_err(|e| from_query(e, None))?;
        let first_from: Option<i64> = bounds.get(0);
        let last_to: Option<i64> = bounds.get(1);
        let total: i64 = bounds.get(2);
        let dropped: HashSet<i32> = rows_tx
            .query("select month from audit.dropped_partitions", &[])
            .await
            .map_err(|e| from_query(e, None))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut verifier = Verifier {
            report: VerifyReport::default(),
        };
        verifier.report.guard_problems = guard_problems(&rows_tx).await?;
        verifier.report.rows_unsealed = rows_tx
            .query_one(
                "select count(*) from audit.audit_logs where txid >= $1",
                &[&last_to.unwrap_or(0)],
            )
            .await
            .map_err(|e| from_query(e, None))?
            .get::<_, i64>(0);
        verifier.report.capture_problems = capture_problems(&rows_tx).await?;
        for guard in verifier.report.guard_problems.clone() {
            verifier.problem(ProblemKind::GuardDisabled, None, None, guard);
        }
        for capture in verifier.report.capture_problems.clone() {
            verifier.problem(ProblemKind::CaptureDisabled, None, None, capture);
        }

        let (first_from, last_to) = (first_from.unwrap_or(0), last_to.unwrap_or(0));
        // Sorting in memory is much faster than on disk, and compiling expressions (JIT) costs
        // more than it saves here; both settings are transaction-local.
        rows_tx
            .batch_execute("set local work_mem = '256MB'; set local jit = off")
            .await
            .map_err(|e| from_query(e, None))?;
        let mut rows = copy(
            &rows_tx,
            &format!(
                "copy (select {ROW_COLUMNS} from audit.audit_logs l
                        where l.txid >= {first_from} and l.txid < {last_to}
                        order by l.txid, l.id) to stdout (format binary)"
            ),
            &[
                Type::INT8,
                Type::INT8,
                // timestamptz in binary: i64 microseconds since 2000-01-01 UTC.
                Type::INT8,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
                Type::BYTEA,
            ],
        )
        .await?;
        let mut chunks = copy(
            &chunks_tx,
            "copy (select s.id, s.from_txid, s.to_txid, s.row_count, s.chunk_count, s.previous_head, s.head,
                          c.chunk, c.month, c.row_count, c.head, c.entries
                     from audit.seals s left join audit.seal_chunks c on c.seal_id = s.id
                    order by s.id, c.chunk) to stdout (format binary)",
            &[
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT8,
                Type::INT4,
                Type::BYTEA,
                Type::BYTEA,
                Type::INT4,
                Type::INT4,
                Type::INT4,
                Type::BYTEA,
                Type::BYTEA,
            ],
        )
        .await?;
        let mut redactions = copy(
            &redactions_tx,
            "copy (select row_txid, row_id, original_digest, redacted_digest from audit.redactions
                    order by row_txid, row_id, id) to stdout (format binary)",
            &[Type::INT8, Type::INT8, Type::BYTEA, Type::BYTEA],
        )
        .await?;

        let mut buf = Vec::with_capacity(4096);
        let mut row = next(&mut rows).await?;
        let mut redaction: Option<Redaction> = next_redaction(&mut redactions).await?;
        let mut chunk_row = next(&mut chunks).await?;
        let mut computed_head: Vec<u8> = Vec::new();
        let mut previous_to: Option<i64> = None;
        let mut against_found = false;
        let mut last_progress = 0i64;

        while let Some(seal_row) = chunk_row.take() {
            let seal_id: i64 = seal_row.get(0);
            let from: i64 = seal_row.get(1);
            let to: i64 = seal_row.get(2);
            let seal_rows: i64 = seal_row.get(3);
            let chunk_count: i32 = seal_row.get(4);
            let stored_previous: Vec<u8> = seal_row.get::<&[u8]>(5).to_vec();
            let stored_head: Vec<u8> = seal_row.get::<&[u8]>(6).to_vec();
            verifier.report.seals_checked += 1;
            if previous_to.is_some_and(|p| p != from) {
                verifier.problem(
                    ProblemKind::SealMismatch,
                    None,
                    Some(seal_id),
                    format!(
                        "seal {seal_id} starts at txid {from} but the previous seal ended at {}: a seal is missing",
                        previous_to.unwrap_or_default()
                    ),
                );
            }
            if stored_previous != computed_head {
                verifier.problem(
                    ProblemKind::SealMismatch,
                    None,
                    Some(seal_id),
                    format!("seal {seal_id} does not link to the head of the seal before it"),
                );
            }
            let mut seal_hasher = Sha256::new();
            seal_hasher.update(b"audit-logs:seal:v1");
            seal_hasher.update(&computed_head);
            seal_hasher.update(seal_id.to_be_bytes());
            seal_hasher.update(from.to_be_bytes());
            seal_hasher.update(to.to_be_bytes());
            seal_hasher.update(seal_rows.to_be_bytes());
            let mut chunks_seen = 0;
            let mut current = Some(seal_row);
            while let Some(chunk) = current.take() {
                if chunk.get::<Option<i32>>(7).is_some() {
                    chunks_seen += 1;
                    let month: i32 = chunk.get(8);
                    let count: i32 = chunk.get(9);
                    let stored_chunk_head: &[u8] = chunk.get(10);
                    let entries: &[u8] = chunk.get(11);
                    let expired = dropped.contains(&month);
                    let mut chunk_hasher = Sha256::new();
                    let mut complete = true;
                    let mut changed_here = false;
                    for entry in entries.chunks_exact(24) {
                        let key = (
                            i64::from_be_bytes(entry[0..8].try_into().expect("8 bytes")),
                            i64::from_be_bytes(entry[8..16].try_into().expect("8 bytes")),
                        );
                        // Rows before this entry that no entry names.
                        while let Some(r) = row.as_ref() {
                            let rkey = (r.get::<i64>(0), r.get::<i64>(1));
                            if rkey >= key || rkey.0 >= to {
                                break;
                            }
                            verifier.problem(
                                ProblemKind::Unexpected,
                                Some(rkey),
                                Some(seal_id),
                                format!("row {} (txid {}) is in the range of seal {seal_id} but was not sealed: inserted afterwards or moved", rkey.1, rkey.0),
                            );
                            verifier.report.rows_checked += 1;
                            row = next(&mut rows).await?;
                        }
                        let present = row
                            .as_ref()
                            .is_some_and(|r| (r.get::<i64>(0), r.get::<i64>(1)) == key);
                        if !present {
                            complete = false;
                            if expired {
                                verifier.report.rows_expired += 1;
                            } else {
                                verifier.problem(
                                    ProblemKind::Missing,
                                    Some(key),
                                    Some(seal_id),
                                    format!(
                                        "row {} (txid {}) of seal {seal_id} is missing",
                                        key.1, key.0
                                    ),
                                );
                            }
                            continue;
                        }
                        let r = row.take().expect("present");
                        verifier.report.rows_checked += 1;
                        // The redactions of this row, in order: first original, last new digest.
                        let mut original: Option<Vec<u8>> = None;
                        let mut latest: Option<Vec<u8>> = None;
                        while let Some(red) = redaction.as_ref() {
                            if red.key > key {
                                break;
                            }
                            let red = redaction.take().expect("peeked");
                            if red.key == key {
                                if let Some(previous) = &latest {
                                    if *previous != red.original {
                                        changed_here = true;
                                        verifier.problem(ProblemKind::RedactionMismatch, Some(key), Some(seal_id),
                                            format!("row {}: its redaction records do not follow each other", key.1));
                                    }
                                }
                                original.get_or_insert_with(|| red.original.clone());
                                latest = Some(red.redacted);
                            }
                            redaction = next_redaction(&mut redactions).await?;
                        }
                        let personal = RowDigests::personal(&r, &mut buf);
                        let chained = match (&original, &latest) {
                            (Some(original), Some(latest)) => {
                                verifier.report.rows_redacted += 1;
                                if latest.as_slice() != personal {
                                    changed_here = true;
                                    verifier.problem(
                                        ProblemKind::RedactionMismatch,
                                        Some(key),
                                        Some(seal_id),
                                        format!("row {} (txid {}) of seal {seal_id} differs from what its redaction recorded", key.1, key.0),
                                    );
                                }
                                original.as_slice().try_into().unwrap_or(personal)
                            }
                            _ => personal,
                        };
                        let digest = RowDigests::row(&r, &chained, &mut buf);
                        if digest[..8] != entry[16..24] {
                            changed_here = true;
                            verifier.problem(
                                ProblemKind::Changed,
                                Some(key),
                                Some(seal_id),
                                format!("row {} (txid {}) of seal {seal_id} was changed after it was sealed", key.1, key.0),
                            );
                        }
                        chunk_hasher.update(digest);
                        row = next(&mut rows).await?;
                        if let Some(report) = &progress {
                            let checked =
                                verifier.report.rows_checked + verifier.report.rows_expired;
                            if checked - last_progress >= 16_384 {
                                last_progress = checked;
                                report(checked as u64, total as u64);
                            }
                        }
                    }
                    let computed: [u8; 32] = chunk_hasher.finalize().into();
                    let head_used: &[u8] = if complete {
                        if computed.as_slice() != stored_chunk_head && !changed_here {
                            verifier.problem(
                                ProblemKind::SealMismatch,
                                None,
                                Some(seal_id),
                                format!("seal {seal_id}: the stored head of chunk {} differs from its rows", chunk.get::<i32>(7)),
                            );
                        }
                        &computed
                    } else {
                        // Rows gone (expired, or reported missing): the stored head stands in.
                        stored_chunk_head
                    };
                    if (entries.len() / 24) as i32 != count {
                        verifier.problem(
                            ProblemKind::SealMismatch,
                            None,
                            Some(seal_id),
                            format!(
                                "seal {seal_id}: chunk {} has a wrong row count",
                                chunk.get::<i32>(7)
                            ),
                        );
                    }
                    seal_hasher.update(month.to_be_bytes());
                    seal_hasher.update((count as i64).to_be_bytes());
                    seal_hasher.update(head_used);
                }
                let following = next(&mut chunks).await?;
                match following {
                    Some(f) if f.get::<i64>(0) == seal_id => current = Some(f),
                    other => chunk_row = other,
                }
            }
            // Rows left in this seal's range that no entry names.
            while let Some(r) = row.as_ref() {
                let rkey = (r.get::<i64>(0), r.get::<i64>(1));
                if rkey.0 >= to {
                    break;
                }
                verifier.problem(
                    ProblemKind::Unexpected,
                    Some(rkey),
                    Some(seal_id),
                    format!("row {} (txid {}) is in the range of seal {seal_id} but was not sealed: inserted afterwards or moved", rkey.1, rkey.0),
                );
                verifier.report.rows_checked += 1;
                row = next(&mut rows).await?;
            }
            if chunks_seen != chunk_count {
                verifier.problem(
                    ProblemKind::SealMismatch,
                    None,
                    Some(seal_id),
                    format!(
                        "seal {seal_id} lists {chunk_count} chunks but {chunks_seen} are stored"
                    ),
                );
            }
            let computed: [u8; 32] = seal_hasher.finalize().into();
            if computed.as_slice() != stored_head {
                verifier.problem(
                    ProblemKind::SealMismatch,
                    None,
                    Some(seal_id),
                    format!("seal {seal_id}: its stored head differs from the recomputed one"),
                );
            }
            computed_head = computed.to_vec();
            if let Some(prefix) = &against {
                if hex::encode(computed).starts_with(prefix.as_str()) {
                    against_found = true;
                }
            }
            previous_to = Some(to);
        }
        // Rows between seals' ranges cannot exist (ranges are contiguous), but a txid below the
        // first seal is possible only by forging: report what is left in the sealed range.
        while let Some(r) = row.take() {
            let rkey = (r.get::<i64>(0), r.get::<i64>(1));
            verifier.problem(
                ProblemKind::Unexpected,
                Some(rkey),
                None,
                format!(
                    "row {} (txid {}) is in the sealed range but in no seal",
                    rkey.1, rkey.0
                ),
            );
            verifier.report.rows_checked += 1;
            row = next(&mut rows).await?;
        }
        if let Some(report) = &progress {
            report(
                (verifier.report.rows_checked + verifier.report.rows_expired) as u64,
                total as u64,
            );
        }
        if verifier.report.seals_checked > 0 {
            verifier.report.head = Some(hex::encode(&computed_head));
            verifier.report.short_head = Some(hex::encode(&computed_head[..16]));
        }
        if let Some(prefix) = &against {
            verifier.report.against_found = Some(against_found);
            if !against_found {
                verifier.problem(
                    ProblemKind::DigestNotFound,
                    None,
                    None,
                    format!("the exported head {prefix} is not in the recomputed chain: the log was rewritten since it was exported (or it comes from another database)"),
                );
            }
        }
        verifier.report.ok = verifier.report.problem_count == 0;
        Ok(verifier.report)
    }

    async fn next_redaction(stream: &mut Copy) -> Result<Option<Redaction>> {
        Ok(next(stream).await?.map(|r| Redaction {
            key: (r.get(0), r.get(1)),
            original: r.get::<&[u8]>(2).to_vec(),
            redacted: r.get::<&[u8]>(3).to_vec(),
        }))
    }

    /// Capture that no longer fires for a tracked table (its owner's `alter table ... disable
    /// trigger`, a dropped trigger), as `audit.tracked_tables` reports it.
    async fn capture_problems(tx: &tokio_postgres::Transaction<'_>) -> Result<Vec<String>> {
        let rows = tx
            .query(
                "select pg_catalog.format('%s: %s', t.target_type, p.problem)
                   from audit.tracked_tables t
                  cross join pg_catalog.unnest(t.capture_problems) as p(problem)
                  order by 1",
                &[],
            )
            .await
            .map_err(|e| from_query(e, None))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Append-only triggers that are missing or disabled (a superuser's `alter table ...
    /// disable trigger`, or a partition attached without them).
    async fn guard_problems(tx: &tokio_postgres::Transaction<'_>) -> Result<Vec<String>> {
        let rows = tx
            .query(
                "with protected as (
                   select pt.relid, true as row_guard from pg_catalog.pg_partition_tree('audit.audit_logs') pt
                   union all
                   select c.oid, true from pg_catalog.pg_class c
                    where c.relnamespace = 'audit'::regnamespace
                      and c.relname in ('seals', 'seal_chunks', 'redactions', 'dropped_partitions')
                 )
                 select pg_catalog.format('%s: trigger %s is %s', p.relid::regclass, g.name,
                          case when t.oid is null then 'missing' else 'disabled' end)
                   from protected p
                  cross join (values ('audit_append_only'), ('audit_append_only_truncate')) as g(name)
                   left join pg_catalog.pg_trigger t on t.tgrelid = p.relid and t.tgname = g.name
                  where t.oid is null or t.tgenabled = 'D'
                  order by 1",
                &[],
            )
            .await
            .map_err(|e| from_query(e, None))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let mut buf = Vec::new();
        put_field(&mut buf, None);
        put_field(&mut buf, Some(b"ab"));
        assert_eq!(buf, [0, 1, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn timestamps_print_as_to_char_does() {
        let mut out = [0u8; 40];
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let epoch = at("2000-01-01T00:00:00Z");
        for text in [
            "2000-01-01T00:00:00.000000Z",
            "2026-11-23T16:20:22.123456Z",
            "1999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.000001Z",
            "1970-01-01T00:00:00.000000Z",
            "2100-03-01T05:06:07.080900Z",
        ] {
            let micros = (at(text) - epoch).num_microseconds().unwrap();
            let n = write_timestamp(&mut out, micros);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), text);
        }
        let n = write_integer(&mut out, -42);
        assert_eq!(&out[..n], b"-42");
        let n = write_integer(&mut out, i64::MAX);
        assert_eq!(&out[..n], i64::MAX.to_string().as_bytes());
    }

    #[test]
    fn against_must_be_hex() {
        assert!(parse_against("0123456789ABCDEF").is_ok());
        assert!(parse_against("0123").is_err());
        assert!(parse_against("zz23456789abcdef").is_err());
    }
}
