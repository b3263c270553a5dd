//! Verification: [`AuditLogs::verify`] recomputes the chain from the rows itself (it trusts no
//! function stored in the database) and reports the first difference, with counts. The format
//! is in [`super::digest`].
//!
//! Three streams in one snapshot are merged in (txid, id) order: the rows, the seals with their
//! chunks, and the redactions. Each seal's chunks list their rows' keys; a row no entry names is
//! "unexpected", an entry with no row is "missing" (or expired, when retention dropped its month).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Serialize;
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::digest::{self, ChunkHead, RowDigester, SealHead};
use crate::error::{from_query, Error, Result};
use crate::AuditLogs;

/// Options of [`AuditLogs::verify`].
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// A head exported earlier (hex, at least 16 digits; the short form is 32): verification
    /// fails unless the recomputed chain passes through it. Detects a rewrite of the whole chain.
    pub against: Option<String>,
    /// Called every few thousand rows with (rows checked, rows sealed in total).
    pub progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
}

/// What kind of difference verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A sealed row's content differs from what was sealed.
    Changed,
    /// A sealed row is gone (and its month was not dropped by retention).
    Missing,
    /// A row sits in a sealed range but was not sealed: inserted afterwards, or moved in order.
    Unexpected,
    /// A redacted row's values differ from what the redaction recorded.
    RedactionMismatch,
    /// A chunk's or seal's stored head differs from the recomputed one, or seals do not link up.
    SealMismatch,
    /// The exported head given with `against` is not in the recomputed chain.
    DigestNotFound,
    /// An append-only trigger is missing or disabled.
    GuardDisabled,
    /// A tracked table's capture does not fire (a trigger dropped, disabled or replica-only):
    /// its changes go unrecorded, and no seal can notice.
    CaptureDisabled,
    /// Archives: a file is missing, or its size or sha256 differs from the manifest's.
    FileMismatch,
    /// Archives: a manifest or file that cannot be read as one.
    ManifestInvalid,
    /// Archives: an archived seal or chunk differs from the live database's.
    LiveMismatch,
    /// Archives: an object of a month was written again or deleted after its manifest was (a
    /// newer version, or a delete marker, in a versioned bucket such as one with Object Lock).
    Rewritten,
}

/// The first difference `verify` (of the live log, or of an archive) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(
    feature = "napi",
    napi_derive::napi(object, object_from_js = false, js_name = "VerifyProblem")
)]
pub struct Problem {
    #[cfg_attr(
        feature = "napi",
        napi(
            ts_type = "'changed' | 'missing' | 'unexpected' | 'redaction_mismatch' | 'seal_mismatch' | 'digest_not_found' | 'guard_disabled' | 'capture_disabled' | 'file_mismatch' | 'manifest_invalid' | 'live_mismatch' | 'rewritten'"
        )
    )]
    pub kind: ProblemKind,
    /// Archives: the month (`YYYY-MM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    /// Archives: the file, by its key (`2026-01/part-0000.parquet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The audit row (`audit_logs.id`), for row problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txid: Option<i64>,
    /// The seal it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_id: Option<i64>,
    pub message: String,
}

/// What `verify` found; `ok` is true when nothing differs. Counts are `i64`, as every count of
/// rows is (numbers in JavaScript, not BigInts).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct VerifyReport {
    pub ok: bool,
    pub rows_checked: i64,
    pub seals_checked: i64,
    /// Sealed rows whose month was dropped by retention (acknowledged, not a problem).
    pub rows_expired: i64,
    /// Sealed rows checked through a redaction or anonymization record.
    pub rows_redacted: i64,
    /// Rows not sealed yet (committed after the last seal, or still in progress).
    pub rows_unsealed: i64,
    pub rows_changed: i64,
    pub rows_missing: i64,
    pub rows_unexpected: i64,
    /// All problems found (rows, heads, links, triggers).
    pub problem_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_problem: Option<Problem>,
    /// The head of the last seal (64 hex digits), as recomputed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Its first 32 hex digits: export it, and pass it later as `against`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_head: Option<String>,
    /// Whether the chain passes through `against`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_found: Option<bool>,
    /// Append-only triggers that are missing or disabled.
    pub guard_problems: Vec<String>,
    /// Tracked tables whose capture does not fire (`table: problem`).
    pub capture_problems: Vec<String>,
}

