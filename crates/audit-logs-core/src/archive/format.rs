//! The Parquet layout of an archived month: one row per audit row, the table's columns in its
//! order, typed so that any Parquet reader (DuckDB, Trino, Athena) reads them naturally, and each
//! text exactly as PostgreSQL prints it, so that the row digest ([`crate::integrity::digest`]) is
//! recomputed from the file alone. Written with parquet's column writers (no arrow: a lighter build).

use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::BloomFilterPosition;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use crate::integrity::digest;

/// Rows per row group: small enough for range reads (a reader skips groups by their id and
/// time statistics and, for a record, by its key filters; history decodes a group's key columns
/// whole: 95 ms a record at 16,384, 335 ms at 65,536, in the bench), large enough to compress
/// well (Parquet 22.0 MB per million rows, 20.1 MB at 65,536).
pub const ROW_GROUP_ROWS: usize = 16_384;

/// The columns holding a record's key, with a bloom filter in every row group: history over
/// archives reads only the groups whose filter may hold the key (about 1 in 100 otherwise).
/// Written at the end of the file, before the footer, so that one range read fetches them all.
pub const KEY_COLUMNS: [&str; 2] = ["target_id", "old_target_id"];
/// Their leaf column indexes in [`SCHEMA`].
pub const KEY_COLUMN_INDEXES: [usize; 2] = [5, 6];
/// The leaf column index of `id`.
pub const ID_COLUMN_INDEX: usize = 0;
const KEY_FILTER_FPP: f64 = 0.01;

/// `created_at` is stored as Unix microseconds; PostgreSQL (and the digest) count from 2000.
pub(crate) const UNIX_TO_2000_MICROS: i64 = 946_684_800_000_000;

/// The Parquet schema, version 1. JSON columns hold `jsonb::text`, `ip_address` holds
/// `inet::text`, `changed_fields` is a list of strings whose PostgreSQL text form
/// ([`array_text`]) is what the digest reads.
pub const SCHEMA: &str = "message audit_logs {
  required int64 id;
  required int64 created_at (TIMESTAMP(MICROS,true));
  required int64 txid;
  required binary action (STRING);
  optional binary target_type (STRING);
  optional binary target_id (STRING);
  optional binary old_target_id (STRING);
  optional binary old_values (JSON);
  optional binary new_values (JSON);
  optional group changed_fields (LIST) {
    repeated group list {
      optional binary element (STRING);
    }
  }
  optional binary actor_id (STRING);
  optional binary actor_type (STRING);
  optional binary actor_email (STRING);
  optional binary ip_address (STRING);
  optional binary user_agent (STRING);
  optional binary request_id (STRING);
  optional binary metadata (JSON);
}";

/// The optional text columns, in the schema's order around `changed_fields` (index 6 of 13
/// would be it; it is kept apart in [`ArchivedRow::changed_fields`]).
const TEXT_COLUMNS: [&str; 12] = [
    "target_type",
    "target_id",
    "old_target_id",
    "old_values",
    "new_values",
    "actor_id",
    "actor_type",
    "actor_email",
    "ip_address",
    "user_agent",
    "request_id",
    "metadata",
];

/// One archived audit row: every column as PostgreSQL prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivedRow {
    pub id: i64,
    /// Microseconds since 2000-01-01 UTC, as PostgreSQL keeps a `timestamptz`.
    pub created_at: i64,
    pub txid: i64,
    pub action: String,
    /// [`TEXT_COLUMNS`] in order: target_type, target_id, old_target_id, old_values,
    /// new_values, actor_id, actor_type, actor_email, ip_address, user_agent, request_id,
    /// metadata.
    pub texts: [Option<String>; 12],
    pub changed_fields: Option<Vec<Option<String>>>,
}

impl ArchivedRow {
    /// The text column named `name` (one of the schema's optional text columns).
    pub fn text(&self, name: &str) -> Option<&str> {
        let i = TEXT_COLUMNS.iter().position(|c| *c == name)?;
        self.texts[i].as_deref()
    }

