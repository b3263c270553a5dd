//! Protecting the log from Node: `seal`, `verify`, `maintain`, `configure` and `redact`.
//! Argument conversion and error mapping only, as in the rest of the binding.

use audit_logs_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use crate::{promise, AuditLogs};

/// What {@link AuditLogs.seal} sealed.
#[napi(object)]
pub struct SealReport {
    /// The new seal; null when every committed row was already sealed.
    pub seal_id: Option<i64>,
    pub row_count: i64,
    /// Rows with `fromTxid <= txid < toTxid` are covered.
    pub from_txid: i64,
    pub to_txid: i64,
    /// The chain head after this call (64 hex digits): the new seal's, or, when nothing was
    /// waiting, the latest seal's; null only when nothing was ever sealed.
    pub head: Option<String>,
}

/// Options of {@link AuditLogs.verify}.
#[napi(object)]
pub struct VerifyOptions {
    /// A head exported earlier (16 to 64 hex digits; `shortHead` is 32): verification fails
    /// unless the recomputed chain passes through it. Detects a rewrite of the whole chain.
    pub against: Option<String>,
}

/// The first difference {@link AuditLogs.verify} found.
#[napi(object)]
pub struct VerifyProblem {
    #[napi(
        ts_type = "'changed' | 'missing' | 'unexpected' | 'redaction_mismatch' | 'seal_mismatch' | 'digest_not_found' | 'guard_disabled' | 'capture_disabled'"
    )]
    pub kind: String,
    /// The audit row (`audit_logs.id`), for row problems.
    pub row_id: Option<i64>,
    pub txid: Option<i64>,
    pub seal_id: Option<i64>,
    pub message: String,
}

/// What {@link AuditLogs.verify} found; `ok` is true when nothing differs.
#[napi(object)]
pub struct VerifyReport {
    pub ok: bool,
    pub rows_checked: i64,
    pub seals_checked: i64,
    /// Sealed rows of months dropped by retention (acknowledged).
    pub rows_expired: i64,
    /// Rows checked through a redaction or anonymization record.
    pub rows_redacted: i64,
    /// Rows not sealed yet.
    pub rows_unsealed: i64,
    pub rows_changed: i64,
    pub rows_missing: i64,
    pub rows_unexpected: i64,
    pub problem_count: i64,
    pub first_problem: Option<VerifyProblem>,
    /// The last seal's head as recomputed (64 hex digits).
    pub head: Option<String>,
    /// Its first 32 hex digits: export it, and pass it later as `against`.
    pub short_head: Option<String>,
    /// Whether the chain passes through `against`, when given.
    pub against_found: Option<bool>,
    /// Append-only triggers found missing or disabled.
    pub guard_problems: Vec<String>,
    /// Tracked tables whose capture does not fire (`table: problem`).
    pub capture_problems: Vec<String>,
}

/// Options of one {@link AuditLogs.maintain} run; unset ones come from the saved policy
/// ({@link AuditLogs.configure}).
#[napi(object)]
pub struct MaintainOptions {
    /// Monthly partitions to create ahead. Default: 2.
    pub months_ahead: Option<i32>,
    /// Drop partitions whose month ended more than this many months ago; 0 skips it.
    pub retention_months: Option<i32>,
    /// Anonymize IP addresses and user agents of rows older than this; 0 skips it. Default: 90.
    pub anonymize_after_days: Option<i32>,
}

/// What {@link AuditLogs.maintain} did.
#[napi(object)]
pub struct MaintainReport {
    pub partitions_created: Vec<String>,
    /// Rows moved out of the default partition.
    pub rows_moved: i64,
    pub partitions_dropped: Vec<String>,
    pub rows_anonymized: i64,
    pub sealed_rows: i64,
    pub retention_months: Option<i32>,
    pub anonymize_after_days: Option<i32>,
}

