//! Protecting the log from Node: `seal`, `verify`, `maintain`, `configure`, `redact`,
//! `archive` and `verifyArchive`.
//! Argument conversion and error mapping only, as in the rest of the binding.

use audit_logs_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use super::AuditLogs;
use crate::promise;

/// Options of {@link AuditLogs.verify}.
#[napi(object)]
pub struct VerifyOptions {
    /// A head exported earlier (16 to 64 hex digits; `shortHead` is 32): verification fails
    /// unless the recomputed chain passes through it. Detects a rewrite of the whole chain.
    pub against: Option<String>,
}

/// Options of {@link AuditLogs.verifyArchive} and {@link verifyArchive}.
#[napi(object)]
pub struct VerifyArchiveOptions {
    /// A head exported earlier (16 to 64 hex digits): verification fails unless the chain (the
    /// archive's, and joined to it the live one for {@link AuditLogs.verifyArchive}) passes
    /// through it.
    pub against: Option<String>,
}

/// Verifies an archive (`file:///dir` or `s3://bucket/prefix`) from its files alone, with no database: each file's
/// sha256, each row's digest against its seal entry (naming the first row that differs, its
/// month and file), each chunk and seal head, and the links between the archive's seals. A
/// failed verification resolves with `ok: false`; rejects with `AUDIT_LOGS_ARCHIVE_UNSUPPORTED`
/// (another scheme, a malformed URL), `AUDIT_LOGS_ARCHIVE_STORAGE_FAILED` or
/// `AUDIT_LOGS_INVALID_ARGUMENT`.
#[napi(
    js_name = "verifyArchive",
    ts_return_type = "Promise<ArchiveVerifyReport>"
)]
pub fn verify_archive_files<'env>(
    env: &'env Env,
    url: String,
    options: Option<VerifyArchiveOptions>,
) -> Result<PromiseRaw<'env, core::archive::ArchiveVerifyReport>> {
    let against = options.and_then(|o| o.against);
    promise(env, async move {
        // Hashing and decoding files: off the runtime's threads, which still serve its I/O.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(core::archive::verify_archive(&url, against.as_deref()))
        })
        .await
        .unwrap_or_else(|e| {
            Err(core::Error::Internal {
                reason: format!("the archive verifier stopped: {e}"),
                source: None,
            })
        })
    })
}

/// Whose data {@link AuditLogs.redact} erases: a data subject (as {@link AuditLogs.subject}
/// finds them: with `email`, `ipAddress` or `values`, every value that mentions them, wherever;
/// with `actorId` alone, the actor columns of their entries), or a record (`targetType` and
/// `targetId`).
#[napi(object)]
pub struct RedactRequest {
    /// Their actor id.
    pub actor_id: Option<String>,
    /// Their e-mail address.
    pub email: Option<String>,
    /// An IP address of theirs.
    pub ip_address: Option<String>,
    /// Other values that identify them (a name, a phone number).
    pub values: Option<Vec<String>>,
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
    /// List what would change (`entries`, `rowsRedacted`) and change nothing.
    pub dry_run: Option<bool>,
}

#[napi]
impl AuditLogs {
    /// Chains every committed, not yet sealed audit row into the hash chain. Never blocks
    /// writers; rows of transactions still open are sealed next time. Safe to call concurrently.
    #[napi(ts_return_type = "Promise<SealReport>")]
    pub fn seal<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, core::SealReport>> {
        let inner = self.inner.clone();
        promise(env, async move { inner.seal().await })
    }

