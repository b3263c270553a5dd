//! Who made a change: the context a transaction carries in the `audit.context` setting.

use std::net::IpAddr;

use heck::ToLowerCamelCase;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ContextError, Error, Result};

/// The largest context accepted, serialized. The triggers parse it once per statement.
pub const MAX_CONTEXT_BYTES: usize = 8192;
/// The longest value of any one string field.
pub const MAX_FIELD_BYTES: usize = 1024;

/// Keys that would let a JSON object rewrite a JavaScript prototype when merged naively.
const FORBIDDEN_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// The attribution of a transaction's changes. Every field is optional; a change made with no
/// context at all is still recorded, with empty actor columns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditContext {
    /// Who made the change (a user id, an API key id, a service name...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any other string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    /// The client address, IPv4 or IPv6.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Why the change was made; stored in `metadata.reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The data migration that made the change; stored in `metadata.migration_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_name: Option<String>,
    /// Anything else; its keys are merged into the `metadata` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl AuditContext {
    /// A context for a data migration: `actor_type` `migration` and its name.
    pub fn migration(name: impl Into<String>) -> Self {
        AuditContext {
            actor_type: Some("migration".into()),
            migration_name: Some(name.into()),
            ..Default::default()
        }
    }

    /// This context completed from `base`: fields set here win, the others come from `base`;
    /// metadata objects are merged key by key the same way.
    pub fn over(&self, base: &AuditContext) -> AuditContext {
        let (Value::Object(mut merged), Value::Object(own)) = (to_json(base), to_json(self)) else {
            unreachable!("a context serializes as an object")
        };
        for (key, value) in own {
            match (merged.get_mut(&key), value) {
                (Some(Value::Object(base_metadata)), Value::Object(metadata)) => {
                    base_metadata.extend(metadata)
                }
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        serde_json::from_value(Value::Object(merged)).expect("two contexts merge into one")
    }

    /// Parses an IP address given as text, with a typed error naming the bad value.
    pub fn parse_ip(text: &str) -> Result<IpAddr> {
        text.trim().parse().map_err(|_| {
            Error::Context(ContextError::Invalid {
                reason: format!("ipAddress {text:?} is not an IPv4 or IPv6 address"),
            })
        })
    }

    /// Checks the limits and returns the value for `set_config('audit.context', $1, true)`,
    /// or `None` when the context is empty.
    pub fn to_setting(&self) -> Result<Option<String>> {
        let value = to_json(self);
        let Value::Object(fields) = &value else {
            unreachable!("a context serializes as an object")
        };
        for (key, field) in fields {
            let Value::String(text) = field else { continue };
            let name = camel_case(key);
            if text.contains('\0') {
                return Err(Error::Context(ContextError::Invalid {
                    reason: nul_reason(&name),
                }));
            }
            if text.len() > MAX_FIELD_BYTES {
                return Err(Error::Context(ContextError::Invalid {
                    reason: format!(
                        "{name} is {} bytes; the limit is {MAX_FIELD_BYTES}",
                        text.len()
                    ),
                }));
            }
        }
        if let Some(metadata) = &self.metadata {
            check_keys(metadata, "metadata")?;
            if let Some(at) = nul_in_object(metadata, "metadata") {
                return Err(Error::Context(ContextError::Invalid {
                    reason: nul_reason(&at),
                }));
            }
        }
        if *self == AuditContext::default() {
            return Ok(None);
        }
        let stored = stored_json_len(&value);
        if stored > MAX_CONTEXT_BYTES {
            return Err(Error::Context(ContextError::Invalid {
                reason: format!(
                    "the context is {stored} bytes serialized; the limit is {MAX_CONTEXT_BYTES}"
                ),
            }));
        }
        Ok(Some(value.to_string()))
    }
}

impl AuditContext {
    /// The setting of this context over `base`, a transaction's context as stored
    /// (`audit.current_context()`, which may hold keys of its own when set from SQL): this
    /// context's fields win, and `metadata` is merged. Checked as [`AuditContext::to_setting`].
    pub fn setting_over(&self, base: Option<&str>) -> Result<Option<String>> {
        let own = self.to_setting()?;
        let Some(Ok(Value::Object(mut merged))) = base.map(serde_json::from_str::<Value>) else {
            return Ok(own);
        };
        let Value::Object(fields) = to_json(self) else {
            unreachable!("a context serializes as an object")
        };
        for (key, value) in fields {
            match (merged.get_mut(&key), value) {
                (Some(Value::Object(base_metadata)), Value::Object(metadata)) => {
                    base_metadata.extend(metadata)
                }
                (_, value) => {
                    merged.insert(key, value);
                }
            }
        }
        let merged = Value::Object(merged);
        let stored = stored_json_len(&merged);
        if stored > MAX_CONTEXT_BYTES {
            return Err(Error::Context(ContextError::Invalid {
                reason: format!(
                    "the context is {stored} bytes serialized with the transaction's own; the limit is {MAX_CONTEXT_BYTES}"
                ),
            }));
        }
        Ok(Some(merged.to_string()))
    }
}

/// A context as JavaScript writes it (camelCase keys), as `serializeContext`,
/// `runWithAuditContext` and `withAuditContext` take it. Unknown keys are refused by name, so a
/// typo such as `actorID` is an error rather than a silently missing actor.
// The binding declares it to TypeScript as `AuditContext` (the napi feature).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_to_js = false, js_name = "AuditContext")
)]
pub struct ContextInput {
    /// Stored as text: an integer id (an ORM's `Int` key) is stored as its digits.
    #[cfg_attr(feature = "napi", napi(ts_type = "string | number | undefined"))]
    pub actor_id: Option<String>,
    /// `user`, `system`, `api_key`, `moderator`, `migration`, or any string.
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub actor_type: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub actor_email: Option<String>,
    /// IPv4 or IPv6.
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub ip_address: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub user_agent: Option<String>,
    /// Stored as text: an integer is stored as its digits.
    #[cfg_attr(feature = "napi", napi(ts_type = "string | number | undefined"))]
    pub request_id: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub reason: Option<String>,
    #[cfg_attr(feature = "napi", napi(ts_type = "string | undefined"))]
    pub migration_name: Option<String>,
    /// Free-form details, merged into the `metadata` column.
    #[cfg_attr(feature = "napi", napi(ts_type = "any"))]
    pub metadata: Option<Map<String, Value>>,
}

