//! Archives: whole, sealed months written out as Parquet with what it takes to verify them
//! without the database ([`AuditLogs::archive`], [`verify_archive`]), and dropped from the live
//! log only once their archive is read back and verified.
//!
//! ```text
//! <destination>/2026-01/part-0000.parquet   rows in (txid, id) order, zstd, 16k-row groups
//!              2026-01/entries.bin          the month's seal chunk entries, as sealed
//!              2026-01/redactions.bin       the digests of rows redacted after sealing
//!              2026-01/manifest.json        written last: counts, chunk and seal heads, file digests
//! ```
//!
//! `<destination>` is a directory (`file://`) or a bucket and prefix (`s3://`, see
//! [`destination::S3`]). A month without `manifest.json` is incomplete (an interrupted run): the
//! next run aborts its unfinished uploads and rewrites it.
//! The Parquet columns and what the digests read are in [`format`]; the chain in
//! [`crate::integrity::digest`].

pub mod destination;
pub mod format;
pub(crate) mod history;

use std::collections::BTreeMap;

use chrono::{Datelike, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::Type;
use tokio_postgres::IsolationLevel;

use crate::error::{from_query, ArchiveError, Error, Result};
use crate::integrity::digest::{ChunkHead, RowDigester, SealHead};
use crate::integrity::verify::parse_against;
use crate::integrity::{Problem, ProblemKind};
use crate::AuditLogs;
pub use destination::{Destination, LocalDirectory, LockMode, ObjectLock, ObjectVersion, S3};
use format::ArchivedRow;

/// The manifest's `schemaVersion`: the layout of this module and of [`format::SCHEMA`].
/// Version 2 stores `entries.bin` compressed with zstd (24 bytes a row raw, ~11 stored: its txids
/// and ids repeat, only the digest bytes do not); version 1 archives, raw, are still read.
pub const SCHEMA_VERSION: u32 = 2;
/// The first version whose `entries.bin` is compressed.
const COMPRESSED_ENTRIES_SINCE: u32 = 2;

/// Rows per Parquet file: a month larger than this is split into `part-0001`, ...
const PART_ROWS: usize = 1_048_576;

/// Session advisory lock key held while archiving ("auditarc" in ASCII).
const ARCHIVE_LOCK_KEY: i64 = 0x6175_6469_7461_7263;
/// How long a run waits for another to finish before saying who holds it: a run takes minutes
/// to hours, so the second one is better told at once than left waiting.
const ARCHIVE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes of one seal chunk entry: txid, id, first 8 bytes of the row digest.
const ENTRY: usize = 24;
/// Bytes of one redaction record: txid, id, original and latest personal digest.
const REDACTION: usize = 80;

/// Options of `archive`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_to_js = false))]
pub struct ArchiveOptions {
    /// Where: `file:///absolute/dir`, or `s3://bucket/prefix` with optional
    /// `?endpoint=URL&region=NAME&part_size=BYTES` (credentials, region and endpoint otherwise
    /// from the AWS environment variables and profile). Another scheme is refused
    /// (`AUDIT_LOGS_ARCHIVE_UNSUPPORTED`).
    pub to: String,
    /// Archive the months before this one (`YYYY-MM`). Default: every month that ended.
    pub before: Option<String>,
    /// Archive the months that ended more than this many months ago, as retention counts
    /// them. Default: every month that ended.
    pub older_than_months: Option<i32>,
    /// Drop each archived month's partition once its archive has been read back and verified
    /// (recorded in `audit.dropped_partitions` and as an `audit.partition_archived` event).
    /// Default: false.
    pub then_drop: Option<bool>,
    /// S3 Object Lock mode of every object written: `compliance` or `governance`; needs
    /// `lock_days` and a bucket with Object Lock (else `AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE`).
    /// Default: no retention set by this run (a bucket's default retention still applies).
    pub lock_mode: Option<String>,
    /// Days each object written is retained under `lock_mode`, from the run.
    pub lock_days: Option<i32>,
}

/// The retention `options` ask for, validated once for the CLI and Node.
/// Errors: [`Error::InvalidArgument`] (a mode without days or days without a mode, an unknown
/// mode, days out of 1..=36500).
pub fn object_lock(options: &ArchiveOptions) -> Result<Option<ObjectLock>> {
    let invalid = |name: &str, reason: String| Error::InvalidArgument {
        name: name.into(),
        reason,
    };
    let mode = match options
        .lock_mode
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("compliance") => Some(LockMode::Compliance),
        Some("governance") => Some(LockMode::Governance),
        Some(other) => {
            return Err(invalid(
                "lock_mode",
                format!("{other:?}: expected compliance or governance"),
            ))
        }
    };
    match (mode, options.lock_days) {
        (None, None) => Ok(None),
        (Some(mode), Some(days)) if (1..=36_500).contains(&days) => Ok(Some(ObjectLock {
            mode,
            days: days as u32,
        })),
        (Some(_), Some(days)) => Err(invalid("lock_days", format!("{days}: expected 1 to 36500"))),
        (Some(_), None) => Err(invalid(
            "lock_days",
            "a lock mode needs lock days (how long each object is retained)".into(),
        )),
        (None, Some(_)) => Err(invalid(
            "lock_mode",
            "lock days need a lock mode: compliance or governance".into(),
        )),
    }
}

/// What `archive` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct ArchiveReport {
    /// The destination's URL.
    pub destination: String,
    /// Months written by this run (`YYYY-MM`).
    pub months_archived: Vec<String>,
    /// Months already archived (a complete manifest), left as they are.
    pub months_skipped: Vec<String>,
    /// Months whose partition this run dropped after verifying their archive.
    pub months_dropped: Vec<String>,
    /// Rows written by this run.
    pub rows: i64,
    /// Bytes written by this run (Parquet files, entries, redactions, manifests).
    pub bytes: i64,
    /// Files written by this run.
    pub files: i64,
    /// Rows sealed before archiving.
    pub sealed_rows: i64,
    /// With a lock mode: until when the objects written are retained (RFC 3339).
    pub locked_until: Option<String>,
}

/// One file of a month, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// Its key under the destination (`2026-01/part-0000.parquet`).
    pub path: String,
    pub bytes: u64,
    /// sha256 of its bytes, hex.
    pub sha256: String,
    /// Rows it holds (Parquet files; entries and redactions: records).
    pub rows: i64,
}

/// One chunk of a seal that holds rows of the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestChunk {
    pub seal_id: i64,
    pub chunk: i32,
    pub rows: i32,
    /// sha256 of its rows' digests, hex.
    pub head: String,
}

