//! With the `napi` feature (the Node binding's): what the output types need besides
//! `#[napi(object)]`, which they carry themselves.

use ::napi::bindgen_prelude::{sys, Result, ToNapiValue};

/// Unit enums cross as their serde name (`'applied'`, `'seal_mismatch'`): the text the CLI's
/// `--json` prints for them. (`#[napi(string_enum)]` would also export a JavaScript enum.)
macro_rules! as_serde_name {
    ($($t:ty),*) => {$(
        impl ToNapiValue for $t {
            unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
                let name = match serde_json::to_value(value) {
                    Ok(serde_json::Value::String(name)) => name,
                    _ => unreachable!("a unit variant serializes as its name"),
                };
                // SAFETY: the caller's contract, passed on.
                unsafe { String::to_napi_value(env, name) }
            }
        }
    )*};
}

as_serde_name!(crate::MigrationState, crate::ProblemKind);
