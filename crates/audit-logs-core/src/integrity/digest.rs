//! Canonical serialization v1: how a row, a chunk and a seal are hashed. The database computes
//! the same in `audit.field`, `audit.personal_digest`, `audit.row_digest` and `audit.seal()`
//! (`schema/audit.sql`); `tests/digest.rs` feeds one fixture to both, so neither can drift.
//!
//! ```text
//! field(v)        = 0x00 if v is null, else 0x01 || u32 big-endian byte length || UTF-8 bytes
//! personal digest = sha256(field(target_id) || field(old_target_id) || field(old_values::text) ||
//!                          field(new_values::text) || field(actor_id) || field(actor_email) ||
//!                          field(ip_address::text) || field(user_agent) || field(metadata::text))
//! row digest      = sha256("audit-logs:row:v1" || field(id) || field(created_at, UTC, microseconds) ||
//!                          field(txid) || field(action) || field(target_type) ||
//!                          field(changed_fields::text) || field(actor_type) || field(request_id) ||
//!                          personal digest)
//! chunk head      = sha256(row digest || row digest || ...)    rows of one month, (txid, id) order
//! seal head       = sha256("audit-logs:seal:v1" || previous head || i64 seal id || i64 from_txid ||
//!                          i64 to_txid || i64 row_count || (i32 month || i64 rows || chunk head)...)
//! ```
//!
//! A redacted (or anonymized) row is chained with its original personal digest, recorded in
//! `audit.redactions` with the digest of the new values, which verification checks too.

use sha2::{Digest, Sha256};

/// One audit row as its digest reads it. Each text is PostgreSQL's own output of the column
/// (`jsonb::text`, `text[]::text`, `inet::text`), so nothing is re-encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Row<'a> {
    pub id: i64,
    /// Microseconds since 2000-01-01 UTC: a `timestamptz` as PostgreSQL sends it in binary.
    pub created_at: i64,
    pub txid: i64,
    pub action: Option<&'a [u8]>,
    pub target_type: Option<&'a [u8]>,
    pub changed_fields: Option<&'a [u8]>,
    pub actor_type: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub target_id: Option<&'a [u8]>,
    pub old_target_id: Option<&'a [u8]>,
    pub old_values: Option<&'a [u8]>,
    pub new_values: Option<&'a [u8]>,
    pub actor_id: Option<&'a [u8]>,
    pub actor_email: Option<&'a [u8]>,
    pub ip_address: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub metadata: Option<&'a [u8]>,
}

/// Digests of rows, reusing one buffer from row to row.
#[derive(Debug, Default)]
pub struct RowDigester {
    buf: Vec<u8>,
}

impl RowDigester {
    pub fn new() -> RowDigester {
        RowDigester {
            buf: Vec::with_capacity(4096),
        }
    }

    /// The digest of the columns that may hold personal data: what a redaction replaces.
    pub fn personal(&mut self, row: &Row) -> [u8; 32] {
        self.buf.clear();
        for value in [
            row.target_id,
            row.old_target_id,
            row.old_values,
            row.new_values,
            row.actor_id,
            row.actor_email,
            row.ip_address,
            row.user_agent,
            row.metadata,
        ] {
            put_field(&mut self.buf, value);
        }
        Sha256::digest(&self.buf[..]).into()
    }

    /// The row's digest, with `personal` standing for its personal digest (the original one
    /// of a redacted row).
    pub fn row(&mut self, row: &Row, personal: &[u8; 32]) -> [u8; 32] {
        let buf = &mut self.buf;
        let mut text = [0u8; 40];
        buf.clear();
        buf.extend_from_slice(b"audit-logs:row:v1");
        let n = write_integer(&mut text, row.id);
        put_field(buf, Some(&text[..n]));
        let n = write_timestamp(&mut text, row.created_at);
        put_field(buf, Some(&text[..n]));
        let n = write_integer(&mut text, row.txid);
        put_field(buf, Some(&text[..n]));
        for value in [
            row.action,
            row.target_type,
            row.changed_fields,
            row.actor_type,
            row.request_id,
        ] {
            put_field(buf, value);
        }
        buf.extend_from_slice(personal);
        Sha256::digest(&buf[..]).into()
    }
}