/// A chunk as its seal's head reads it: any month's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealChunk {
    pub chunk: i32,
    /// `YYYYMM`.
    pub month: i32,
    pub rows: i32,
    pub head: String,
}

/// A seal that holds rows of the month, with all it takes to recompute its head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSeal {
    pub id: i64,
    pub from_txid: i64,
    pub to_txid: i64,
    pub row_count: i64,
    /// The previous seal's head, hex (empty for the first seal).
    pub previous_head: String,
    pub head: String,
    /// Every chunk of the seal, of every month, in order.
    pub chunks: Vec<SealChunk>,
}

/// `YYYY-MM/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `audit-logs-archive`.
    pub format: String,
    pub schema_version: u32,
    /// The row digest's version (`v1`, see `integrity/digest.rs`).
    pub digest: String,
    /// `YYYY-MM`.
    pub month: String,
    pub row_count: i64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// The Parquet files, in row order.
    pub files: Vec<ManifestFile>,
    /// The month's seal chunk entries, 24 bytes a row (txid, id, first 8 bytes of the digest).
    pub entries: ManifestFile,
    /// Redactions of the month's rows, 80 bytes each (txid, id, original personal digest, the
    /// personal digest of the values as archived).
    pub redactions: ManifestFile,
    /// The month's chunks, in row order.
    pub chunks: Vec<ManifestChunk>,
    /// The seals those chunks belong to.
    pub seals: Vec<ManifestSeal>,
    /// When the month was archived (RFC 3339).
    pub archived_at: String,
}

/// What archive verification found; `ok` is true when nothing differs.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "napi", napi_derive::napi(object, object_from_js = false))]
pub struct ArchiveVerifyReport {
    pub ok: bool,
    /// Months with a manifest, checked.
    pub months_checked: i64,
    /// Months without a manifest (an interrupted archive): not part of the archive.
    pub months_incomplete: Vec<String>,
    pub files_checked: i64,
    pub rows_checked: i64,
    /// Rows checked through a redaction record.
    pub rows_redacted: i64,
    pub seals_checked: i64,
    pub problem_count: i64,
    /// The shape of `verify`'s (its name in JavaScript: `VerifyProblem`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "napi", napi(ts_type = "VerifyProblem"))]
    pub first_problem: Option<Problem>,
    /// The head of the archive's last seal (64 hex digits), as recomputed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// Whether the chain passes through `against`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub against_found: Option<bool>,
    /// The live chain's head the archive was joined to, when checked with a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_head: Option<String>,
}

impl ArchiveVerifyReport {
    fn problem(&mut self, problem: Problem) {
        self.problem_count += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(problem);
        }
    }
}

/// zstd-decompresses `bytes`, refusing output past `most` bytes.
fn decompress_at_most(bytes: &[u8], most: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    decoder
        .take(most + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > most {
        return Err(format!("it holds more than {most} bytes"));
    }
    Ok(out)
}

/// A month as `YYYYMM`, the form `audit.seal_chunks` and `audit.dropped_partitions` use.
fn month_key(month: i32) -> String {
    format!("{:04}-{:02}", month / 100, month % 100)
}

/// `YYYY-MM` to `YYYYMM`.
fn parse_month(text: &str) -> Option<i32> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    ((1..=12).contains(&month) && year >= 1970).then_some(year * 100 + month)
}

/// Months counted from year 0, to compare and subtract.
fn month_index(month: i32) -> i32 {
    (month / 100) * 12 + month % 100 - 1
}

/// The first month not to archive (`YYYYMM`): the options' cut-off, never later than the
/// current month (a month is archived only once it ended). A rule of the core, shared by the
/// CLI and Node.
pub fn cutoff(options: &ArchiveOptions, now: chrono::DateTime<Utc>) -> Result<i32> {
    let current = now.year() * 100 + now.month() as i32;
    let cutoff = match (&options.before, options.older_than_months) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_argument(
                "before",
                "give either before or olderThanMonths, not both",
            ))
        }
        (Some(before), None) => parse_month(before).ok_or_else(|| {
            Error::invalid_argument(
                "before",
                format!("{before:?} is not a month: expected YYYY-MM"),
            )
        })?,
        (None, Some(n)) if n < 0 => {
            return Err(Error::invalid_argument(
                "olderThanMonths",
                "must not be negative",
            ))
        }
        (None, Some(n)) => {
            let index = month_index(current) - n;
            (index / 12) * 100 + index % 12 + 1
        }
        (None, None) => current,
    };
    Ok(cutoff.min(current))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn invalid(path: &str, reason: impl std::fmt::Display) -> Error {
    ArchiveError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
    .into()
}

/// Reads `YYYY-MM/manifest.json`; `None` when the month has none (never archived, or
/// interrupted).
pub async fn read_manifest(dest: &dyn Destination, month: &str) -> Result<Option<Manifest>> {
    let key = format!("{month}/manifest.json");
    let Some(bytes) = dest.get(&key).await? else {
        return Ok(None);
    };
    parse_manifest(month, &bytes).map(Some)
}

/// A month's `manifest.json`, checked to be an archive's manifest of that month.
fn parse_manifest(month: &str, bytes: &[u8]) -> Result<Manifest> {
    let key = format!("{month}/manifest.json");
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(&key, e))?;
    if manifest.format != "audit-logs-archive"
        || !(1..=SCHEMA_VERSION).contains(&manifest.schema_version)
    {
        return Err(invalid(
            &key,
            format!(
                "format {} version {} is not audit-logs-archive version 1 to {SCHEMA_VERSION}",
                manifest.format, manifest.schema_version
            ),
        ));
    }
    if manifest.month != month {
        return Err(invalid(&key, format!("it describes {}", manifest.month)));
    }
    Ok(manifest)
}

