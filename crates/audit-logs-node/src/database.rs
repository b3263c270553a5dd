//! The exports of the native build that use audit-logs' own connections: the pool
//! (`AuditLogs`), its streams, the throwaway server and the command line.

pub(crate) mod protect;
pub(crate) mod revert;

use audit_logs_core as core;
use chrono::{DateTime, Utc};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Serialize;
use serde_json::Value;

use crate::{events_and_context, promise, LogOptions};

/// A JavaScript type as a message names it: "a number", "undefined".
fn js_type_name(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::Object => "an object",
        ValueType::Function => "a function",
        ValueType::BigInt => "a bigint",
        _ => "an unsupported value",
    }
}

/// A table named without SQL quoting: `{ schema: 'Sales', name: 'Order Items' }`.
#[napi(object)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

pub(crate) fn table_ref(table: Either<String, TableName>) -> core::TableRef {
    match table {
        Either::A(sql) => core::TableRef::Sql(sql),
        Either::B(TableName { schema, name }) => core::TableRef::Exact { schema, name },
    }
}

/// Options of {@link AuditLogs.history}: give `table` (row changes) or `targetType` (events).
#[napi(object)]
pub struct HistoryOptions {
    /// The table whose row it is (it may have been dropped since).
    pub table: Option<Either<String, TableName>>,
    /// Any `target_type`, for application events.
    pub target_type: Option<String>,
    /// The primary key; an array for a composite key.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// Only entries older than this entry id (to page).
    pub before: Option<i64>,
    /// Also read the months archived and dropped from the live log (`archive({ thenDrop })`
    /// or retention with `archiveTo`), from their archives, ranges at a time. Needs the AWS
    /// credentials for an `s3://` archive. Default: false.
    pub include_archive: Option<bool>,
}

/// A time: a `Date`, or an ISO 8601 string with a time zone.
pub(crate) type Time = Either<DateTime<Utc>, String>;

pub(crate) fn time(value: Time, name: &str) -> core::Result<DateTime<Utc>> {
    match value {
        Either::A(at) => Ok(at),
        Either::B(text) => core::queries::parse_time(&text, name),
    }
}

fn time_range(from: Option<Time>, to: Option<Time>) -> core::Result<core::TimeRange> {
    Ok(core::TimeRange {
        from: from.map(|t| time(t, "from")).transpose()?,
        to: to.map(|t| time(t, "to")).transpose()?,
    })
}

/// Which entries {@link AuditLogs.search}, `entries`, `counts` and `bursts` read. Every filter
/// given must hold.
#[napi(object)]
pub struct Filters {
    /// A table (its rows' changes); it may have been dropped since.
    #[napi(ts_type = "string | TableName | undefined")]
    pub table: Option<Either<String, TableName>>,
    /// Any `target_type` (a table's `schema.table`, or an event's).
    #[napi(ts_type = "string | undefined")]
    pub target_type: Option<String>,
    /// One record's key (an array for a composite key) or an event target's id.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null> | undefined")]
    pub target_id: Option<Value>,
    /// One action or any of several: `'UPDATE'`, `['user.login', 'user.logout']`.
    #[napi(ts_type = "string | Array<string> | undefined")]
    pub action: Option<Either<String, Vec<String>>>,
    #[napi(ts_type = "string | undefined")]
    pub actor_id: Option<String>,
    #[napi(ts_type = "string | undefined")]
    pub actor_type: Option<String>,
    #[napi(ts_type = "string | undefined")]
    pub actor_email: Option<String>,
    #[napi(ts_type = "string | undefined")]
    pub request_id: Option<String>,
    #[napi(ts_type = "number | undefined")]
    pub txid: Option<i64>,
    /// UPDATEs that changed this column.
    #[napi(ts_type = "string | undefined")]
    pub changed_field: Option<String>,
    /// Entries whose metadata contains this object, e.g. `{ reason: 'gdpr' }`.
    #[napi(ts_type = "any | undefined")]
    pub metadata_contains: Option<Value>,
    /// `from <= createdAt`.
    #[napi(ts_type = "Date | string | undefined")]
    pub from: Option<Time>,
    /// `createdAt < to`.
    #[napi(ts_type = "Date | string | undefined")]
    pub to: Option<Time>,
}

