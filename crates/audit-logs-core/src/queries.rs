//! Asking the log: a record's state at a time, what one actor, request
//! or transaction did, the changes of one field, counts, bursts of activity, and a combinable
//! search read in keyset pages or streamed.
//!
//! Every value is a bound parameter; the only text put into SQL comes from this file.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

use crate::error::{from_query, Error, Result};
use crate::history::{check_target_id, entry_select, key_sql, page_size, AuditEntry};
use crate::tracking::TableRef;

/// Which entries a search returns. Every filter given must hold; none means every entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// A table (resolved to its `target_type`; it may have been dropped since).
    pub table: Option<TableRef>,
    /// `target_type`: a table's (`public.users`, see [`crate::TableRef::target_type`]) or an event's.
    pub target_type: Option<String>,
    /// The record (its primary key; an array for a composite key) or the event target's id.
    pub target_id: Option<Value>,
    /// Any of these actions (`UPDATE`, `user.login`...).
    pub actions: Vec<String>,
    pub actor_id: Option<String>,
    pub actor_type: Option<String>,
    pub actor_email: Option<String>,
    pub request_id: Option<String>,
    pub txid: Option<i64>,
    /// UPDATEs that changed this column.
    pub changed_field: Option<String>,
    /// Entries whose metadata contains this object (`{"reason": "gdpr"}`).
    pub metadata_contains: Option<Value>,
    /// `from <= created_at`.
    pub from: Option<DateTime<Utc>>,
    /// `created_at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// A time range: `from <= created_at < to`; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page of a keyset-paginated list, newest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    /// 1 to [`crate::history::MAX_LIMIT`]; [`crate::history::DEFAULT_LIMIT`] when absent.
    pub limit: Option<u32>,
    /// Only entries older than this entry id: the previous page's cursor.
    pub before: Option<i64>,
}

/// A page of [`crate::AuditLogs::search`] results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// The order of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

impl Order {
    /// `newest` or `oldest`.
    pub fn parse(name: &str) -> Result<Order> {
        match name {
            "newest" => Ok(Order::NewestFirst),
            "oldest" => Ok(Order::OldestFirst),
            other => Err(Error::invalid_argument(
                "order",
                format!("{other:?} is not 'newest' or 'oldest'"),
            )),
        }
    }
}

/// A page cursor as text (the `next_cursor` of a previous page).
pub fn parse_cursor(text: &str) -> Result<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            Error::invalid_argument(
                "cursor",
                format!("{text:?} is not a cursor: pass the nextCursor of the previous page"),
            )
        })
}

/// A time as users write it, with its time zone: RFC 3339 / ISO 8601
/// (`2026-01-31T12:00:00Z`, `2026-01-31T13:00:00.5+01:00`) or PostgreSQL's own text form of a
/// `timestamptz` (`2026-01-31 12:00:00.02+00`, as psql prints it). The one parser of input
/// times: the CLI, the Node binding and the core use it. A time without a zone is refused,
/// since it could mean any of 26 hours.
pub fn parse_time(text: &str, name: &str) -> Result<DateTime<Utc>> {
    let trimmed = text.trim();
    DateTime::parse_from_rfc3339(trimmed)
        .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M:%S%.f%#z"))
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            Error::invalid_argument(
                name,
                format!(
                    "{text:?} is not a time with a time zone: write it in ISO 8601 \
                     (2026-01-31T12:00:00Z) or as PostgreSQL prints it (2026-01-31 12:00:00+00)"
                ),
            )
        })
}

/// Conditions under construction: each binds its value as the next parameter.
#[derive(Default)]
pub(crate) struct Sql {
    conditions: Vec<String>,
    params: Vec<(Box<dyn ToSql + Sync + Send>, Type)>,
}

impl Sql {
    /// Binds `value` and returns its placeholder (`$3`).
    pub(crate) fn bind(&mut self, value: impl ToSql + Sync + Send + 'static, ty: Type) -> String {
        self.params.push((Box::new(value), ty));
        format!("${}", self.params.len())
    }

