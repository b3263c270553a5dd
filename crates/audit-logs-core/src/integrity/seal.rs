//! Seals: [`AuditLogs::seal`] chains every committed, not yet sealed row into a new seal. The
//! chaining itself runs in the database (`audit.seal()`, see `schema/audit.sql`); the format is
//! in [`super::digest`].

use crate::error::{from_query, Result};
use crate::AuditLogs;
use serde::Serialize;

/// What `seal` sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct SealReport {
    /// The new seal; absent when every committed row was already sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<i64>,
    /// Rows sealed.
    pub row_count: i64,
    /// Rows with `fromTxid <= txid < toTxid` are covered.
    pub from_txid: i64,
    pub to_txid: i64,
    /// The chain's head after this call (64 hex digits): the new seal's, or, when nothing was
    /// waiting, the latest seal's; absent only when nothing was ever sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Its first 32 hex digits, as `verify` gives them: export it, and pass it later as
    /// `against`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_head: Option<String>,
}

impl AuditLogs {
    /// Chains every committed, not yet sealed row into a new seal. Never blocks writers; rows
    /// of transactions still in progress are sealed next time. Safe to run concurrently.
    pub async fn seal(&self) -> Result<SealReport> {
        self.with_client(async |client| {
            let row = client
                .query_one(
                    // With nothing to seal, the head is still the chain's: the latest seal's.
                    "select s.seal_id, s.row_count, s.from_txid, s.to_txid,
                            coalesce(s.head, (select pg_catalog.encode(l.head, 'hex') from audit.seals l
                                               order by l.id desc limit 1))
                       from audit.seal() s",
                    &[],
                )
                .await
                .map_err(|e| from_query(e, None))?;
            let head: Option<String> = row.get(4);
            Ok(SealReport {
                seal_id: row.get(0),
                row_count: row.get(1),
                from_txid: row.get(2),
                to_txid: row.get(3),
                short_head: head.as_ref().map(|h| h.chars().take(32).collect()),
                head,
            })
        })
        .await
    }
}
