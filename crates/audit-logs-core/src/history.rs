//! Reading the log: the entries of one record, newest first.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use heck::ToLowerCamelCase;
use serde::{Deserialize, Serialize};
use serde_json::Value;
#[cfg(feature = "database")]
use tokio_postgres::types::Type;
#[cfg(feature = "database")]
use tokio_postgres::{GenericClient, Row};

#[cfg(feature = "database")]
use crate::error::from_query;
use crate::error::{Error, Result};
use crate::tracking::TableRef;

/// What a history is about: a table's rows, or any `target_type` (application events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Table(TableRef),
    Type(String),
}

impl Target {
    /// The target named by exactly one of `table` and `targetType`, as every caller takes them.
    pub fn one_of(table: Option<TableRef>, target_type: Option<String>) -> Result<Target> {
        match (table, target_type) {
            (Some(table), None) => Ok(Target::Table(table)),
            (None, Some(target_type)) => Ok(Target::Type(target_type)),
            _ => Err(Error::invalid_argument(
                "table",
                "give either table or targetType",
            )),
        }
    }
}

/// The entries of one record, newest first.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub target: Target,
    /// The primary key (an array for a composite key), or the event target's id.
    pub id: Value,
    /// 1 to [`MAX_LIMIT`]; [`DEFAULT_LIMIT`] when absent.
    pub limit: Option<u32>,
    /// Only entries older than this entry id: to page.
    pub before: Option<i64>,
    /// Also read the months archived and dropped from the live log (`audit.archived_months`),
    /// from their archives. Default: false (the live log only).
    pub include_archive: bool,
}

impl HistoryQuery {
    pub fn of_table(table: impl Into<TableRef>, id: impl Into<Value>) -> HistoryQuery {
        HistoryQuery {
            target: Target::Table(table.into()),
            id: id.into(),
            limit: None,
            before: None,
            include_archive: false,
        }
    }
}

/// The most entries one call returns.
pub const MAX_LIMIT: u32 = 10_000;
pub const DEFAULT_LIMIT: u32 = 100;

/// One entry of the audit log: a row change or an application event. The Node object and the
/// CLI's JSON alike; a field without a value is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_from_js = false, js_name = "AuditLogEntry")
)]
pub struct AuditEntry {
    pub id: i64,
    /// Transaction time.
    pub created_at: DateTime<Utc>,
    /// The transaction (entries of one transaction share it).
    pub txid: i64,
    /// `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE`, or an event name such as `user.login`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// Set when an UPDATE changed the primary key: the key before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_target_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_values: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_values: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_fields: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// The columns of an entry, in [`AuditEntry`]'s field order: the order `AuditEntry::from_row`
/// reads them in, and the CLI's CSV header. The `select` lists (`entry_select`, and the one of
/// [`crate::events::statement`] for JavaScript drivers) are built from it.
pub const ENTRY_COLUMNS: [&str; 17] = [
    "id",
    "created_at",
    "txid",
    "action",
    "target_type",
    "target_id",
    "old_target_id",
    "old_values",
    "new_values",
    "changed_fields",
    "actor_id",
    "actor_type",
    "actor_email",
    "ip_address",
    "user_agent",
    "request_id",
    "metadata",
];

/// How `select` reads an entry column: the address (inet) as text without its mask.
pub(crate) fn read_as(column: &str) -> String {
    match column {
        "ip_address" => "pg_catalog.host(ip_address)".to_owned(),
        column => column.to_owned(),
    }
}

/// [`ENTRY_COLUMNS`] for `select`, as [`AuditEntry::from_row`] reads them.
pub(crate) fn entry_select() -> &'static str {
    static SELECT: LazyLock<String> = LazyLock::new(|| ENTRY_COLUMNS.map(read_as).join(", "));
    &SELECT
}

/// An entry as one jsonb object under [`AuditEntry`]'s keys, which it deserializes from: how
/// work over a [`crate::session::Session`] reads entries (as text, from any driver).
pub(crate) fn entry_object() -> &'static str {
    static OBJECT: LazyLock<String> = LazyLock::new(|| {
        let fields = ENTRY_COLUMNS
            .map(|column| format!("'{}', {}", column.to_lower_camel_case(), read_as(column)))
            .join(", ");
        format!("pg_catalog.jsonb_build_object({fields})")
    });
    &OBJECT
}

impl AuditEntry {
    /// An entry read as [`entry_object`]'s text.
    pub(crate) fn from_object(text: &str) -> Result<AuditEntry> {
        serde_json::from_str(text).map_err(|e| Error::internal("an entry read back as JSON", e))
    }