    pub(crate) fn and(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("where {}", self.conditions.join(" and "))
        }
    }

    fn params(&self) -> Vec<(&(dyn ToSql + Sync), Type)> {
        self.params
            .iter()
            .map(|(value, ty)| (&**value as &(dyn ToSql + Sync), ty.clone()))
            .collect()
    }

    fn types(&self) -> Vec<Type> {
        self.params.iter().map(|(_, ty)| ty.clone()).collect()
    }

    fn with_filters(filters: &Filters) -> Result<Sql> {
        let mut sql = Sql::default();
        let Filters {
            table,
            target_type,
            target_id,
            actions,
            actor_id,
            actor_type,
            actor_email,
            request_id,
            txid,
            changed_field,
            metadata_contains,
            from,
            to,
        } = filters.clone();
        if let Some(table) = table {
            // AuditLogs resolves a table to its target_type; only a direct caller of
            // `search_sql` can get here.
            return Err(Error::invalid_argument(
                "table",
                format!("{table:?}: give the table's targetType here (schema.table)"),
            ));
        }
        if let Some(target_type) = target_type {
            let p = sql.bind(target_type, Type::TEXT);
            sql.and(format!("target_type = {p} collate \"C\""));
        }
        if let Some(id) = target_id {
            check_target_id(&id)?;
            let p = sql.bind(id, Type::JSONB);
            sql.and(format!("target_id = {}", key_sql(&p)));
        }
        if !actions.is_empty() {
            let p = sql.bind(actions, Type::TEXT_ARRAY);
            sql.and(format!("action = any({p})"));
        }
        if let Some(actor_id) = actor_id {
            let p = sql.bind(actor_id, Type::TEXT);
            sql.and(format!("actor_id = {p} collate \"C\""));
        }
        for (column, value) in [
            ("actor_type", actor_type),
            ("actor_email", actor_email),
            ("request_id", request_id),
        ] {
            if let Some(value) = value {
                let p = sql.bind(value, Type::TEXT);
                sql.and(format!("{column} = {p}"));
            }
        }
        if let Some(txid) = txid {
            let p = sql.bind(txid, Type::INT8);
            sql.and(format!("txid = {p}"));
        }
        if let Some(field) = changed_field {
            let p = sql.bind(vec![field], Type::TEXT_ARRAY);
            sql.and(format!("changed_fields operator(pg_catalog.@>) {p}"));
        }
        if let Some(contains) = metadata_contains {
            if !contains.is_object() {
                return Err(Error::invalid_argument(
                    "metadataContains",
                    format!("must be an object such as {{\"reason\": \"gdpr\"}}, got {contains}"),
                ));
            }
            let p = sql.bind(contains, Type::JSONB);
            sql.and(format!("metadata operator(pg_catalog.@>) {p}"));
        }
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(Error::invalid_argument(
                    "from",
                    format!("{from} is after to ({to})"),
                ));
            }
        }
        if let Some(from) = from {
            let p = sql.bind(from, Type::TIMESTAMPTZ);
            sql.and(format!("created_at >= {p}"));
        }
        if let Some(to) = to {
            let p = sql.bind(to, Type::TIMESTAMPTZ);
            sql.and(format!("created_at < {p}"));
        }
        Ok(sql)
    }

    pub(crate) async fn query(&self, client: &impl GenericClient, text: &str) -> Result<Vec<Row>> {
        client
            .query_typed(text, &self.params())
            .await
            .map_err(|e| from_query(e, None))
    }
}

pub(crate) fn check_before(before: Option<i64>) -> Result<i64> {
    match before {
        None => Ok(i64::MAX),
        Some(b) if b > 0 => Ok(b),
        Some(b) => Err(Error::invalid_argument(
            "before",
            format!("{b} is not a cursor: cursors are positive entry ids"),
        )),
    }
}

/// A page of entries matching `filters`, older than `before`, newest first; one more than
/// `limit`, to know whether there is a next page.
fn search_query(filters: &Filters, before: i64, limit: i64) -> Result<(String, Sql)> {
    let mut sql = Sql::with_filters(filters)?;
    let before = sql.bind(before, Type::INT8);
    sql.and(format!("id < {before}"));
    let fetch = sql.bind(limit + 1, Type::INT8);
    let text = format!(
        "select {} from audit.audit_logs {} order by id desc limit {fetch}",
        entry_select(),
        sql.where_clause()
    );
    Ok((text, sql))
}

