//! Undo: put back what a transaction, a request, an actor or one entry changed, or one record
//! as it was at a time. A revert is an ordinary transaction on the tracked tables, so capture
//! records it like any change, under the reverting context plus `metadata.reverts` naming what
//! it undid: a revert can itself be reverted.
//!
//! The log holds what is needed: an INSERT's whole new row, an UPDATE's old values of the
//! changed columns and whole new row, a DELETE's or TRUNCATE's whole row. For each record the
//! changes touched (followed across key changes), a revert computes the row before the first of
//! them and writes it back over the row as the last of them left it: re-created, updated or
//! deleted. Deletions go children first (foreign keys between the tables), once before the
//! rest where no foreign key objects (ahead of a parent's key written back, whose ON UPDATE
//! CASCADE would move them), and again at the end; re-creations and updates go parents first.
//! Each table's rows of one kind are written in one statement, so that rows that reference
//! each other come back together.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::context::AuditContext;
use crate::error::{Error, Result, RevertError};
use crate::history::{entry_object, AuditEntry};
use crate::queries::TimeRange;
use crate::session::{Asked, Rows, Session, Statement, Steps};
use crate::tracking::TableRef;

/// The most row changes one revert undoes: a larger undo is a restore from backup.
pub const MAX_ENTRIES: usize = 100_000;
/// The later entries a conflict lists per record.
const CONFLICT_ENTRIES: i64 = 5;

/// What to undo.
#[derive(Debug, Clone, PartialEq)]
pub enum RevertTarget {
    /// Every row change of one transaction. `at` (the `created_at` of one of its entries) lets
    /// PostgreSQL read one partition.
    Transaction {
        txid: i64,
        at: Option<DateTime<Utc>>,
    },
    /// Every row change made under one request id, within the range when given.
    Request {
        request_id: String,
        range: TimeRange,
    },
    /// Every row change one actor made within the range (both ends required).
    Actor { actor_id: String, range: TimeRange },
    /// One entry.
    Entry { id: i64 },
    /// One record put back as it was at `to`: re-created if it has been deleted since, deleted
    /// if it did not exist then.
    Record {
        table: TableRef,
        id: Value,
        to: DateTime<Utc>,
    },
}

/// What to undo as the Node API and the CLI name it: exactly one of `transaction` (with `at`),
/// `request` (with `from`, `to`), `actor` (with `from` and `to`), `entry`, or `table` with `id`
/// and `to`.
#[derive(Debug, Clone, Default)]
pub struct RevertFields {
    pub transaction: Option<i64>,
    pub at: Option<DateTime<Utc>>,
    pub request: Option<String>,
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub entry: Option<i64>,
    pub table: Option<TableRef>,
    pub id: Option<Value>,
}

impl RevertTarget {
    /// The one target `fields` name, or a typed error saying what is missing or extra.
    pub fn one_of(fields: RevertFields) -> Result<RevertTarget> {
        let RevertFields {
            transaction,
            at,
            request,
            actor,
            from,
            to,
            entry,
            table,
            id,
        } = fields;
        let named = [
            transaction.is_some(),
            request.is_some(),
            actor.is_some(),
            entry.is_some(),
            table.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err(Error::invalid_argument(
                "target",
                "give exactly one of transaction, request, actor, entry, or table with id and to",
            ));
        }
        let unused = |name: &str, given: bool| {
            if given {
                Err(Error::invalid_argument(
                    name,
                    "does not apply to this target",
                ))
            } else {
                Ok(())
            }
        };
        let range = TimeRange { from, to };
        if let Some(txid) = transaction {
            unused("from", from.is_some())?;
            unused("to", to.is_some())?;
            return Ok(RevertTarget::Transaction { txid, at });
        }
        unused("at", at.is_some())?;
        if let Some(id) = entry {
            unused("from", from.is_some())?;
            unused("to", to.is_some())?;
            return Ok(RevertTarget::Entry { id });
        }
        if let Some(request_id) = request {
            return Ok(RevertTarget::Request { request_id, range });
        }
        if let Some(actor_id) = actor {
            if from.is_none() || to.is_none() {
                return Err(Error::invalid_argument(
                    "from",
                    "reverting an actor's changes needs both from and to",
                ));
            }
            return Ok(RevertTarget::Actor { actor_id, range });
        }
        unused("from", from.is_some())?;
        let table = table.expect("one target is named");
        match (id, to) {
            (Some(id), Some(to)) => Ok(RevertTarget::Record { table, id, to }),
            (None, _) => Err(Error::invalid_argument(
                "id",
                "reverting a record needs its id (an array for a composite key)",
            )),
            (_, None) => Err(Error::invalid_argument(
                "to",
                "reverting a record needs the time to put it back to",
            )),
        }
    }
}

/// What to do when a record was changed again after a change being undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnConflict {
    /// Undo nothing and list the conflicts ([`RevertError::Conflict`](crate::error::RevertError::Conflict)).
    #[default]
    Refuse,
    /// Restore anyway, over the later changes.
    Overwrite,
    /// Restore only what nobody changed since: of a record updated since, the fields the later
    /// changes left alone; a record deleted, re-created or changed by a later change that the
    /// revert would have to undo is left as it is (each is named in the notes).
    KeepLater,
}