/// The retention policy kept in `audit.settings`.
#[napi(object)]
pub struct RetentionSettings {
    /// Monthly partitions created ahead. Default: 2.
    pub months_ahead: Option<i32>,
    /// Months kept; 0 (or null when read) keeps everything. Default: keep everything.
    pub retention_months: Option<i32>,
    /// Days before IP addresses and user agents are anonymized; 0 (null when read) never. Default: 90.
    pub anonymize_after_days: Option<i32>,
    /// `ip_address` and/or `user_agent`. Default: both.
    pub anonymize_fields: Option<Vec<String>>,
}

impl From<core::Settings> for RetentionSettings {
    fn from(s: core::Settings) -> Self {
        RetentionSettings {
            months_ahead: s.months_ahead,
            retention_months: s.retention_months,
            anonymize_after_days: s.anonymize_after_days,
            anonymize_fields: s.anonymize_fields,
        }
    }
}

/// Whose data {@link AuditLogs.redact} erases: `actorId`, or `targetType` and `targetId`.
#[napi(object)]
pub struct RedactRequest {
    /// Every row attributed to this actor.
    pub actor_id: Option<String>,
    /// Every row about this record: its `target_type` (e.g. `public.users`) ...
    pub target_type: Option<String>,
    /// ... and its key (an array for a composite key).
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub target_id: Option<Value>,
    /// Columns (`actor_id`, `actor_email`, `ip_address`, `user_agent`, `target_id`,
    /// `old_target_id`, `old_values`, `new_values`, `metadata`), `values.KEY` or `metadata.KEY`.
    /// Default: the actor columns for an actor, `old_values` and `new_values` for a record.
    pub fields: Option<Vec<String>>,
    /// Recorded in the redaction event.
    pub reason: Option<String>,
}

/// What {@link AuditLogs.redact} did.
#[napi(object)]
pub struct RedactReport {
    pub rows_redacted: i64,
    /// The `audit.redaction` event recording it.
    pub event_id: i64,
    pub fields: Vec<String>,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[napi]
impl AuditLogs {
    /// Chains every committed, not yet sealed audit row into the hash chain. Never blocks
    /// writers; rows of transactions still open are sealed next time. Safe to call concurrently.
    #[napi(ts_return_type = "Promise<SealReport>")]
    pub fn seal<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, SealReport>> {
        let inner = self.inner.clone();
        promise(env, async move {
            let r = inner.seal().await?;
            Ok(SealReport {
                seal_id: r.seal_id,
                row_count: r.row_count,
                from_txid: r.from_txid,
                to_txid: r.to_txid,
                head: r.head,
            })
        })
    }

    /// Recomputes the chain from the rows (streamed) and reports the first difference with
    /// counts. A failed verification resolves with `ok: false`; rejects with
    /// `AUDIT_LOGS_INVALID_ARGUMENT` for a malformed `against`.
    #[napi(ts_return_type = "Promise<VerifyReport>")]
    pub fn verify<'env>(
        &self,
        env: &'env Env,
        options: Option<VerifyOptions>,
    ) -> Result<PromiseRaw<'env, VerifyReport>> {
        let inner = self.inner.clone();
        let against = options.and_then(|o| o.against);
        promise(env, async move {
            let r = inner
                .verify(&core::VerifyOptions {
                    against,
                    progress: None,
                })
                .await?;
            Ok(VerifyReport {
                ok: r.ok,
                rows_checked: count(r.rows_checked),
                seals_checked: count(r.seals_checked),
                rows_expired: count(r.rows_expired),
                rows_redacted: count(r.rows_redacted),
                rows_unsealed: count(r.rows_unsealed),
                rows_changed: count(r.rows_changed),
                rows_missing: count(r.rows_missing),
                rows_unexpected: count(r.rows_unexpected),
                problem_count: count(r.problem_count),
                first_problem: r.first_problem.map(|p| VerifyProblem {
                    kind: serde_json::to_value(p.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    row_id: p.row_id,
                    txid: p.txid,
                    seal_id: p.seal_id,
                    message: p.message,
                }),
                head: r.head,
                short_head: r.short_head,
                against_found: r.against_found,
                guard_problems: r.guard_problems,
                capture_problems: r.capture_problems,
            })
        })
    }

