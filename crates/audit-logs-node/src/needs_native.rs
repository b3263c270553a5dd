//! The WebAssembly build's stand-ins for what uses audit-logs' own connections: the same names
//! as the native build's (tests/node/wasm.test.mjs compares them), each rejecting, or throwing
//! where the native one is synchronous, with `AUDIT_LOGS_NEEDS_NATIVE` naming what was called.
//! `AuditLogs.connect` resolves, opening nothing, so that `log()` and `logMany()` with the
//! caller's client (lib/events.js) work here too.

use audit_logs_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{js_error_value, sync_error, Code};

fn needs_native(operation: &str) -> core::Error {
    core::Error::NeedsNative {
        operation: operation.to_owned(),
    }
}

/// A promise rejected with `AUDIT_LOGS_NEEDS_NATIVE` for `operation`. Made settled, with no
/// task to run: this build has no async runtime to spare.
fn rejected<'env>(env: &'env Env, operation: &str) -> Result<PromiseRaw<'env, ()>> {
    PromiseRaw::reject(env, js_error_value(env, needs_native(operation)))
}

/// A handle that opens no connection: only `log()` and `logMany()` given a client work, in
/// JavaScript; every method that would use the pool rejects with `AUDIT_LOGS_NEEDS_NATIVE`.
#[napi]
pub struct AuditLogs {}

#[napi]
impl AuditLogs {
    /// Resolves to a handle without connecting: this build cannot open a socket.
    #[napi(ts_return_type = "Promise<AuditLogs>")]
    pub fn connect(env: &Env) -> Result<PromiseRaw<'_, AuditLogs>> {
        PromiseRaw::resolve(env, AuditLogs {})
    }

    #[napi]
    pub fn migrate<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "migrate()")
    }

    #[napi]
    pub fn status<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "status()")
    }

    #[napi]
    pub fn enable_tracking<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "enableTracking()")
    }

    #[napi]
    pub fn disable_tracking<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "disableTracking()")
    }

    #[napi]
    pub fn tracked_tables<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "trackedTables()")
    }

    #[napi]
    pub fn history<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "history()")
    }

    /// Without `client` (lib/events.js handles a client): the pool would write the event.
    #[napi]
    pub fn log<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "log() without a client")
    }

    #[napi]
    pub fn log_many<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "logMany() without a client")
    }

    #[napi]
    pub fn state_at<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "stateAt()")
    }

    #[napi]
    pub fn states_at<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "statesAt()")
    }

    #[napi]
    pub fn search<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "search()")
    }

    #[napi]
    pub fn subject<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "subject()")
    }

    #[napi]
    pub fn by_actor<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "byActor()")
    }

    #[napi]
    pub fn by_request<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "byRequest()")
    }

    #[napi]
    pub fn by_transaction<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "byTransaction()")
    }

    #[napi]
    pub fn field_changes<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "fieldChanges()")
    }

    #[napi]
    pub fn counts<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "counts()")
    }

    #[napi]
    pub fn bursts<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "bursts()")
    }

    #[napi]
    pub fn seal<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "seal()")
    }

    #[napi]
    pub fn verify<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "verify()")
    }

    #[napi]
    pub fn maintain<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "maintain()")
    }

    #[napi]
    pub fn archive<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "archive()")
    }

    #[napi]
    pub fn verify_archive<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "verifyArchive()")
    }

    #[napi]
    pub fn configure<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "configure()")
    }

    #[napi]
    pub fn redact<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "redact()")
    }

    /// With or without `client`: the core plans a revert by reading the log itself.
    #[napi]
    pub fn revert<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        rejected(env, "revert()")
    }

    /// Nothing to close.
    #[napi]
    pub fn close(&self) {}
}

/// `entries()`: a stream from the pool.
#[napi]
pub fn open_entries(env: &Env) -> Result<PromiseRaw<'_, ()>> {
    rejected(env, "entries()")
}

/// `subjectEntries()`: a stream from the pool.
#[napi]
pub fn open_subject_entries(env: &Env) -> Result<PromiseRaw<'_, ()>> {
    rejected(env, "subjectEntries()")
}

/// `revert(target, { client })`: the core reads the log to plan it.
#[napi]
pub fn revert_run() -> Result<(), Code> {
    Err(sync_error(needs_native("revert()")))
}

/// Archives are read from files and object storage by the native build.
#[napi(js_name = "verifyArchive")]
pub fn verify_archive_files(env: &Env) -> Result<PromiseRaw<'_, ()>> {
    rejected(env, "verifyArchive()")
}

/// The command line connects on its own.
#[napi]
pub fn run_cli() -> Result<i32, Code> {
    Err(sync_error(needs_native("the audit-logs command line")))
}

/// A throwaway server is a process this build cannot start.
#[napi]
pub struct TemporaryPostgres {}

#[napi]
impl TemporaryPostgres {
    #[napi(ts_return_type = "Promise<TemporaryPostgres>")]
    pub fn start(env: &Env) -> Result<PromiseRaw<'_, ()>> {
        rejected(env, "TemporaryPostgres.start()")
    }
}

/// Made by `openEntries` in the native build; declared so that both builds export the same
/// names, and so generate the same binding.js.
#[napi]
pub struct EntryBatches {}

/// Made by `openSubjectEntries` in the native build (see [`EntryBatches`]).
#[napi]
pub struct SubjectBatches {}

/// Made by `revertRun` in the native build (see [`EntryBatches`]).
#[napi]
pub struct RevertRun {}