impl OnConflict {
    pub fn parse(name: &str) -> Result<OnConflict> {
        match name {
            "refuse" => Ok(OnConflict::Refuse),
            "overwrite" => Ok(OnConflict::Overwrite),
            "keep-later" => Ok(OnConflict::KeepLater),
            other => Err(Error::invalid_argument(
                "onConflict",
                format!("{other:?} is not one of refuse, overwrite, keep-later"),
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RevertOptions {
    /// Run the revert and roll it back: the report says what would change, constraints and all.
    pub dry_run: bool,
    pub on_conflict: OnConflict,
    /// Who reverts: recorded on the revert's own entries, with `metadata.reverts`.
    pub context: Option<AuditContext>,
}

/// What a revert did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RevertReport {
    pub dry_run: bool,
    /// What was undone, as the revert's entries record it in `metadata.reverts`.
    #[cfg_attr(feature = "napi", napi(ts_type = "Record<string, unknown>"))]
    pub reverts: Value,
    /// The row changes undone (entries), 0 for a record put back to a time.
    pub entries: u32,
    /// Per record, in the order the revert changed them.
    pub changes: Vec<RecordRevert>,
    /// The statements run, values inlined as literals (run with bound values).
    pub statements: Vec<String>,
    /// What could not be put back (excluded or redacted fields), per record and field.
    pub notes: Vec<String>,
}

/// What the revert does to one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RecordRevert {
    /// The table, as `target_type` names it.
    pub table: String,
    /// The record's key as the log holds it (`target_id`).
    pub id: String,
    /// `insert` (re-created), `update` or `delete`.
    #[cfg_attr(feature = "napi", napi(ts_type = "'insert' | 'update' | 'delete'"))]
    pub operation: String,
    /// The entries undone for this record, oldest first; empty for a record put back to a time.
    pub entries: Vec<i64>,
    /// Each field the revert writes: its value before the revert and the one put back.
    pub fields: Vec<FieldRevert>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct FieldRevert {
    pub field: String,
    /// Null when the record does not exist before the revert.
    #[cfg_attr(feature = "napi", napi(ts_type = "unknown"))]
    pub current: Value,
    /// Null when the revert deletes the record.
    #[cfg_attr(feature = "napi", napi(ts_type = "unknown"))]
    pub restored: Value,
}

/// A record changed again after a change being undone, with those later entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RevertConflict {
    pub table: String,
    pub id: String,
    /// The newest entry undone for this record.
    pub entry_id: i64,
    /// The later entries (at most five), oldest first.
    pub later: Vec<AuditEntry>,
}

/// A tracked table as the revert writes it.
struct Table {
    oid: u32,
    /// `schema.table`, quoted: what capture records now, and what the SQL names.
    name: String,
    key: Vec<String>,
    /// Every column, with how it may be written.
    columns: HashMap<String, Column>,
}

struct Column {
    /// Generated: never written.
    generated: bool,
    /// `generated always as identity`: written with `overriding system value`.
    identity_always: bool,
    /// NOT NULL with no default: a re-created row needs its value.
    required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// One record's undo: from the row the changes undone left, back to the row before them.
struct Plan {
    /// The table's name now.
    table: String,
    /// The record's key now, as the log holds it (`target_id`) and as columns.
    target_id: String,
    key: Map<String, Value>,
    /// The row before the first change undone (its recorded columns); `None`: there was none.
    before: Option<Map<String, Value>>,
    /// The row as the last change undone left it; `None`: deleted. Compared with the row now
    /// to find later changes.
    after: Option<Value>,
    /// When every change undone was an UPDATE: the fields they changed, the only ones written
    /// back (so that overwriting leaves later changes of other fields). `None`: the whole row.
    changed: Option<BTreeSet<String>>,
    /// The entries undone, oldest first, and the name the last was recorded under.
    entries: Vec<i64>,
    recorded_as: String,
}

/// The savepoint a revert runs in, and the one a tentative pass runs in.
const SAVEPOINT: &str = "audit_logs_revert";
const PASS_SAVEPOINT: &str = "audit_logs_revert_pass";

/// Undoes `target` in the transaction `db` is in (the caller's, or the one
/// [`AuditLogs::revert`](crate::AuditLogs::revert) opens), which the caller commits or rolls
/// back. It runs in a savepoint: when it fails (a conflict, a refused statement) or is a dry run,
/// the transaction is rolled back to it, as it was and usable. When it succeeds, the
/// transaction's audit context and constraint modes are put back as they were, so that the
/// caller's next statements are attributed and checked as before.
///
/// Errors: [`RevertError::NotInTransaction`] and [`RevertError::TransactionFailed`] about the
/// transaction, and those of [`AuditLogs::revert`](crate::AuditLogs::revert).
pub async fn revert(
    db: &impl Session,
    target: &RevertTarget,
    options: &RevertOptions,
) -> Result<RevertReport> {
    if let Err(failure) = db
        .rows(Statement::bare(format!("savepoint {SAVEPOINT}")))
        .await
    {
        return Err(match failure.sqlstate() {
            // no_active_sql_transaction
            Some("25P01") => RevertError::NotInTransaction {
                message: "a revert given a client runs in the client's transaction, and this client is in none; \
                          begin one first (client.query('begin'), withAuditContext(client, context, (tx) => ...), \
                          prisma.$transaction(async (tx) => ...)), or leave out client to revert in a transaction of its own"
                    .into(),
            }
            .into(),
            // in_failed_sql_transaction
            Some("25P02") => RevertError::TransactionFailed {
                message: "the client's transaction has failed (a statement in it was refused) and accepts nothing \
                          more: roll it back, then revert in a new one"
                    .into(),
            }
            .into(),
            _ => failure.into_error(None),
        });
    }
    let result = undo(db, target, options).await;
    let ends: &[&str] = match (&result, options.dry_run) {
        (Ok(_), false) => &["release savepoint"],
        _ => &["rollback to savepoint", "release savepoint"],
    };
    for end in ends {
        if let Err(failure) = db.rows(Statement::bare(format!("{end} {SAVEPOINT}"))).await {
            // After a failed revert, ending fails for the same reason (a lost connection).
            return Err(result.err().unwrap_or_else(|| failure.into_error(None)));
        }
    }
    result
}

/// [`revert`] for a caller that runs the statements itself, on its own connection in its own
/// transaction (see [`Steps`]).
pub fn revert_steps(target: RevertTarget, options: RevertOptions) -> Steps<RevertReport> {
    Steps::new(|db: Asked| async move { revert(&db, &target, &options).await })
}

/// [`revert`] after its savepoint.
async fn undo(
    db: &impl Session,
    target: &RevertTarget,
    options: &RevertOptions,
) -> Result<RevertReport> {
    let reverts = describe(target);
    // The caller's context, under the revert's: its entries say who reverted, and what.
    let callers = run(
        db,
        Statement::bare("select audit.current_context()::pg_catalog.text"),
        None,
    )
    .await?
    .into_iter()
    .next()
    .flatten();
    let context = revert_context(options.context.as_ref(), &reverts);
    let setting = context.setting_over(callers.as_deref())?;
    set_context(db, setting).await?;

    let mut tables = Tables::default();
    let mut notes = Vec::new();
    let (plans, entries) = match target {
        RevertTarget::Record { table, id, to } => {
            let plan = record_plan(db, &mut tables, table, id, *to).await?;
            (vec![plan], 0)
        }
        _ => {
            let entries = target_entries(db, target).await?;
            let mut plans = entry_plans(db, &mut tables, &entries, &mut notes).await?;
            match options.on_conflict {
                OnConflict::Refuse => {
                    let found = find(db, &tables, &plans).await?;
                    let conflicts = conflicts(db, &plans, &found, &entries).await?;
                    if !conflicts.is_empty() {
                        return Err(RevertError::Conflict {
                            message: conflict_message(&conflicts),
                            conflicts,
                        }
                        .into());
                    }
                }
                OnConflict::KeepLater => {
                    let found = find(db, &tables, &plans).await?;
                    plans = keep_later(plans, &found, &mut notes);
                }
                OnConflict::Overwrite => {}
            }
            (plans, entries.len())
        }
    };

    let mut report = RevertReport {
        dry_run: options.dry_run,
        reverts,
        entries: entries as u32,
        changes: Vec::with_capacity(plans.len()),
        statements: Vec::new(),
        notes,
    };
    let order = parents_first(db, &tables, &plans).await?;
    let grouped = by_table(&plans);
    // Rows that reference each other come back whatever the order; checked once all are back.
    let deferred = deferrable_constraints(db, &tables, &order).await?;
    set_constraints(db, &deferred, "deferred").await?;
    // Deletions first where no foreign key objects: before a parent's key is written back, as
    // its ON UPDATE CASCADE would move the rows to delete away from the keys they are known by.
    // Then re-creations and updates, parents first; then the rest of the deletions, once the
    // rows that referenced them point elsewhere again.
    let passes = [
        (&[Operation::Delete][..], Attempt::Tentative, true),
        (
            &[Operation::Insert, Operation::Update][..],
            Attempt::Final,
            false,
        ),
        (&[Operation::Delete][..], Attempt::Final, true),
    ];
    for (operations, attempt, children_first) in passes {
        let names: Vec<&String> = if children_first {
            order.iter().rev().collect()
        } else {
            order.iter().collect()
        };
        for name in names {
            let mine: Vec<&Plan> = grouped
                .iter()
                .find(|(table, _)| *table == name.as_str())
                .map(|(_, indices)| indices.iter().map(|&i| &plans[i]).collect())
                .unwrap_or_default();
            for &operation in operations {
                let table = tables.get(name);
                write_back(db, table, &mine, operation, attempt, &mut report).await?;
            }
        }
    }
    // Put back as the caller had them: checked now (a violation fails the revert, not the
    // caller's commit), and the caller's next statements attributed to the caller alone.
    set_constraints(db, &deferred, "immediate").await?;
    set_context(db, callers).await?;
    report.notes.sort();
    report.notes.dedup();
    Ok(report)
}

/// `metadata.reverts` of the revert's entries.
fn describe(target: &RevertTarget) -> Value {
    let time = |t: &Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339());
    let mut described = match target {
        RevertTarget::Transaction { txid, .. } => json!({ "transaction": txid }),
        RevertTarget::Request { request_id, range } => {
            json!({ "request": request_id, "from": time(&range.from), "to": time(&range.to) })
        }
        RevertTarget::Actor { actor_id, range } => {
            json!({ "actor": actor_id, "from": time(&range.from), "to": time(&range.to) })
        }
        RevertTarget::Entry { id } => json!({ "entry": id }),
        RevertTarget::Record { table, id, to } => {
            json!({ "table": table.to_string(), "id": id, "to": to.to_rfc3339() })
        }
    };
    if let Value::Object(fields) = &mut described {
        fields.retain(|_, v| !v.is_null());
    }
    described
}

fn revert_context(given: Option<&AuditContext>, reverts: &Value) -> AuditContext {
    let mut metadata = Map::new();
    metadata.insert("reverts".into(), reverts.clone());
    let own = AuditContext {
        metadata: Some(metadata),
        ..Default::default()
    };
    match given {
        Some(given) => own.over(given),
        None => own,
    }
}

/// Runs `statement`; a failure is the error, naming `table` when given.
async fn run(db: &impl Session, statement: Statement, table: Option<&str>) -> Result<Rows> {
    db.rows(statement)
        .await
        .map_err(|failure| failure.into_error(table))
}

/// A row read back as JSON text.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal("a row read back as JSON", e))
}

/// Each row's JSON text, parsed.
fn parse_rows<T: DeserializeOwned>(rows: Rows) -> Result<Vec<T>> {
    rows.iter()
        .map(|row| parse(row.as_deref().unwrap_or("null")))
        .collect()
}

/// Sets the transaction's audit context, as stored (an empty text clears it).
async fn set_context(db: &impl Session, setting: Option<String>) -> Result<()> {
    run(
        db,
        Statement::new(
            "select audit.set_checked_context($1::pg_catalog.text)",
            vec![Some(setting.unwrap_or_default())],
        ),
        None,
    )
    .await?;
    Ok(())
}

/// The deferrable, initially immediate constraints on the tables written or referencing them,
/// as `SET CONSTRAINTS` names them (`schema.name`). A name it would also apply to another
/// constraint, not deferrable or initially deferred, is left out: that one must stay as it is.
async fn deferrable_constraints(
    db: &impl Session,
    tables: &Tables,
    names: &[String],
) -> Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<String> = names
        .iter()
        .map(|n| tables.get(n).oid.to_string())
        .collect();
    let rows = run(
        db,
        Statement::new(
            "with mine as (
               select distinct c.connamespace, c.conname from pg_catalog.pg_constraint c
                where c.condeferrable
                  and (c.conrelid = any($1::pg_catalog.oid[]) or c.confrelid = any($1::pg_catalog.oid[])))
             select pg_catalog.format('%I.%I', n.nspname, m.conname)
               from mine m
               join pg_catalog.pg_namespace n on n.oid = m.connamespace
               join pg_catalog.pg_constraint c on c.connamespace = m.connamespace and c.conname = m.conname
              group by n.nspname, m.conname
             having pg_catalog.bool_and(c.condeferrable and not c.condeferred)
              order by 1",
            vec![Some(format!("{{{}}}", oids.join(",")))],
        ),
        None,
    )
    .await?;
    Ok(rows.into_iter().flatten().collect())
}