    #[cfg(feature = "database")]
    pub(crate) fn from_row(row: &Row) -> AuditEntry {
        AuditEntry {
            id: row.get(0),
            created_at: row.get(1),
            txid: row.get(2),
            action: row.get(3),
            target_type: row.get(4),
            target_id: row.get(5),
            old_target_id: row.get(6),
            old_values: row.get(7),
            new_values: row.get(8),
            changed_fields: row.get(9),
            actor_id: row.get(10),
            actor_type: row.get(11),
            actor_email: row.get(12),
            ip_address: row.get(13),
            user_agent: row.get(14),
            request_id: row.get(15),
            metadata: row.get(16),
        }
    }
}

/// Checks a page size: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub(crate) fn page_size(limit: Option<u32>) -> Result<i64> {
    match limit {
        None => Ok(DEFAULT_LIMIT as i64),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n as i64),
        Some(n) => Err(Error::invalid_argument(
            "limit",
            format!("{n} is not between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// A record id typed as text (a command line, a URL): `42` and `[1, "a"]` (a composite key) are
/// JSON, anything else is the key as text. A whole number past 2^53 stays text: a key is
/// compared as its text, and JavaScript would round it.
pub fn parse_record_id(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Number(n))
            if n.as_f64()
                .is_some_and(|f| f.abs() > 9_007_199_254_740_992.0) =>
        {
            Value::String(text.to_owned())
        }
        Ok(value @ (Value::Number(_) | Value::Array(_) | Value::String(_))) => value,
        _ => Value::String(text.to_owned()),
    }
}

/// A record id as stored in `target_id`: a string or number as text, a composite key as the
/// JSON array PostgreSQL prints (`[1, "a"]`).
pub(crate) fn check_target_id(id: &Value) -> Result<()> {
    match id {
        Value::String(_) | Value::Number(_) => Ok(()),
        Value::Array(parts) if !parts.is_empty() => Ok(()),
        other => Err(Error::invalid_argument(
            "id",
            format!("expected a string, a number or (for a composite key) an array, got {other}"),
        )),
    }
}

/// A record id (the jsonb expression `id`) as `target_id` holds it: a string or number as
/// text, a composite key as the JSON array PostgreSQL prints, and a key over 1024 bytes as its
/// digest (`audit.stored_key`: stable, so a known id is computed once, for the index).
pub(crate) fn key_sql(id: &str) -> String {
    format!(
        "audit.stored_key(case when pg_catalog.jsonb_typeof({id}::pg_catalog.jsonb) = 'array' \
          then {id}::pg_catalog.jsonb::pg_catalog.text \
          else {id}::pg_catalog.jsonb operator(pg_catalog.#>>) '{{}}' end) collate \"C\""
    )
}

/// The query behind [`of_record`]: $1 target_type, $2 id (jsonb), $3 before (an entry id), $4 limit,
/// $5 the other target types of events about the record (text[]: see
/// [`crate::events::table_aliases`]). `audit.record_history` (V12) follows the table's renames,
/// takes the UPDATE that changed the key away too, and keeps its plan for the connection.
pub fn record_history_sql() -> String {
    format!(
        "select {} from audit.record_history($1, $2, $3, $4, $5)",
        entry_select()
    )
}

/// Entries of one record, newest first, including the UPDATE that gave it its key (if its
/// primary key changed) and, under its old key, the UPDATE that took it away.
#[cfg(feature = "database")]
pub(crate) async fn of_record(
    client: &impl GenericClient,
    target_type: &str,
    aliases: &[String],
    id: &Value,
    limit: Option<u32>,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>> {
    check_target_id(id)?;
    let limit = page_size(limit)?;
    if before.is_some_and(|b| b <= 0) {
        return Err(Error::invalid_argument(
            "before",
            "must be a positive entry id",
        ));
    }
    let rows = client
        .query_typed(
            &record_history_sql(),
            &[
                (&target_type, Type::TEXT),
                (id, Type::JSONB),
                (&before.unwrap_or(i64::MAX), Type::INT8),
                (&limit, Type::INT8),
                (&aliases, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| from_query(e, Some(target_type)))?;
    Ok(rows.iter().map(AuditEntry::from_row).collect())
}

#[cfg(test)]
mod tests {
    use super::parse_record_id;
    use serde_json::json;

    #[test]
    fn record_ids_are_json_when_they_look_like_it() {
        assert_eq!(parse_record_id("42"), json!(42));
        assert_eq!(parse_record_id(r#"[1, "a"]"#), json!([1, "a"]));
        assert_eq!(parse_record_id("abc"), json!("abc"));
        assert_eq!(parse_record_id("2,1"), json!("2,1"));
        assert_eq!(
            parse_record_id("550e8400-e29b-41d4-a716-446655440000"),
            json!("550e8400-e29b-41d4-a716-446655440000")
        );
        assert_eq!(
            parse_record_id("12345678901234567890"),
            json!("12345678901234567890")
        );
    }
}