    /// Sets the text column named `name`; false when there is no such column.
    pub fn set_text(&mut self, name: &str, value: Option<String>) -> bool {
        match TEXT_COLUMNS.iter().position(|c| *c == name) {
            Some(i) => {
                self.texts[i] = value;
                true
            }
            None => false,
        }
    }

    /// The row's personal digest and its digest chained with `personal` (the original
    /// personal digest of a redacted row, else its own).
    pub fn digests(
        &self,
        digester: &mut digest::RowDigester,
        personal: Option<&[u8; 32]>,
    ) -> ([u8; 32], [u8; 32]) {
        let changed = self.changed_fields.as_deref().map(array_text);
        let t = |i: usize| self.texts[i].as_deref().map(str::as_bytes);
        let row = digest::Row {
            id: self.id,
            created_at: self.created_at,
            txid: self.txid,
            action: Some(self.action.as_bytes()),
            target_type: t(0),
            changed_fields: changed.as_deref().map(str::as_bytes),
            actor_type: t(6),
            request_id: t(10),
            target_id: t(1),
            old_target_id: t(2),
            old_values: t(3),
            new_values: t(4),
            actor_id: t(5),
            actor_email: t(7),
            ip_address: t(8),
            user_agent: t(9),
            metadata: t(11),
        };
        let own = digester.personal(&row);
        let chained = digester.row(&row, personal.unwrap_or(&own));
        (own, chained)
    }
}

