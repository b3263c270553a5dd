//! Erasure (GDPR): [`AuditLogs::redact`] replaces a data subject's personal values with keyed
//! hashes and records a redaction event. The SQL side is `audit.redact` (`schema/audit.sql`);
//! the chain still verifies through the digests it records in `audit.redactions`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::Type;

use crate::error::{from_query, ErasureError, Error, Result};
use crate::AuditLogs;

/// Whose data a redaction erases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Every row attributed to this actor.
    Actor(String),
    /// Every row about this record (`target_type` as in `audit_logs`, e.g. `public.users`;
    /// the key as for history: a string, a number or an array for a composite key).
    Target { target_type: String, id: Value },
}

impl Subject {
    /// The subject named by `actorId`, or by `targetType` and `targetId` together: the one rule
    /// of every caller.
    pub fn one_of(
        actor_id: Option<String>,
        target_type: Option<String>,
        target_id: Option<Value>,
    ) -> Result<Subject> {
        match (actor_id, target_type, target_id) {
            (Some(actor), None, None) => Ok(Subject::Actor(actor)),
            (None, Some(target_type), Some(id)) => Ok(Subject::Target { target_type, id }),
            _ => Err(Error::Erasure(ErasureError::InvalidRedaction {
                reason: "give either actorId, or targetType and targetId".into(),
            })),
        }
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
}

/// What `redact` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct RedactReport {
    pub rows_redacted: i64,
    /// The `audit.redaction` event recording it.
    pub event_id: i64,
    pub fields: Vec<String>,
}

/// The smallest key accepted by [`AuditLogs::redact`].
pub const MIN_KEY_BYTES: usize = 16;

impl AuditLogs {
    /// Replaces a data subject's personal values with keyed hashes (HMAC-SHA256 under `key`,
    /// which is never stored) and records a redaction event; verification still passes.
    /// Errors: [`ErasureError::InvalidRedaction`] (key shorter than [`MIN_KEY_BYTES`], bad fields).
    pub async fn redact(&self, request: &RedactRequest, key: &[u8]) -> Result<RedactReport> {
        if key.len() < MIN_KEY_BYTES {
            return Err(Error::Erasure(ErasureError::InvalidRedaction {
                reason: format!(
                    "the key is {} bytes; use a random secret of at least {MIN_KEY_BYTES} bytes, kept outside the database",
                    key.len()
                ),
            }));
        }
        let (actor, target_type, target_id) = match &request.subject {
            Subject::Actor(actor) => (Some(actor.clone()), None, None),
            Subject::Target { target_type, id } => {
                crate::history::check_target_id(id)?;
                (None, Some(target_type.clone()), Some(id.clone()))
            }
        };
        self.with_client(async |client| {
            // The key goes as a bound parameter, never into the SQL text.
            let row = client
                .query_typed_one(
                    &format!(
                        "select audit.redact($1, actor_id => $2, target_type => $3, target_id => {},
                           fields => $5, reason => $6)",
                        crate::history::key_sql("$4")
                    ),
                    &[
                        (&key, Type::BYTEA),
                        (&actor, Type::TEXT),
                        (&target_type, Type::TEXT),
                        (&target_id, Type::JSONB),
                        (&request.fields, Type::TEXT_ARRAY),
                        (&request.reason, Type::TEXT),
                    ],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            let value: Value = row.get(0);
            serde_json::from_value(value)
                .map_err(|e| Error::internal(format!("unexpected redact() result: {e}"), e))
        })
        .await
    }
}