impl AuditContext {
    /// Reads a context given as a JSON object with camelCase keys (`actorId`, `ipAddress`...).
    pub fn from_camel_case(value: Value) -> Result<AuditContext> {
        if !value.is_object() {
            let kind = match value {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => unreachable!(),
            };
            return Err(Error::Context(ContextError::Invalid {
                reason: format!("expected an object such as {{ actorId: '42' }}, got {kind}"),
            }));
        }
        let input: ContextInput = read_named(with_ids_as_text(value)?)
            .map_err(|reason| Error::Context(ContextError::Invalid { reason }))?;
        let ip_address = input
            .ip_address
            .as_deref()
            .map(AuditContext::parse_ip)
            .transpose()?;
        Ok(AuditContext {
            actor_id: input.actor_id,
            actor_type: input.actor_type,
            actor_email: input.actor_email,
            ip_address,
            user_agent: input.user_agent,
            request_id: input.request_id,
            reason: input.reason,
            migration_name: input.migration_name,
            metadata: input.metadata,
        })
    }
}

/// The keys of a context as JavaScript gives it ([`ContextInput`]'s fields, checked by a test):
/// every one holds text but `metadata`.
pub const CONTEXT_KEYS: [&str; 9] = [
    "actorId",
    "actorType",
    "actorEmail",
    "ipAddress",
    "userAgent",
    "requestId",
    "reason",
    "migrationName",
    "metadata",
];

/// The context keys whose values are text.
fn text_keys() -> impl Iterator<Item = &'static str> {
    CONTEXT_KEYS.into_iter().filter(|key| *key != "metadata")
}

/// A context as stored (snake_case keys, absent fields left out).
fn to_json(context: &AuditContext) -> Value {
    serde_json::to_value(context).expect("a context always serializes")
}

/// `actor_id` as `actorId`: the name JavaScript gives a stored key.
fn camel_case(key: &str) -> String {
    key.to_lower_camel_case()
}