/// A one-dimensional `text[]` as PostgreSQL's `array_out` prints it: elements quoted when
/// empty, `NULL` in any case, or holding a delimiter, brace, quote, backslash or white space.
pub fn array_text(elements: &[Option<String>]) -> String {
    let mut out = String::from("{");
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match element {
            None => out.push_str("NULL"),
            Some(text) => {
                let quote = text.is_empty()
                    || text.eq_ignore_ascii_case("NULL")
                    || text.bytes().any(|b| {
                        matches!(
                            b,
                            b'{' | b'}'
                                | b','
                                | b'"'
                                | b'\\'
                                | b' '
                                | b'\t'
                                | b'\n'
                                | b'\r'
                                | 0x0b
                                | 0x0c
                        )
                    });
                if quote {
                    out.push('"');
                    for c in text.chars() {
                        if c == '"' || c == '\\' {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push('"');
                } else {
                    out.push_str(text);
                }
            }
        }
    }
    out.push('}');
    out
}

/// Parquet's own errors, as text: the caller names the file.
pub type FormatResult<T> = std::result::Result<T, String>;

fn text_value(value: &Option<String>, defs: &mut Vec<i16>, values: &mut Vec<ByteArray>) {
    match value {
        Some(text) => {
            defs.push(1);
            values.push(ByteArray::from(text.as_bytes().to_vec()));
        }
        None => defs.push(0),
    }
}

/// One Parquet file being written, a row group at a time: memory holds one group of rows and
/// the compressed file so far, not the month.
pub struct PartWriter {
    writer: SerializedFileWriter<Vec<u8>>,
    rows: i64,
}

pub(crate) fn parquet_error(e: parquet::errors::ParquetError) -> String {
    e.to_string()
}

impl PartWriter {
    pub fn new() -> FormatResult<PartWriter> {
        let e = parquet_error;
        let schema = Arc::new(parse_message_type(SCHEMA).map_err(e)?);
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(e)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_bloom_filter_position(BloomFilterPosition::End)
            .set_created_by(format!("audit-logs {}", env!("CARGO_PKG_VERSION")));
        for column in KEY_COLUMNS {
            let path = ColumnPath::from(column);
            // Sized for a group of distinct keys, then folded down to the keys it holds.
            props = props
                .set_column_bloom_filter_fpp(path.clone(), KEY_FILTER_FPP)
                .set_column_bloom_filter_max_ndv(path, ROW_GROUP_ROWS as u64);
        }
        let props = Arc::new(props.build());
        Ok(PartWriter {
            writer: SerializedFileWriter::new(Vec::new(), schema, props).map_err(e)?,
            rows: 0,
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// Writes `group` as one row group (at most [`ROW_GROUP_ROWS`] rows, in order).
    pub fn write_group(&mut self, group: &[ArchivedRow]) -> FormatResult<()> {
        let e = parquet_error;
        let mut row_group = self.writer.next_row_group().map_err(e)?;
        let mut column = 0usize;
        while let Some(mut col) = row_group.next_column().map_err(e)? {
            match column {
                0..=2 => {
                    let values: Vec<i64> = group
                        .iter()
                        .map(|r| match column {
                            0 => r.id,
                            1 => r.created_at + UNIX_TO_2000_MICROS,
                            _ => r.txid,
                        })
                        .collect();
                    col.typed::<Int64Type>()
                        .write_batch(&values, None, None)
                        .map_err(e)?;
                }
                3 => {
                    let values: Vec<ByteArray> = group
                        .iter()
                        .map(|r| ByteArray::from(r.action.as_bytes().to_vec()))
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, None, None)
                        .map_err(e)?;
                }
                9 => {
                    // A list: definition 0 null list, 1 empty, 2 null element, 3 element;
                    // repetition 0 starts a row.
                    let (mut defs, mut reps, mut values) = (Vec::new(), Vec::new(), Vec::new());
                    for r in group {
                        match &r.changed_fields {
                            None => {
                                defs.push(0);
                                reps.push(0);
                            }
                            Some(list) if list.is_empty() => {
                                defs.push(1);
                                reps.push(0);
                            }
                            Some(list) => {
                                for (i, element) in list.iter().enumerate() {
                                    reps.push(i16::from(i > 0));
                                    match element {
                                        Some(text) => {
                                            defs.push(3);
                                            values.push(ByteArray::from(text.as_bytes().to_vec()));
                                        }
                                        None => defs.push(2),
                                    }
                                }
                            }
                        }
                    }
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), Some(&reps))
                        .map_err(e)?;
                }
                _ => {
                    // Columns 4..=8 are texts 0..=4, 10..=16 are texts 5..=11.
                    let text = if column < 9 { column - 4 } else { column - 5 };
                    let (mut defs, mut values) = (Vec::new(), Vec::new());
                    for r in group {
                        text_value(&r.texts[text], &mut defs, &mut values);
                    }
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), None)
                        .map_err(e)?;
                }
            }
            col.close().map_err(e)?;
            column += 1;
        }
        row_group.close().map_err(e)?;
        self.rows += group.len() as i64;
        Ok(())
    }

    /// Writes the footer and returns the file's bytes.
    pub fn finish(self) -> FormatResult<Vec<u8>> {
        self.writer.into_inner().map_err(parquet_error)
    }
}

/// Writes `rows` as one Parquet file (zstd, [`ROW_GROUP_ROWS`] per group) and returns its bytes.
pub fn write_rows(rows: &[ArchivedRow]) -> FormatResult<Vec<u8>> {
    let mut part = PartWriter::new()?;
    for group in rows.chunks(ROW_GROUP_ROWS) {
        part.write_group(group)?;
    }
    part.finish()
}

/// The rows of a file [`write_rows`] wrote, read as they are iterated (one row group decoded at
/// a time, a column at a time), after checking that its columns are the schema's.
pub fn row_iter(bytes: Vec<u8>) -> FormatResult<impl Iterator<Item = FormatResult<ArchivedRow>>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).map_err(parquet_error)?;
    check_schema(reader.metadata().file_metadata().schema())?;
    let groups = reader.metadata().num_row_groups();
    Ok((0..groups).flat_map(move |i| {
        let rows = reader
            .get_row_group(i)
            .map_err(parquet_error)
            .and_then(|group| group_rows_where(&*group, |_| true));
        match rows {
            Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }
    }))
}