/// The head of a chunk: sha256 over its row digests, in (txid, id) order.
#[derive(Debug, Clone, Default)]
pub struct ChunkHead(Sha256);

impl ChunkHead {
    pub fn new() -> ChunkHead {
        ChunkHead::default()
    }

    pub fn push(&mut self, row_digest: &[u8; 32]) {
        self.0.update(row_digest);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// The head of a seal: commits to the previous head, the seal's range and its chunks' heads.
#[derive(Debug, Clone)]
pub struct SealHead(Sha256);

impl SealHead {
    /// `previous` is the previous seal's head (empty for the first seal).
    pub fn new(previous: &[u8], seal_id: i64, from_txid: i64, to_txid: i64, rows: i64) -> SealHead {
        let mut hasher = Sha256::new();
        hasher.update(b"audit-logs:seal:v1");
        hasher.update(previous);
        hasher.update(seal_id.to_be_bytes());
        hasher.update(from_txid.to_be_bytes());
        hasher.update(to_txid.to_be_bytes());
        hasher.update(rows.to_be_bytes());
        SealHead(hasher)
    }

    /// The next chunk: its month (`YYYYMM`), row count and head.
    pub fn push_chunk(&mut self, month: i32, rows: i64, head: &[u8]) {
        self.0.update(month.to_be_bytes());
        self.0.update(rows.to_be_bytes());
        self.0.update(head);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// `field(v)` of the canonical serialization.
fn put_field(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => buf.push(0),
        Some(bytes) => {
            buf.push(1);
            buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            buf.extend_from_slice(bytes);
        }
    }
}

/// Writes `value` in decimal at the start of `out`; returns the length.
fn write_integer(out: &mut [u8; 40], value: i64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = value.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = 0;
    if value < 0 {
        out[0] = b'-';
        len = 1;
    }
    out[len..len + digits.len() - i].copy_from_slice(&digits[i..]);
    len + digits.len() - i
}

/// `to_char(t at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')` of a timestamptz given
/// as PostgreSQL sends it in binary: microseconds since 2000-01-01 UTC. Formatted here rather
/// than by the server: cheaper.
fn write_timestamp(out: &mut [u8; 40], micros_since_2000: i64) -> usize {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    // 2000-01-01 is day 10957 after 1970-01-01.
    let micros = micros_since_2000.saturating_add(10_957 * MICROS_PER_DAY);
    let days = micros.div_euclid(MICROS_PER_DAY);
    let mut rest = micros.rem_euclid(MICROS_PER_DAY);
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let us = rest % 1_000_000;
    rest /= 1_000_000;
    let (hour, minute, second) = (rest / 3600, rest / 60 % 60, rest % 60);
    let mut len = 0;
    let mut put = |value: i64, width: usize, after: u8| {
        let mut digits = [0u8; 40];
        let n = write_integer(&mut digits, value);
        for _ in n..width {
            out[len] = b'0';
            len += 1;
        }
        out[len..len + n].copy_from_slice(&digits[..n]);
        len += n;
        if after != 0 {
            out[len] = after;
            len += 1;
        }
    };
    put(year, 4, b'-');
    put(month, 2, b'-');
    put(day, 2, b'T');
    put(hour, 2, b':');
    put(minute, 2, b':');
    put(second, 2, b'.');
    put(us, 6, b'Z');
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let mut buf = Vec::new();
        put_field(&mut buf, None);
        put_field(&mut buf, Some(b"ab"));
        assert_eq!(buf, [0, 1, 0, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn timestamps_print_as_to_char_does() {
        let mut out = [0u8; 40];
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let epoch = at("2000-01-01T00:00:00Z");
        for text in [
            "2000-01-01T00:00:00.000000Z",
            "2026-11-23T16:20:22.123456Z",
            "1999-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.000001Z",
            "1970-01-01T00:00:00.000000Z",
            "2100-03-01T05:06:07.080900Z",
        ] {
            let micros = (at(text) - epoch).num_microseconds().unwrap();
            let n = write_timestamp(&mut out, micros);
            assert_eq!(std::str::from_utf8(&out[..n]).unwrap(), text);
        }
        let n = write_integer(&mut out, -42);
        assert_eq!(&out[..n], b"-42");
        let n = write_integer(&mut out, i64::MAX);
        assert_eq!(&out[..n], i64::MAX.to_string().as_bytes());
    }
}