fn filters(filters: Option<Filters>) -> core::Result<core::Filters> {
    let Some(f) = filters else {
        return Ok(core::Filters::default());
    };
    let range = time_range(f.from, f.to)?;
    Ok(core::Filters {
        table: f.table.map(table_ref),
        target_type: f.target_type,
        target_id: f.target_id,
        actions: match f.action {
            None => Vec::new(),
            Some(Either::A(action)) => vec![action],
            Some(Either::B(actions)) => actions,
        },
        actor_id: f.actor_id,
        actor_type: f.actor_type,
        actor_email: f.actor_email,
        request_id: f.request_id,
        txid: f.txid,
        changed_field: f.changed_field,
        metadata_contains: f.metadata_contains,
        from: range.from,
        to: range.to,
    })
}

/// A page of a list, newest first.
#[napi(object)]
pub struct PageOptions {
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page as the core takes it: the cursor is the previous page's `nextCursor`.
fn page_options(page: Option<PageOptions>) -> core::Result<core::Page> {
    page.map_or(Ok(core::Page::default()), |p| {
        Ok(core::Page {
            limit: p.limit,
            before: p
                .cursor
                .as_deref()
                .map(core::queries::parse_cursor)
                .transpose()?,
        })
    })
}

/// A value on its way to JavaScript, built by `JSON.parse` from serde's text of it rather than
/// a property at a time through napi, each of which is a call across the boundary (about 70 µs
/// less for fifty entries). So every helper gives values as `pg` reads the same JSON: a number
/// past 2^53 is a number, where napi made a BigInt that `JSON.stringify` throws on (a state sent
/// with `res.json()`). The text is serde's form of the same struct, so the shape is still
/// declared once; then each time becomes a `Date`, as the types say ([`Dates`]).
pub struct Parsed<T>(pub T);

/// Entries, as every helper listing them gives them.
pub type Entries = Parsed<Vec<core::AuditEntry>>;

/// One entry, made as each of [`Entries`], so that `log()` gives what `history()` reads back.
pub type Entry = Parsed<core::AuditEntry>;

/// Where a value's times are, to set them as `Date`s on what `JSON.parse` made of it. The casts
/// below cannot fail: serde's text of a struct parses to an object, of a `Vec` to an array.
pub trait Dates {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()>;
}

fn set_date(env: &Env, parsed: Unknown, key: &str, time: &DateTime<Utc>) -> Result<()> {
    let mut object: Object = unsafe { parsed.cast()? };
    object.set_named_property(key, env.create_date(time.timestamp_millis() as f64)?)
}

impl Dates for core::AuditEntry {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        set_date(env, parsed, "createdAt", &self.created_at)
    }
}

impl Dates for core::FieldChange {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        set_date(env, parsed, "createdAt", &self.created_at)
    }
}

impl Dates for core::PointState {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        set_date(env, parsed, "at", &self.at)
    }
}

impl Dates for core::SubjectEntry {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        let object: Object = unsafe { parsed.cast()? };
        self.entry
            .set_dates(env, object.get_named_property("entry")?)
    }
}

/// Values (a record's state, a revert's) hold no times of their own.
impl Dates for Value {
    fn set_dates(&self, _: &Env, _: Unknown) -> Result<()> {
        Ok(())
    }
}

impl Dates for core::RevertReport {
    fn set_dates(&self, _: &Env, _: Unknown) -> Result<()> {
        Ok(())
    }
}

impl<T: Dates> Dates for Option<T> {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        match self {
            Some(value) => value.set_dates(env, parsed),
            None => Ok(()),
        }
    }
}

impl<T: Dates> Dates for Vec<T> {
    fn set_dates(&self, env: &Env, parsed: Unknown) -> Result<()> {
        let array: Array = unsafe { parsed.cast()? };
        for (index, item) in self.iter().enumerate() {
            item.set_dates(env, array.get_element(index as u32)?)?;
        }
        Ok(())
    }
}