/// A month already archived: a manifest whose files are all there, at their sizes.
async fn is_complete(dest: &dyn Destination, month: &str) -> Result<bool> {
    let manifest = match read_manifest(dest, month).await {
        Ok(Some(manifest)) => manifest,
        Ok(None) | Err(Error::Archive(ArchiveError::Invalid { .. })) => return Ok(false),
        Err(e) => return Err(e),
    };
    for file in manifest
        .files
        .iter()
        .chain([&manifest.entries, &manifest.redactions])
    {
        if dest.size(&file.path).await? != Some(file.bytes) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The month's sealed rows, their seals and redactions, as read in one snapshot.
struct MonthData {
    chunks: Vec<ManifestChunk>,
    entries: Vec<u8>,
    seals: Vec<ManifestSeal>,
    redactions: Vec<u8>,
}

fn db_err(e: tokio_postgres::Error) -> Error {
    from_query(e, None)
}

impl AuditLogs {
    /// Archives every whole month before the cut-off to `options.to`: seals first (as
    /// `maintain` does), then for each month not archived yet writes its Parquet files, its
    /// seal entries and redactions, reads them back and verifies them, and only then writes
    /// its manifest. With `then_drop`, drops each verified month's partition. Idempotent: a
    /// month with a complete manifest is skipped; one without (an interrupted run) is rewritten.
    /// Errors: [`ArchiveError::Unsupported`] (an unknown scheme or malformed URL),
    /// [`ArchiveError::LockUnavailable`], [`ArchiveError::MonthNotReady`] (rows of the month not
    /// sealed yet, or in the default partition), [`ArchiveError::NotVerified`],
    /// [`ArchiveError::Storage`], [`Error::InvalidArgument`].
    pub async fn archive(&self, options: &ArchiveOptions) -> Result<ArchiveReport> {
        let lock = object_lock(options)?;
        let cutoff = cutoff(options, Utc::now())?;
        // S3 opened as itself, for the retention date it fixed.
        let (s3, local);
        let (dest, locked_until): (&dyn Destination, _) = if options.to.starts_with("s3://") {
            s3 = S3::open(&options.to, lock).await?;
            (&s3, s3.retained_until())
        } else {
            local = destination::open(&options.to, lock).await?;
            (&*local, None)
        };
        // One run at a time per database, held by this session until it ends: two would each
        // rewrite the other's unfinished months.
        let mut client = self.options.connect().await?;
        if let Some(holders) =
            crate::connection::advisory_lock(&client, ARCHIVE_LOCK_KEY, ARCHIVE_LOCK_WAIT).await?
        {
            return Err(ArchiveError::Busy { holders }.into());
        }
        let sealed = self.seal().await?;
        let mut report = ArchiveReport {
            destination: dest.url().to_owned(),
            sealed_rows: sealed.row_count,
            locked_until,
            ..Default::default()
        };
        let months: Vec<i32> = client
            .query(
                "select (substring(c.relname from 'audit_logs_p(\\d{4})_\\d{2}$')::int * 100
                         + substring(c.relname from 'audit_logs_p\\d{4}_(\\d{2})$')::int)
                   from pg_catalog.pg_partition_tree('audit.audit_logs') pt
                   join pg_catalog.pg_class c on c.oid = pt.relid
                  where pt.isleaf and c.relname ~ '^audit_logs_p\\d{4}_\\d{2}$'
                  order by 1",
                &[],
            )
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| r.get::<_, i32>(0))
            .filter(|m| *m < cutoff)
            .collect();
        for month in months {
            let key = month_key(month);
            let skipped = is_complete(dest, &key).await?;
            if skipped {
                report.months_skipped.push(key.clone());
            } else {
                let (rows, bytes, files) = archive_month(&mut client, dest, month).await?;
                report.rows += rows;
                report.bytes += bytes;
                report.files += files;
                report.months_archived.push(key.clone());
            }
            if options.then_drop.unwrap_or(false) {
                drop_month(&client, dest, month, !skipped).await?;
                report.months_dropped.push(key);
            }
        }
        Ok(report)
    }

    /// [`verify_archive`], then joins the archive to the live chain: each archived seal and
    /// chunk must be the live one, the live seals must link from the archive's to the live
    /// head, and `against` (a head exported earlier) is looked for in both.
    pub async fn verify_archive(
        &self,
        url: &str,
        against: Option<&str>,
    ) -> Result<ArchiveVerifyReport> {
        let against = against.map(parse_against).transpose()?;
        let (mut report, seals) = verify_offline(&*destination::open(url, None).await?).await?;
        let client = self.options.connect().await?;
        let first = seals.keys().next().copied().unwrap_or(i64::MAX);
        let live = client
            .query(
                "select s.id, s.from_txid, s.to_txid, s.row_count, s.previous_head, s.head,
                        c.chunk, c.month, c.row_count, c.head
                   from audit.seals s join audit.seal_chunks c on c.seal_id = s.id
                  where s.id >= $1 or s.id = (select max(id) from audit.seals)
                  order by s.id, c.chunk",
                &[&first],
            )
            .await
            .map_err(db_err)?;
        let mut live_seals: BTreeMap<i64, ManifestSeal> = BTreeMap::new();
        for r in &live {
            let seal = live_seals.entry(r.get(0)).or_insert_with(|| ManifestSeal {
                id: r.get(0),
                from_txid: r.get(1),
                to_txid: r.get(2),
                row_count: r.get(3),
                previous_head: hex::encode(r.get::<_, &[u8]>(4)),
                head: hex::encode(r.get::<_, &[u8]>(5)),
                chunks: Vec::new(),
            });
            seal.chunks.push(SealChunk {
                chunk: r.get(6),
                month: r.get(7),
                rows: r.get(8),
                head: hex::encode(r.get::<_, &[u8]>(9)),
            });
        }
        for (id, archived) in &seals {
            if live_seals.get(id) != Some(archived) {
                report.problem(Problem {
                    kind: ProblemKind::LiveMismatch,
                    month: None,
                    file: None,
                    row_id: None,
                    txid: None,
                    seal_id: Some(*id),
                    message: format!("archived seal {id} differs from the live seal {id} (or the live log has none)"),
                });
            }
        }
        // The live chain from the archive's first seal on: stored heads recomputed from stored
        // chunk heads and linked (the rows behind live chunks are `verify`'s to check).
        let mut previous: Option<&ManifestSeal> = None;
        for seal in live_seals.values().filter(|s| s.id >= first) {
            if previous.is_some_and(|p| p.head != seal.previous_head)
                || seal_head(seal, &BTreeMap::new()) != seal.head
            {
                report.problem(Problem {
                    kind: ProblemKind::SealMismatch,
                    month: None,
                    file: None,
                    row_id: None,
                    txid: None,
                    seal_id: Some(seal.id),
                    message: format!(
                        "live seal {} does not recompute or link to the seal before it",
                        seal.id
                    ),
                });
            }
            previous = Some(seal);
        }
        report.live_head = live_seals.values().last().map(|s| s.head.clone());
        if let Some(prefix) = against {
            let found = seals
                .values()
                .chain(live_seals.values())
                .any(|s| s.head.starts_with(&prefix));
            report.against_found = Some(found);
            if !found {
                report.problem(not_found(&prefix));
            }
        }
        report.ok = report.problem_count == 0;
        Ok(report)
    }
}