/// The SQL [`crate::AuditLogs::search`] sends for these filters (to time or EXPLAIN it): the
/// filters' values are its first parameters, then `before` (an entry id) and `limit + 1`.
pub fn search_sql(filters: &Filters) -> Result<String> {
    search_query(filters, i64::MAX, 1).map(|(text, _)| text)
}

/// Entries matching `filters`, newest first, one keyset page.
pub(crate) async fn search(
    client: &impl GenericClient,
    filters: &Filters,
    page: &Page,
) -> Result<SearchPage> {
    let limit = page_size(page.limit)?;
    let (text, sql) = search_query(filters, check_before(page.before)?, limit)?;
    let rows = sql.query(client, &text).await?;
    let mut entries: Vec<AuditEntry> = rows.iter().map(AuditEntry::from_row).collect();
    let next_cursor = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(SearchPage {
        entries,
        next_cursor,
    })
}

/// A stream of the entries matching some filters (or of a data subject's, see
/// [`crate::AuditLogs::subject_stream`]), read in batches from one server-side portal of a
/// read-only, repeatable-read transaction: one consistent snapshot, one scan, and memory
/// bounded by two batches whatever the number of rows.
pub struct Batches<T> {
    batches: mpsc::Receiver<Result<Vec<T>>>,
}

/// The entries matching some filters, in batches.
pub type EntryStream = Batches<AuditEntry>;

impl<T> Batches<T> {
    /// The next batch, or `None` at the end. Dropping the stream ends its transaction.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<T>>> {
        self.batches.recv().await.transpose()
    }
}

/// The largest batch of a stream.
pub const MAX_BATCH: u32 = 10_000;

/// The batch of a stream when none is asked for, in Node's `entries()` and the CLI's `export`
/// alike. A thousand rows make the round trip negligible beside the rows themselves, and keep
/// the two batches in memory small even when rows carry large values.
pub const DEFAULT_BATCH: u32 = 1000;

pub(crate) fn stream(
    client: deadpool_postgres::Object,
    filters: &Filters,
    order: Order,
    batch_size: Option<u32>,
) -> Result<EntryStream> {
    let batch_size = self::batch_size(batch_size)?;
    let sql = Sql::with_filters(filters)?;
    let text = format!(
        "select {} from audit.audit_logs {} order by id {}",
        entry_select(),
        sql.where_clause(),
        match order {
            Order::NewestFirst => "desc",
            Order::OldestFirst => "asc",
        }
    );
    stream_rows(client, text, sql, batch_size, AuditEntry::from_row)
}

/// Checks a stream's batch size: 1 to [`MAX_BATCH`], [`DEFAULT_BATCH`] when absent.
pub(crate) fn batch_size(batch_size: Option<u32>) -> Result<u32> {
    let batch_size = batch_size.unwrap_or(DEFAULT_BATCH);
    if !(1..=MAX_BATCH).contains(&batch_size) {
        return Err(Error::invalid_argument(
            "batchSize",
            format!("{batch_size} is not between 1 and {MAX_BATCH}"),
        ));
    }
    Ok(batch_size)
}

/// Runs `text` with `sql`'s parameters in a read-only, repeatable-read transaction and sends
/// its rows, read through a portal `batch_size` at a time and mapped by `read`.
pub(crate) fn stream_rows<T: Send + 'static>(
    client: deadpool_postgres::Object,
    text: String,
    sql: Sql,
    batch_size: u32,
    read: fn(&Row) -> T,
) -> Result<Batches<T>> {
    let (sender, batches) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut client = client;
        let read_all = async {
            let transaction = client
                .build_transaction()
                .read_only(true)
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .start()
                .await?;
            let statement = transaction.prepare_typed(&text, &sql.types()).await?;
            let params: Vec<&(dyn ToSql + Sync)> =
                sql.params().into_iter().map(|(value, _)| value).collect();
            let portal = transaction.bind(&statement, &params).await?;
            loop {
                let rows = transaction.query_portal(&portal, batch_size as i32).await?;
                let last = rows.len() < batch_size as usize;
                let batch = rows.iter().map(read).collect::<Vec<_>>();
                if !batch.is_empty() && sender.send(Ok(batch)).await.is_err() {
                    return Ok(()); // the reader went away
                }
                if last {
                    return Ok(());
                }
            }
        };
        if let Err(e) = read_all.await {
            let _ = sender.send(Err(from_query(e, None))).await;
        }
    });
    Ok(Batches { batches })
}