async fn set_constraints(db: &impl Session, names: &[String], mode: &str) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    run(
        db,
        Statement::bare(format!("set constraints {} {mode}", names.join(", "))),
        None,
    )
    .await?;
    Ok(())
}

/// The row changes `target` names, oldest first.
async fn target_entries(db: &impl Session, target: &RevertTarget) -> Result<Vec<AuditEntry>> {
    let (condition, key, range): (&str, String, TimeRange) = match target {
        RevertTarget::Transaction { txid, at } => (
            "txid = $1::pg_catalog.int8",
            txid.to_string(),
            TimeRange {
                from: *at,
                // A millisecond: JavaScript dates drop the microseconds.
                to: at.map(|at| at + chrono::Duration::milliseconds(1)),
            },
        ),
        RevertTarget::Request { request_id, range } => (
            "request_id = $1::pg_catalog.text",
            request_id.clone(),
            *range,
        ),
        RevertTarget::Actor { actor_id, range } => {
            if range.from.is_none() || range.to.is_none() {
                return Err(Error::invalid_argument(
                    "from",
                    "reverting an actor's changes needs both from and to",
                ));
            }
            ("actor_id = $1::pg_catalog.text", actor_id.clone(), *range)
        }
        RevertTarget::Entry { id } => (
            "id = $1::pg_catalog.int8",
            id.to_string(),
            TimeRange::default(),
        ),
        RevertTarget::Record { .. } => unreachable!("a record has no entries to undo"),
    };
    if let (Some(from), Some(to)) = (range.from, range.to) {
        if from > to {
            return Err(Error::invalid_argument("from", "is after to"));
        }
    }
    let limit = MAX_ENTRIES + 1;
    let mut sql = format!(
        "select {}::pg_catalog.text from audit.audit_logs
          where {condition} and action in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')",
        entry_object()
    );
    let mut values = vec![Some(key), Some(limit.to_string())];
    // Spelled out only when given, so that PostgreSQL prunes the partitions out of range.
    if let Some(from) = &range.from {
        values.push(Some(from.to_rfc3339()));
        sql.push_str(&format!(
            " and created_at >= ${}::pg_catalog.timestamptz",
            values.len()
        ));
    }
    if let Some(to) = &range.to {
        values.push(Some(to.to_rfc3339()));
        sql.push_str(&format!(
            " and created_at <= ${}::pg_catalog.timestamptz",
            values.len()
        ));
    }
    sql.push_str(" order by id limit $2::pg_catalog.int8");
    let rows = run(db, Statement::new(sql, values), None).await?;
    if rows.len() > MAX_ENTRIES {
        return Err(Error::invalid_argument(
            "target",
            format!("it names more than {MAX_ENTRIES} row changes; revert it in smaller ranges"),
        ));
    }
    if rows.is_empty() {
        return Err(Error::invalid_argument(
            "target",
            "no row change matches it: check the id, the range, and that the changes were to tracked tables",
        ));
    }
    rows.iter()
        .map(|row| AuditEntry::from_object(row.as_deref().unwrap_or("null")))
        .collect()
}