fn not_found(prefix: &str) -> Problem {
    Problem {
        kind: ProblemKind::DigestNotFound,
        month: None,
        file: None,
        row_id: None,
        txid: None,
        seal_id: None,
        message: format!("the exported head {prefix} is not in the archive's chain"),
    }
}

/// Writes one month, reads it back, verifies it and writes its manifest last. Returns the
/// rows, bytes and files written.
async fn archive_month(
    client: &mut tokio_postgres::Client,
    dest: &dyn Destination,
    month: i32,
) -> Result<(i64, i64, i64)> {
    let key = month_key(month);
    // What an interrupted run left: rewritten from scratch.
    dest.abandon(&format!("{key}/")).await?;
    for leftover in dest.list(&format!("{key}/")).await? {
        if !leftover.ends_with('/') {
            dest.delete(&leftover).await?;
        }
    }
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_err)?;
    let start = format!("{:04}-{:02}-01 00:00:00+00", month / 100, month % 100);
    let end_index = month_index(month) + 1;
    let end = format!(
        "{:04}-{:02}-01 00:00:00+00",
        end_index / 12,
        end_index % 12 + 1
    );
    let counts = tx
        .query_one(
            "select count(*),
                    count(*) filter (where l.tableoid = pg_catalog.to_regclass('audit.audit_logs_default')),
                    (select coalesce(sum(c.row_count), 0)::bigint from audit.seal_chunks c where c.month = $3)
               from audit.audit_logs l
              where l.created_at >= $1::text::timestamptz and l.created_at < $2::text::timestamptz",
            &[&start, &end, &month],
        )
        .await
        .map_err(db_err)?;
    let (rows, in_default, sealed): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
    let not_ready = |reason: String| ArchiveError::MonthNotReady {
        month: key.clone(),
        reason,
    };
    if in_default > 0 {
        return Err(not_ready(format!(
            "{in_default} of its rows are in the default partition; run `audit-logs maintain` first"
        ))
        .into());
    }
    if rows > sealed {
        return Err(not_ready(format!(
            "{} of its rows are not sealed (written by transactions still open at the seal); run archive again once they ended",
            rows - sealed
        ))
        .into());
    }
    let data = month_data(&tx, month, &start, &end).await?;

    // The rows, in (txid, id) order, one Parquet file per PART_ROWS.
    let mut types = vec![Type::BYTEA; 18];
    types[..3].fill(Type::INT8);
    types[9] = Type::TEXT_ARRAY;
    let stream = tx
        .copy_out(&format!(
            "copy (select l.txid, l.id, l.created_at, l.action, l.target_type::pg_catalog.text,
                          l.target_id::pg_catalog.text, l.old_target_id::pg_catalog.text,
                          l.old_values::pg_catalog.text, l.new_values::pg_catalog.text, l.changed_fields,
                          l.changed_fields::pg_catalog.text, l.actor_id::pg_catalog.text, l.actor_type,
                          l.actor_email, l.ip_address::pg_catalog.text, l.user_agent, l.request_id,
                          l.metadata::pg_catalog.text
                     from audit.audit_logs l
                    where l.created_at >= '{start}' and l.created_at < '{end}'
                    order by l.txid, l.id) to stdout (format binary)"
        ))
        .await
        .map_err(db_err)?;
    let mut stream = Box::pin(BinaryCopyOutStream::new(stream, &types));
    let mut files = Vec::new();
    // One row group in memory, written into the current part as it fills.
    let mut group: Vec<ArchivedRow> = Vec::with_capacity(format::ROW_GROUP_ROWS);
    let mut part: Option<format::PartWriter> = None;
    let (mut first_id, mut last_id, mut written) = (None, None, 0i64);
    let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    loop {
        let next = stream.next().await.transpose().map_err(db_err)?;
        if let Some(r) = &next {
            let mut row = ArchivedRow {
                txid: r.get(0),
                id: r.get(1),
                created_at: r.get(2),
                action: text(r.get(3)).unwrap_or_default(),
                changed_fields: r.get(9),
                ..Default::default()
            };
            for (slot, column) in (4..=8).chain(11..=17).enumerate() {
                row.texts[slot] = text(r.get(column));
            }
            // The list must print back as PostgreSQL printed it, or the digest could not be
            // recomputed from the file (a non-default lower bound, say).
            let printed: Option<&[u8]> = r.get(10);
            if row
                .changed_fields
                .as_deref()
                .map(format::array_text)
                .as_deref()
                .map(str::as_bytes)
                != printed
            {
                return Err(not_ready(format!(
                    "row {}: its changed_fields {:?} cannot be archived as a list",
                    row.id,
                    printed.map(String::from_utf8_lossy)
                ))
                .into());
            }
            first_id = first_id.or(Some(row.id));
            last_id = Some(row.id);
            group.push(row);
        }
        let path = || format!("{key}/part-{:04}.parquet", files.len());
        if group.len() == format::ROW_GROUP_ROWS || (next.is_none() && !group.is_empty()) {
            let writer = match &mut part {
                Some(writer) => writer,
                None => part.insert(format::PartWriter::new().map_err(|e| invalid(&path(), e))?),
            };
            writer
                .write_group(&group)
                .map_err(|e| invalid(&path(), e))?;
            group.clear();
        }
        if part
            .as_ref()
            .is_some_and(|p| p.rows() as usize >= PART_ROWS || next.is_none())
        {
            let writer = part.take().expect("checked");
            let rows = writer.rows();
            let path = path();
            let bytes = writer.finish().map_err(|e| invalid(&path, e))?;
            dest.put(&path, &bytes).await?;
            files.push(ManifestFile {
                path,
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                rows,
            });
            written += rows;
        }
        if next.is_none() {
            break;
        }
    }
    tx.commit().await.map_err(db_err)?;

    let side = |name: &str, bytes: &[u8], size: usize| ManifestFile {
        path: format!("{key}/{name}"),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        rows: (bytes.len() / size) as i64,
    };
    let stored_entries =
        zstd::bulk::compress(&data.entries, 3).map_err(|e| invalid("entries.bin", e))?;
    let entries = ManifestFile {
        rows: (data.entries.len() / ENTRY) as i64,
        ..side("entries.bin", &stored_entries, ENTRY)
    };
    dest.put(&entries.path, &stored_entries).await?;
    let redactions = side("redactions.bin", &data.redactions, REDACTION);
    dest.put(&redactions.path, &data.redactions).await?;
    let manifest = Manifest {
        format: "audit-logs-archive".into(),
        schema_version: SCHEMA_VERSION,
        digest: "v1".into(),
        month: key.clone(),
        row_count: written,
        first_id,
        last_id,
        entries,
        redactions,
        files,
        chunks: data.chunks,
        seals: data.seals,
        archived_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    // Read back and verified before the manifest exists: a manifest vouches for its month.
    verified(dest, &manifest).await?;
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::internal("cannot write a manifest", e))?;
    dest.put(&format!("{key}/manifest.json"), &json).await?;
    let bytes = manifest
        .files
        .iter()
        .chain([&manifest.entries, &manifest.redactions])
        .map(|f| f.bytes as i64)
        .sum::<i64>()
        + json.len() as i64;
    Ok((written, bytes, manifest.files.len() as i64 + 3))
}