/// The text keys that also take an integer (an ORM's `Int` primary key), stored as its digits.
const ID_KEYS: [&str; 2] = ["actorId", "requestId"];

/// Deserializes `value`, naming the field at fault in the error (`actorId: invalid type:
/// integer `42`, expected a string`) where serde alone names none.
pub(crate) fn read_named<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

/// An integer `actorId` or `requestId` (an ORM's `Int` id) as its digits, as it is stored.
pub(crate) fn integer_ids_as_text(object: &mut Map<String, Value>) {
    for key in ID_KEYS {
        if let Some(Value::Number(n)) = object.get(key) {
            if !n.is_f64() {
                let digits = n.to_string();
                object.insert(key.to_owned(), Value::String(digits));
            }
        }
    }
}

/// Integer ids as their text, as they are stored; any other value that is not text is refused
/// with the key named.
fn with_ids_as_text(mut value: Value) -> Result<Value> {
    let Value::Object(object) = &mut value else {
        return Ok(value);
    };
    for key in text_keys() {
        let Some(field) = object.get_mut(key) else {
            continue;
        };
        match field {
            Value::String(_) | Value::Null => {}
            Value::Number(n) if ID_KEYS.contains(&key) && !n.is_f64() => {
                *field = Value::String(n.to_string());
            }
            other => {
                let kind = match other {
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::Array(_) => "an array",
                    _ => "an object",
                };
                let expected = if ID_KEYS.contains(&key) {
                    "a string or an integer"
                } else {
                    "a string"
                };
                return Err(Error::Context(ContextError::Invalid {
                    reason: format!("{key} must be {expected}, got {kind}"),
                }));
            }
        }
    }
    Ok(value)
}