impl<T: Serialize + Dates> ToNapiValue for Parsed<T> {
    unsafe fn to_napi_value(raw_env: sys::napi_env, value: Self) -> Result<sys::napi_value> {
        let env = Env::from_raw(raw_env);
        let text = serde_json::to_string(&value.0).map_err(|e| {
            Error::from_reason(format!("audit-logs: a result not serializable: {e}"))
        })?;
        let json: napi::JSON = env.get_global()?.get_named_property_unchecked("JSON")?;
        let parse: Function<String, Unknown> = json.get_named_property_unchecked("parse")?;
        let parsed = parse.call(text)?;
        value.0.set_dates(&env, parsed)?;
        Ok(parsed.raw())
    }
}

/// A page of {@link AuditLogs.search} results.
#[napi(object, object_from_js = false)]
pub struct SearchPage {
    #[napi(ts_type = "Array<AuditLogEntry>")]
    pub entries: Entries,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of {@link AuditLogs.subject} results.
#[napi(object, object_from_js = false)]
pub struct SubjectPage {
    #[napi(ts_type = "Array<SubjectEntry>")]
    pub entries: Parsed<Vec<core::SubjectEntry>>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Options of {@link AuditLogs.byActor} and {@link AuditLogs.byRequest}.
#[napi(object)]
pub struct RangeOptions {
    #[napi(ts_type = "Date | string")]
    pub from: Option<Time>,
    #[napi(ts_type = "Date | string")]
    pub to: Option<Time>,
    /// 1 to 10000. Default: 100.
    pub limit: Option<u32>,
    /// Only entries older than this entry id (to page).
    pub before: Option<i64>,
}

fn range_and_page(options: Option<RangeOptions>) -> core::Result<(core::TimeRange, core::Page)> {
    let Some(o) = options else {
        return Ok(Default::default());
    };
    let page = core::Page {
        limit: o.limit,
        before: o.before,
    };
    Ok((time_range(o.from, o.to)?, page))
}

/// Options of {@link AuditLogs.byTransaction}.
#[napi(object)]
pub struct TransactionOptions {
    /// The `createdAt` of one of its entries (all share it).
    #[napi(ts_type = "Date | string")]
    pub at: Option<Time>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

/// Options of {@link AuditLogs.stateAt}.
#[napi(object)]
pub struct StateAtOptions {
    pub table: Either<String, TableName>,
    /// The primary key; an array for a composite key.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    #[napi(ts_type = "Date | string")]
    pub at: Time,
}

/// A record and a time, for {@link AuditLogs.statesAt}.
#[napi(object)]
pub struct StatePoint {
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Value,
    #[napi(ts_type = "Date | string")]
    pub at: Time,
}

/// Options of {@link AuditLogs.statesAt}.
#[napi(object)]
pub struct StatesAtOptions {
    pub table: Either<String, TableName>,
    /// At most 10000.
    pub points: Vec<StatePoint>,
}

/// Options of {@link AuditLogs.fieldChanges}.
#[napi(object)]
pub struct FieldChangesOptions {
    pub table: Either<String, TableName>,
    /// The column.
    pub field: String,
    /// Only this record's changes.
    #[napi(ts_type = "string | number | Array<string | number | boolean | null>")]
    pub id: Option<Value>,
    #[napi(ts_type = "Date | string")]
    pub from: Option<Time>,
    #[napi(ts_type = "Date | string")]
    pub to: Option<Time>,
    pub limit: Option<u32>,
    pub before: Option<i64>,
}

/// Options of {@link AuditLogs.bursts}.
#[napi(object)]
pub struct BurstOptions {
    /// A PostgreSQL interval: `'10 minutes'`, `'1 hour'`.
    pub window: String,
    /// At least this many entries within the window.
    pub threshold: i64,
    /// Default: `actorId`.
    #[napi(ts_type = "'actorId' | 'actorEmail' | 'ipAddress'")]
    pub by: Option<String>,
}

/// Options of `entries()`.
#[napi(object)]
pub struct StreamOptions {
    /// Default: `newest`.
    #[napi(ts_type = "'newest' | 'oldest'")]
    pub order: Option<String>,
    /// Rows fetched per round trip, 1 to 10000. Default: 1000 (as the CLI's `export`).
    pub batch_size: Option<u32>,
}

/// A core stream shared by a JS batch reader: taken by each `next`, dropped by `close` or at
/// its end (which gives its connection back).
#[derive(Clone)]
struct OpenStream<T>(std::sync::Arc<tokio::sync::Mutex<Option<core::Batches<T>>>>);

impl<T: Send + 'static> OpenStream<T> {
    fn new(stream: core::Batches<T>) -> Self {
        OpenStream(std::sync::Arc::new(tokio::sync::Mutex::new(Some(stream))))
    }

