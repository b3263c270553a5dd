//! The Node.js face of audit-logs. Each export converts its arguments, calls the core and maps
//! the result; no SQL and no rule lives here. What the core returns crosses as it is: its output
//! types are `#[napi(object)]` under the core's `napi` feature, so each shape is declared once.
//!
//! Two builds: the native addon (feature `database`, the default) and the WebAssembly one
//! (`npm run build:wasm`, for runtimes where no native addon loads). Both export the functions
//! of this file, which need no connection of audit-logs' own; the rest is in `database` in the
//! native build and, in the WebAssembly build, `needs_native` stands in for it with the same
//! names rejecting `AUDIT_LOGS_NEEDS_NATIVE`.

#[cfg(feature = "database")]
mod database;
#[cfg(not(feature = "database"))]
mod needs_native;

// The exported functions, reachable as they were before the split (and so not dead code).
#[cfg(feature = "database")]
pub use database::{
    open_entries, open_subject_entries, protect::verify_archive_files, revert::revert_run, run_cli,
};
#[cfg(not(feature = "database"))]
pub use needs_native::{
    open_entries, open_subject_entries, revert_run, run_cli, verify_archive_files,
};

#[cfg(feature = "database")]
use std::future::Future;

use audit_logs_core as core;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde_json::Value;

/// The stable `code` of a core error, as `err.code` in JavaScript.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

/// A JavaScript `Error` with `.code` (e.g. `AUDIT_LOGS_NO_PRIMARY_KEY`), the core's message, and
/// the structured fields the error has (`table`, `column`, `migration`, `applied`, `argument`,
/// `sqlstate`, `hint`: see `ErrorFields`).
#[cfg(feature = "database")]
fn js_error(env: &Env, e: core::Error) -> Error {
    Error::from(js_error_value(env, e))
}

/// The `Error` object of [`js_error`], to reject a promise with.
fn js_error_value(env: &Env, e: core::Error) -> Unknown<'_> {
    let error = JsError::from(Error::new(Code(e.code()), e.to_string())).into_unknown(*env);
    let fields = serde_json::to_value(e.fields()).unwrap_or_default();
    // SAFETY: `error` was made by napi_create_error, so it is an object.
    if let (Value::Object(fields), Ok(mut object)) = (fields, unsafe { error.cast::<Object>() }) {
        for (name, value) in fields {
            // A field that cannot be set leaves the error as it is: its code and message stand.
            let _ = object.set(name, value);
        }
    }
    error
}

fn sync_error(e: core::Error) -> Error<Code> {
    Error::new(Code(e.code()), e.to_string())
}

/// Runs a core future on napi's runtime; rejects with a coded error (a plain `async fn` could
/// only reject with napi's own statuses).
#[cfg(feature = "database")]
fn promise<'env, T, F>(env: &'env Env, future: F) -> Result<PromiseRaw<'env, T>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = core::Result<T>> + Send + 'static,
{
    env.spawn_future_with_callback(async move { Ok(future.await) }, |env, result| {
        result.map_err(|e| js_error(env, e))
    })
}

/// Options of {@link AuditLogs.log} and {@link AuditLogs.logMany}.
#[napi(object)]
pub struct LogOptions {
    /// Fills the context fields the event leaves empty (the JavaScript wrapper passes the
    /// current request's context).
    #[napi(ts_type = "AuditContext | null")]
    pub context: Option<Value>,
}

fn request_context(options: Option<LogOptions>) -> core::Result<Option<core::AuditContext>> {
    match options.and_then(|o| o.context) {
        None | Some(Value::Null) => Ok(None),
        Some(context) => core::AuditContext::from_camel_case(context).map(Some),
    }
}

fn events_and_context(
    inputs: Vec<Value>,
    options: Option<LogOptions>,
) -> core::Result<(Vec<core::NewEvent>, Option<core::AuditContext>)> {
    let events = inputs
        .into_iter()
        .map(core::NewEvent::from_camel_case)
        .collect::<core::Result<Vec<_>>>()?;
    Ok((events, request_context(options)?))
}

/// The SQL that records events on the caller's own connection: `client.query(text, values)`.
#[napi(object)]
pub struct EventStatement {
    pub text: String,
    pub values: Vec<String>,
}