    /// Recomputes the chain from the rows (streamed) and reports the first difference with
    /// counts. A failed verification resolves with `ok: false`; rejects with
    /// `AUDIT_LOGS_INVALID_ARGUMENT` for a malformed `against`.
    #[napi(ts_return_type = "Promise<VerifyReport>")]
    pub fn verify<'env>(
        &self,
        env: &'env Env,
        options: Option<VerifyOptions>,
    ) -> Result<PromiseRaw<'env, core::VerifyReport>> {
        let inner = self.inner.clone();
        let options = core::VerifyOptions {
            against: options.and_then(|o| o.against),
            progress: None,
        };
        promise(env, async move { inner.verify(&options).await })
    }

    /// Creates the coming months' partitions, moves default-partition rows, seals, drops
    /// expired partitions and anonymizes due rows; each step is recorded as an audit event.
    /// `options` apply to this run only (as the CLI's `maintain` flags); the saved policy
    /// ({@link AuditLogs.configure}) supplies the others and is left as it is. Rejects with
    /// `AUDIT_LOGS_INVALID_ARGUMENT` for a negative option.
    #[napi(ts_return_type = "Promise<MaintainReport>")]
    pub fn maintain<'env>(
        &self,
        env: &'env Env,
        options: Option<core::MaintainOptions>,
    ) -> Result<PromiseRaw<'env, core::MaintainReport>> {
        let inner = self.inner.clone();
        let options = options.unwrap_or_default();
        promise(env, async move { inner.maintain(&options).await })
    }

    /// Writes each whole, sealed month before the cut-off (`before: 'YYYY-MM'` or
    /// `olderThanMonths`; default: every month that ended) to `to` (`file:///dir` or
    /// `s3://bucket/prefix`, see {@link ArchiveOptions.to}) as Parquet,
    /// with its seal entries and a manifest written last, after reading the month back and
    /// verifying it; with `thenDrop`, then drops its partition (recorded as retention records
    /// its drops, so `verify()` keeps passing). Months already archived are skipped. With
    /// `lockMode` and `lockDays`, each object is written under S3 Object Lock retention. Rejects
    /// with `AUDIT_LOGS_ARCHIVE_UNSUPPORTED` (another scheme, a malformed URL),
    /// `AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE` (the bucket has no Object Lock),
    /// `AUDIT_LOGS_ARCHIVE_MONTH_NOT_READY`, `AUDIT_LOGS_ARCHIVE_NOT_VERIFIED`,
    /// `AUDIT_LOGS_ARCHIVE_STORAGE_FAILED` or `AUDIT_LOGS_INVALID_ARGUMENT`.
    #[napi(ts_return_type = "Promise<ArchiveReport>")]
    pub fn archive<'env>(
        &self,
        env: &'env Env,
        options: core::archive::ArchiveOptions,
    ) -> Result<PromiseRaw<'env, core::archive::ArchiveReport>> {
        let inner = self.inner.clone();
        promise(env, async move { inner.archive(&options).await })
    }

    /// As {@link verifyArchive}, then joins the archive to the live chain: each archived seal
    /// and chunk must be the live one, and the live seals must link from them to the live head
    /// (`liveHead`).
    #[napi(ts_return_type = "Promise<ArchiveVerifyReport>")]
    pub fn verify_archive<'env>(
        &self,
        env: &'env Env,
        url: String,
        options: Option<VerifyArchiveOptions>,
    ) -> Result<PromiseRaw<'env, core::archive::ArchiveVerifyReport>> {
        let inner = self.inner.clone();
        let against = options.and_then(|o| o.against);
        promise(env, async move {
            inner.verify_archive(&url, against.as_deref()).await
        })
    }

    /// Saves the retention policy {@link AuditLogs.maintain} applies (unset fields are kept;
    /// 0 turns retention or anonymization off) and resolves to it. Rejects with
    /// `AUDIT_LOGS_INVALID_SETTINGS`.
    #[napi(
        ts_args_type = "settings: RetentionSettings",
        ts_return_type = "Promise<RetentionSettings>"
    )]
    pub fn configure<'env>(
        &self,
        env: &'env Env,
        settings: core::Settings,
    ) -> Result<PromiseRaw<'env, core::Settings>> {
        let inner = self.inner.clone();
        promise(env, async move { inner.configure(&settings).await })
    }

    /// GDPR erasure: replaces the subject's personal values with keyed hashes (`hmac:` and
    /// HMAC-SHA256 hex under `key`, at least 16 bytes, never stored) and records a redaction
    /// event; `verify()` still passes, and {@link AuditLogs.subject} then finds nothing. With
    /// `dryRun`, lists what would change and changes nothing. Rejects with
    /// `AUDIT_LOGS_INVALID_REDACTION` or `AUDIT_LOGS_INVALID_SUBJECT`.
    #[napi(ts_return_type = "Promise<RedactReport>")]
    pub fn redact<'env>(
        &self,
        env: &'env Env,
        request: RedactRequest,
        key: Either<String, Buffer>,
    ) -> Result<PromiseRaw<'env, core::RedactReport>> {
        let inner = self.inner.clone();
        let key: Vec<u8> = match key {
            Either::A(text) => text.into_bytes(),
            Either::B(buffer) => buffer.to_vec(),
        };
        let person = core::DataSubject {
            actor_id: request.actor_id,
            email: request.email,
            ip_address: request.ip_address,
            values: request.values,
        };
        let subject = core::Subject::of(person, request.target_type, request.target_id);
        let (fields, reason) = (request.fields, request.reason);
        let dry_run = request.dry_run.unwrap_or(false);
        promise(env, async move {
            let request = core::RedactRequest {
                subject: subject?,
                fields,
                reason,
                dry_run,
            };
            inner.redact(&request, &key).await
        })
    }
}