/// A plan's record now: the row (if any), the row as the undone changes left it (read back
/// through the table's types), and whether the two agree.
struct Found {
    current: Option<Value>,
    left: Option<Value>,
    as_left: bool,
}

/// Each plan's record now, in the order of `plans`.
async fn find(db: &impl Session, tables: &Tables, plans: &[Plan]) -> Result<Vec<Found>> {
    let mut found: Vec<Option<Found>> = plans.iter().map(|_| None).collect();
    for (name, indices) in by_table(plans) {
        let table = tables.get(name);
        let mine: Vec<&Plan> = indices.iter().map(|&i| &plans[i]).collect();
        let keys: Vec<Map<String, Value>> = mine.iter().map(|p| p.key.clone()).collect();
        let current = current_rows(db, table, &keys).await?;
        let afters: Vec<Option<Value>> = mine.iter().map(|p| p.after.clone()).collect();
        let recorded = as_this_session_prints(db, table, &afters).await?;
        for ((index, current), left) in indices.into_iter().zip(current).zip(recorded) {
            let as_left = match (&left, &current) {
                (Some(after), Some(row)) => holds(row, Some(after)),
                (None, None) => true,
                _ => false,
            };
            found[index] = Some(Found {
                current,
                left,
                as_left,
            });
        }
    }
    Ok(found
        .into_iter()
        .map(|f| f.expect("every plan is found"))
        .collect())
}

/// Records that are not as the changes undone left them: changed since, by later entries
/// (listed) or where the log does not see. A later change that was itself reverted since leaves
/// the record as it was, and is no conflict.
async fn conflicts(
    db: &impl Session,
    plans: &[Plan],
    found: &[Found],
    entries: &[AuditEntry],
) -> Result<Vec<RevertConflict>> {
    let changed: Vec<&Plan> = plans
        .iter()
        .zip(found)
        .filter(|(_, found)| !found.as_left)
        .map(|(plan, _)| plan)
        .collect();
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    later_entries(db, entries, &changed).await
}

/// [`OnConflict::KeepLater`]: of a record changed since, only the fields still as the undone
/// changes left them are written back, and only when it was updated and is still there.
fn keep_later(plans: Vec<Plan>, found: &[Found], notes: &mut Vec<String>) -> Vec<Plan> {
    let mut kept = Vec::with_capacity(plans.len());
    for (mut plan, found) in plans.into_iter().zip(found) {
        if found.as_left {
            kept.push(plan);
            continue;
        }
        let (Some(row), Some(left), Some(before)) = (&found.current, &found.left, &plan.before)
        else {
            let since = match (&found.current, &plan.before, &found.left) {
                (None, _, _) => "deleted since",
                (Some(_), None, _) => "changed since it was created",
                _ => "re-created since",
            };
            notes.push(format!(
                "{} {}: {since}, so it is left as it is",
                plan.table, plan.target_id
            ));
            continue;
        };
        let untouched: BTreeSet<String> = before
            .keys()
            .filter(|field| plan.changed.as_ref().is_none_or(|c| c.contains(*field)))
            .filter(|field| row.get(field.as_str()) == left.get(field.as_str()))
            .cloned()
            .collect();
        let later: Vec<&String> = before
            .keys()
            .filter(|field| plan.changed.as_ref().is_none_or(|c| c.contains(*field)))
            .filter(|field| !untouched.contains(*field))
            .collect();
        if !later.is_empty() {
            notes.push(format!(
                "{} {}: changed since, so left as they are: {}",
                plan.table,
                plan.target_id,
                later
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !untouched.is_empty() {
            plan.changed = Some(untouched);
            kept.push(plan);
        }
    }
    kept
}

/// Logged rows as this session prints them: read back through the table's types. The log holds
/// them as the writing session printed them, and a `timestamptz` prints in that session's time
/// zone (`+09:00` where this one says `+00:00`). Redacted values are left out (they are not
/// values of the column's type), as are columns dropped since.
async fn as_this_session_prints(
    db: &impl Session,
    table: &Table,
    rows: &[Option<Value>],
) -> Result<Vec<Option<Value>>> {
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| match row.as_ref().and_then(Value::as_object) {
            Some(row) => Value::Object(
                row.iter()
                    .filter(|(column, value)| {
                        !is_redacted(value) && table.columns.contains_key(*column)
                    })
                    .map(|(column, value)| (column.clone(), value.clone()))
                    .collect(),
            ),
            None => Value::Null,
        })
        .collect();
    let sql = format!(
        "select pg_catalog.jsonb_build_array(
                  case when r.value operator(pg_catalog.<>) 'null'::pg_catalog.jsonb
                       then pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(null::{name}, r.value)) end,
                  r.value)::pg_catalog.text
           from pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) with ordinality as r(value, ordinality)
          order by r.ordinality",
        name = table.name
    );
    let printed = run(
        db,
        Statement::new(sql, vec![Some(Value::Array(rows).to_string())]),
        Some(&table.name),
    )
    .await?;
    let printed: Vec<(Value, Value)> = parse_rows(printed)?;
    Ok(printed
        .into_iter()
        .map(|(normalized, given)| {
            // Only the columns the log recorded: populate_record fills the others with null.
            (!normalized.is_null()).then(|| {
                Value::Object(
                    given
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(column, _)| {
                            (
                                column.clone(),
                                normalized.get(column).cloned().unwrap_or(Value::Null),
                            )
                        })
                        .collect(),
                )
            })
        })
        .collect())
}