/// The query behind [`state_at`]: $1 target_type, $2 id (jsonb), $3 at (timestamptz).
/// `audit.state_at` (V12) keeps its plan for the connection, and prunes the months after `at`
/// when it starts.
pub fn state_at_sql() -> String {
    "select state, entry_id from audit.state_at($1, $2, $3)".to_owned()
}

/// A record as it was at `at`: the row after its last change at or before then; `None` when it
/// did not exist then (not yet inserted, deleted, truncated, or its key had changed).
pub(crate) async fn state_at(
    client: &impl GenericClient,
    target_type: &str,
    id: &Value,
    at: DateTime<Utc>,
) -> Result<Option<Value>> {
    check_target_id(id)?;
    let rows = client
        .query_typed(
            &state_at_sql(),
            &[
                (&target_type, Type::TEXT),
                (id, Type::JSONB),
                (&at, Type::TIMESTAMPTZ),
            ],
        )
        .await
        .map_err(|e| from_query(e, Some(target_type)))?;
    Ok(rows.first().and_then(|row| row.get(0)))
}

/// [`state_at`] over a [`Session`](crate::session::Session).
pub(crate) async fn state_at_on(
    db: &impl crate::session::Session,
    target_type: &str,
    id: &Value,
    at: DateTime<Utc>,
) -> Result<Option<Value>> {
    check_target_id(id)?;
    let sql = "select state::pg_catalog.text \
               from audit.state_at($1, $2::pg_catalog.jsonb, $3::pg_catalog.timestamptz)";
    let values = vec![
        Some(target_type.to_owned()),
        Some(id.to_string()),
        Some(at.to_rfc3339()),
    ];
    let rows = db
        .rows(crate::session::Statement::new(sql, values))
        .await
        .map_err(|failure| failure.into_error(Some(target_type)))?;
    rows.into_iter()
        .next()
        .flatten()
        .map(|state| {
            serde_json::from_str(&state)
                .map_err(|e| Error::internal("a state read back as JSON", e))
        })
        .transpose()
}

/// A record and a time, for [`states_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct StatePoint {
    pub id: Value,
    pub at: DateTime<Utc>,
}

/// A record's state at a time, as `statesAt` returns it. Unlike other outputs, `state` and
/// `entryId` are always there, null when there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_from_js = false, use_nullable = true)
)]
pub struct PointState {
    #[cfg_attr(
        feature = "napi",
        napi(ts_type = "string | number | Array<string | number | boolean | null>")
    )]
    pub id: Value,
    pub at: DateTime<Utc>,
    /// The row as it was, or null if it did not exist then.
    // napi adds `| null` (use_nullable).
    #[cfg_attr(feature = "napi", napi(ts_type = "Record<string, unknown>"))]
    pub state: Option<Value>,
    /// The entry the state comes from; null when there is none.
    pub entry_id: Option<i64>,
}

/// The query behind [`states_at`]: $1 target_type, $2 ids (jsonb[]), $3 times (timestamptz[]);
/// one row per point, in order (`audit.states_at`, V12).
pub fn states_at_sql() -> String {
    "select state, entry_id from audit.states_at($1, $2, $3)".to_owned()
}

/// The most points one call answers.
pub const MAX_POINTS: usize = 10_000;