    async fn next(self) -> core::Result<Option<Vec<T>>> {
        let mut guard = self.0.lock().await;
        let Some(open) = guard.as_mut() else {
            return Ok(None);
        };
        let batch = open.next_batch().await?;
        if batch.is_none() {
            *guard = None;
        }
        Ok(batch)
    }

    fn close(&self) {
        if let Ok(mut guard) = self.0.try_lock() {
            *guard = None;
        } else {
            // A batch is being read: drop the stream when it is done.
            let stream = self.0.clone();
            napi::bindgen_prelude::spawn(async move {
                *stream.lock().await = None;
            });
        }
    }
}

/// Batches of entries from one consistent snapshot (see `AuditLogs.entries`).
#[napi]
pub struct EntryBatches {
    stream: OpenStream<core::AuditEntry>,
}

#[napi]
impl EntryBatches {
    /// The next batch, or null at the end.
    #[napi(ts_return_type = "Promise<AuditLogEntry[] | null>")]
    pub fn next<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Parsed<Option<Vec<core::AuditEntry>>>>> {
        let batch = self.stream.clone().next();
        promise(env, async move { Ok(Parsed(batch.await?)) })
    }

    /// Ends the stream early and gives its connection back.
    #[napi]
    pub fn close(&self) {
        self.stream.close()
    }
}

/// A connection pool on one database, and everything audit-logs does with it.
#[napi]
pub struct AuditLogs {
    pub(crate) inner: core::AuditLogs,
}

#[napi]
impl AuditLogs {
    /// Connects with a URL as psql and Prisma write it (`?sslmode=`, `?schema=`,
    /// `?connection_limit=`... are understood). Rejects with `AUDIT_LOGS_INVALID_URL`,
    /// `AUDIT_LOGS_CONNECTION_FAILED`, `AUDIT_LOGS_AUTHENTICATION_FAILED` or `AUDIT_LOGS_TLS_FAILED`.
    #[napi(ts_args_type = "url: string", ts_return_type = "Promise<AuditLogs>")]
    pub fn connect<'env>(
        env: &'env Env,
        url: Unknown<'env>,
    ) -> Result<PromiseRaw<'env, AuditLogs>> {
        // Taken as any value so that a URL that is not a string rejects with a coded error, as a
        // malformed one does: napi's own check would throw, and a static method cannot be
        // wrapped in JS (the class's properties are not configurable).
        let url = match url.get_type()? {
            // SAFETY: the value was just checked to be a string.
            ValueType::String => Ok(unsafe { url.cast::<String>() }?),
            other => Err(core::Error::Connection(core::ConnectionError::InvalidUrl {
                reason: format!(
                    "the URL is {}, not a string: pass a connection string such as postgres://user:password@host:5432/database",
                    js_type_name(other)
                ),
            })),
        };
        promise(env, async move {
            core::AuditLogs::connect(&url?)
                .await
                .map(|inner| AuditLogs { inner })
        })
    }

