//! A record's history in the months that left the live log: `history({ includeArchive: true })`.
//!
//! The months come from `audit.archived_months` (V16): where each dropped month was archived,
//! and the digest of the manifest verified before the drop. A month is read by ranges, never
//! whole: its files' footers and key bloom filters (one read each, since the filters are
//! written together before the footer), then only the row groups whose filter may hold the
//! key. A file written before the filters existed is read group by group, all of them.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use bytes::{Buf, Bytes};
use chrono::DateTime;
use futures_util::FutureExt;
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::file::statistics::Statistics;
use serde_json::Value;
use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

use super::format::{self, ArchivedRow, ID_COLUMN_INDEX, KEY_COLUMN_INDEXES};
use super::{destination, invalid, parse_manifest, sha256_hex, Destination, Manifest};
use crate::error::{from_query, Result};
use crate::history::AuditEntry;

/// The footer is read with this much before it: the metadata of most files (a larger one is
/// read again, whole); the filters (~32 kB a group of distinct keys) are a second read.
const TAIL_GUESS: u64 = 128 * 1024;
/// The most archived months read at once.
const MONTHS_AT_ONCE: usize = 8;
/// Parquet's footer: the metadata length (4 bytes, little-endian) and `PAR1`.
const FOOTER: u64 = 8;

/// Which entries belong to a record's history, as `audit.record_history` (V14) selects them.
struct RecordMatch {
    key: String,
    /// Every name the table had, with the entry ids it covers (after, before).
    names: Vec<(String, i64, i64)>,
    /// Other target types of events about the record (`user` for `public.users`).
    aliases: Vec<String>,
    /// Only ids in (newer_than, older_than).
    newer_than: i64,
    older_than: i64,
}

impl RecordMatch {
    fn matches(&self, row: &ArchivedRow) -> bool {
        if row.id >= self.older_than || row.id <= self.newer_than {
            return false;
        }
        let Some(target_type) = row.text("target_type") else {
            return false;
        };
        let key = Some(self.key.as_str());
        let (id, old_id) = (row.text("target_id"), row.text("old_target_id"));
        let named = self.names.iter().any(|(name, after, before)| {
            name == target_type && row.id > *after && row.id < *before
        });
        (named && (id == key || old_id == key))
            || (id == key && self.aliases.iter().any(|a| a == target_type))
    }
}

/// A Parquet file known by the byte ranges fetched from its destination: parquet's readers
/// are synchronous and ask for ranges, served here from what was fetched before.
struct RangedFile {
    len: u64,
    pieces: Vec<(u64, Bytes)>,
}

impl RangedFile {
    fn piece(&self, start: u64, len: Option<u64>) -> parquet::errors::Result<Bytes> {
        for (offset, bytes) in &self.pieces {
            let end = offset + bytes.len() as u64;
            // A reader from `start` needs a byte there: not the end of the piece before it.
            let holds = match len {
                Some(len) => start >= *offset && start + len <= end,
                None => start >= *offset && start < end,
            };
            if holds {
                let from = (start - offset) as usize;
                let to = len.map_or(bytes.len(), |len| from + len as usize);
                return Ok(bytes.slice(from..to));
            }
        }
        Err(ParquetError::General(format!(
            "bytes {start}..{} were not read",
            start + len.unwrap_or(0)
        )))
    }
}

impl Length for RangedFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for RangedFile {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.piece(start, None)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.piece(start, Some(length as u64))
    }
}