/// The month's chunks (with their entries), their seals and the redactions of its rows.
async fn month_data(
    tx: &tokio_postgres::Transaction<'_>,
    month: i32,
    start: &str,
    end: &str,
) -> Result<MonthData> {
    let mut data = MonthData {
        chunks: Vec::new(),
        entries: Vec::new(),
        seals: Vec::new(),
        redactions: Vec::new(),
    };
    let mut seal_ids: Vec<i64> = Vec::new();
    for r in tx
        .query(
            "select c.seal_id, c.chunk, c.row_count, c.head, c.entries from audit.seal_chunks c
              where c.month = $1 order by c.seal_id, c.chunk",
            &[&month],
        )
        .await
        .map_err(db_err)?
    {
        let seal_id: i64 = r.get(0);
        if seal_ids.last() != Some(&seal_id) {
            seal_ids.push(seal_id);
        }
        data.chunks.push(ManifestChunk {
            seal_id,
            chunk: r.get(1),
            rows: r.get(2),
            head: hex::encode(r.get::<_, &[u8]>(3)),
        });
        data.entries.extend_from_slice(r.get::<_, &[u8]>(4));
    }
    let chunks = tx
        .query(
            "select c.seal_id, c.chunk, c.month, c.row_count, c.head from audit.seal_chunks c
              where c.seal_id = any($1) order by c.seal_id, c.chunk",
            &[&seal_ids],
        )
        .await
        .map_err(db_err)?;
    for r in tx
        .query(
            "select s.id, s.from_txid, s.to_txid, s.row_count, s.previous_head, s.head
               from audit.seals s where s.id = any($1) order by s.id",
            &[&seal_ids],
        )
        .await
        .map_err(db_err)?
    {
        let id: i64 = r.get(0);
        data.seals.push(ManifestSeal {
            id,
            from_txid: r.get(1),
            to_txid: r.get(2),
            row_count: r.get(3),
            previous_head: hex::encode(r.get::<_, &[u8]>(4)),
            head: hex::encode(r.get::<_, &[u8]>(5)),
            chunks: chunks
                .iter()
                .filter(|c| c.get::<_, i64>(0) == id)
                .map(|c| SealChunk {
                    chunk: c.get(1),
                    month: c.get(2),
                    rows: c.get(3),
                    head: hex::encode(c.get::<_, &[u8]>(4)),
                })
                .collect(),
        });
    }
    // One record per redacted row: the first original digest (what the chain holds) and the
    // latest redacted one (what the archived values digest to).
    let mut last: Option<(i64, i64, Vec<u8>)> = None;
    for r in tx
        .query(
            "select r.row_txid, r.row_id, r.original_digest, r.redacted_digest
               from audit.redactions r
              where exists (select from audit.audit_logs l
                             where l.id = r.row_id and l.txid = r.row_txid
                               and l.created_at >= $1::text::timestamptz and l.created_at < $2::text::timestamptz)
              order by r.row_txid, r.row_id, r.id",
            &[&start, &end],
        )
        .await
        .map_err(db_err)?
    {
        let (txid, id): (i64, i64) = (r.get(0), r.get(1));
        let (original, redacted): (&[u8], &[u8]) = (r.get(2), r.get(3));
        match &last {
            Some((t, i, previous)) if (*t, *i) == (txid, id) => {
                if previous.as_slice() != original {
                    return Err(ArchiveError::NotVerified {
                        month: month_key(month),
                        problem: format!("row {id}: its redaction records do not follow each other"),
                    }
                    .into());
                }
                let at = data.redactions.len() - 32;
                data.redactions[at..].copy_from_slice(redacted);
            }
            _ => {
                data.redactions.extend_from_slice(&txid.to_be_bytes());
                data.redactions.extend_from_slice(&id.to_be_bytes());
                data.redactions.extend_from_slice(original);
                data.redactions.extend_from_slice(redacted);
            }
        }
        last = Some((txid, id, redacted.to_vec()));
    }
    Ok(data)
}

/// Verifies a month's files against its manifest; [`ArchiveError::NotVerified`] names the first
/// problem.
async fn verified(dest: &dyn Destination, manifest: &Manifest) -> Result<()> {
    let mut check = ArchiveVerifyReport::default();
    verify_month(dest, manifest, &mut check).await?;
    match check.first_problem {
        None => Ok(()),
        Some(problem) => Err(ArchiveError::NotVerified {
            month: manifest.month.clone(),
            problem: problem.message,
        }
        .into()),
    }
}