    /// Installs or upgrades the audit schema; concurrent calls apply each migration once.
    /// With `dryRun`, reports what would run and changes nothing.
    #[napi(ts_return_type = "Promise<MigrateReport>")]
    pub fn migrate<'env>(
        &self,
        env: &'env Env,
        dry_run: Option<bool>,
    ) -> Result<PromiseRaw<'env, core::MigrateReport>> {
        let inner = self.inner.clone();
        promise(
            env,
            async move { inner.migrate(dry_run.unwrap_or(false)).await },
        )
    }

    /// Applied and pending migrations, and the tracked tables.
    #[napi(ts_return_type = "Promise<Status>")]
    pub fn status<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, core::Status>> {
        let inner = self.inner.clone();
        promise(env, async move { inner.status().await })
    }

    /// Records every INSERT, UPDATE, DELETE and TRUNCATE of the table. Idempotent; call it
    /// again after altering the table. Rejects with `AUDIT_LOGS_NO_PRIMARY_KEY`,
    /// `AUDIT_LOGS_TABLE_NOT_FOUND`, `AUDIT_LOGS_INVALID_TABLE_NAME`, `AUDIT_LOGS_NOT_A_TABLE`,
    /// `AUDIT_LOGS_INVALID_COLUMN` or `AUDIT_LOGS_NOT_MIGRATED`.
    #[napi(ts_return_type = "Promise<TrackedTable>")]
    pub fn enable_tracking<'env>(
        &self,
        env: &'env Env,
        table: Either<String, TableName>,
        options: Option<core::TrackingOptions>,
    ) -> Result<PromiseRaw<'env, core::TrackedTable>> {
        let inner = self.inner.clone();
        let table = table_ref(table);
        let options = options.unwrap_or_default();
        promise(
            env,
            async move { inner.enable_tracking(&table, &options).await },
        )
    }

    /// Stops recording the table's changes (its history is kept). Resolves to whether it was tracked.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn disable_tracking<'env>(
        &self,
        env: &'env Env,
        table: Either<String, TableName>,
    ) -> Result<PromiseRaw<'env, bool>> {
        let inner = self.inner.clone();
        let table = table_ref(table);
        promise(env, async move { inner.disable_tracking(&table).await })
    }

    /// The tracked tables and their options.
    #[napi(ts_return_type = "Promise<TrackedTable[]>")]
    pub fn tracked_tables<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Vec<core::TrackedTable>>> {
        let inner = self.inner.clone();
        promise(env, async move { inner.tracked_tables().await })
    }

    /// The entries of one record, newest first. Rejects with `AUDIT_LOGS_INVALID_ARGUMENT` for
    /// a bad `limit`, `before` or `id`.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn history<'env>(
        &self,
        env: &'env Env,
        options: HistoryOptions,
    ) -> Result<PromiseRaw<'env, Entries>> {
        let inner = self.inner.clone();
        let target = core::Target::one_of(options.table.map(table_ref), options.target_type);
        promise(env, async move {
            let query = core::HistoryQuery {
                target: target?,
                id: options.id,
                limit: options.limit,
                before: options.before,
                include_archive: options.include_archive.unwrap_or(false),
            };
            inner.history(&query).await.map(Parsed)
        })
    }

    /// Records an application event; the context fields it leaves empty come from
    /// `options.context`, then from nothing. Rejects with `AUDIT_LOGS_INVALID_EVENT` or
    /// `AUDIT_LOGS_INVALID_CONTEXT` before anything is written.
    #[napi(
        ts_args_type = "input: CreateAuditLogInput, options?: LogOptions | undefined | null",
        ts_return_type = "Promise<AuditLogEntry>"
    )]
    pub fn log<'env>(
        &self,
        env: &'env Env,
        input: Value,
        options: Option<LogOptions>,
    ) -> Result<PromiseRaw<'env, Entry>> {
        let inner = self.inner.clone();
        let prepared = events_and_context(vec![input], options);
        promise(env, async move {
            let (events, context) = prepared?;
            inner.log(&events[0], context.as_ref()).await.map(Parsed)
        })
    }

    /// Records up to 10000 events in one statement, all or none; resolves to them in order.
    #[napi(
        ts_args_type = "inputs: Array<CreateAuditLogInput>, options?: LogOptions | undefined | null",
        ts_return_type = "Promise<AuditLogEntry[]>"
    )]
    pub fn log_many<'env>(
        &self,
        env: &'env Env,
        inputs: Vec<Value>,
        options: Option<LogOptions>,
    ) -> Result<PromiseRaw<'env, Entries>> {
        let inner = self.inner.clone();
        let prepared = events_and_context(inputs, options);
        promise(env, async move {
            let (events, context) = prepared?;
            inner.log_many(&events, context.as_ref()).await.map(Parsed)
        })
    }

    /// The record as it was at `at`, or null if it did not exist then (or was not tracked yet).
    #[napi(ts_return_type = "Promise<Record<string, unknown> | null>")]
    pub fn state_at<'env>(
        &self,
        env: &'env Env,
        options: StateAtOptions,
    ) -> Result<PromiseRaw<'env, Parsed<Option<Value>>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let at = time(options.at, "at");
        promise(env, async move {
            inner.state_at(&table, &options.id, at?).await.map(Parsed)
        })
    }

    /// Many records at many times in one query, in the order given.
    #[napi(ts_return_type = "Promise<PointState[]>")]
    pub fn states_at<'env>(
        &self,
        env: &'env Env,
        options: StatesAtOptions,
    ) -> Result<PromiseRaw<'env, Parsed<Vec<core::PointState>>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let points = options
            .points
            .into_iter()
            .map(|p| {
                Ok(core::StatePoint {
                    id: p.id,
                    at: time(p.at, "at")?,
                })
            })
            .collect::<core::Result<Vec<_>>>();
        promise(env, async move {
            inner.states_at(&table, &points?).await.map(Parsed)
        })
    }

    /// Entries matching `filters`, newest first, a page at a time (keyset: pass `nextCursor`).
    #[napi(ts_return_type = "Promise<SearchPage>")]
    pub fn search<'env>(
        &self,
        env: &'env Env,
        filters: Option<Filters>,
        page: Option<PageOptions>,
    ) -> Result<PromiseRaw<'env, SearchPage>> {
        let inner = self.inner.clone();
        let filters = self::filters(filters);
        let page = page_options(page);
        promise(env, async move {
            let result = inner.search(&filters?, &page?).await?;
            Ok(SearchPage {
                entries: Parsed(result.entries),
                // Opaque to JavaScript, and exact beyond 2^53.
                next_cursor: result.next_cursor.map(|id| id.to_string()),
            })
        })
    }

    /// Every entry that mentions a data subject (GDPR access request), with where in it
    /// (`paths`), newest first, a page at a time. `actorId` is compared with the entries'
    /// actor; `email`, `ipAddress` and `values` are found as whole words, ignoring case, in the
    /// actor columns, target ids, and old and new values and metadata at any depth. Reads the
    /// whole log once per page: ask for large pages. Needs only the `audit_reader` role. Rejects
    /// with `AUDIT_LOGS_INVALID_SUBJECT` (nothing given, a value shorter than 2 characters, an
    /// address that is not one).
    #[napi(ts_return_type = "Promise<SubjectPage>")]
    pub fn subject<'env>(
        &self,
        env: &'env Env,
        subject: core::DataSubject,
        page: Option<PageOptions>,
    ) -> Result<PromiseRaw<'env, SubjectPage>> {
        let inner = self.inner.clone();
        let page = page_options(page);
        promise(env, async move {
            let result = inner.subject(&subject, &page?).await?;
            Ok(SubjectPage {
                entries: Parsed(result.entries),
                next_cursor: result.next_cursor.map(|id| id.to_string()),
            })
        })
    }

    /// What one actor did, newest first.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_actor<'env>(
        &self,
        env: &'env Env,
        actor_id: String,
        options: Option<RangeOptions>,
    ) -> Result<PromiseRaw<'env, Entries>> {
        let inner = self.inner.clone();
        let options = range_and_page(options);
        promise(env, async move {
            let (range, page) = options?;
            inner.by_actor(&actor_id, range, &page).await.map(Parsed)
        })
    }

    /// What one request did, newest first. Give `from`/`to` around the request when you can:
    /// request ids are not indexed, and a time range reads only those blocks.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_request<'env>(
        &self,
        env: &'env Env,
        request_id: String,
        options: Option<RangeOptions>,
    ) -> Result<PromiseRaw<'env, Entries>> {
        let inner = self.inner.clone();
        let options = range_and_page(options);
        promise(env, async move {
            let (range, page) = options?;
            inner
                .by_request(&request_id, range, &page)
                .await
                .map(Parsed)
        })
    }

    /// What one transaction (an entry's `txid`) did, newest first. Pass `at`, the `createdAt`
    /// of one of its entries, to read only that part of the log.
    #[napi(ts_return_type = "Promise<AuditLogEntry[]>")]
    pub fn by_transaction<'env>(
        &self,
        env: &'env Env,
        txid: i64,
        options: Option<TransactionOptions>,
    ) -> Result<PromiseRaw<'env, Entries>> {
        let inner = self.inner.clone();
        let (at, page) = options.map_or((None, core::Page::default()), |o| {
            (
                o.at,
                core::Page {
                    limit: o.limit,
                    before: o.before,
                },
            )
        });
        let at = at.map(|at| time(at, "at")).transpose();
        promise(env, async move {
            inner.by_transaction(txid, at?, &page).await.map(Parsed)
        })
    }

    /// Every UPDATE of one column, newest first, with the old and new value.
    #[napi(ts_return_type = "Promise<FieldChange[]>")]
    pub fn field_changes<'env>(
        &self,
        env: &'env Env,
        options: FieldChangesOptions,
    ) -> Result<PromiseRaw<'env, Parsed<Vec<core::FieldChange>>>> {
        let inner = self.inner.clone();
        let table = table_ref(options.table);
        let range = time_range(options.from, options.to);
        let page = core::Page {
            limit: options.limit,
            before: options.before,
        };
        promise(env, async move {
            inner
                .field_changes(&table, &options.field, options.id.as_ref(), range?, &page)
                .await
                .map(Parsed)
        })
    }

    /// The number of entries matching `filters`, grouped by `targetType`, `action`, `actorId`,
    /// `actorType`, `actorEmail` and at most one of `hour`, `day`, `week`, `month`.
    #[napi(
        ts_args_type = "groupBy: Array<'targetType' | 'action' | 'actorId' | 'actorType' | 'actorEmail' | 'hour' | 'day' | 'week' | 'month'>, filters?: Filters",
        ts_return_type = "Promise<CountRow[]>"
    )]
    pub fn counts<'env>(
        &self,
        env: &'env Env,
        group_by: Vec<String>,
        filters: Option<Filters>,
    ) -> Result<PromiseRaw<'env, Vec<core::CountRow>>> {
        let inner = self.inner.clone();
        let keys = group_by
            .iter()
            .map(|k| core::CountKey::parse(k))
            .collect::<core::Result<Vec<_>>>();
        let filters = self::filters(filters);
        promise(env, async move { inner.counts(&keys?, &filters?).await })
    }

    /// Actors with at least `threshold` entries within some `window`, busiest first (suspicious
    /// activity). Looks at the last 24 hours unless `filters.from` is given.
    #[napi(ts_return_type = "Promise<Burst[]>")]
    pub fn bursts<'env>(
        &self,
        env: &'env Env,
        options: BurstOptions,
        filters: Option<Filters>,
    ) -> Result<PromiseRaw<'env, Vec<core::Burst>>> {
        let inner = self.inner.clone();
        let by = options
            .by
            .as_deref()
            .map_or(Ok(core::BurstKey::default()), core::BurstKey::parse);
        let filters = self::filters(filters);
        promise(env, async move {
            inner
                .bursts(&options.window, options.threshold, by?, &filters?)
                .await
        })
    }

    /// Closes the pool. Later calls fail.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Opens a stream of every entry matching `filters` for `AuditLogs.entries()` (index.js), which