/// The entries of one record in the archived months, newest first, at most `limit`, ids
/// between `newer_than` and `older_than` (exclusive): what [`crate::history::of_record`]
/// returns from the live log, for the months it no longer holds; `id` and `aliases` as there
/// (checked by it).
/// Errors: [`crate::ArchiveError::Invalid`] (a manifest other than the one verified before the drop,
/// a file that is not an archive's), [`crate::ArchiveError::Storage`], [`crate::ArchiveError::Unsupported`].
pub(crate) async fn of_record(
    client: &impl GenericClient,
    target_type: &str,
    aliases: &[String],
    id: &Value,
    limit: usize,
    (newer_than, older_than): (i64, i64),
) -> Result<Vec<AuditEntry>> {
    let db = |e| from_query(e, Some(target_type));
    // A month's ids are known once it is dropped (V16); one dropped before only by its manifest.
    let months: Vec<(i32, String, String, Option<i64>)> = client
        .query(
            "select month, archive, manifest_sha256, last_id from audit.archived_months
              where coalesce(last_id > $1, true) and coalesce(first_id < $2, true)
              order by month desc",
            &[&newer_than, &older_than],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    if months.is_empty() {
        return Ok(Vec::new());
    }
    let key: String = client
        .query_one("select audit.record_key($1)", &[id])
        .await
        .map_err(db)?
        .get(0);
    let names = client
        .query_typed(
            "select name, after_id, before_id from audit.target_names($1)",
            &[(&target_type, Type::TEXT)],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let wanted = RecordMatch {
        key,
        names,
        aliases: aliases.to_vec(),
        newer_than,
        older_than,
    };
    let mut destinations: HashMap<&str, Box<dyn Destination>> = HashMap::new();
    for (_, url, ..) in &months {
        if !destinations.contains_key(url.as_str()) {
            destinations.insert(url, destination::open(url, None).await?);
        }
    }

    // Newest months first, 1, 2, 4... at a time, each a few range reads, at once: a page that
    // fills in the newest month reads no other month's files, a record with a few entries a
    // year does not wait for 84 months one after another.
    let mut found: Vec<AuditEntry> = Vec::new();
    let (mut next, mut batch) = (0, 1);
    while next < months.len() {
        // Once the page is full, a month whose ids all come before its oldest entry cannot add
        // to it: skipped unread where V16 knows its last id, else once its manifest says so.
        // (Not a stop: a month restored late may hold ids newer than the month after it.)
        let oldest_kept = (found.len() >= limit).then(|| found[limit - 1].id);
        let end = (next + batch).min(months.len());
        let needed = months[next..end].iter().filter(|(.., last)| {
            !matches!((oldest_kept, last), (Some(oldest), Some(last)) if last < &oldest)
        });
        let reads = needed.map(|(month, url, sha256, _)| {
            month_entries(
                &*destinations[url.as_str()],
                *month,
                sha256,
                &wanted,
                oldest_kept,
            )
        });
        for entries in futures_util::future::try_join_all(reads).await? {
            found.extend(entries);
        }
        found.sort_by_key(|entry| std::cmp::Reverse(entry.id));
        (next, batch) = (end, (batch * 2).min(MONTHS_AT_ONCE));
    }
    found.truncate(limit);
    Ok(found)
}

/// The entries of one archived month that `wanted` matches; none if the month's ids (from its
/// manifest) are all outside `wanted`'s range or below `oldest_kept`.
async fn month_entries(
    dest: &dyn Destination,
    month: i32,
    manifest_sha256: &str,
    wanted: &RecordMatch,
    oldest_kept: Option<i64>,
) -> Result<Vec<AuditEntry>> {
    let manifest = verified_manifest(dest, month, manifest_sha256).await?;
    let (Some(first), Some(last)) = (manifest.first_id, manifest.last_id) else {
        return Ok(Vec::new());
    };
    if first >= wanted.older_than
        || last <= wanted.newer_than
        || oldest_kept.is_some_and(|oldest| last < oldest)
    {
        return Ok(Vec::new());
    }
    let mut entries = Vec::new();
    for file in &manifest.files {
        // parquet's reader may panic on a file crafted to make it (see verify_month): a
        // changed archive must be an error, not the end of the process.
        let rows = AssertUnwindSafe(matching_rows(dest, &file.path, file.bytes, wanted))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(invalid(&file.path, "it is not readable Parquet")))?;
        for row in rows {
            entries.push(entry_of(row).map_err(|reason| invalid(&file.path, reason))?);
        }
    }
    Ok(entries)
}

/// The month's manifest, if it is the one verified before the month was dropped.
async fn verified_manifest(dest: &dyn Destination, month: i32, sha256: &str) -> Result<Manifest> {
    let key = super::month_key(month);
    let path = format!("{key}/manifest.json");
    let bytes = dest.get(&path).await?.ok_or_else(|| {
        invalid(
            &path,
            format!(
                "it is missing from {}, where the month was archived before it was dropped",
                dest.url()
            ),
        )
    })?;
    if sha256_hex(&bytes) != sha256 {
        return Err(invalid(
            &path,
            "it is not the manifest verified when the month was dropped: the archive was \
             changed since; run audit-logs verify --archive on it",
        ));
    }
    parse_manifest(&key, &bytes)
}

/// `len` bytes from `start` of a file of `size` bytes (its manifest's): a range the file's own
/// footer names past its end is refused before it is asked for.
async fn fetch(
    dest: &dyn Destination,
    (path, size): (&str, u64),
    start: u64,
    len: u64,
) -> Result<Bytes> {
    if start.checked_add(len).is_none_or(|end| end > size) {
        return Err(invalid(
            path,
            format!("it names bytes {start}..+{len}, past its {size} bytes"),
        ));
    }
    dest.get_range(path, start, len)
        .await?
        .map(Bytes::from)
        .ok_or_else(|| invalid(path, format!("it is missing from {}", dest.url())))
}

/// The rows of one Parquet file that `wanted` matches, read by ranges.
async fn matching_rows(
    dest: &dyn Destination,
    path: &str,
    size: u64,
    wanted: &RecordMatch,
) -> Result<Vec<ArchivedRow>> {
    let bad = |reason: String| invalid(path, reason);
    if size < FOOTER {
        return Err(bad("it is shorter than a Parquet footer".into()));
    }
    let tail_len = size.min(TAIL_GUESS);
    let mut tail = fetch(dest, (path, size), size - tail_len, tail_len).await?;
    let footer = &tail[tail.len() - FOOTER as usize..];
    if &footer[4..] != b"PAR1" {
        return Err(bad("it does not end as a Parquet file does".into()));
    }
    let metadata_len = u64::from(u32::from_le_bytes(footer[..4].try_into().expect("4 bytes")));
    if metadata_len + FOOTER > size {
        return Err(bad("its footer names more bytes than it holds".into()));
    }
    if metadata_len + FOOTER > tail_len {
        tail = fetch(
            dest,
            (path, size),
            size - metadata_len - FOOTER,
            metadata_len + FOOTER,
        )
        .await?;
    }
    let tail_start = size - tail.len() as u64;
    let metadata_start = (size - metadata_len - FOOTER - tail_start) as usize;
    let metadata = ParquetMetaDataReader::decode_metadata(
        &tail[metadata_start..metadata_start + metadata_len as usize],
    )
    .map_err(|e| bad(format::parquet_error(e)))?;
    format::check_schema(metadata.file_metadata().schema()).map_err(bad)?;

    let mut file = RangedFile {
        len: size,
        pieces: vec![(tail_start, tail)],
    };
    // The filters, read in one range where they are not in the tail already.
    if let Some((start, end)) = filters_range(&metadata) {
        if start < tail_start {
            // Whole, even where the tail holds their end: a filter is read from one piece.
            file.pieces
                .push((start, fetch(dest, (path, size), start, end - start).await?));
        }
    }
    let mut groups = Vec::new();
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let in_range = match group.column(ID_COLUMN_INDEX).statistics() {
            Some(Statistics::Int64(ids)) => {
                ids.min_opt().is_none_or(|min| *min < wanted.older_than)
                    && ids.max_opt().is_none_or(|max| *max > wanted.newer_than)
            }
            _ => true,
        };
        let mut may_hold = true;
        if KEY_COLUMN_INDEXES
            .iter()
            .all(|&c| group.column(c).bloom_filter_offset().is_some())
        {
            may_hold = false;
            for c in KEY_COLUMN_INDEXES {
                let filter = Sbbf::read_from_column_chunk(group.column(c), &file)
                    .map_err(|e| bad(format::parquet_error(e)))?;
                may_hold |= filter.is_none_or(|f| f.check(wanted.key.as_str()));
            }
        }
        if in_range && may_hold {
            groups.push(index);
        }
    }
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    for &index in &groups {
        let (start, len) = group_range(&metadata, index);
        file.pieces
            .push((start, fetch(dest, (path, size), start, len).await?));
    }
    let reader = SerializedFileReader::new(file).map_err(|e| bad(format::parquet_error(e)))?;
    let mut rows = Vec::new();
    for index in groups {
        let group = reader
            .get_row_group(index)
            .map_err(|e| bad(format::parquet_error(e)))?;
        rows.extend(format::group_rows_where(&*group, |row| wanted.matches(row)).map_err(bad)?);
    }
    Ok(rows)
}