/// The statement that records `inputs` in the caller's transaction (a pg client or a Prisma
/// transaction), so they commit or roll back with it; its rows are `AuditLogEntry` objects.
/// Throws `AUDIT_LOGS_INVALID_EVENT` or `AUDIT_LOGS_INVALID_CONTEXT` before anything runs.
#[napi(
    ts_args_type = "inputs: Array<CreateAuditLogInput>, options?: LogOptions | undefined | null"
)]
pub fn event_statement(
    inputs: Vec<Value>,
    options: Option<LogOptions>,
) -> Result<EventStatement, Code> {
    let (events, context) = events_and_context(inputs, options).map_err(sync_error)?;
    let statement = core::events::statement(&events, context.as_ref()).map_err(sync_error)?;
    Ok(EventStatement {
        text: statement.text,
        values: vec![statement.events],
    })
}

/// Every `code` an audit-logs error can have, the JavaScript wrappers' included, in the core's
/// order: what `AuditLogsErrorCode` in index.d.ts lists (tests/node/errors.test.mjs compares them).
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    core::Code::ALL.iter().map(|code| code.as_str()).collect()
}

/// A record id typed as text (the viewer's URLs), read as the CLI reads it: `42`, `[1, "a"]`,
/// or the text itself.
#[napi(ts_return_type = "string | number | Array<string | number | boolean | null>")]
pub fn parse_record_id(text: String) -> Value {
    core::history::parse_record_id(&text)
}

/// An entry's columns in the log's order (`target_type`...): the CSV header of an export, as
/// the CLI writes it.
#[napi]
pub fn entry_columns() -> Vec<&'static str> {
    core::history::ENTRY_COLUMNS.to_vec()
}

/// A driver's error recast as audit-logs' own (see {@link ownError}).
#[napi(object)]
pub struct OwnError {
    /// The stable code: `AUDIT_LOGS_CONTEXT_REQUIRED`, `AUDIT_LOGS_APPEND_ONLY`...
    pub code: String,
    pub message: String,
}

/// The audit-logs error for one of its own SQLSTATEs (class `AL`, raised by its triggers and
/// functions) as node-postgres or Prisma report it: the code and message the native API gives
/// for it. Null for any other SQLSTATE (the caller's own error stays as it is).
#[napi]
pub fn own_error(sqlstate: String, message: String, hint: Option<String>) -> Option<OwnError> {
    core::error::from_own_sqlstate(&sqlstate, &message, hint.as_deref()).map(|e| OwnError {
        code: e.code().to_owned(),
        message: e.to_string(),
    })
}

/// Whether a SQLSTATE means the server ended the session (its backend terminated, a crash, a
/// shutdown, a connection exception, an idle-in-transaction timeout): the connection is dead.
#[napi]
pub fn ends_session(code: String) -> bool {
    core::error::ends_session(&code)
}

/// Validates a context (`{ actorId, actorType, actorEmail, ipAddress, userAgent, requestId,
/// reason, migrationName, metadata }`), over `base` when given (its fields win; metadata is
/// merged key by key), and returns the value for `audit.set_checked_context(value)`, or null
/// for an empty context. Throws `AUDIT_LOGS_INVALID_CONTEXT` naming the bad key or value.
#[napi(ts_args_type = "context: AuditContext, base?: AuditContext | null")]
pub fn serialize_context(context: Value, base: Option<Value>) -> Result<Option<String>, Code> {
    let own = core::AuditContext::from_camel_case(context).map_err(sync_error)?;
    let merged = match base.filter(|b| !b.is_null()) {
        Some(base) => own.over(&core::AuditContext::from_camel_case(base).map_err(sync_error)?),
        None => own,
    };
    merged.to_setting().map_err(sync_error)
}

/// What an HTTP request says about itself (all attacker-controlled), made storable; never
/// throws.
#[napi(object)]
pub struct RequestParts {
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// The request parts of a context, made storable: an address that is not one is dropped, a
/// user agent cut to 1024 bytes at a character boundary, and a request id that cannot be stored
/// (over 1024 bytes, a control character) dropped, for the caller to make one. Never throws.
#[napi]
pub fn storable_request_parts(parts: RequestParts) -> RequestParts {
    let context = core::context::from_request(
        parts.ip_address.as_deref(),
        parts.user_agent.as_deref(),
        parts.request_id.as_deref(),
    );
    RequestParts {
        ip_address: context.ip_address.map(|ip| ip.to_string()),
        user_agent: context.user_agent,
        request_id: context.request_id,
    }
}