/// What an HTTP request says about itself, made storable: every part is attacker-controlled,
/// so nothing here fails. An address that is not one is dropped, a user agent is cut to
/// [`MAX_FIELD_BYTES`] at a character boundary, and a request id that cannot be stored (too long,
/// a NUL, a control character) is dropped, for the caller to make one.
pub fn from_request(
    ip_address: Option<&str>,
    user_agent: Option<&str>,
    request_id: Option<&str>,
) -> AuditContext {
    let ip_address = ip_address.and_then(|ip| {
        let ip = ip
            .strip_prefix("::ffff:")
            .filter(|v4| v4.contains('.'))
            .unwrap_or(ip);
        ip.trim().parse().ok()
    });
    // Every request passes here: copy the agent only to drop a NUL (jsonb cannot hold one).
    let user_agent = user_agent
        .map(|agent| {
            if agent.contains('\0') {
                cut_to_bytes(&agent.replace('\0', ""), MAX_FIELD_BYTES).to_owned()
            } else {
                cut_to_bytes(agent, MAX_FIELD_BYTES).to_owned()
            }
        })
        .filter(|agent| !agent.is_empty());
    let request_id = request_id
        .filter(|id| {
            !id.is_empty() && id.len() <= MAX_FIELD_BYTES && !id.chars().any(char::is_control)
        })
        .map(str::to_owned);
    AuditContext {
        ip_address,
        user_agent,
        request_id,
        ..AuditContext::default()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_to_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// No prototype-pollution key at any depth.
fn check_keys(object: &Map<String, Value>, path: &str) -> Result<()> {
    for (key, value) in object {
        if FORBIDDEN_KEYS.contains(&key.as_str()) {
            return Err(Error::Context(ContextError::Invalid {
                reason: format!(
                    "{path} has the key {key:?}, which is not allowed (prototype pollution)"
                ),
            }));
        }
        if let Value::Object(inner) = value {
            check_keys(inner, &format!("{path}.{key}"))?;
        }
    }
    Ok(())
}

/// Where a NUL character (U+0000) sits in a JSON value, in a key or a string, if anywhere.
/// PostgreSQL's jsonb and text cannot hold one: values are checked before anything is written,
/// rather than failing the application's own statement in a trigger.
pub(crate) fn nul_in_object(object: &Map<String, Value>, path: &str) -> Option<String> {
    object.iter().find_map(|(key, value)| {
        let inner = format!("{path}.{key}");
        if key.contains('\0') {
            Some(inner)
        } else {
            nul_in(value, &inner)
        }
    })
}

fn nul_in(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then(|| path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{path}[{i}]"))),
        Value::Object(object) => nul_in_object(object, path),
        _ => None,
    }
}

/// The length of `value` as PostgreSQL prints it back from jsonb (`octet_length(x::text)`), which
/// is what the database's size limits measure: `": "` and `", "` as separators, and each number
/// in numeric's plain notation (`1e300` is 301 digits). Measuring serde's compact text instead
/// let the Rust check pass a context or metadata that the database then refused.
pub(crate) fn stored_json_len(value: &Value) -> usize {
    let separators = |count: usize| 2 * count.saturating_sub(1);
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(number) => numeric_text_len(&number.to_string()),
        Value::String(text) => stored_string_len(text),
        Value::Array(items) => {
            2 + separators(items.len()) + items.iter().map(stored_json_len).sum::<usize>()
        }
        Value::Object(object) => {
            2 + separators(object.len())
                + object
                    .iter()
                    .map(|(key, value)| stored_string_len(key) + 2 + stored_json_len(value))
                    .sum::<usize>()
        }
    }
}

/// A JSON string with jsonb's escapes (the same as serde_json's).
fn stored_string_len(text: &str) -> usize {
    let escaped: usize = text
        .chars()
        .map(|c| match c {
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if u32::from(c) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum();
    escaped + 2
}

/// The length of numeric's output for a JSON number written as serde_json writes it (`-12`,
/// `0.1`, `1.5e-7`, `1e300`): the integer digits, and as many decimals as the text implies.
fn numeric_text_len(text: &str) -> usize {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = integer.bytes().chain(fraction.bytes()).collect();
    // Where the decimal point falls in `digits` once the exponent is applied.
    let point = integer.len() as i64 + exponent;
    let decimals = (fraction.len() as i64 - exponent).max(0) as usize;
    let integer_len = if point <= 0 {
        1
    } else {
        let leading_zeros = digits
            .iter()
            .take(point as usize)
            .take_while(|&&d| d == b'0')
            .count() as i64;
        (point - leading_zeros).max(1) as usize
    };
    let nonzero = digits.iter().any(|&d| d != b'0');
    usize::from(negative && nonzero) + integer_len + if decimals > 0 { 1 + decimals } else { 0 }
}

pub(crate) fn nul_reason(path: &str) -> String {
    format!("{path} holds a NUL character (U+0000), which PostgreSQL cannot store; remove it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keys_are_the_keys_a_context_takes_and_each_is_stored() {
        let Err(Error::Context(ContextError::Invalid { reason })) =
            AuditContext::from_camel_case(serde_json::json!({ "actorID": "7" }))
        else {
            panic!("an unknown key is refused")
        };
        let expected: Vec<&str> = reason
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the keys")
            .split(", ")
            .map(|key| key.trim_matches('`'))
            .collect();
        assert_eq!(expected, CONTEXT_KEYS, "{reason}");
        let full: Map<String, Value> = CONTEXT_KEYS
            .iter()
            .map(|key| {
                let value = match *key {
                    "ipAddress" => Value::from("10.0.0.1"),
                    "metadata" => serde_json::json!({ "k": 1 }),
                    _ => Value::from("x"),
                };
                (key.to_string(), value)
            })
            .collect();
        let context = AuditContext::from_camel_case(Value::Object(full)).unwrap();
        let setting: Value = serde_json::from_str(&context.to_setting().unwrap().unwrap()).unwrap();
        let mut stored: Vec<String> = setting
            .as_object()
            .unwrap()
            .keys()
            .map(|key| camel_case(key))
            .collect();
        stored.sort();
        let mut keys = CONTEXT_KEYS.map(str::to_owned).to_vec();
        keys.sort();
        assert_eq!(stored, keys);
        // over() keeps every field of either side.
        assert_eq!(context.over(&AuditContext::default()), context);
        assert_eq!(AuditContext::default().over(&context), context);
    }

    #[test]
    fn empty_context_sets_nothing() {
        assert_eq!(AuditContext::default().to_setting().unwrap(), None);
    }

    #[test]
    fn serializes_snake_case_without_nulls() {
        let context = AuditContext {
            actor_id: Some("42".into()),
            ip_address: Some("::1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            context.to_setting().unwrap().unwrap(),
            r#"{"actor_id":"42","ip_address":"::1"}"#
        );
    }

    #[test]
    fn rejects_bad_ip_by_kind() {
        let err = AuditContext::parse_ip("10.0.0.256").unwrap_err();
        assert_eq!(err.code(), "AUDIT_LOGS_INVALID_CONTEXT");
    }

    #[test]
    fn rejects_oversized_fields_and_contexts() {
        let long = AuditContext {
            actor_id: Some("x".repeat(MAX_FIELD_BYTES + 1)),
            ..Default::default()
        };
        assert_eq!(
            long.to_setting().unwrap_err().code(),
            "AUDIT_LOGS_INVALID_CONTEXT"
        );

        let mut metadata = Map::new();
        for i in 0..200 {
            metadata.insert(format!("key{i}"), Value::String("v".repeat(60)));
        }
        let big = AuditContext {
            metadata: Some(metadata),
            ..Default::default()
        };
        assert_eq!(
            big.to_setting().unwrap_err().code(),
            "AUDIT_LOGS_INVALID_CONTEXT"
        );
    }

    #[test]
    fn camel_case_input_is_checked_key_by_key() {
        let context = AuditContext::from_camel_case(serde_json::json!({
            "actorId": "42", "ipAddress": "10.0.0.1", "metadata": {"tenant": "acme"}, "userAgent": null
        }))
        .unwrap();
        assert_eq!(context.actor_id.as_deref(), Some("42"));
        assert_eq!(context.ip_address, Some("10.0.0.1".parse().unwrap()));
        for (bad, mentions) in [
            (serde_json::json!({"actorID": "42"}), "actorID"),
            (serde_json::json!({"ipAddress": "300.1.1.1"}), "300.1.1.1"),
            (
                serde_json::json!({"actorId": 4.2}),
                "actorId must be a string or an integer",
            ),
            (
                serde_json::json!({"actorType": 7}),
                "actorType must be a string, got a number",
            ),
            (serde_json::json!("user 42"), "got a string"),
            (serde_json::json!([]), "got an array"),
        ] {
            let err = AuditContext::from_camel_case(bad).unwrap_err();
            assert_eq!(err.code(), "AUDIT_LOGS_INVALID_CONTEXT");
            assert!(err.to_string().contains(mentions), "{err}");
        }
    }

    #[test]
    fn integer_ids_are_stored_as_text() {
        let context =
            AuditContext::from_camel_case(serde_json::json!({"actorId": 42, "requestId": 7}))
                .unwrap();
        assert_eq!(context.actor_id.as_deref(), Some("42"));
        assert_eq!(context.request_id.as_deref(), Some("7"));
    }

    #[test]
    fn what_a_request_says_is_made_storable_never_refused() {
        let long_agent = "é".repeat(700);
        let context = from_request(
            Some("::ffff:203.0.113.9"),
            Some(&long_agent),
            Some(&"r".repeat(2000)),
        );
        assert_eq!(context.ip_address, Some("203.0.113.9".parse().unwrap()));
        let agent = context.user_agent.unwrap();
        assert!(agent.len() <= MAX_FIELD_BYTES && agent.len() >= MAX_FIELD_BYTES - 1);
        assert!(long_agent.starts_with(&agent));
        assert_eq!(
            context.request_id, None,
            "too long to store: the caller makes one"
        );
        let context = from_request(Some("not an ip"), Some(""), Some("ok\u{7}bell"));
        assert_eq!(context, AuditContext::default());
        assert_eq!(
            from_request(None, None, Some("req-1"))
                .request_id
                .as_deref(),
            Some("req-1")
        );
    }

    #[test]
    fn rejects_prototype_pollution_keys_at_any_depth() {
        let metadata: Map<String, Value> =
            serde_json::from_str(r#"{"a": {"__proto__": {"admin": true}}}"#).unwrap();
        let context = AuditContext {
            metadata: Some(metadata),
            ..Default::default()
        };
        let err = context.to_setting().unwrap_err();
        assert!(err.to_string().contains("metadata.a"), "{err}");
    }
}