/// Checks that a file's columns are [`SCHEMA`]'s.
pub(crate) fn check_schema(schema: &parquet::schema::types::Type) -> FormatResult<()> {
    let expected = parse_message_type(SCHEMA).map_err(parquet_error)?;
    if schema.get_fields().len() != expected.get_fields().len()
        || schema
            .get_fields()
            .iter()
            .zip(expected.get_fields())
            .any(|(a, b)| a.name() != b.name())
    {
        return Err("its columns are not those of an audit-logs archive (schema version 1)".into());
    }
    Ok(())
}

/// A column of one row group, decoded whole (or its first `rows` records), with its
/// definition and repetition levels where it has them.
fn read_column<T: parquet::data_type::DataType>(
    group: &dyn RowGroupReader,
    column: usize,
    rows: usize,
    defs: Option<&mut Vec<i16>>,
    reps: Option<&mut Vec<i16>>,
) -> FormatResult<Vec<T::T>> {
    let reader = group.get_column_reader(column).map_err(parquet_error)?;
    let mut reader = T::get_column_reader(reader)
        .ok_or_else(|| format!("column {column} is not of the type an archive writes"))?;
    let (mut defs, mut reps) = (defs, reps);
    let (mut values, mut read) = (Vec::new(), 0);
    while read < rows {
        let (records, _, _) = reader
            .read_records(
                rows - read,
                defs.as_deref_mut(),
                reps.as_deref_mut(),
                &mut values,
            )
            .map_err(parquet_error)?;
        if records == 0 {
            break;
        }
        read += records;
    }
    if read != rows {
        return Err(format!("column {column} holds {read} rows, not {rows}"));
    }
    Ok(values)
}

fn utf8(value: &ByteArray, column: usize) -> FormatResult<String> {
    String::from_utf8(value.data().to_vec()).map_err(|_| format!("column {column}: not UTF-8"))
}

/// An optional (or, without definition levels, required) text column.
fn read_texts(
    group: &dyn RowGroupReader,
    column: usize,
    rows: usize,
) -> FormatResult<Vec<Option<String>>> {
    let mut defs = Vec::new();
    let values = read_column::<ByteArrayType>(group, column, rows, Some(&mut defs), None)?;
    if defs.is_empty() {
        return values.iter().map(|v| utf8(v, column).map(Some)).collect();
    }
    let mut values = values.iter();
    defs.iter()
        .map(|&def| match def {
            0 => Ok(None),
            _ => values
                .next()
                .ok_or_else(|| format!("column {column}: fewer values than its levels"))
                .and_then(|v| utf8(v, column))
                .map(Some),
        })
        .collect()
}

/// `changed_fields`, as [`PartWriter::write_group`] writes its levels.
fn read_lists(
    group: &dyn RowGroupReader,
    column: usize,
    rows: usize,
) -> FormatResult<Vec<Option<Vec<Option<String>>>>> {
    let (mut defs, mut reps) = (Vec::new(), Vec::new());
    let values =
        read_column::<ByteArrayType>(group, column, rows, Some(&mut defs), Some(&mut reps))?;
    let mut values = values.iter();
    let mut lists: Vec<Option<Vec<Option<String>>>> = Vec::with_capacity(rows);
    for (&def, &rep) in defs.iter().zip(&reps) {
        if rep == 0 {
            lists.push(match def {
                0 => None,
                _ => Some(Vec::new()),
            });
        }
        let list = lists.last_mut().and_then(Option::as_mut);
        match (def, list) {
            (0 | 1, _) => {}
            (2, Some(list)) => list.push(None),
            (3, Some(list)) => list.push(Some(utf8(
                values
                    .next()
                    .ok_or_else(|| format!("column {column}: fewer values than its levels"))?,
                column,
            )?)),
            _ => return Err(format!("column {column}: levels that are not a list's")),
        }
    }
    Ok(lists)
}