/// The indices of each table's plans, tables in the order first met.
fn by_table(plans: &[Plan]) -> Vec<(&str, Vec<usize>)> {
    let mut tables: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        match tables.iter_mut().find(|(name, _)| *name == plan.table) {
            Some((_, mine)) => mine.push(index),
            None => tables.push((&plan.table, vec![index])),
        }
    }
    tables
}

/// Whether the row holds every value the log recorded of it (excluded columns are not
/// recorded, redacted ones are not comparable).
fn holds(row: &Value, recorded: Option<&Value>) -> bool {
    recorded
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(column, value)| is_redacted(value) || row.get(column) == Some(value))
}

/// For each record changed since, the entries after the change undone (other than those undone).
async fn later_entries(
    db: &impl Session,
    entries: &[AuditEntry],
    changed: &[&Plan],
) -> Result<Vec<RevertConflict>> {
    let undone: HashSet<i64> = entries.iter().map(|e| e.id).collect();
    let after: Vec<i64> = changed
        .iter()
        .map(|p| p.entries.last().copied().unwrap_or(0))
        .collect();
    let records: Vec<Value> = changed
        .iter()
        .zip(&after)
        .map(
            |(p, after)| json!({ "r_type": p.recorded_as, "r_key": p.target_id, "r_after": after }),
        )
        .collect();
    // Enough to get past the changes undone that the lookup also finds.
    let limit = CONFLICT_ENTRIES + entries.len().min(1000) as i64;
    let sql = format!(
        "select pg_catalog.jsonb_build_array(r.ord, {entry})::pg_catalog.text
           from rows from (pg_catalog.jsonb_to_recordset($1::pg_catalog.jsonb)
                             as (r_type pg_catalog.text, r_key pg_catalog.text, r_after pg_catalog.int8))
                with ordinality as r(r_type, r_key, r_after, ord)
           cross join lateral (
             (select * from audit.audit_logs l
               where l.target_type = r.r_type and l.target_id = r.r_key and l.id > r.r_after
                 and l.action in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
               order by l.id limit $2::pg_catalog.int8)
             union
             (select * from audit.audit_logs l
               where l.target_type = r.r_type and l.old_target_id = r.r_key and l.id > r.r_after
               order by l.id limit $2::pg_catalog.int8)
           ) as later
          order by r.ord, later.id",
        entry = entry_object()
    );
    let rows = run(
        db,
        Statement::new(
            sql,
            vec![
                Some(Value::Array(records).to_string()),
                Some(limit.to_string()),
            ],
        ),
        None,
    )
    .await?;
    let mut conflicts: Vec<RevertConflict> = changed
        .iter()
        .zip(&after)
        .map(|(plan, last)| RevertConflict {
            table: plan.table.clone(),
            id: plan.target_id.clone(),
            entry_id: *last,
            later: Vec::new(),
        })
        .collect();
    for (ord, later) in parse_rows::<(usize, Value)>(rows)? {
        let later: AuditEntry = serde_json::from_value(later)
            .map_err(|e| Error::internal("an entry read back as JSON", e))?;
        let Some(conflict) = ord.checked_sub(1).and_then(|i| conflicts.get_mut(i)) else {
            return Err(Error::Internal {
                reason: format!(
                    "a later entry read back for record {ord} of {}",
                    changed.len()
                ),
                source: None,
            });
        };
        if !undone.contains(&later.id)
            && conflict.later.len() < CONFLICT_ENTRIES as usize
            && conflict.later.last().is_none_or(|last| last.id != later.id)
        {
            conflict.later.push(later);
        }
    }
    Ok(conflicts)
}

fn conflict_message(conflicts: &[RevertConflict]) -> String {
    let mut lines: Vec<String> = conflicts
        .iter()
        .take(10)
        .map(|c| {
            let later: Vec<String> = c
                .later
                .iter()
                .map(|e| {
                    let fields = e
                        .changed_fields
                        .as_ref()
                        .map(|f| format!(" of {}", f.join(", ")))
                        .unwrap_or_default();
                    format!(
                        "entry {} {}{} by {} at {}",
                        e.id,
                        e.action,
                        fields,
                        e.actor_id.as_deref().unwrap_or("no actor"),
                        e.created_at.to_rfc3339()
                    )
                })
                .collect();
            let since = if later.is_empty() {
                "where the log does not see (while not tracked, or by a superuser)".to_owned()
            } else {
                format!("by {}", later.join("; "))
            };
            format!(
                "{} {} (undoing entry {}) was changed since, {since}",
                c.table, c.id, c.entry_id
            )
        })
        .collect();
    if conflicts.len() > 10 {
        lines.push(format!("and {} more records", conflicts.len() - 10));
    }
    format!(
        "{} record(s) changed after the changes to revert, and reverting would undo those later changes too: {}; \
         revert those later changes first, or pass onConflict: 'overwrite' (--force) to restore anyway",
        conflicts.len(),
        lines.join(" | ")
    )
}

/// The tables a revert writes, read once each, and the names entries recorded them under.
#[derive(Default)]
struct Tables {
    by_name: HashMap<String, Table>,
    recorded: HashMap<String, String>,
}

impl Tables {
    /// The tracked table an entry's `target_type` names now (following renames since `entry_id`).
    async fn load(
        &mut self,
        db: &impl Session,
        recorded_as: &str,
        entry_id: i64,
    ) -> Result<String> {
        if let Some(name) = self.recorded.get(recorded_as) {
            return Ok(name.clone());
        }
        let rows = run(
            db,
            Statement::new(
                "with recursive renamed(name, after_id) as (
                   select $1::pg_catalog.text collate \"C\", $2::pg_catalog.int8
                   union all
                   select r.renamed_to, r.entry_id from renamed f
                     cross join lateral (
                       select t.renamed_to, t.entry_id from audit.table_renames t
                        where t.renamed_from = f.name and t.entry_id > f.after_id
                        order by t.entry_id limit 1) as r)
                 select pg_catalog.jsonb_build_array(t.target_type,
                          pg_catalog.to_regclass(pg_catalog.format('%I.%I', t.schema_name, t.table_name))::pg_catalog.oid::pg_catalog.int8)::pg_catalog.text
                   from (select name from renamed order by after_id desc limit 1) as n
                   join audit.tracked_tables t on t.target_type = n.name",
                vec![Some(recorded_as.to_owned()), Some(entry_id.to_string())],
            ),
            Some(recorded_as),
        )
        .await?;
        let found: Option<(String, Option<u32>)> = parse_rows(rows)?.into_iter().next();
        let Some((name, Some(oid))) = found else {
            return Err(Error::from(RevertError::Impossible {
                table: recorded_as.to_owned(),
                column: None,
                message: format!(
                    "cannot revert changes to {recorded_as}: the table is no longer tracked or no longer exists, \
                     so the revert could not be recorded; enable tracking of it again (or re-create it) first"
                ),
            }));
        };
        if !self.by_name.contains_key(&name) {
            let table = read_table(db, &name, oid).await?;
            self.by_name.insert(name.clone(), table);
        }
        self.recorded.insert(recorded_as.to_owned(), name.clone());
        Ok(name)
    }

    fn get(&self, name: &str) -> &Table {
        &self.by_name[name]
    }
}

