//! Data subject requests (GDPR Articles 15 and 17): every entry that mentions a person, with
//! where in it ([`AuditLogs::subject`], and [`AuditLogs::subject_stream`] for an export), and
//! their erasure ([`AuditLogs::redact`] with [`crate::Subject::Person`]).
//!
//! What mentions a person is decided in SQL once (`audit.subject_terms`, `audit.may_mention`,
//! `audit.subject_paths`, migration V10), for finding and erasing alike, so that the two cannot
//! disagree: after an erasure, the same description finds nothing.

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Row};

use crate::error::{from_query, Result};
use crate::history::{entry_select, page_size, AuditEntry};
use crate::queries::{self, check_before, Batches, Order, Page, Sql};
use crate::AuditLogs;

/// A data subject: a person, described by what the log may hold about them. Give at least one
/// field.
///
/// - The actor id is compared with the entries' `actor_id`, for equality (only there: as free
///   text an id such as `42` would also be an order number).
/// - The e-mail, the IP address and each value are searched as whole words, ignoring case, in
///   `actor_email`, `ip_address`, `user_agent`, `target_id`, `old_target_id`, and every string
///   of `old_values`, `new_values` and `metadata` at any depth (a JSON number matches a value it
///   equals); keys are not searched. `ann@x.io` is found in `"ann@x.io asked"`, not in
///   `"joann@x.io"`.
/// - An entry the subject made (its `actor_id` or `actor_email` is theirs) mentions them in its
///   IP address and user agent too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object))]
pub struct DataSubject {
    /// Their actor id, as the audit context gave it.
    pub actor_id: Option<String>,
    /// Their e-mail address.
    pub email: Option<String>,
    /// An IP address of theirs (one address, not a network).
    pub ip_address: Option<String>,
    /// Other values that identify them: a name, a phone number, a customer number (2 to 1024
    /// bytes each, at most 100).
    pub values: Option<Vec<String>>,
}

impl DataSubject {
    /// Whether it names the subject by more than the actor id (the one thing an erasure by
    /// actor, [`crate::Subject::Actor`], already covers).
    pub fn has_terms(&self) -> bool {
        self.email.is_some()
            || self.ip_address.is_some()
            || self.values.as_ref().is_some_and(|v| !v.is_empty())
    }
}

/// An entry that mentions a data subject, and where.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct SubjectEntry {
    pub entry: AuditEntry,
    /// Where it mentions them: columns (`actor_id`, `actor_email`, `ip_address`, `user_agent`,
    /// `target_id`, `old_target_id`) and paths within the JSON ones
    /// (`new_values.author_email`, `metadata.reason`, `old_values.profile.contacts[0]`; a key
    /// that is not an identifier is quoted: `metadata["a key"]`).
    pub paths: Vec<String>,
}

impl SubjectEntry {
    fn from_row(row: &Row) -> SubjectEntry {
        SubjectEntry {
            entry: AuditEntry::from_row(row),
            paths: row.get(crate::history::ENTRY_COLUMNS.len()),
        }
    }
}

/// A page of [`AuditLogs::subject`] results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectPage {
    pub entries: Vec<SubjectEntry>,
    /// Pass as `before` for the next page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// The entries mentioning a data subject, in batches.
pub type SubjectStream = Batches<SubjectEntry>;

/// The subject's terms (checked by `audit.subject_terms`) and the first pass's patterns.
struct Terms {
    terms: Vec<String>,
    /// For the text lower-cased in ASCII (`audit.subject_ascii_patterns`); `None` when a term
    /// keeps too few characters for that pass, which then uses `patterns`.
    ascii_patterns: Option<Vec<String>>,
    /// For the text lower-cased in the database's collation (`audit.subject_patterns`).
    patterns: Vec<String>,
}

/// The SQL of a subject's terms and patterns, as [`subject_sql`] takes them ($2, $3, $4): $1
/// the actor id, $2 the e-mail, $3 the IP address, $4 the values.
pub const TERMS_SQL: &str = "select t, audit.subject_ascii_patterns(t), audit.subject_patterns(t)
                               from audit.subject_terms($1, $2, $3, $4) as t";