impl AuditLogs {
    /// Recomputes the chain from the rows and reports the first difference, with counts.
    /// Streams the log (bounded memory) in one consistent snapshot. A failed verification is
    /// a report with `ok: false`, not an error; errors are for bad input and the database.
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        let against = match &options.against {
            Some(text) => Some(parse_against(text)?),
            None => None,
        };
        // The three streams and the hashing run on a thread of their own, on a single-threaded
        // runtime: each read of a connection reaches the verifier without waking another
        // thread (on a multi-thread runtime those wake-ups cost more than the hashing).
        let connect = self.options.clone();
        let progress = options.progress.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("audit-logs-verify".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::internal(format!("could not start the verifier: {e}"), e))
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let mut rows_conn = connect.connect().await?;
                            let mut chunks_conn = connect.connect().await?;
                            let mut redactions_conn = connect.connect().await?;
                            run(
                                &mut rows_conn,
                                &mut chunks_conn,
                                &mut redactions_conn,
                                against,
                                progress,
                            )
                            .await
                        })
                    });
                let _ = sender.send(result);
            })
            .map_err(|e| Error::internal(format!("could not start the verifier: {e}"), e))?;
        receiver.await.unwrap_or_else(|_| {
            Err(Error::Internal {
                reason: "the verifier stopped unexpectedly".into(),
                source: None,
            })
        })
    }
}

/// A hex prefix of a head, lowercased (`against`, of `verify` and of archive verification).
pub(crate) fn parse_against(text: &str) -> Result<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.len() < 16 || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::invalid_argument(
            "against",
            format!("{text:?} is not a head: expected 16 to 64 hex digits, as printed by `audit-logs seal` or `verify`"),
        ));
    }
    Ok(text)
}

/// The columns the verifier reads, in [`digest::Row`]'s order, as text exactly as
/// `audit.row_digest` renders them; `created_at` travels in binary (see [`digest::Row`]).
const ROW_COLUMNS: &str = "l.txid, l.id, l.created_at, \
    l.action, l.target_type::pg_catalog.text, l.changed_fields::pg_catalog.text, l.actor_type, l.request_id, \
    l.target_id::pg_catalog.text, l.old_target_id::pg_catalog.text, l.old_values::pg_catalog.text, \
    l.new_values::pg_catalog.text, l.actor_id::pg_catalog.text, l.actor_email, l.ip_address::pg_catalog.text, \
    l.user_agent, l.metadata::pg_catalog.text";

/// One row of the rows stream, for its digest. Text columns are declared `bytea` to the binary
/// COPY decoder: both travel as their raw bytes, and this skips a UTF-8 check and a type check
/// per column.
fn digest_row(r: &BinaryCopyOutRow) -> digest::Row<'_> {
    digest::Row {
        txid: r.get(0),
        id: r.get(1),
        created_at: r.get(2),
        action: r.get(3),
        target_type: r.get(4),
        changed_fields: r.get(5),
        actor_type: r.get(6),
        request_id: r.get(7),
        target_id: r.get(8),
        old_target_id: r.get(9),
        old_values: r.get(10),
        new_values: r.get(11),
        actor_id: r.get(12),
        actor_email: r.get(13),
        ip_address: r.get(14),
        user_agent: r.get(15),
        metadata: r.get(16),
    }
}

/// A row's place in the chain: (txid, id).
type Key = (i64, i64);

fn key_of(r: &BinaryCopyOutRow) -> Key {
    (r.get(0), r.get(1))
}

type Copy = Pin<Box<BinaryCopyOutStream>>;

async fn copy(client: &Transaction<'_>, sql: &str, types: &[Type]) -> Result<Copy> {
    let stream = client
        .copy_out(sql)
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(Box::pin(BinaryCopyOutStream::new(stream, types)))
}

async fn next(stream: &mut Copy) -> Result<Option<BinaryCopyOutRow>> {
    match stream.next().await {
        None => Ok(None),
        Some(row) => row.map(Some).map_err(|e| from_query(e, None)),
    }
}

struct Redaction {
    key: Key,
    original: Vec<u8>,
    redacted: Vec<u8>,
}

async fn next_redaction(stream: &mut Copy) -> Result<Option<Redaction>> {
    Ok(next(stream).await?.map(|r| Redaction {
        key: key_of(&r),
        original: r.get::<&[u8]>(2).to_vec(),
        redacted: r.get::<&[u8]>(3).to_vec(),
    }))
}