async fn read_table(db: &impl Session, name: &str, oid: u32) -> Result<Table> {
    let rows = run(
        db,
        Statement::new(
            "select pg_catalog.jsonb_build_array(a.attname::pg_catalog.text, a.attgenerated <> '', a.attidentity = 'a',
                    a.attnotnull and not a.atthasdef and a.attidentity = '' and a.attgenerated = '',
                    coalesce(k.ord, 0)::pg_catalog.int4)::pg_catalog.text
               from pg_catalog.pg_attribute a
               left join pg_catalog.pg_index i on i.indrelid = a.attrelid and i.indisprimary
               left join lateral pg_catalog.unnest(i.indkey) with ordinality as k(attnum, ord)
                      on k.attnum = a.attnum
              where a.attrelid = $1::pg_catalog.oid and a.attnum > 0 and not a.attisdropped
              order by a.attnum",
            vec![Some(oid.to_string())],
        ),
        Some(name),
    )
    .await?;
    let mut key: Vec<(i32, String)> = Vec::new();
    let mut columns = HashMap::new();
    for (column, generated, identity_always, required, position) in
        parse_rows::<(String, bool, bool, bool, i32)>(rows)?
    {
        if position > 0 {
            key.push((position, column.clone()));
        }
        columns.insert(
            column,
            Column {
                generated,
                identity_always,
                required,
            },
        );
    }
    key.sort();
    if key.is_empty() {
        return Err(Error::from(RevertError::Impossible {
            table: name.to_owned(),
            column: None,
            message: format!(
                "cannot revert changes to {name}: it has no primary key to find its rows by"
            ),
        }));
    }
    Ok(Table {
        oid,
        name: name.to_owned(),
        key: key.into_iter().map(|(_, c)| c).collect(),
        columns,
    })
}