    /// Creates the coming months' partitions, moves default-partition rows, seals, drops
    /// expired partitions and anonymizes due rows; each step is recorded as an audit event.
    /// Rejects with `AUDIT_LOGS_INVALID_ARGUMENT` for a negative option.
    #[napi(ts_return_type = "Promise<MaintainReport>")]
    pub fn maintain<'env>(
        &self,
        env: &'env Env,
        options: Option<MaintainOptions>,
    ) -> Result<PromiseRaw<'env, MaintainReport>> {
        let inner = self.inner.clone();
        let options =
            options.map_or_else(core::MaintainOptions::default, |o| core::MaintainOptions {
                months_ahead: o.months_ahead,
                retention_months: o.retention_months,
                anonymize_after_days: o.anonymize_after_days,
            });
        promise(env, async move {
            let r = inner.maintain(&options).await?;
            Ok(MaintainReport {
                partitions_created: r.partitions_created,
                rows_moved: r.rows_moved,
                partitions_dropped: r.partitions_dropped,
                rows_anonymized: r.rows_anonymized,
                sealed_rows: r.sealed_rows,
                retention_months: r.retention_months,
                anonymize_after_days: r.anonymize_after_days,
            })
        })
    }

    /// Saves the retention policy {@link AuditLogs.maintain} applies (unset fields are kept;
    /// 0 turns retention or anonymization off) and resolves to it. Rejects with
    /// `AUDIT_LOGS_INVALID_SETTINGS`.
    #[napi(ts_return_type = "Promise<RetentionSettings>")]
    pub fn configure<'env>(
        &self,
        env: &'env Env,
        settings: RetentionSettings,
    ) -> Result<PromiseRaw<'env, RetentionSettings>> {
        let inner = self.inner.clone();
        let settings = core::Settings {
            months_ahead: settings.months_ahead,
            retention_months: settings.retention_months,
            anonymize_after_days: settings.anonymize_after_days,
            anonymize_fields: settings.anonymize_fields,
        };
        promise(env, async move {
            inner.configure(&settings).await.map(Into::into)
        })
    }

    /// GDPR erasure: replaces the subject's personal values with keyed hashes (`hmac:` and
    /// HMAC-SHA256 hex under `key`, at least 16 bytes, never stored) and records a redaction
    /// event; `verify()` still passes. Rejects with `AUDIT_LOGS_INVALID_REDACTION`.
    #[napi(ts_return_type = "Promise<RedactReport>")]
    pub fn redact<'env>(
        &self,
        env: &'env Env,
        request: RedactRequest,
        key: Either<String, Buffer>,
    ) -> Result<PromiseRaw<'env, RedactReport>> {
        let inner = self.inner.clone();
        let key: Vec<u8> = match key {
            Either::A(text) => text.into_bytes(),
            Either::B(buffer) => buffer.to_vec(),
        };
        let subject = match (request.actor_id, request.target_type, request.target_id) {
            (Some(actor), None, None) => Ok(core::Subject::Actor(actor)),
            (None, Some(target_type), Some(id)) => Ok(core::Subject::Target { target_type, id }),
            _ => Err(core::Error::InvalidRedaction {
                reason: "give either actorId, or targetType and targetId".into(),
            }),
        };
        let fields = request.fields;
        let reason = request.reason;
        promise(env, async move {
            let r = inner
                .redact(
                    &core::RedactRequest {
                        subject: subject?,
                        fields,
                        reason,
                    },
                    &key,
                )
                .await?;
            Ok(RedactReport {
                rows_redacted: r.rows_redacted,
                event_id: r.event_id,
                fields: r.fields,
            })
        })
    }
}