/// Many records at many times in one query, in the order given (say, the user's and the
/// organization's state at the time of each moderation of them).
pub(crate) async fn states_at(
    client: &impl GenericClient,
    target_type: &str,
    points: &[StatePoint],
) -> Result<Vec<PointState>> {
    if points.len() > MAX_POINTS {
        return Err(Error::invalid_argument(
            "points",
            format!(
                "{} given; ask for at most {MAX_POINTS} at once",
                points.len()
            ),
        ));
    }
    for point in points {
        check_target_id(&point.id)?;
    }
    let ids: Vec<&Value> = points.iter().map(|p| &p.id).collect();
    let times: Vec<DateTime<Utc>> = points.iter().map(|p| p.at).collect();
    let rows = client
        .query_typed(
            &states_at_sql(),
            &[
                (&target_type, Type::TEXT),
                (&ids, Type::JSONB_ARRAY),
                (&times, Type::TIMESTAMPTZ_ARRAY),
            ],
        )
        .await
        .map_err(|e| from_query(e, Some(target_type)))?;
    Ok(points
        .iter()
        .zip(rows)
        .map(|(point, row)| PointState {
            id: point.id.clone(),
            at: point.at,
            state: row.get(0),
            entry_id: row.get(1),
        })
        .collect())
}

/// One change of one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct FieldChange {
    pub entry_id: i64,
    pub created_at: DateTime<Utc>,
    pub txid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    /// The value before and after (absent for an excluded column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Every UPDATE of `field` of the table (of one record when `id` is given), newest first.
pub(crate) async fn field_changes(
    client: &impl GenericClient,
    target_type: &str,
    field: &str,
    id: Option<&Value>,
    filters: &Filters,
    page: &Page,
) -> Result<Vec<FieldChange>> {
    if field.is_empty() {
        return Err(Error::invalid_argument("field", "give a column name"));
    }
    let filters = Filters {
        target_type: Some(target_type.to_owned()),
        target_id: id.cloned(),
        actions: vec!["UPDATE".into()],
        changed_field: Some(field.to_owned()),
        ..filters.clone()
    };
    let limit = page_size(page.limit)?;
    let mut sql = Sql::with_filters(&filters)?;
    let before = sql.bind(check_before(page.before)?, Type::INT8);
    sql.and(format!("id < {before}"));
    let field = sql.bind(field.to_owned(), Type::TEXT);
    let limit = sql.bind(limit, Type::INT8);
    let text = format!(
        "select id, created_at, txid, target_id, old_values operator(pg_catalog.->) {field},
                new_values operator(pg_catalog.->) {field}, actor_id, actor_type, actor_email, request_id
           from audit.audit_logs {} order by id desc limit {limit}",
        sql.where_clause()
    );
    let rows = sql.query(client, &text).await?;
    Ok(rows
        .iter()
        .map(|row| FieldChange {
            entry_id: row.get(0),
            created_at: row.get(1),
            txid: row.get(2),
            target_id: row.get(3),
            old_value: row.get(4),
            new_value: row.get(5),
            actor_id: row.get(6),
            actor_type: row.get(7),
            actor_email: row.get(8),
            request_id: row.get(9),
        })
        .collect())
}

/// What [`counts`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountKey {
    TargetType,
    Action,
    ActorId,
    ActorType,
    ActorEmail,
    /// A time bucket (in UTC): at most one per call.
    Hour,
    Day,
    Week,
    Month,
}

impl CountKey {
    /// `targetType`, `action`, `actorId`, `actorType`, `actorEmail`, `hour`, `day`, `week`, `month`.
    pub fn parse(name: &str) -> Result<CountKey> {
        Ok(match name {
            "targetType" | "target_type" | "table" => CountKey::TargetType,
            "action" => CountKey::Action,
            "actorId" | "actor_id" => CountKey::ActorId,
            "actorType" | "actor_type" => CountKey::ActorType,
            "actorEmail" | "actor_email" => CountKey::ActorEmail,
            "hour" => CountKey::Hour,
            "day" => CountKey::Day,
            "week" => CountKey::Week,
            "month" => CountKey::Month,
            other => {
                return Err(Error::invalid_argument(
                    "groupBy",
                    format!("{other:?} is not one of targetType, action, actorId, actorType, actorEmail, hour, day, week, month"),
                ))
            }
        })
    }