/// The rows of one row group that `keep` selects, decoded a column at a time: first `id` and
/// the key columns (`target_type`, `target_id`, `old_target_id`), all `keep` is shown, then the
/// other columns up to the last row kept. parquet's record reader builds every field of every
/// row (~6 µs a row): a record's few rows in a group are found for a fraction of it.
pub fn group_rows_where(
    group: &dyn RowGroupReader,
    keep: impl Fn(&ArchivedRow) -> bool,
) -> FormatResult<Vec<ArchivedRow>> {
    let rows = usize::try_from(group.metadata().num_rows()).map_err(|e| e.to_string())?;
    let ids = read_column::<Int64Type>(group, 0, rows, None, None)?;
    // Texts 0..=2 are columns 4..=6: target_type, target_id, old_target_id.
    let mut keys = Vec::new();
    for column in [4, 5, 6] {
        keys.push(read_texts(group, column, rows)?);
    }
    let mut kept = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let mut row = ArchivedRow {
            id,
            ..Default::default()
        };
        for (slot, column) in keys.iter_mut().enumerate() {
            row.texts[slot] = column[i].take();
        }
        if keep(&row) {
            kept.push((i, row));
        }
    }
    let Some(&(last, _)) = kept.last() else {
        return Ok(Vec::new());
    };
    let upto = last + 1;
    let times = read_column::<Int64Type>(group, 1, upto, None, None)?;
    let txids = read_column::<Int64Type>(group, 2, upto, None, None)?;
    let mut actions = read_texts(group, 3, upto)?;
    let mut lists = read_lists(group, 9, upto)?;
    // Texts 3..=4 are columns 7..=8, texts 5..=11 columns 10..=16.
    let mut texts = Vec::new();
    for column in (7..=8).chain(10..=16) {
        texts.push(read_texts(group, column, upto)?);
    }
    let mut out = Vec::with_capacity(kept.len());
    for (i, mut row) in kept {
        row.created_at = times[i] - UNIX_TO_2000_MICROS;
        row.txid = txids[i];
        row.action = actions[i].take().ok_or("action is null")?;
        row.changed_fields = lists.get_mut(i).and_then(Option::take);
        for (slot, column) in texts.iter_mut().enumerate() {
            row.texts[slot + 3] = column[i].take();
        }
        out.push(row);
    }
    Ok(out)
}

