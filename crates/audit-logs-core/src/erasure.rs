//! Erasure (GDPR): [`AuditLogs::redact`] replaces a data subject's personal values with keyed
//! hashes and records a redaction event. The SQL side is `audit.redact` and, for a person
//! wherever the log mentions them, `audit.redact_subject` (`schema/audit.sql`); the chain still
//! verifies through the digests they record in `audit.redactions`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};

use crate::error::{from_query, ErasureError, Error, Result};
use crate::subjects::DataSubject;
use crate::AuditLogs;

/// Whose data a redaction erases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every row attributed to this actor.
    Actor(String),
    /// Every row about this record (`target_type` as in `audit_logs`, e.g. `public.users`;
    /// the key as for history: a string, a number or an array for a composite key).
    Target { target_type: String, id: Value },
    /// A person wherever the log mentions them (see [`DataSubject`]): every mentioning value
    /// is replaced as a whole, the others are kept.
    Person(DataSubject),
}

impl Subject {
    /// The subject of a redaction as every caller takes it: `targetType` and `targetId` (a
    /// record), or a data subject: with an e-mail, an IP address or values, a person wherever
    /// mentioned; with an actor id alone, the actor columns of their entries (as before V10).
    pub fn of(
        person: DataSubject,
        target_type: Option<String>,
        target_id: Option<Value>,
    ) -> Result<Subject> {
        let invalid = |reason: &str| {
            Err(Error::Erasure(ErasureError::InvalidRedaction {
                reason: reason.into(),
            }))
        };
        match (target_type, target_id) {
            (Some(target_type), Some(id)) if person == DataSubject::default() => {
                Ok(Subject::Target { target_type, id })
            }
            (None, None) if person.has_terms() => Ok(Subject::Person(person)),
            (None, None) => match person.actor_id {
                Some(actor) => Ok(Subject::Actor(actor)),
                None => invalid("give a data subject (actorId, email, ipAddress or values), or a record (targetType and targetId)"),
            },
            _ => invalid("give either a data subject (actorId, email, ipAddress, values), or targetType and targetId together"),
        }
    }

    /// [`Subject::of`] with an actor id for the data subject.
    pub fn one_of(
        actor_id: Option<String>,
        target_type: Option<String>,
        target_id: Option<Value>,
    ) -> Result<Subject> {
        Subject::of(
            DataSubject {
                actor_id,
                ..Default::default()
            },
            target_type,
            target_id,
        )
    }
}

/// A GDPR erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactRequest {
    pub subject: Subject,
    /// Columns to redact (`actor_id`, `actor_email`, `ip_address`, `user_agent`, `target_id`,
    /// `old_target_id`, `old_values`, `new_values`, `metadata`), `values.KEY` or `metadata.KEY`.
    /// Default: the actor columns for an actor, `old_values` and `new_values` for a target.
    pub fields: Option<Vec<String>>,
    /// Recorded in the redaction event.
    pub reason: Option<String>,
    /// Run it and roll it back: the report says what would change, and nothing does.
    pub dry_run: bool,
}

/// What `redact` did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RedactReport {
    pub rows_redacted: i64,
    /// The `audit.redaction` event recording it (none in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
    /// The columns changed (for a data subject, those where they were found).
    pub fields: Vec<String>,
    /// For a data subject: each entry changed and where (the paths `subject` gives).
    #[serde(default)]
    pub entries: Vec<RedactedEntry>,
    #[serde(default)]
    pub dry_run: bool,
}

/// An entry a redaction of a data subject changed, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RedactedEntry {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// As it was before the redaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    pub paths: Vec<String>,
}

/// The smallest key accepted by [`AuditLogs::redact`].
pub const MIN_KEY_BYTES: usize = 16;

impl AuditLogs {
    /// Replaces a data subject's personal values with keyed hashes (HMAC-SHA256 under `key`,
    /// which is never stored) and records a redaction event; verification still passes. For a
    /// [`Subject::Person`], every value that mentions them, wherever (as
    /// [`AuditLogs::subject`] finds them), listed in the report's `entries`; with `dry_run`,
    /// all of it is done and rolled back. Errors: [`ErasureError::InvalidRedaction`] (key
    /// shorter than [`MIN_KEY_BYTES`], bad fields), [`ErasureError::InvalidSubject`].
    pub async fn redact(&self, request: &RedactRequest, key: &[u8]) -> Result<RedactReport> {
        if key.len() < MIN_KEY_BYTES {
            return Err(Error::Erasure(ErasureError::InvalidRedaction {
                reason: format!(
                    "the key is {} bytes; use a random secret of at least {MIN_KEY_BYTES} bytes, kept outside the database",
                    key.len()
                ),
            }));
        }
        if let (Subject::Person(_), Some(_)) = (&request.subject, &request.fields) {
            return Err(Error::Erasure(ErasureError::InvalidRedaction {
                reason: "a data subject is erased wherever found: give no fields (they choose the columns of an actor's or a record's redaction)".into(),
            }));
        }
        let (actor, target_type, target_id) = match &request.subject {
            Subject::Actor(actor) => (Some(actor.clone()), None, None),
            Subject::Target { target_type, id } => {
                crate::history::check_target_id(id)?;
                (None, Some(target_type.clone()), Some(id.clone()))
            }
            Subject::Person(person) => (person.actor_id.clone(), None, None),
        };
        let text = match &request.subject {
            Subject::Person(_) => "select audit.redact_subject($1, actor_id => $2, email => $3,
                                     ip_address => $4, \"values\" => $5, reason => $6)"
                .to_owned(),
            _ => format!(
                "select audit.redact($1, actor_id => $2, target_type => $3, target_id => {},
                   fields => $5, reason => $6)",
                crate::history::key_sql("$4")
            ),
        };
        let person = match &request.subject {
            Subject::Person(person) => person.clone(),
            _ => DataSubject::default(),
        };
        self.with_client(async |client| {
            let work = async {
                // The key goes as a bound parameter, never into the SQL text.
                let params: [(&(dyn ToSql + Sync), Type); 6] = match &request.subject {
                    Subject::Person(_) => [
                        (&key, Type::BYTEA),
                        (&actor, Type::TEXT),
                        (&person.email, Type::TEXT),
                        (&person.ip_address, Type::TEXT),
                        (&person.values, Type::TEXT_ARRAY),
                        (&request.reason, Type::TEXT),
                    ],
                    _ => [
                        (&key, Type::BYTEA),
                        (&actor, Type::TEXT),
                        (&target_type, Type::TEXT),
                        (&target_id, Type::JSONB),
                        (&request.fields, Type::TEXT_ARRAY),
                        (&request.reason, Type::TEXT),
                    ],
                };
                let row = client
                    .query_typed_one(&text, &params)
                    .await
                    .map_err(|e| from_query(e, None))?;
                let value: Value = row.get(0);
                serde_json::from_value::<RedactReport>(value)
                    .map_err(|e| Error::internal(format!("unexpected redact() result: {e}"), e))
            };
            let mut report = crate::in_transaction(client, "begin", work, !request.dry_run).await?;
            if request.dry_run {
                report.dry_run = true;
                report.event_id = None;
            }
            Ok(report)
        })
        .await
    }
}