/// One seal, as the seals stream gives it (joined with each of its chunks).
struct Seal {
    id: i64,
    from: i64,
    to: i64,
    rows: i64,
    chunk_count: i32,
    previous_head: Vec<u8>,
    head: Vec<u8>,
}

impl Seal {
    fn of(r: &BinaryCopyOutRow) -> Seal {
        Seal {
            id: r.get(0),
            from: r.get(1),
            to: r.get(2),
            rows: r.get(3),
            chunk_count: r.get(4),
            previous_head: r.get::<&[u8]>(5).to_vec(),
            head: r.get::<&[u8]>(6).to_vec(),
        }
    }
}

/// One chunk of a seal; `None` for a seal listed without chunks.
struct Chunk<'a> {
    number: i32,
    month: i32,
    rows: i32,
    head: &'a [u8],
    /// (txid, id, first 8 bytes of the row digest), 24 bytes per row.
    entries: &'a [u8],
}

impl<'a> Chunk<'a> {
    fn of(r: &'a BinaryCopyOutRow) -> Option<Chunk<'a>> {
        Some(Chunk {
            number: r.get::<Option<i32>>(7)?,
            month: r.get(8),
            rows: r.get(9),
            head: r.get(10),
            entries: r.get(11),
        })
    }
}

/// The merge of the rows and redactions streams, and what it found so far.
struct Verifier {
    report: VerifyReport,
    rows: Copy,
    /// The next row not yet accounted for.
    row: Option<BinaryCopyOutRow>,
    redactions: Copy,
    redaction: Option<Redaction>,
    digester: RowDigester,
    /// Months dropped by retention: their sealed rows are expired, not missing.
    dropped: HashSet<i32>,
    progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
    total: u64,
    last_progress: i64,
}

impl Verifier {
    fn problem(
        &mut self,
        kind: ProblemKind,
        row: Option<Key>,
        seal_id: Option<i64>,
        message: String,
    ) {
        match kind {
            ProblemKind::Changed | ProblemKind::RedactionMismatch => self.report.rows_changed += 1,
            ProblemKind::Missing => self.report.rows_missing += 1,
            ProblemKind::Unexpected => self.report.rows_unexpected += 1,
            _ => {}
        }
        self.report.problem_count += 1;
        if self.report.first_problem.is_none() {
            self.report.first_problem = Some(Problem {
                kind,
                month: None,
                file: None,
                row_id: row.map(|r| r.1),
                txid: row.map(|r| r.0),
                seal_id,
                message,
            });
        }
    }

    async fn advance(&mut self) -> Result<()> {
        self.row = next(&mut self.rows).await?;
        Ok(())
    }

    /// Reports the rows before `before` (all rows left when `None`) as unexpected: rows in a
    /// sealed range that no chunk entry names, inserted after the seal or moved in order.
    async fn unsealed_rows(&mut self, before: Option<Key>, seal_id: Option<i64>) -> Result<()> {
        while let Some(key) = self.row.as_ref().map(key_of) {
            if before.is_some_and(|before| key >= before) {
                break;
            }
            let message = match seal_id {
                Some(seal_id) => format!("row {} (txid {}) is in the range of seal {seal_id} but was not sealed: inserted afterwards or moved", key.1, key.0),
                None => format!("row {} (txid {}) is in the sealed range but in no seal", key.1, key.0),
            };
            self.problem(ProblemKind::Unexpected, Some(key), seal_id, message);
            self.report.rows_checked += 1;
            self.advance().await?;
        }
        Ok(())
    }

