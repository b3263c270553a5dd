//! Undo, for JavaScript: converts the target and options; the rules are the core's.

use audit_logs_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

use super::{table_ref, time, AuditLogs, Parsed, TableName, Time};
use crate::promise;

/// What {@link AuditLogs.revert} undoes: exactly one of `transaction` (optionally with `at`,
/// the `createdAt` of one of its entries), `request` (optionally within `from`/`to`), `actor`
/// (with `from` and `to`), `entry`, or `table` with `id` and `to` (one record put back as it
/// was then).
#[napi(object)]
pub struct RevertTarget {
    #[napi(ts_type = "number | undefined")]
    pub transaction: Option<i64>,
    #[napi(ts_type = "Date | string | undefined")]
    pub at: Option<Time>,
    #[napi(ts_type = "string | undefined")]
    pub request: Option<String>,
    #[napi(ts_type = "string | undefined")]
    pub actor: Option<String>,
    #[napi(ts_type = "Date | string | undefined")]
    pub from: Option<Time>,
    #[napi(ts_type = "Date | string | undefined")]
    pub to: Option<Time>,
    #[napi(ts_type = "number | undefined")]
    pub entry: Option<i64>,
    #[napi(ts_type = "string | TableName | undefined")]
    pub table: Option<Either<String, TableName>>,
    /// The record's primary key; an array for a composite key.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null> | undefined")]
    pub id: Option<Value>,
}

/// Options of {@link AuditLogs.revert}.
#[napi(object)]
pub struct RevertOptions {
    /// Run the revert and roll it back: the report says what would change.
    #[napi(ts_type = "boolean | undefined")]
    pub dry_run: Option<bool>,
    /// `'refuse'` (default): a record changed again since fails the revert
    /// (`AUDIT_LOGS_REVERT_CONFLICT`, listing the later entries) and nothing changes.
    /// `'keep-later'`: restore only what nobody changed since (the notes name the rest).
    /// `'overwrite'`: restore anyway.
    #[napi(ts_type = "'refuse' | 'keep-later' | 'overwrite' | undefined")]
    pub on_conflict: Option<String>,
    /// Who reverts: recorded on the revert's entries, with `metadata.reverts`.
    #[napi(ts_type = "AuditContext | undefined")]
    pub context: Option<Value>,
}

fn target(target: RevertTarget) -> core::Result<core::RevertTarget> {
    let optional_time = |t: Option<Time>, name: &str| t.map(|t| time(t, name)).transpose();
    core::RevertTarget::one_of(core::RevertFields {
        transaction: target.transaction,
        at: optional_time(target.at, "at")?,
        request: target.request,
        actor: target.actor,
        from: optional_time(target.from, "from")?,
        to: optional_time(target.to, "to")?,
        entry: target.entry,
        table: target.table.map(table_ref),
        id: target.id,
    })
}

fn options(options: Option<RevertOptions>) -> core::Result<core::RevertOptions> {
    let Some(options) = options else {
        return Ok(core::RevertOptions::default());
    };
    Ok(core::RevertOptions {
        dry_run: options.dry_run.unwrap_or(false),
        on_conflict: options
            .on_conflict
            .as_deref()
            .map(core::OnConflict::parse)
            .transpose()?
            .unwrap_or_default(),
        context: options
            .context
            .map(core::AuditContext::from_camel_case)
            .transpose()?,
    })
}

#[napi]
impl AuditLogs {
    /// Undoes what `target` names, in one transaction recorded like any change (its entries
    /// carry `options.context` and `metadata.reverts`). Rejects, changing nothing, with
    /// `AUDIT_LOGS_REVERT_CONFLICT` when a record was changed again since,
    /// `AUDIT_LOGS_CANNOT_REVERT` when a record cannot be put back (a table no longer tracked, a
    /// column dropped since, a value the log does not hold), or `AUDIT_LOGS_INVALID_ARGUMENT`.
    #[napi(ts_return_type = "Promise<RevertReport>")]
    pub fn revert<'env>(
        &self,
        env: &'env Env,
        target: RevertTarget,
        options: Option<RevertOptions>,
    ) -> Result<PromiseRaw<'env, Parsed<core::RevertReport>>> {
        let inner = self.inner.clone();
        let target = self::target(target);
        let options = self::options(options);
        promise(env, async move {
            inner.revert(&target?, &options?).await.map(Parsed)
        })
    }
}

/// A statement of a revert on the caller's client: `text` with `values` (text or null, each
/// cast to its type in `text`); its rows' first column is the answer.
#[napi(object)]
pub struct RevertStatement {
    pub text: String,
    #[napi(ts_type = "Array<string | null>")]
    pub values: Vec<Option<String>>,
}

/// What {@link RevertRun.resume} asks for: run `statement` and pass back its answer, or take
/// `report`, the revert done.
#[napi(object, object_from_js = false)]
pub struct RevertStep {
    pub statement: Option<RevertStatement>,
    pub report: Option<core::RevertReport>,
}

/// A statement the client failed to run: the server's SQLSTATE, message and hint, or whether
/// the connection is lost.
#[napi(object)]
pub struct RevertFailure {
    pub sqlstate: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    pub lost: Option<bool>,
}

/// `revert(target, { client })`: the core's revert, handing out its statements one at a time
/// for lib/revert.js to run on the caller's client, in the caller's transaction.
#[napi]
pub struct RevertRun {
    steps: core::session::Steps<core::RevertReport>,
}

/// A revert to run on the caller's client (see {@link RevertRun}). Throws
/// `AUDIT_LOGS_INVALID_ARGUMENT` or `AUDIT_LOGS_INVALID_CONTEXT` for a bad target or options.
#[napi]
pub fn revert_run(
    target: RevertTarget,
    options: Option<RevertOptions>,
) -> Result<RevertRun, crate::Code> {
    let target = self::target(target).map_err(crate::sync_error)?;
    let options = self::options(options).map_err(crate::sync_error)?;
    Ok(RevertRun {
        steps: core::revert::revert_steps(target, options),
    })
}

#[napi]
impl RevertRun {
    /// Runs the revert up to its next statement, given the answer to the last one: its rows'
    /// first column (`rows`), or its failure. Throws the revert's error (with its `code` and
    /// fields) when it fails.
    #[napi(catch_unwind)]
    pub fn resume(
        &mut self,
        env: Env,
        rows: Option<Vec<Option<String>>>,
        failure: Option<RevertFailure>,
    ) -> Result<RevertStep> {
        let answer = match (rows, failure) {
            (_, Some(f)) => Some(Err(core::session::Failure::reported(
                f.sqlstate,
                f.message,
                f.hint,
                f.lost.unwrap_or(false),
            ))),
            (Some(rows), None) => Some(Ok(rows)),
            (None, None) => None,
        };
        match self.steps.resume(answer) {
            core::session::Step::Run(statement) => Ok(RevertStep {
                statement: Some(RevertStatement {
                    text: statement.text,
                    values: statement.values,
                }),
                report: None,
            }),
            core::session::Step::Done(Ok(report)) => Ok(RevertStep {
                statement: None,
                report: Some(report),
            }),
            core::session::Step::Done(Err(e)) => Err(crate::js_error(&env, e)),
        }
    }
}