/// Reads a whole file [`write_rows`] wrote.
pub fn read_rows(bytes: Vec<u8>) -> FormatResult<Vec<ArchivedRow>> {
    row_iter(bytes)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_print_as_postgresql_prints_them() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(array_text(&[]), "{}");
        assert_eq!(array_text(&[s("email"), s("name")]), "{email,name}");
        assert_eq!(
            array_text(&[s(""), s("null"), None, s("a b"), s("x\"y\\z"), s("{,}")]),
            r#"{"","null",NULL,"a b","x\"y\\z","{,}"}"#
        );
        assert_eq!(array_text(&[s("é")]), "{é}");
    }

    #[test]
    fn rows_survive_a_round_trip() {
        let mut rows = Vec::new();
        for i in 0..3 {
            let mut row = ArchivedRow {
                id: i,
                created_at: 123_456_789 + i,
                txid: 1000 + i,
                action: "UPDATE".into(),
                changed_fields: match i {
                    0 => None,
                    1 => Some(vec![]),
                    _ => Some(vec![Some("a".into()), None, Some("".into())]),
                },
                ..Default::default()
            };
            row.set_text("new_values", Some(format!("{{\"n\": {i}}}")));
            row.set_text("ip_address", (i == 2).then(|| "10.0.0.1".to_owned()));
            rows.push(row);
        }
        let bytes = write_rows(&rows).unwrap();
        assert_eq!(read_rows(bytes).unwrap(), rows);
    }

    #[test]
    fn rows_span_row_groups_in_order() {
        let rows: Vec<ArchivedRow> = (0..ROW_GROUP_ROWS as i64 + 5)
            .map(|i| ArchivedRow {
                id: i,
                txid: i / 3,
                action: "INSERT".into(),
                changed_fields: (i % 2 == 0).then(|| vec![Some(i.to_string())]),
                ..Default::default()
            })
            .collect();
        let bytes = write_rows(&rows).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        assert_eq!(read_rows(bytes).unwrap(), rows);
    }

    #[test]
    fn a_group_read_a_column_at_a_time_gives_back_the_rows_written() {
        let rows: Vec<ArchivedRow> = (0..2_000)
            .map(|i| {
                let mut row = ArchivedRow {
                    id: i,
                    created_at: 1_000_000 * i,
                    txid: i / 3,
                    action: ["INSERT", "UPDATE", "DELETE"][i as usize % 3].into(),
                    changed_fields: match i % 4 {
                        0 => None,
                        1 => Some(vec![]),
                        2 => Some(vec![Some("a".into()), None, Some("".into())]),
                        _ => Some(vec![Some(format!("f{i}"))]),
                    },
                    ..Default::default()
                };
                for (slot, column) in TEXT_COLUMNS.iter().enumerate() {
                    if !(i as usize + slot).is_multiple_of(3) {
                        row.set_text(column, Some(format!("{column}-{i}-é")));
                    }
                }
                row
            })
            .collect();
        let bytes = bytes::Bytes::from(write_rows(&rows).unwrap());
        let reader = SerializedFileReader::new(bytes).unwrap();
        let group = reader.get_row_group(0).unwrap();
        assert_eq!(group_rows_where(&*group, |_| true).unwrap(), rows);
        let some = group_rows_where(&*group, |r| r.id % 7 == 3).unwrap();
        let expected: Vec<_> = rows.iter().filter(|r| r.id % 7 == 3).cloned().collect();
        assert_eq!(some, expected);
        assert!(group_rows_where(&*group, |_| false).unwrap().is_empty());
    }

    #[test]
    fn archived_files_hold_a_bloom_filter_of_each_key_column_in_every_row_group() {
        use parquet::bloom_filter::Sbbf;
        let rows: Vec<ArchivedRow> = (0..ROW_GROUP_ROWS as i64 + 10)
            .map(|i| {
                let mut row = ArchivedRow {
                    id: i,
                    action: "UPDATE".into(),
                    ..Default::default()
                };
                row.set_text("target_type", Some("public.orders".into()));
                row.set_text("target_id", Some(format!("k{i}")));
                row.set_text("old_target_id", (i % 1000 == 0).then(|| format!("old{i}")));
                row
            })
            .collect();
        let bytes = bytes::Bytes::from(write_rows(&rows).unwrap());
        let reader = SerializedFileReader::new(bytes.clone()).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let mut false_positives = 0;
        for group in reader.metadata().row_groups() {
            for column in KEY_COLUMN_INDEXES {
                let filter = Sbbf::read_from_column_chunk(group.column(column), &bytes)
                    .unwrap()
                    .expect("a bloom filter");
                false_positives += (0..1000)
                    .filter(|i| filter.check(format!("absent{i}").as_str()))
                    .count();
            }
        }
        let first = reader.metadata().row_group(0);
        let filter = Sbbf::read_from_column_chunk(first.column(KEY_COLUMN_INDEXES[0]), &bytes)
            .unwrap()
            .unwrap();
        assert!((0..100).all(|i| filter.check(format!("k{i}").as_str())));
        let old = Sbbf::read_from_column_chunk(first.column(KEY_COLUMN_INDEXES[1]), &bytes)
            .unwrap()
            .unwrap();
        assert!(old.check("old1000"));
        assert!(
            false_positives < 4 * 1000 / 20,
            "{false_positives} of 4000 absent keys passed"
        );
    }
}