    /// Checks one chunk's rows against its entries; returns the head that goes into the seal's:
    /// the recomputed one, or the stored one when rows are gone (expired, or reported missing).
    async fn check_chunk(&mut self, seal: &Seal, chunk: &Chunk<'_>) -> Result<Vec<u8>> {
        let expired = self.dropped.contains(&chunk.month);
        let mut head = ChunkHead::new();
        let mut complete = true;
        let mut changed = false;
        for entry in chunk.entries.chunks_exact(24) {
            let key = (
                i64::from_be_bytes(entry[0..8].try_into().expect("8 bytes")),
                i64::from_be_bytes(entry[8..16].try_into().expect("8 bytes")),
            );
            // Rows before this entry that no entry names (nor any after `to`).
            self.unsealed_rows(Some(key.min((seal.to, i64::MIN))), Some(seal.id))
                .await?;
            if self.row.as_ref().map(key_of) != Some(key) {
                complete = false;
                if expired {
                    self.report.rows_expired += 1;
                } else {
                    self.problem(
                        ProblemKind::Missing,
                        Some(key),
                        Some(seal.id),
                        format!(
                            "row {} (txid {}) of seal {} is missing",
                            key.1, key.0, seal.id
                        ),
                    );
                }
                continue;
            }
            let (digest, row_changed) = self.check_row(key, seal.id, &entry[16..24]).await?;
            changed |= row_changed;
            head.push(&digest);
            self.advance().await?;
            self.tick();
        }
        let computed = head.finish();
        if complete && computed.as_slice() != chunk.head && !changed {
            self.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {}: the stored head of chunk {} differs from its rows",
                    seal.id, chunk.number
                ),
            );
        }
        if (chunk.entries.len() / 24) as i32 != chunk.rows {
            self.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {}: chunk {} has a wrong row count",
                    seal.id, chunk.number
                ),
            );
        }
        Ok(if complete {
            computed.to_vec()
        } else {
            chunk.head.to_vec()
        })
    }

    /// Digests the current row (`key`) as it was sealed, through its redactions if any, and
    /// compares it with its chunk entry's `prefix`. Returns the digest and whether it differs.
    async fn check_row(
        &mut self,
        key: Key,
        seal_id: i64,
        prefix: &[u8],
    ) -> Result<([u8; 32], bool)> {
        self.report.rows_checked += 1;
        let mut changed = false;
        // The redactions of this row, in order: first original, last new digest.
        let mut original: Option<Vec<u8>> = None;
        let mut latest: Option<Vec<u8>> = None;
        while let Some(red) = self.redaction.take_if(|red| red.key <= key) {
            if red.key == key {
                if latest
                    .as_ref()
                    .is_some_and(|previous| *previous != red.original)
                {
                    changed = true;
                    self.problem(
                        ProblemKind::RedactionMismatch,
                        Some(key),
                        Some(seal_id),
                        format!(
                            "row {}: its redaction records do not follow each other",
                            key.1
                        ),
                    );
                }
                original.get_or_insert_with(|| red.original.clone());
                latest = Some(red.redacted);
            }
            self.redaction = next_redaction(&mut self.redactions).await?;
        }
        let row = self.row.take().expect("the row of this entry");
        let fields = digest_row(&row);
        let personal = self.digester.personal(&fields);
        let chained = match (&original, &latest) {
            (Some(original), Some(latest)) => {
                self.report.rows_redacted += 1;
                if latest.as_slice() != personal {
                    changed = true;
                    self.problem(
                        ProblemKind::RedactionMismatch,
                        Some(key),
                        Some(seal_id),
                        format!("row {} (txid {}) of seal {seal_id} differs from what its redaction recorded", key.1, key.0),
                    );
                }
                original.as_slice().try_into().unwrap_or(personal)
            }
            _ => personal,
        };
        let digest = self.digester.row(&fields, &chained);
        if digest[..8] != *prefix {
            changed = true;
            self.problem(
                ProblemKind::Changed,
                Some(key),
                Some(seal_id),
                format!(
                    "row {} (txid {}) of seal {seal_id} was changed after it was sealed",
                    key.1, key.0
                ),
            );
        }
        Ok((digest, changed))
    }

    /// Calls `progress` every 16,384 rows.
    fn tick(&mut self) {
        if let Some(report) = &self.progress {
            let checked = self.report.rows_checked + self.report.rows_expired;
            if checked - self.last_progress >= 16_384 {
                self.last_progress = checked;
                report(checked as u64, self.total);
            }
        }
    }
}

/// A read-only repeatable read transaction: one snapshot for everything it reads.
async fn read_only(conn: &mut Client) -> Result<Transaction<'_>> {
    conn.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| from_query(e, None))
}

/// [`read_only`], in the snapshot another transaction exported.
async fn in_snapshot<'a>(conn: &'a mut Client, snapshot: &str) -> Result<Transaction<'a>> {
    let tx = read_only(conn).await?;
    tx.batch_execute(&format!("set transaction snapshot '{snapshot}'"))
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(tx)
}