    fn column(self) -> &'static str {
        match self {
            CountKey::TargetType => "target_type",
            CountKey::Action => "action",
            CountKey::ActorId => "actor_id",
            CountKey::ActorType => "actor_type",
            CountKey::ActorEmail => "actor_email",
            CountKey::Hour => "pg_catalog.date_trunc('hour', created_at, 'UTC')",
            CountKey::Day => "pg_catalog.date_trunc('day', created_at, 'UTC')",
            CountKey::Week => "pg_catalog.date_trunc('week', created_at, 'UTC')",
            CountKey::Month => "pg_catalog.date_trunc('month', created_at, 'UTC')",
        }
    }

    fn is_period(self) -> bool {
        matches!(
            self,
            CountKey::Hour | CountKey::Day | CountKey::Week | CountKey::Month
        )
    }
}

/// One group of `counts`: the keys grouped by are set, the others absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct CountRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_email: Option<String>,
    /// The start of the hour, day, week or month (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<DateTime<Utc>>,
    pub count: i64,
}

/// The number of entries matching `filters` per group, ordered by the keys.
pub(crate) async fn counts(
    client: &impl GenericClient,
    group_by: &[CountKey],
    filters: &Filters,
) -> Result<Vec<CountRow>> {
    let mut keys = group_by.to_vec();
    keys.dedup();
    if keys.iter().filter(|k| k.is_period()).count() > 1 {
        return Err(Error::invalid_argument(
            "groupBy",
            "group by at most one of hour, day, week and month",
        ));
    }
    let sql = Sql::with_filters(filters)?;
    let columns: Vec<&str> = keys.iter().map(|k| k.column()).collect();
    let text = if columns.is_empty() {
        format!(
            "select count(*) from audit.audit_logs {}",
            sql.where_clause()
        )
    } else {
        let positions: Vec<String> = (1..=columns.len()).map(|n| n.to_string()).collect();
        format!(
            "select {}, count(*) from audit.audit_logs {} group by {} order by {}",
            columns.join(", "),
            sql.where_clause(),
            positions.join(", "),
            positions.join(", ")
        )
    };
    let rows = sql.query(client, &text).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let mut count = CountRow {
                count: row.get(keys.len()),
                ..Default::default()
            };
            for (i, key) in keys.iter().enumerate() {
                match key {
                    CountKey::TargetType => count.target_type = row.get(i),
                    CountKey::Action => count.action = row.get(i),
                    CountKey::ActorId => count.actor_id = row.get(i),
                    CountKey::ActorType => count.actor_type = row.get(i),
                    CountKey::ActorEmail => count.actor_email = row.get(i),
                    _ => count.period = row.get(i),
                }
            }
            count
        })
        .collect())
}

/// Who a burst is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BurstKey {
    #[default]
    ActorId,
    ActorEmail,
    IpAddress,
}

impl BurstKey {
    pub fn parse(name: &str) -> Result<BurstKey> {
        Ok(match name {
            "actorId" | "actor_id" => BurstKey::ActorId,
            "actorEmail" | "actor_email" => BurstKey::ActorEmail,
            "ipAddress" | "ip_address" => BurstKey::IpAddress,
            other => {
                return Err(Error::invalid_argument(
                    "by",
                    format!("{other:?} is not one of actorId, actorEmail, ipAddress"),
                ))
            }
        })
    }

    fn column(self) -> &'static str {
        match self {
            BurstKey::ActorId => "actor_id",
            BurstKey::ActorEmail => "actor_email",
            BurstKey::IpAddress => "pg_catalog.host(ip_address)",
        }
    }
}

/// The busiest window of one actor (or address) that reached the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct Burst {
    /// The actor id, e-mail or IP address (absent for entries without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Entries within the window.
    pub changes: i64,
    pub first_change: DateTime<Utc>,
    pub last_change: DateTime<Utc>,
}

/// How far back [`bursts`] looks when `filters.from` is not given.
pub const DEFAULT_BURST_LOOKBACK_HOURS: i64 = 24;