/// The bytes the key columns' bloom filters span, all groups together.
fn filters_range(metadata: &ParquetMetaData) -> Option<(u64, u64)> {
    let spans = metadata.row_groups().iter().flat_map(|group| {
        KEY_COLUMN_INDEXES.iter().filter_map(move |&c| {
            let column = group.column(c);
            let start = u64::try_from(column.bloom_filter_offset()?).ok()?;
            let len = u64::try_from(column.bloom_filter_length()?).ok()?;
            Some((start, start + len))
        })
    });
    spans.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

/// The bytes one row group's column chunks span.
fn group_range(metadata: &ParquetMetaData, index: usize) -> (u64, u64) {
    let (start, end) =
        metadata
            .row_group(index)
            .columns()
            .iter()
            .fold((u64::MAX, 0), |(start, end), column| {
                let (from, len) = column.byte_range();
                (start.min(from), end.max(from + len))
            });
    (start, end - start)
}

/// An archived row as history returns an entry: as [`AuditEntry::from_row`] reads it live.
fn entry_of(row: ArchivedRow) -> std::result::Result<AuditEntry, String> {
    let json = |name: &str| -> std::result::Result<Option<Value>, String> {
        row.text(name)
            .map(|text| serde_json::from_str(text).map_err(|e| format!("{name}: {e}")))
            .transpose()
    };
    let text = |name: &str| row.text(name).map(str::to_owned);
    let created_at = DateTime::from_timestamp_micros(row.created_at + format::UNIX_TO_2000_MICROS)
        .ok_or_else(|| format!("entry {}: created_at out of range", row.id))?;
    Ok(AuditEntry {
        id: row.id,
        created_at,
        txid: row.txid,
        action: row.action.clone(),
        target_type: text("target_type"),
        target_id: text("target_id"),
        old_target_id: text("old_target_id"),
        old_values: json("old_values")?,
        new_values: json("new_values")?,
        changed_fields: row
            .changed_fields
            .as_ref()
            .map(|fields| fields.iter().flatten().cloned().collect()),
        actor_id: text("actor_id"),
        actor_type: text("actor_type"),
        actor_email: text("actor_email"),
        // host(), as the live query reads it: the address without its mask.
        ip_address: row
            .text("ip_address")
            .map(|ip| ip.split('/').next().unwrap_or(ip).to_owned()),
        user_agent: text("user_agent"),
        request_id: text("request_id"),
        metadata: json("metadata")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose filters do not fit in the tail read first (groups of distinct keys), one key
    /// in two groups side by side.
    #[tokio::test]
    async fn a_large_file_is_read_by_its_filters_and_the_groups_that_may_hold_the_key() {
        let groups = format::ROW_GROUP_ROWS as i64;
        // Two rows of one key, one in each group: both groups read, side by side.
        let key = |i: i64| match i {
            10 => "key-10".to_owned(),
            i if i == groups + 10 => "key-10".to_owned(),
            i => format!("key-{i}"),
        };
        // Enough groups for their filters to begin before the tail read first.
        let rows: Vec<ArchivedRow> = (0..8 * groups)
            .map(|i| row(i, "public.orders", &key(i), None))
            .collect();
        let bytes = format::write_rows(&rows).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("part-0000.parquet"), &bytes).unwrap();
        let dest = destination::open(&format!("file://{}", dir.path().display()), None)
            .await
            .unwrap();
        let metadata = SerializedFileReader::new(Bytes::from(bytes.clone())).unwrap();
        let (start, end) = filters_range(metadata.metadata()).unwrap();
        let tail_start = bytes.len() as u64 - TAIL_GUESS;
        assert!(
            start < tail_start && end > tail_start,
            "the filters begin before the tail and end in it"
        );
        for i in [3, groups + 4, 8 * groups - 1, 10] {
            let wanted = RecordMatch {
                key: format!("key-{i}"),
                names: vec![("public.orders".into(), 0, i64::MAX)],
                aliases: vec![],
                newer_than: 0,
                older_than: i64::MAX,
            };
            let found = matching_rows(&*dest, "part-0000.parquet", bytes.len() as u64, &wanted)
                .await
                .unwrap();
            let expected: Vec<_> = rows.iter().filter(|r| wanted.matches(r)).cloned().collect();
            assert!(!expected.is_empty());
            assert_eq!(found, expected);
        }
    }

    fn row(id: i64, target_type: &str, target_id: &str, old: Option<&str>) -> ArchivedRow {
        let mut row = ArchivedRow {
            id,
            action: "UPDATE".into(),
            ..Default::default()
        };
        row.set_text("target_type", Some(target_type.into()));
        row.set_text("target_id", Some(target_id.into()));
        row.set_text("old_target_id", old.map(str::to_owned));
        row
    }

    #[test]
    fn a_record_matches_under_each_name_in_its_range_its_old_key_and_its_aliases() {
        let wanted = RecordMatch {
            key: "7".into(),
            names: vec![
                ("public.users".into(), 100, i64::MAX),
                ("public.people".into(), 0, 100),
            ],
            aliases: vec!["user".into()],
            newer_than: 10,
            older_than: 1_000,
        };
        assert!(wanted.matches(&row(150, "public.users", "7", None)));
        assert!(wanted.matches(&row(50, "public.people", "7", None)));
        assert!(
            !wanted.matches(&row(150, "public.people", "7", None)),
            "the old name, after the rename"
        );
        assert!(
            !wanted.matches(&row(50, "public.users", "7", None)),
            "the new name, before it"
        );
        assert!(
            wanted.matches(&row(150, "public.users", "8", Some("7"))),
            "the key changed away"
        );
        assert!(
            wanted.matches(&row(150, "user", "7", None)),
            "an event under an alias"
        );
        assert!(!wanted.matches(&row(150, "user", "8", Some("7"))));
        assert!(!wanted.matches(&row(150, "public.users", "70", None)));
        assert!(
            !wanted.matches(&row(1_000, "public.users", "7", None)),
            "not older than the cursor"
        );
        assert!(
            !wanted.matches(&row(10, "public.people", "7", None)),
            "not newer than the page"
        );
    }
}