async fn run(
    rows_conn: &mut Client,
    chunks_conn: &mut Client,
    redactions_conn: &mut Client,
    against: Option<String>,
    progress: Option<Arc<dyn Fn(u64, u64) + Send + Sync>>,
) -> Result<VerifyReport> {
    // One snapshot for the three streams.
    let rows_tx = read_only(rows_conn).await?;
    let snapshot: String = rows_tx
        .query_one("select pg_catalog.pg_export_snapshot()", &[])
        .await
        .map_err(|e| from_query(e, None))?
        .get(0);
    // Snapshot ids are [0-9A-F-]; checked before being spliced into SQL.
    if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(Error::Internal {
            reason: format!("unexpected snapshot id {snapshot:?}"),
            source: None,
        });
    }
    let chunks_tx = in_snapshot(chunks_conn, &snapshot).await?;
    let redactions_tx = in_snapshot(redactions_conn, &snapshot).await?;

    let bounds = rows_tx
        .query_one(
            "select min(from_txid), max(to_txid), coalesce(sum(row_count), 0)::bigint from audit.seals",
            &[],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    let first_from: i64 = bounds.get::<_, Option<i64>>(0).unwrap_or(0);
    let last_to: i64 = bounds.get::<_, Option<i64>>(1).unwrap_or(0);
    let total: i64 = bounds.get(2);
    let dropped: HashSet<i32> = rows_tx
        .query("select month from audit.dropped_partitions", &[])
        .await
        .map_err(|e| from_query(e, None))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut report = VerifyReport {
        guard_problems: guard_problems(&rows_tx).await?,
        ..Default::default()
    };
    report.rows_unsealed = rows_tx
        .query_one(
            "select count(*) from audit.audit_logs where txid >= $1",
            &[&last_to],
        )
        .await
        .map_err(|e| from_query(e, None))?
        .get::<_, i64>(0);
    report.capture_problems = capture_problems(&rows_tx).await?;

    // Sorting in memory is much faster than on disk, and compiling expressions (JIT) costs
    // more than it saves here; both settings are transaction-local.
    rows_tx
        .batch_execute("set local work_mem = '256MB'; set local jit = off")
        .await
        .map_err(|e| from_query(e, None))?;
    let mut types = vec![Type::BYTEA; 17];
    // txid, id, and created_at (a timestamptz in binary: i64 microseconds since 2000-01-01 UTC).
    types[..3].fill(Type::INT8);
    let mut rows = copy(
        &rows_tx,
        &format!(
            "copy (select {ROW_COLUMNS} from audit.audit_logs l
                    where l.txid >= {first_from} and l.txid < {last_to}
                    order by l.txid, l.id) to stdout (format binary)"
        ),
        &types,
    )
    .await?;
    let mut chunks = copy(
        &chunks_tx,
        "copy (select s.id, s.from_txid, s.to_txid, s.row_count, s.chunk_count, s.previous_head, s.head,
                      c.chunk, c.month, c.row_count, c.head, c.entries
                 from audit.seals s left join audit.seal_chunks c on c.seal_id = s.id
                order by s.id, c.chunk) to stdout (format binary)",
        &[
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::BYTEA,
            Type::BYTEA,
            Type::INT4,
            Type::INT4,
            Type::INT4,
            Type::BYTEA,
            Type::BYTEA,
        ],
    )
    .await?;
    let mut redactions = copy(
        &redactions_tx,
        "copy (select row_txid, row_id, original_digest, redacted_digest from audit.redactions
                order by row_txid, row_id, id) to stdout (format binary)",
        &[Type::INT8, Type::INT8, Type::BYTEA, Type::BYTEA],
    )
    .await?;

    let mut v = Verifier {
        report,
        row: next(&mut rows).await?,
        rows,
        redaction: next_redaction(&mut redactions).await?,
        redactions,
        digester: RowDigester::new(),
        dropped,
        progress,
        total: total as u64,
        last_progress: 0,
    };
    for guard in v.report.guard_problems.clone() {
        v.problem(ProblemKind::GuardDisabled, None, None, guard);
    }
    for capture in v.report.capture_problems.clone() {
        v.problem(ProblemKind::CaptureDisabled, None, None, capture);
    }

    let mut computed_head: Vec<u8> = Vec::new();
    let mut previous_to: Option<i64> = None;
    let mut against_found = false;
    let mut seal_row = next(&mut chunks).await?;
    while let Some(first) = seal_row.take() {
        let seal = Seal::of(&first);
        v.report.seals_checked += 1;
        if let Some(previous_to) = previous_to.filter(|&p| p != seal.from) {
            v.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {} starts at txid {} but the previous seal ended at {previous_to}: a seal is missing",
                    seal.id, seal.from
                ),
            );
        }
        if seal.previous_head != computed_head {
            v.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {} does not link to the head of the seal before it",
                    seal.id
                ),
            );
        }
        let mut head = SealHead::new(&computed_head, seal.id, seal.from, seal.to, seal.rows);
        let mut chunks_seen = 0;
        // The seal's rows, one per chunk: this seal's until the stream moves to the next seal.
        let mut current = Some(first);
        while let Some(r) = current.take() {
            if let Some(chunk) = Chunk::of(&r) {
                chunks_seen += 1;
                let chunk_head = v.check_chunk(&seal, &chunk).await?;
                head.push_chunk(chunk.month, chunk.rows as i64, &chunk_head);
            }
            match next(&mut chunks).await? {
                Some(following) if following.get::<i64>(0) == seal.id => current = Some(following),
                other => seal_row = other,
            }
        }
        // Rows left in this seal's range that no entry names.
        v.unsealed_rows(Some((seal.to, i64::MIN)), Some(seal.id))
            .await?;
        if chunks_seen != seal.chunk_count {
            v.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {} lists {} chunks but {chunks_seen} are stored",
                    seal.id, seal.chunk_count
                ),
            );
        }
        let computed = head.finish();
        if computed.as_slice() != seal.head {
            v.problem(
                ProblemKind::SealMismatch,
                None,
                Some(seal.id),
                format!(
                    "seal {}: its stored head differs from the recomputed one",
                    seal.id
                ),
            );
        }
        computed_head = computed.to_vec();
        if against
            .as_ref()
            .is_some_and(|prefix| hex::encode(computed).starts_with(prefix.as_str()))
        {
            against_found = true;
        }
        previous_to = Some(seal.to);
    }
    // Rows between seals' ranges cannot exist (ranges are contiguous), but a txid below the
    // first seal is possible only by forging: report what is left in the sealed range.
    v.unsealed_rows(None, None).await?;
    if let Some(report) = &v.progress {
        report(
            (v.report.rows_checked + v.report.rows_expired) as u64,
            v.total,
        );
    }
    if v.report.seals_checked > 0 {
        v.report.head = Some(hex::encode(&computed_head));
        v.report.short_head = Some(hex::encode(&computed_head[..16]));
    }
    if let Some(prefix) = &against {
        v.report.against_found = Some(against_found);
        if !against_found {
            v.problem(
                ProblemKind::DigestNotFound,
                None,
                None,
                format!("the exported head {prefix} is not in the recomputed chain: the log was rewritten since it was exported (or it comes from another database)"),
            );
        }
    }
    v.report.ok = v.report.problem_count == 0;
    Ok(v.report)
}