/// "Suspicious activity": for each actor, the sliding window of length `window`
/// (a PostgreSQL interval such as `'10 minutes'`) with the most entries, when it holds at least
/// `threshold`. Most active first. Looks at the last 24 hours unless `filters.from` says otherwise.
pub(crate) async fn bursts(
    client: &impl GenericClient,
    window: &str,
    threshold: i64,
    by: BurstKey,
    filters: &Filters,
) -> Result<Vec<Burst>> {
    if threshold < 1 {
        return Err(Error::invalid_argument(
            "threshold",
            format!("{threshold} is not a positive number of entries"),
        ));
    }
    let positive: Option<bool> = client
        .query_one(
            "select $1::pg_catalog.text::pg_catalog.interval > interval '0'",
            &[&window],
        )
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) if db.code().code().starts_with("22") => Error::invalid_argument(
                "window",
                format!("{window:?} is not a PostgreSQL interval such as '10 minutes' or '1 hour'"),
            ),
            _ => from_query(e, None),
        })?
        .get(0);
    if positive != Some(true) {
        return Err(Error::invalid_argument(
            "window",
            format!("{window:?} is not a positive interval"),
        ));
    }
    let mut filters = filters.clone();
    filters.from = filters.from.or_else(|| {
        Some(
            filters.to.unwrap_or_else(Utc::now)
                - chrono::Duration::hours(DEFAULT_BURST_LOOKBACK_HOURS),
        )
    });
    let mut sql = Sql::with_filters(&filters)?;
    let window = sql.bind(window.to_owned(), Type::TEXT);
    let threshold = sql.bind(threshold, Type::INT8);
    let text = format!(
        "select key, changes, first_change, last_change from (
           select distinct on (key) key, changes, first_change, last_change
             from (select key, created_at as last_change,
                          count(*) over w as changes,
                          min(created_at) over w as first_change
                     from (select {} as key, created_at from audit.audit_logs {}) as entries
                   window w as (partition by key order by created_at
                                range between {window}::pg_catalog.interval preceding and current row)) as windows
            where changes >= {threshold}
            order by key, changes desc, last_change
         ) as busiest
         order by changes desc, key",
        by.column(),
        sql.where_clause()
    );
    let rows = sql.query(client, &text).await?;
    Ok(rows
        .iter()
        .map(|row| Burst {
            key: row.get(0),
            changes: row.get(1),
            first_change: row.get(2),
            last_change: row.get(3),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_rfc_3339_and_in_postgresql_text_form() {
        let expected: DateTime<Utc> = "2026-11-30T09:27:03.020Z".parse().unwrap();
        for text in [
            "2026-11-30T09:27:03.02Z",
            "2026-11-30T09:27:03.02+00:00",
            "2026-11-30 09:27:03.02Z",
            "2026-11-30 09:27:03.02+00",
            "2026-11-30 10:27:03.02+01",
            "2026-11-30 14:57:03.02+05:30",
            "2026-11-30 09:27:03.020000+0000",
            " 2026-11-30T10:27:03.02+01:00 ",
        ] {
            assert_eq!(parse_time(text, "at").unwrap(), expected, "{text}");
        }
        assert_eq!(
            parse_time("2026-11-30 09:27:03+00", "at").unwrap(),
            "2026-11-30T09:27:03Z".parse::<DateTime<Utc>>().unwrap()
        );
        for text in ["2026-11-30 09:27:03", "yesterday", "", "2026-11-30"] {
            let err = parse_time(text, "at").unwrap_err();
            assert_eq!(err.code(), "AUDIT_LOGS_INVALID_ARGUMENT");
            assert!(err.to_string().contains("invalid argument at"), "{err}");
        }
    }

    #[test]
    fn search_sql_binds_every_value_and_refuses_an_unresolved_table() {
        let sql = search_sql(&Filters {
            actor_id: Some("x' or 1=1 --".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(
            sql.contains("actor_id = $1") && !sql.contains("or 1=1"),
            "{sql}"
        );
        let err = search_sql(&Filters {
            table: Some("users".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.code(), "AUDIT_LOGS_INVALID_ARGUMENT");
    }
}