/// iterates and closes it. A function rather than a method, so that it stays out of the API.
#[napi(ts_return_type = "Promise<EntryBatches>")]
pub fn open_entries<'env>(
    env: &'env Env,
    audit: &AuditLogs,
    filters: Option<Filters>,
    options: Option<StreamOptions>,
) -> Result<PromiseRaw<'env, EntryBatches>> {
    let inner = audit.inner.clone();
    let filters = self::filters(filters);
    let (order, batch_size) = options.map_or((None, None), |o| (o.order, o.batch_size));
    let order = order
        .as_deref()
        .map_or(Ok(core::Order::default()), core::Order::parse);
    promise(env, async move {
        let stream = inner.stream(&filters?, order?, batch_size).await?;
        Ok(EntryBatches {
            stream: OpenStream::new(stream),
        })
    })
}

/// Batches of the entries mentioning a data subject (see `AuditLogs.subjectEntries`).
#[napi]
pub struct SubjectBatches {
    stream: OpenStream<core::SubjectEntry>,
}

#[napi]
impl SubjectBatches {
    /// The next batch, or null at the end.
    #[napi(ts_return_type = "Promise<SubjectEntry[] | null>")]
    pub fn next<'env>(
        &self,
        env: &'env Env,
    ) -> Result<PromiseRaw<'env, Parsed<Option<Vec<core::SubjectEntry>>>>> {
        let batch = self.stream.clone().next();
        promise(env, async move { Ok(Parsed(batch.await?)) })
    }

    /// Ends the stream early and gives its connection back.
    #[napi]
    pub fn close(&self) {
        self.stream.close()
    }
}