/// Whether a logged value was replaced by its pseudonym (`audit.redacted_text`).
fn is_redacted(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 69 && s.starts_with("hmac:") && s[5..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn missing_column(table: &Table, column: &str) -> Error {
    Error::from(RevertError::Impossible {
        table: table.name.clone(),
        column: Some(column.to_owned()),
        message: format!(
            "cannot revert changes to {}: column {column} was dropped or renamed since; \
             nothing was changed",
            table.name
        ),
    })
}

/// The key columns' values in `row`.
fn key_of(table: &Table, row: &Value, target_id: &str) -> Result<Map<String, Value>> {
    let mut key = Map::new();
    for column in &table.key {
        match row.get(column) {
            Some(value) if !value.is_null() && !is_redacted(value) => {
                key.insert(column.clone(), value.clone());
            }
            _ => {
                return Err(Error::from(RevertError::Impossible {
                    table: table.name.clone(),
                    column: Some(column.clone()),
                    message: format!(
                        "cannot revert changes to {} {target_id}: the log does not hold its key column {column} \
                         (the primary key changed since, or the value was redacted)",
                        table.name
                    ),
                }))
            }
        }
    }
    Ok(key)
}

/// The plans for `entries` (oldest first): one per record, followed across key changes.
async fn entry_plans(
    db: &impl Session,
    tables: &mut Tables,
    entries: &[AuditEntry],
    notes: &mut Vec<String>,
) -> Result<Vec<Plan>> {
    let mut plans: Vec<Plan> = Vec::new();
    let mut by_key: HashMap<(String, String), usize> = HashMap::new();
    let empty = Value::Object(Map::new());
    for entry in entries {
        let recorded_as = entry.target_type.clone().unwrap_or_default();
        let name = tables.load(db, &recorded_as, entry.id).await?;
        let table = tables.get(&name);
        let target_id = entry.target_id.clone().unwrap_or_default();
        let new = entry.new_values.as_ref().unwrap_or(&empty);
        let old = entry.old_values.as_ref().unwrap_or(&empty);
        let (after, key_row) = match entry.action.as_str() {
            "INSERT" | "UPDATE" => (Some(new.clone()), new),
            _ => (None, old),
        };
        let key = key_of(table, key_row, &target_id)?;
        if entry.action == "UPDATE" {
            for field in entry.changed_fields.iter().flatten() {
                if !table.columns.contains_key(field) {
                    return Err(missing_column(table, field));
                }
                if old.get(field).is_none() {
                    notes.push(format!(
                        "{name} {target_id}: {field} is not stored in the log (excluded from tracking) and is left as it is"
                    ));
                }
            }
        }
        let changed: Option<BTreeSet<String>> = (entry.action == "UPDATE")
            .then(|| entry.changed_fields.iter().flatten().cloned().collect());
        let earlier_key = entry
            .old_target_id
            .clone()
            .unwrap_or_else(|| target_id.clone());
        match by_key.remove(&(name.clone(), earlier_key)) {
            Some(index) => {
                let plan = &mut plans[index];
                plan.changed = match (plan.changed.take(), changed) {
                    (Some(mut all), Some(more)) => {
                        all.extend(more);
                        Some(all)
                    }
                    _ => None,
                };
                plan.after = after;
                plan.key = key;
                plan.target_id = target_id.clone();
                plan.entries.push(entry.id);
                plan.recorded_as = recorded_as;
                by_key.insert((name, target_id), index);
            }
            None => {
                let before = match entry.action.as_str() {
                    "INSERT" => None,
                    // The whole new row with the changed columns' old values over it.
                    "UPDATE" => {
                        let mut row = new.as_object().cloned().unwrap_or_default();
                        row.extend(old.as_object().cloned().unwrap_or_default());
                        Some(row)
                    }
                    _ => old.as_object().cloned(),
                };
                by_key.insert((name.clone(), target_id.clone()), plans.len());
                plans.push(Plan {
                    table: name,
                    target_id,
                    key,
                    before,
                    after,
                    changed,
                    entries: vec![entry.id],
                    recorded_as,
                });
            }
        }
    }
    Ok(plans)
}

/// The plan putting one record back to its state at `to`.
async fn record_plan(
    db: &impl Session,
    tables: &mut Tables,
    table: &TableRef,
    id: &Value,
    to: DateTime<Utc>,
) -> Result<Plan> {
    let resolved = table.resolve_on(db).await?;
    // Its name now: no rename after the end of time.
    let name = tables.load(db, &resolved, i64::MAX).await?;
    let state = crate::queries::state_at_on(db, &name, id, to).await?;
    let table = tables.get(&name);
    let ids: Vec<Value> = match id {
        Value::Array(parts) => parts.clone(),
        single => vec![single.clone()],
    };
    if ids.len() != table.key.len() {
        return Err(Error::invalid_argument(
            "id",
            format!(
                "{} has a {}-column primary key ({}); give its id as {}",
                table.name,
                table.key.len(),
                table.key.join(", "),
                if table.key.len() == 1 {
                    "one value"
                } else {
                    "an array"
                }
            ),
        ));
    }
    Ok(Plan {
        table: name.clone(),
        target_id: match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        key: table.key.iter().cloned().zip(ids).collect(),
        before: state.and_then(|state| state.as_object().cloned()),
        after: None,
        changed: None,
        entries: Vec::new(),
        recorded_as: name,
    })
}

/// The tables of `plans`, each after the tables its foreign keys reference (where they do
/// not form a cycle).
async fn parents_first(db: &impl Session, tables: &Tables, plans: &[Plan]) -> Result<Vec<String>> {
    let mut names: Vec<&str> = by_table(plans).into_iter().map(|(name, _)| name).collect();
    names.sort();
    let oids: Vec<u32> = names.iter().map(|n| tables.get(n).oid).collect();
    let listed: Vec<String> = oids.iter().map(u32::to_string).collect();
    let rows = run(
        db,
        Statement::new(
            "select pg_catalog.jsonb_build_array(conrelid::pg_catalog.int8, confrelid::pg_catalog.int8)::pg_catalog.text
               from pg_catalog.pg_constraint
              where contype = 'f' and conrelid = any($1::pg_catalog.oid[]) and confrelid = any($1::pg_catalog.oid[])
                and conrelid <> confrelid",
            vec![Some(format!("{{{}}}", listed.join(",")))],
        ),
        None,
    )
    .await?;
    let references: Vec<(u32, u32)> = parse_rows(rows)?;
    let mut ordered: Vec<String> = Vec::with_capacity(names.len());
    let mut left: Vec<(&str, u32)> = names.iter().copied().zip(oids).collect();
    while !left.is_empty() {
        let waiting = |oid: u32| {
            references
                .iter()
                .any(|(child, parent)| *child == oid && left.iter().any(|(_, o)| o == parent))
        };
        // A table whose parents are all placed; in a cycle, the first left.
        let next = left.iter().position(|(_, oid)| !waiting(*oid)).unwrap_or(0);
        ordered.push(left.remove(next).0.to_owned());
    }
    Ok(ordered)
}

/// A whole row as a re-created record writes it: generated columns left out, excluded and
/// redacted ones left to their defaults (refused when the column needs a value).
fn insertable(
    table: &Table,
    row: &Map<String, Value>,
    target_id: &str,
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>> {
    let mut values = Map::new();
    for (column, value) in row {
        let Some(info) = table.columns.get(column) else {
            return Err(missing_column(table, column));
        };
        if info.generated {
            continue;
        }
        if is_redacted(value) {
            if info.required {
                return Err(Error::from(RevertError::Impossible {
                    table: table.name.clone(),
                    column: Some(column.clone()),
                    message: format!(
                        "cannot re-create {} {target_id}: column {column} was redacted in the log \
                         and is NOT NULL without a default",
                        table.name
                    ),
                }));
            }
            notes.push(format!(
                "{} {target_id}: {column} was redacted in the log and is left to its default",
                table.name
            ));
            continue;
        }
        values.insert(column.clone(), value.clone());
    }
    for (column, info) in &table.columns {
        if row.contains_key(column) || info.generated {
            continue;
        }
        if info.required {
            return Err(Error::from(RevertError::Impossible {
                table: table.name.clone(),
                column: Some(column.clone()),
                message: format!(
                    "cannot re-create {} {target_id}: column {column} is not stored in the log \
                     (excluded from tracking) and is NOT NULL without a default",
                    table.name
                ),
            }));
        }
        notes.push(format!(
            "{} {target_id}: {column} is not stored in the log (excluded from tracking) and is left to its default",
            table.name
        ));
    }
    Ok(values)
}

/// The columns of `before` that differ from the row now (generated ones left out, redacted ones
/// noted and left).
fn differing(
    table: &Table,
    plan: &Plan,
    before: &Map<String, Value>,
    now: &Value,
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>> {
    let target_id = &plan.target_id;
    let mut values = Map::new();
    for (column, value) in before {
        let Some(info) = table.columns.get(column) else {
            return Err(missing_column(table, column));
        };
        let written = plan
            .changed
            .as_ref()
            .is_none_or(|changed| changed.contains(column));
        if !written || info.generated || now.get(column) == Some(value) {
            continue;
        }
        if is_redacted(value) {
            notes.push(format!(
                "{} {target_id}: {column} was redacted in the log and is left as it is",
                table.name
            ));
            continue;
        }
        values.insert(column.clone(), value.clone());
    }
    Ok(values)
}

fn key_columns(table: &Table, alias: &str) -> String {
    let columns: Vec<String> = table
        .key
        .iter()
        .map(|c| format!("{alias}.{}", escape_identifier(c)))
        .collect();
    format!("({})", columns.join(", "))
}

/// The rows with these keys as they are now (`None` where there is none), in order, locked
/// until the transaction ends: what a revert compares and writes back, no concurrent
/// transaction can change in between.
async fn current_rows(
    db: &impl Session,
    table: &Table,
    keys: &[Map<String, Value>],
) -> Result<Vec<Option<Value>>> {
    let sql = format!(
        "select (select pg_catalog.to_jsonb(t) from {name} as t where {t_key} = {k_key} for update)::pg_catalog.text
           from rows from (pg_catalog.jsonb_populate_recordset(null::{name}, $1::pg_catalog.jsonb)) with ordinality as k
          order by k.ordinality",
        name = table.name,
        t_key = key_columns(table, "t"),
        k_key = key_columns(table, "k"),
    );
    let keys = Value::Array(keys.iter().cloned().map(Value::Object).collect());
    let rows = run(
        db,
        Statement::new(sql, vec![Some(keys.to_string())]),
        Some(&table.name),
    )
    .await?;
    rows.iter()
        .map(|row| row.as_deref().map(parse).transpose())
        .collect()
}

/// Whether a statement that a foreign key refuses fails the revert or waits for a later pass.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Tentative,
    Final,
}

/// One record's part of a statement: where it is, the values written, and the row before.
struct Write<'a> {
    plan: &'a Plan,
    key: Map<String, Value>,
    values: Map<String, Value>,
    current: Option<Value>,
}

/// Does `operation` for the plans of one table that need it now: re-creates records that
/// existed before and do not now, updates those that exist and differ, deletes those that did
/// not exist before. One statement per set of columns written.
async fn write_back(
    db: &impl Session,
    table: &Table,
    plans: &[&Plan],
    operation: Operation,
    attempt: Attempt,
    report: &mut RevertReport,
) -> Result<()> {
    let mut keys: Vec<Map<String, Value>> = plans.iter().map(|p| p.key.clone()).collect();
    let mut current = current_rows(db, table, &keys).await?;
    // A record whose key a cascade (ON UPDATE CASCADE of a parent written back before) has
    // already put back is found under its key before.
    let mut moved: Vec<(usize, Map<String, Value>)> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        if let (None, Some(before)) = (&current[i], &plan.before) {
            let before = Value::Object(before.clone());
            if let Ok(key) = key_of(table, &before, &plan.target_id) {
                if key != plan.key {
                    moved.push((i, key));
                }
            }
        }
    }
    if !moved.is_empty() {
        let moved_keys: Vec<Map<String, Value>> = moved.iter().map(|(_, k)| k.clone()).collect();
        let found = current_rows(db, table, &moved_keys).await?;
        for ((i, key), row) in moved.into_iter().zip(found) {
            if row.is_some() {
                current[i] = row;
                keys[i] = key;
            }
        }
    }
    let mut statements: BTreeMap<Vec<String>, Vec<Write>> = BTreeMap::new();
    for ((plan, current), key) in plans.iter().zip(current).zip(keys) {
        let values = match (operation, &plan.before, &current) {
            (Operation::Insert, Some(before), None) => {
                insertable(table, before, &plan.target_id, &mut report.notes)?
            }
            (Operation::Update, Some(before), Some(now)) => {
                let values = differing(table, plan, before, now, &mut report.notes)?;
                if values.is_empty() {
                    continue;
                }
                values
            }
            (Operation::Delete, None, Some(_)) => Map::new(),
            _ => continue,
        };
        statements
            .entry(values.keys().cloned().collect())
            .or_default()
            .push(Write {
                plan,
                key,
                values,
                current,
            });
    }
    for (columns, writes) in statements {
        let (sql, values) = statement(table, operation, &columns, &writes);
        let tentative = attempt == Attempt::Tentative;
        if tentative {
            savepoint(db, "savepoint").await?;
        }
        // Counted in SQL: every driver returns rows, not every one a row count.
        let counted = Statement::new(
            format!("with written as ({sql} returning 1) select pg_catalog.count(*)::pg_catalog.text from written"),
            vec![Some(values.to_string())],
        );
        let changed: u64 = match db.rows(counted).await {
            Ok(rows) => parse(rows.first().cloned().flatten().as_deref().unwrap_or("0"))?,
            // foreign_key_violation
            Err(failure) if tentative && failure.sqlstate() == Some("23503") => {
                savepoint(db, "rollback to savepoint").await?;
                savepoint(db, "release savepoint").await?;
                continue;
            }
            Err(failure) => return Err(failure.into_error(Some(&table.name))),
        };
        if tentative {
            savepoint(db, "release savepoint").await?;
        }
        if changed != writes.len() as u64 {
            return Err(Error::from(RevertError::Impossible {
                table: table.name.clone(),
                column: None,
                message: format!(
                    "reverting {} changed {changed} rows where {} were expected (changed meanwhile?); nothing was changed",
                    table.name,
                    writes.len()
                ),
            }));
        }
        report
            .statements
            .push(sql.replace("$1", &escape_literal(&values.to_string())));
        for write in writes {
            report.changes.push(record_revert(table, operation, write));
        }
    }
    Ok(())
}

/// `command` (`savepoint`, `release savepoint`...) on the tentative pass's savepoint.
async fn savepoint(db: &impl Session, command: &str) -> Result<()> {
    run(
        db,
        Statement::bare(format!("{command} {PASS_SAVEPOINT}")),
        None,
    )
    .await?;
    Ok(())
}

/// The statement doing `operation` for `writes` (all writing `columns`), with `$1` their keys and
/// values as a JSON array.
fn statement(
    table: &Table,
    operation: Operation,
    columns: &[String],
    writes: &[Write],
) -> (String, Value) {
    let name = &table.name;
    let quoted: Vec<String> = columns.iter().map(|c| escape_identifier(c)).collect();
    match operation {
        Operation::Delete => (
            format!(
                "delete from {name} as t \
                 using pg_catalog.jsonb_populate_recordset(null::{name}, $1::pg_catalog.jsonb) as k \
                 where {} = {}",
                key_columns(table, "t"),
                key_columns(table, "k")
            ),
            Value::Array(
                writes
                    .iter()
                    .map(|w| Value::Object(w.key.clone()))
                    .collect(),
            ),
        ),
        Operation::Insert => {
            let overriding = if columns.iter().any(|c| table.columns[c].identity_always) {
                " overriding system value"
            } else {
                ""
            };
            let selected: Vec<String> = quoted.iter().map(|c| format!("r.{c}")).collect();
            (
                format!(
                    "insert into {name} ({}){overriding} select {} \
                     from pg_catalog.jsonb_populate_recordset(null::{name}, $1::pg_catalog.jsonb) as r",
                    quoted.join(", "),
                    selected.join(", ")
                ),
                Value::Array(
                    writes
                        .iter()
                        .map(|w| Value::Object(w.values.clone()))
                        .collect(),
                ),
            )
        }
        Operation::Update => {
            let set: Vec<String> = quoted.iter().map(|c| format!("{c} = v.{c}")).collect();
            (
                format!(
                    "update {name} as t set {} \
                     from pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) as e \
                     cross join lateral pg_catalog.jsonb_populate_record(null::{name}, e -> 'values') as v \
                     cross join lateral pg_catalog.jsonb_populate_record(null::{name}, e -> 'key') as k \
                     where {} = {}",
                    set.join(", "),
                    key_columns(table, "t"),
                    key_columns(table, "k")
                ),
                Value::Array(
                    writes
                        .iter()
                        .map(|w| json!({ "key": w.key, "values": w.values }))
                        .collect(),
                ),
            )
        }
    }
}

/// What the report says of one record's undo.
fn record_revert(table: &Table, operation: Operation, write: Write) -> RecordRevert {
    let empty = Map::new();
    let current = write
        .current
        .as_ref()
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let fields = match operation {
        Operation::Delete => current
            .iter()
            .map(|(field, value)| FieldRevert {
                field: field.clone(),
                current: value.clone(),
                restored: Value::Null,
            })
            .collect(),
        Operation::Insert | Operation::Update => write
            .values
            .iter()
            .map(|(field, value)| FieldRevert {
                field: field.clone(),
                current: current.get(field).cloned().unwrap_or(Value::Null),
                restored: value.clone(),
            })
            .collect(),
    };
    RecordRevert {
        table: table.name.clone(),
        id: write.plan.target_id.clone(),
        operation: operation.name().to_owned(),
        entries: write.plan.entries.clone(),
        fields,
    }
}