/// Drops an archived month's partition through the database's `audit.drop_archived_month`,
/// which records it as retention records its drops. A month archived earlier is read back and
/// verified first; one this run just wrote was verified before its manifest was
/// (`just_verified`), and the run's lock keeps any other run from touching it since.
async fn drop_month(
    client: &tokio_postgres::Client,
    dest: &dyn Destination,
    month: i32,
    just_verified: bool,
) -> Result<()> {
    let key = month_key(month);
    // Read once: the digest recorded is of the manifest verified.
    let manifest_bytes = dest
        .get(&format!("{key}/manifest.json"))
        .await?
        .ok_or_else(|| ArchiveError::NotVerified {
            month: key.clone(),
            problem: "it has no manifest".into(),
        })?;
    let manifest = parse_manifest(&key, &manifest_bytes)?;
    if !just_verified {
        verified(dest, &manifest).await?;
    }
    client
        .query_one(
            "select audit.drop_archived_month($1, $2, $3, $4)",
            &[
                &month,
                &manifest.row_count,
                &dest.url(),
                &sha256_hex(&manifest_bytes),
            ],
        )
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Verifies an archive from its files alone, with no database: every manifest, every file's
/// size and sha256, every row's digest against its seal entry (naming the first row that
/// differs), every chunk head and seal head, and the links between the archive's seals.
/// `against`, a head exported earlier, must be one of the archive's seal heads.
/// Errors: [`ArchiveError::Unsupported`], [`ArchiveError::Storage`].
pub async fn verify_archive(url: &str, against: Option<&str>) -> Result<ArchiveVerifyReport> {
    let against = against.map(parse_against).transpose()?;
    let (mut report, seals) = verify_offline(&*destination::open(url, None).await?).await?;
    if let Some(prefix) = against {
        let found = seals.values().any(|s| s.head.starts_with(&prefix));
        report.against_found = Some(found);
        if !found {
            report.problem(not_found(&prefix));
        }
    }
    report.ok = report.problem_count == 0;
    Ok(report)
}

/// The offline checks; returns the report (`ok` not set yet) and the archive's seals by id.
async fn verify_offline(
    dest: &dyn Destination,
) -> Result<(ArchiveVerifyReport, BTreeMap<i64, ManifestSeal>)> {
    let mut report = ArchiveVerifyReport::default();
    let mut seals: BTreeMap<i64, ManifestSeal> = BTreeMap::new();
    for folder in dest.list("").await? {
        let Some(month) = folder
            .strip_suffix('/')
            .filter(|m| parse_month(m).is_some())
        else {
            continue;
        };
        let manifest = match read_manifest(dest, month).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => {
                report.months_incomplete.push(month.to_owned());
                continue;
            }
            Err(Error::Archive(ArchiveError::Invalid { path, reason })) => {
                report.problem(Problem {
                    kind: ProblemKind::ManifestInvalid,
                    month: Some(month.to_owned()),
                    file: Some(path),
                    row_id: None,
                    txid: None,
                    seal_id: None,
                    message: reason,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        report.months_checked += 1;
        verify_month(dest, &manifest, &mut report).await?;
        check_versions(dest, &manifest, &mut report).await?;
        for seal in manifest.seals {
            match seals.get(&seal.id) {
                Some(seen) if *seen != seal => report.problem(Problem {
                    kind: ProblemKind::SealMismatch,
                    month: Some(month.to_owned()),
                    file: Some(format!("{month}/manifest.json")),
                    row_id: None,
                    txid: None,
                    seal_id: Some(seal.id),
                    message: format!(
                        "seal {} is described differently by two months' manifests",
                        seal.id
                    ),
                }),
                Some(_) => {}
                None => {
                    seals.insert(seal.id, seal);
                }
            }
        }
    }
    // Seals next to each other in the archive must link; a gap (seals of months not archived)
    // is the live chain's to join.
    let mut previous: Option<&ManifestSeal> = None;
    for seal in seals.values() {
        if let Some(p) = previous.filter(|p| p.to_txid == seal.from_txid) {
            if p.head != seal.previous_head {
                report.problem(Problem {
                    kind: ProblemKind::SealMismatch,
                    month: None,
                    file: None,
                    row_id: None,
                    txid: None,
                    seal_id: Some(seal.id),
                    message: format!(
                        "seal {} does not link to the head of seal {}",
                        seal.id, p.id
                    ),
                });
            }
        }
        previous = Some(seal);
    }
    report.seals_checked = seals.len() as i64;
    report.head = seals.values().last().map(|s| s.head.clone());
    Ok((report, seals))
}

/// In a versioned bucket (every bucket with Object Lock), a month whose objects were written
/// again after its manifest: the manifest is written last and once, so a second version of it,
/// or a version or deletion of a file newer than it, is a rewrite (S3 records times to the
/// second: one within the manifest's second goes unseen by this check, not by the content's). Checking the current versions'
/// content does not see a month rewritten whole and consistently (its manifest included); this
/// does, and names the version to verify instead.
async fn check_versions(
    dest: &dyn Destination,
    manifest: &Manifest,
    report: &mut ArchiveVerifyReport,
) -> Result<()> {
    let month = &manifest.month;
    let manifest_key = format!("{month}/manifest.json");
    let manifest_versions = dest.versions(&manifest_key).await?;
    let Some(first) = manifest_versions.iter().find(|v| !v.deleted) else {
        return Ok(()); // no versions kept
    };
    let rewritten = |file: &str, message: String| Problem {
        kind: ProblemKind::Rewritten,
        month: Some(month.clone()),
        file: Some(file.to_owned()),
        row_id: None,
        txid: None,
        seal_id: None,
        message,
    };
    if manifest_versions.len() > 1 {
        report.problem(rewritten(
            &manifest_key,
            format!(
                "{manifest_key} has {} versions: the month was rewritten after it was archived;                  its first version is {} (verify that one: aws s3api get-object --version-id)",
                manifest_versions.len(),
                first.version_id
            ),
        ));
    }
    for file in manifest
        .files
        .iter()
        .chain([&manifest.entries, &manifest.redactions])
    {
        let later = dest
            .versions(&file.path)
            .await?
            .into_iter()
            .filter(|v| v.written_at > first.written_at)
            .count();
        if later > 0 {
            report.problem(rewritten(
                &file.path,
                format!(
                    "{} was written or deleted {later} time(s) after the month's manifest ({})",
                    file.path, first.written_at
                ),
            ));
        }
    }
    Ok(())
}

/// The head of `seal` recomputed from its chunk heads, `recomputed` standing for the stored
/// ones it holds (by chunk number).
fn seal_head(seal: &ManifestSeal, recomputed: &BTreeMap<i32, [u8; 32]>) -> String {
    let previous = hex::decode(&seal.previous_head).unwrap_or_default();
    let mut head = SealHead::new(
        &previous,
        seal.id,
        seal.from_txid,
        seal.to_txid,
        seal.row_count,
    );
    for chunk in &seal.chunks {
        match recomputed.get(&chunk.chunk) {
            Some(h) => head.push_chunk(chunk.month, chunk.rows as i64, h),
            None => head.push_chunk(
                chunk.month,
                chunk.rows as i64,
                &hex::decode(&chunk.head).unwrap_or_default(),
            ),
        }
    }
    hex::encode(head.finish())
}

/// Checks one month's files against its manifest, adding to `report`.
/// [`verify_month_files`], whose Parquet reader may panic on a file crafted to make it: the
/// files are whoever wrote the archive's, and verifying one that was tampered with must report
/// it, not end the process (an auditor's, or the Node process of `verifyArchive`).
async fn verify_month(
    dest: &dyn Destination,
    manifest: &Manifest,
    report: &mut ArchiveVerifyReport,
) -> Result<()> {
    use futures_util::FutureExt;
    let checked = std::panic::AssertUnwindSafe(verify_month_files(dest, manifest, report))
        .catch_unwind()
        .await;
    checked.unwrap_or_else(|_| {
        report.problem(Problem {
            kind: ProblemKind::FileMismatch,
            month: Some(manifest.month.clone()),
            file: None,
            row_id: None,
            txid: None,
            seal_id: None,
            message: format!(
                "{}: a file of the month is not readable Parquet",
                manifest.month
            ),
        });
        Ok(())
    })
}

async fn verify_month_files(
    dest: &dyn Destination,
    manifest: &Manifest,
    report: &mut ArchiveVerifyReport,
) -> Result<()> {
    let month = manifest.month.as_str();
    let month_number = parse_month(month).unwrap_or(0);
    let problem = |kind, file: Option<&str>, row: Option<(i64, i64)>, seal_id, message| Problem {
        kind,
        month: Some(month.to_owned()),
        file: file.map(str::to_owned),
        row_id: row.map(|r| r.1),
        txid: row.map(|r| r.0),
        seal_id,
        message,
    };
    // Files: there, at their size and digest. A file that differs is still read, so that
    // the row that differs is named first; its own mismatch is returned for the caller to add.
    let read = |file: &ManifestFile,
                fetched: Option<Vec<u8>>,
                report: &mut ArchiveVerifyReport|
     -> Result<(Vec<u8>, Option<Problem>)> {
        report.files_checked += 1;
        if !file.path.starts_with(&format!("{month}/")) {
            let message = format!("{} is not a file of {month}", file.path);
            let p = problem(
                ProblemKind::ManifestInvalid,
                Some(&file.path),
                None,
                None,
                message,
            );
            return Ok((Vec::new(), Some(p)));
        }
        let Some(bytes) = fetched else {
            let message = format!("{} is missing", file.path);
            let p = problem(
                ProblemKind::FileMismatch,
                Some(&file.path),
                None,
                None,
                message,
            );
            return Ok((Vec::new(), Some(p)));
        };
        let differs =
            (bytes.len() as u64 != file.bytes || sha256_hex(&bytes) != file.sha256).then(|| {
                let message = format!("{} differs from its manifest (size or sha256)", file.path);
                problem(
                    ProblemKind::FileMismatch,
                    Some(&file.path),
                    None,
                    None,
                    message,
                )
            });
        Ok((bytes, differs))
    };
    // Fetched first: only a month's own keys (`read` reports any other).
    let fetch = |file: &ManifestFile| {
        let own = file.path.starts_with(&format!("{month}/"));
        let path = file.path.clone();
        async move {
            match own {
                true => dest.get(&path).await,
                false => Ok(None),
            }
        }
    };
    let read_now = |file: &ManifestFile,
                    fetched: Option<Vec<u8>>,
                    report: &mut ArchiveVerifyReport|
     -> Result<Vec<u8>> {
        let (bytes, differs) = read(file, fetched, report)?;
        if let Some(p) = differs {
            report.problem(p);
        }
        Ok(bytes)
    };
    let stored_entries = read_now(&manifest.entries, fetch(&manifest.entries).await?, report)?;
    let entries = if manifest.schema_version >= COMPRESSED_ENTRIES_SINCE {
        // Bounded by what the month can hold (each part file at most PART_ROWS rows), so that
        // a crafted file cannot make the verifier's memory grow without end.
        let most = ENTRY as u64 * PART_ROWS as u64 * manifest.files.len().max(1) as u64;
        match decompress_at_most(&stored_entries, most) {
            Ok(entries) => entries,
            Err(reason) => {
                report.problem(problem(
                    ProblemKind::ManifestInvalid,
                    Some(&manifest.entries.path),
                    None,
                    None,
                    format!("{} is not readable: {reason}", manifest.entries.path),
                ));
                Vec::new()
            }
        }
    } else {
        stored_entries
    };
    let redaction_bytes = read_now(
        &manifest.redactions,
        fetch(&manifest.redactions).await?,
        report,
    )?;
    let mut redactions: BTreeMap<(i64, i64), ([u8; 32], [u8; 32])> = BTreeMap::new();
    for r in redaction_bytes.chunks_exact(REDACTION) {
        let i64_at = |at: usize| i64::from_be_bytes(r[at..at + 8].try_into().expect("8 bytes"));
        redactions.insert(
            (i64_at(0), i64_at(8)),
            (
                r[16..48].try_into().expect("32 bytes"),
                r[48..80].try_into().expect("32 bytes"),
            ),
        );
    }
    let chunk_rows: i64 = manifest.chunks.iter().map(|c| c.rows as i64).sum();
    let file_rows: i64 = manifest.files.iter().map(|f| f.rows).sum();
    if entries.len() as i64 != chunk_rows * ENTRY as i64
        || chunk_rows != manifest.row_count
        || file_rows != manifest.row_count
    {
        report.problem(problem(
            ProblemKind::ManifestInvalid,
            Some(&format!("{month}/manifest.json")),
            None,
            None,
            format!("{month}: the row counts of its manifest, chunks, entries and files disagree"),
        ));
    }

    // Rows against entries, in order; chunk heads as the rows come.
    let mut digester = RowDigester::new();
    let mut entry_at = 0usize;
    let mut chunk_at = 0usize;
    let mut in_chunk = 0i32;
    let mut head = ChunkHead::new();
    let mut chunk_ok = true;
    let mut recomputed: BTreeMap<(i64, i32), [u8; 32]> = BTreeMap::new();
    let (mut first_id, mut last_id, mut rows_read) = (None, None, 0i64);
    for file in &manifest.files {
        let (bytes, differs) = read(file, fetch(file).await?, report)?;
        let rows = match format::row_iter(bytes) {
            Ok(rows) => rows,
            Err(_) if differs.is_some() => {
                report.problem(differs.expect("checked"));
                continue;
            }
            Err(reason) => {
                report.problem(problem(
                    ProblemKind::ManifestInvalid,
                    Some(&file.path),
                    None,
                    None,
                    format!("{} is not a readable archive file: {reason}", file.path),
                ));
                continue;
            }
        };
        for row in rows {
            let row = match row {
                Ok(row) => row,
                // A file that differs from its manifest is reported as that, below.
                Err(reason) => {
                    if differs.is_none() {
                        report.problem(problem(
                            ProblemKind::ManifestInvalid,
                            Some(&file.path),
                            None,
                            None,
                            format!("{} is not a readable archive file: {reason}", file.path),
                        ));
                    }
                    break;
                }
            };
            rows_read += 1;
            report.rows_checked += 1;
            first_id = first_id.or(Some(row.id));
            last_id = Some(row.id);
            let key = (row.txid, row.id);
            let Some(entry) = entries.get(entry_at * ENTRY..(entry_at + 1) * ENTRY) else {
                report.problem(problem(
                    ProblemKind::Unexpected,
                    Some(&file.path),
                    Some(key),
                    None,
                    format!(
                        "row {} (txid {}) of {} is in no seal chunk",
                        row.id, row.txid, file.path
                    ),
                ));
                continue;
            };
            entry_at += 1;
            let seal_id = manifest.chunks.get(chunk_at).map(|c| c.seal_id);
            let entry_key = (
                i64::from_be_bytes(entry[0..8].try_into().expect("8 bytes")),
                i64::from_be_bytes(entry[8..16].try_into().expect("8 bytes")),
            );
            let redaction = redactions.get(&key);
            let (personal, digest) = row.digests(&mut digester, redaction.map(|r| &r.0));
            if entry_key != key {
                chunk_ok = false;
                report.problem(problem(
                    if key < entry_key {
                        ProblemKind::Unexpected
                    } else {
                        ProblemKind::Missing
                    },
                    Some(&file.path),
                    Some(key),
                    seal_id,
                    format!(
                        "row {} (txid {}) of {} is not the sealed row {} (txid {})",
                        row.id, row.txid, file.path, entry_key.1, entry_key.0
                    ),
                ));
            } else if digest[..8] != entry[16..24] {
                chunk_ok = false;
                report.problem(problem(
                    ProblemKind::Changed,
                    Some(&file.path),
                    Some(key),
                    seal_id,
                    format!(
                        "row {} (txid {}) of {} differs from what was sealed",
                        row.id, row.txid, file.path
                    ),
                ));
            } else if let Some((_, latest)) = redaction {
                report.rows_redacted += 1;
                if *latest != personal {
                    chunk_ok = false;
                    report.problem(problem(
                        ProblemKind::RedactionMismatch,
                        Some(&file.path),
                        Some(key),
                        seal_id,
                        format!(
                            "row {} (txid {}) of {} differs from what its redaction recorded",
                            row.id, row.txid, file.path
                        ),
                    ));
                }
            }
            head.push(&digest);
            in_chunk += 1;
            if let Some(chunk) = manifest.chunks.get(chunk_at).filter(|c| c.rows == in_chunk) {
                let computed = std::mem::take(&mut head).finish();
                if hex::encode(computed) != chunk.head && chunk_ok {
                    report.problem(problem(
                        ProblemKind::SealMismatch,
                        Some(&file.path),
                        None,
                        Some(chunk.seal_id),
                        format!(
                            "seal {}: chunk {} of {month} does not recompute from its rows",
                            chunk.seal_id, chunk.chunk
                        ),
                    ));
                }
                recomputed.insert((chunk.seal_id, chunk.chunk), computed);
                chunk_at += 1;
                in_chunk = 0;
                chunk_ok = true;
            }
        }
        if let Some(p) = differs {
            report.problem(p);
        }
    }
    if rows_read != manifest.row_count
        || first_id != manifest.first_id
        || last_id != manifest.last_id
    {
        report.problem(problem(
            ProblemKind::Missing,
            None,
            None,
            None,
            format!(
                "{month}: its files hold {rows_read} rows (ids {first_id:?}..{last_id:?}), its manifest says {} ({:?}..{:?})",
                manifest.row_count, manifest.first_id, manifest.last_id
            ),
        ));
    }

    // Each seal's head from its chunks: this month's as recomputed, the others' as listed.
    for seal in &manifest.seals {
        let mine: BTreeMap<i32, [u8; 32]> = recomputed
            .range((seal.id, i32::MIN)..=(seal.id, i32::MAX))
            .map(|((_, chunk), h)| (*chunk, *h))
            .collect();
        let listed: Vec<&SealChunk> = seal
            .chunks
            .iter()
            .filter(|c| c.month == month_number)
            .collect();
        let consistent = listed.len() == mine.len()
            && listed.iter().all(|c| {
                manifest.chunks.iter().any(|m| {
                    m.seal_id == seal.id
                        && m.chunk == c.chunk
                        && m.rows == c.rows
                        && m.head == c.head
                })
            });
        if !consistent || seal_head(seal, &mine) != seal.head {
            report.problem(problem(
                ProblemKind::SealMismatch,
                Some(&format!("{month}/manifest.json")),
                None,
                Some(seal.id),
                format!(
                    "seal {}: its head does not recompute from the chunks of {month}",
                    seal.id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn the_cutoff_is_never_after_the_current_month() {
        let now = at("2026-12-01T07:00:00Z");
        let options = |before: Option<&str>, older: Option<i32>| ArchiveOptions {
            before: before.map(str::to_owned),
            older_than_months: older,
            ..Default::default()
        };
        assert_eq!(cutoff(&options(None, None), now).unwrap(), 202612);
        assert_eq!(
            cutoff(&options(Some("2026-01"), None), now).unwrap(),
            202601
        );
        assert_eq!(
            cutoff(&options(Some("2027-05"), None), now).unwrap(),
            202612
        );
        assert_eq!(cutoff(&options(None, Some(12)), now).unwrap(), 202512);
        assert_eq!(cutoff(&options(None, Some(11)), now).unwrap(), 202601);
        assert!(cutoff(&options(Some("2026-13"), None), now).is_err());
        assert!(cutoff(&options(Some("2026-01"), Some(1)), now).is_err());
        assert!(cutoff(&options(None, Some(-1)), now).is_err());
    }

    #[test]
    fn other_schemes_and_relative_paths_are_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for url in ["ftp://host/dir", "file://relative"] {
            let err = runtime
                .block_on(destination::open(url, None))
                .err()
                .unwrap();
            assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_UNSUPPORTED");
        }
    }

    #[test]
    fn a_lock_needs_a_mode_and_days() {
        let options = |mode: Option<&str>, days| ArchiveOptions {
            lock_mode: mode.map(str::to_owned),
            lock_days: days,
            ..Default::default()
        };
        assert_eq!(object_lock(&options(None, None)).unwrap(), None);
        assert_eq!(
            object_lock(&options(Some("Compliance"), Some(2555))).unwrap(),
            Some(ObjectLock {
                mode: LockMode::Compliance,
                days: 2555
            })
        );
        for (mode, days) in [
            (Some("legal-hold"), Some(1)),
            (Some("governance"), None),
            (None, Some(30)),
            (Some("governance"), Some(0)),
        ] {
            let err = object_lock(&options(mode, days)).err().unwrap();
            assert_eq!(
                err.code(),
                "AUDIT_LOGS_INVALID_ARGUMENT",
                "{mode:?} {days:?}"
            );
        }
    }
}