async fn terms(client: &impl GenericClient, subject: &DataSubject) -> Result<Terms> {
    let row = client
        .query_typed_one(
            TERMS_SQL,
            &[
                (&subject.actor_id, Type::TEXT),
                (&subject.email, Type::TEXT),
                (&subject.ip_address, Type::TEXT),
                (&subject.values, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(Terms {
        terms: row.get(0),
        ascii_patterns: row.get(1),
        patterns: row.get(2),
    })
}

/// The query of the entries mentioning a subject: $1 the actor id, $2 the terms, $3 and $4
/// the patterns, then `tail`'s parameters. The first pass (`audit.may_mention`, inlined: one
/// sequential scan) keeps the rows that may mention them, the exact rule runs on those, once
/// each (the subquery is fenced so that its paths are not computed again for the filter).
fn subject_query(actor_id: Option<String>, terms: Terms) -> Sql {
    let mut sql = Sql::default();
    sql.bind(actor_id, Type::TEXT);
    sql.bind(terms.terms, Type::TEXT_ARRAY);
    sql.bind(terms.ascii_patterns, Type::TEXT_ARRAY);
    sql.bind(terms.patterns, Type::TEXT_ARRAY);
    sql
}

fn subject_text(condition: &str, tail: &str) -> String {
    format!(
        "select {}, paths from (
           select l.*, audit.subject_paths(l, $1, $2) as paths from audit.audit_logs l
            where audit.may_mention(l, $1, $3, $4) {condition}
           offset 0) as found
          where pg_catalog.cardinality(paths) > 0 {tail}",
        entry_select()
    )
}

/// The SQL of [`AuditLogs::subject`] (to time or EXPLAIN it): $1 the actor id, $2 the terms,
/// $3 and $4 the patterns (see `audit.subject_terms`, `audit.subject_ascii_patterns` and
/// `audit.subject_patterns`), $5 `before` (an entry id), $6 `limit + 1`.
pub fn subject_sql() -> String {
    subject_text("and l.id < $5", "order by id desc limit $6")
}

impl AuditLogs {
    /// Every entry that mentions a data subject (see [`DataSubject`] for the rule), with where,
    /// newest first, one keyset page: pass `next_cursor` as `before` for the next. Reads the
    /// whole log once per page (one sequential scan; see the README's "Data subject requests"),
    /// so ask for large pages, or use [`AuditLogs::subject_stream`]. Needs only to read the log.
    /// Errors: [`crate::ErasureError::InvalidSubject`].
    pub async fn subject(&self, subject: &DataSubject, page: &Page) -> Result<SubjectPage> {
        self.with_client(async |client| {
            let limit = page_size(page.limit)?;
            let before = check_before(page.before)?;
            let terms = terms(client, subject).await?;
            let mut sql = subject_query(subject.actor_id.clone(), terms);
            sql.bind(before, Type::INT8);
            sql.bind(limit + 1, Type::INT8);
            let rows = sql.query(client, &subject_sql()).await?;
            let mut entries: Vec<SubjectEntry> = rows.iter().map(SubjectEntry::from_row).collect();
            let next_cursor = if entries.len() as i64 > limit {
                entries.truncate(limit as usize);
                entries.last().map(|e| e.entry.id)
            } else {
                None
            };
            Ok(SubjectPage {
                entries,
                next_cursor,
            })
        })
        .await
    }

    /// Every entry that mentions a data subject, with where, in batches from one consistent
    /// snapshot (an access request's export: the CLI's `subject --format jsonl|csv`).
    pub async fn subject_stream(
        &self,
        subject: &DataSubject,
        order: Order,
        batch_size: Option<u32>,
    ) -> Result<SubjectStream> {
        let batch_size = queries::batch_size(batch_size)?;
        let client = self.client().await?;
        let terms = terms(&**client, subject).await?;
        let sql = subject_query(subject.actor_id.clone(), terms);
        let text = subject_text(
            "",
            match order {
                Order::NewestFirst => "order by id desc",
                Order::OldestFirst => "order by id",
            },
        );
        queries::stream_rows(client, text, sql, batch_size, SubjectEntry::from_row)
    }
}