/// Capture that no longer fires for a tracked table (its owner's `alter table ... disable
/// trigger`, a dropped trigger), as `audit.tracked_tables` reports it.
async fn capture_problems(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let rows = tx
        .query(
            "select pg_catalog.format('%s: %s', t.target_type, p.problem)
               from audit.tracked_tables t
              cross join pg_catalog.unnest(t.capture_problems) as p(problem)
              order by 1",
            &[],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Append-only triggers that are missing or disabled (a superuser's `alter table ...
/// disable trigger`, or a partition attached without them).
async fn guard_problems(tx: &Transaction<'_>) -> Result<Vec<String>> {
    let rows = tx
        .query(
            "with protected as (
               select pt.relid, true as row_guard from pg_catalog.pg_partition_tree('audit.audit_logs') pt
               union all
               select c.oid, true from pg_catalog.pg_class c
                where c.relnamespace = 'audit'::regnamespace
                  and c.relname in ('seals', 'seal_chunks', 'redactions', 'dropped_partitions')
             )
             select pg_catalog.format('%s: trigger %s is %s', p.relid::regclass, g.name,
                      case when t.oid is null then 'missing' else 'disabled' end)
               from protected p
              cross join (values ('audit_append_only'), ('audit_append_only_truncate')) as g(name)
               left join pg_catalog.pg_trigger t on t.tgrelid = p.relid and t.tgname = g.name
              where t.oid is null or t.tgenabled = 'D'
              order by 1",
            &[],
        )
        .await
        .map_err(|e| from_query(e, None))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn against_must_be_hex() {
        assert!(parse_against("0123456789ABCDEF").is_ok());
        assert!(parse_against("0123").is_err());
        assert!(parse_against("zz23456789abcdef").is_err());
    }
}