/// Opens a stream of the entries mentioning a data subject for `AuditLogs.subjectEntries()`
/// (lib/events.js), which iterates and closes it.
#[napi(ts_return_type = "Promise<SubjectBatches>")]
pub fn open_subject_entries<'env>(
    env: &'env Env,
    audit: &AuditLogs,
    subject: core::DataSubject,
    options: Option<StreamOptions>,
) -> Result<PromiseRaw<'env, SubjectBatches>> {
    let inner = audit.inner.clone();
    let (order, batch_size) = options.map_or((None, None), |o| (o.order, o.batch_size));
    let order = order
        .as_deref()
        .map_or(Ok(core::Order::default()), core::Order::parse);
    promise(env, async move {
        let stream = inner.subject_stream(&subject, order?, batch_size).await?;
        Ok(SubjectBatches {
            stream: OpenStream::new(stream),
        })
    })
}

/// Runs the `audit-logs` command line (without the program name) and returns its exit status.
#[napi]
pub fn run_cli(argv: Vec<String>) -> i32 {
    block_on(audit_logs_cli::run(argv))
}

/// A throwaway PostgreSQL server (initdb + postgres in a temporary directory), for tests and
/// demos. Needs the PostgreSQL server binaries on PATH or in `pg_config --bindir`.
#[napi]
pub struct TemporaryPostgres {
    inner: std::sync::Arc<core::TemporaryPostgres>,
}

#[napi]
impl TemporaryPostgres {
    /// Starts a server; takes a few seconds.
    #[napi(ts_return_type = "Promise<TemporaryPostgres>")]
    pub fn start(env: &Env) -> Result<PromiseRaw<'_, TemporaryPostgres>> {
        promise(env, async move {
            // Stopped at exit even if JavaScript never calls stop() (finalizers do not run at
            // exit); freed once stopped and collected.
            let inner = std::sync::Arc::new(core::TemporaryPostgres::start().await?);
            inner.stop_at_exit();
            Ok(TemporaryPostgres { inner })
        })
    }

    /// The port on 127.0.0.1.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        u32::from(self.inner.port())
    }

    /// A URL for a database of this server (user postgres, no password). Default: `postgres`.
    #[napi]
    pub fn url(&self, database: Option<String>) -> String {
        self.inner.url(database.as_deref().unwrap_or("postgres"))
    }

    /// Stops the server and deletes its directory (also done when the process exits).
    #[napi]
    pub fn stop(&self) {
        self.inner.stop();
    }
}
