//! What protecting and keeping the log costs: sealing N audit rows (`audit.seal()`, in SQL),
//! verifying them (`AuditLogs::verify`, which streams the log and recomputes every digest in
//! Rust), archiving their month to Parquet (`AuditLogs::archive`, to a local directory, the
//! read-back verification included) and verifying the archive without the database, in a
//! database of their own so that their transaction ids are real ones.

use std::time::Instant;

use audit_logs_core::archive::{self, ArchiveOptions};
use audit_logs_core::{AuditLogs, ConnectOptions, HistoryQuery, Target, VerifyOptions};
use serde::Serialize;

use crate::{progress, BenchResult, Plan, Stat};

/// The target of issue 5.
const TARGET_ROWS_PER_SECOND: f64 = 250_000.0;
/// Rows per loading transaction: each gets its own txid, as in a live log.
const ROWS_PER_TRANSACTION: i64 = 10_000;

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub audit_rows: i64,
    pub load_seconds: f64,
    pub seal_seconds: f64,
    pub seal_rows_per_second: f64,
    /// Verification throughput over rounds (rows per second).
    pub verify_rows_per_second: Stat,
    pub target_rows_per_second: f64,
    pub archive: ArchiveFigures,
}

/// The month of the rows above, archived (issue 19): throughput and size.
#[derive(Debug, Serialize)]
pub struct ArchiveFigures {
    /// `archive` of the month to a fresh local directory, over rounds (rows per second).
    pub rows_per_second: Stat,
    /// The same, in bytes written per second (MB/s: / 1e6).
    pub bytes_per_second: Stat,
    /// What the month takes in the archive: Parquet, entries, redactions and manifest.
    pub archive_bytes: i64,
    /// Of which the Parquet files.
    pub parquet_bytes: i64,
    /// What the month's partition takes in PostgreSQL (table, TOAST and indexes).
    pub live_bytes: i64,
    /// Offline `verify --archive` (no database), over rounds (rows per second).
    pub verify_rows_per_second: Stat,
    /// A record's history from the live month, then from the month's archive once dropped
    /// (`include_archive`, from the local directory): milliseconds a call, the same records.
    pub history_live_ms: Stat,
    pub history_archived_ms: Stat,
}

/// Records whose history is read live and archived.
const HISTORY_RECORDS: i64 = 50;

pub async fn measure(plan: &Plan, url: &str, audit_rows: i64) -> BenchResult<VerifyReport> {
    let audit = AuditLogs::connect(url).await?;
    audit.migrate(false).await?;
    let client = ConnectOptions::parse(url)?.connect().await?;
    // The rows go into last month, which has ended, so that it can be archived.
    client
        .batch_execute(include_str!("../sql/past-partitions.sql"))
        .await?;
    let started = Instant::now();
    let mut next = 1;
    while next <= audit_rows {
        let last = (next + ROWS_PER_TRANSACTION - 1).min(audit_rows);
        if next % 200_000 == 1 {
            progress(&format!(
                "loading audit rows {next}.. of {audit_rows} for verify"
            ));
        }
        // Shaped like the rows of the query benchmark (an UPDATE of an 84-character filler row).
        client
            .batch_execute(&format!(
                "insert into audit.audit_logs (created_at, action, target_type, target_id, old_values,
                                               new_values, changed_fields, actor_id, actor_type,
                                               ip_address, request_id)
                 select date_trunc('month', now()) - interval '1 month' + g * interval '1 ms',
                        'UPDATE', 'public.accounts', (1 + (g * 7919) % 200000)::text,
                        jsonb_build_object('abalance', g % 1000),
                        jsonb_build_object('id', 1 + (g * 7919) % 200000, 'bid', 1, 'abalance', g % 997,
                                           'filler', repeat(' ', 84)),
                        '{{abalance}}', 'user-' || g % 10000, 'user', '10.0.0.1', 'synthetic-' || g
                   from generate_series({next}::bigint, {last}) g"
            ))
            .await?;
        next = last + 1;
    }
    client
        .batch_execute("vacuum analyze audit.audit_logs")
        .await?;
    let load_seconds = started.elapsed().as_secs_f64();

    progress(&format!("sealing {audit_rows} audit rows"));
    let started = Instant::now();
    let sealed = audit.seal().await?;
    let seal_seconds = started.elapsed().as_secs_f64();
    if sealed.row_count != audit_rows {
        return Err(format!("sealed {} rows, expected {audit_rows}", sealed.row_count).into());
    }

    let mut rates = Vec::new();
    for round in 0..plan.rounds.max(2) {
        progress(&format!(
            "verifying {audit_rows} audit rows (round {})",
            round + 1
        ));
        let started = Instant::now();
        let report = audit.verify(&VerifyOptions::default()).await?;
        let seconds = started.elapsed().as_secs_f64();
        if !report.ok || report.rows_checked != audit_rows {
            return Err(format!("verification failed: {report:?}").into());
        }
        rates.push(audit_rows as f64 / seconds);
    }
    let archive = measure_archive(plan, &audit, &client, audit_rows).await?;
    Ok(VerifyReport {
        audit_rows,
        load_seconds,
        seal_seconds,
        seal_rows_per_second: audit_rows as f64 / seal_seconds,
        verify_rows_per_second: Stat::of(rates),
        target_rows_per_second: TARGET_ROWS_PER_SECOND,
        archive,
    })
}

/// Archives last month (every row loaded above) to a new directory each round, then verifies
/// the last archive offline.
async fn measure_archive(
    plan: &Plan,
    audit: &AuditLogs,
    client: &tokio_postgres::Client,
    audit_rows: i64,
) -> BenchResult<ArchiveFigures> {
    let live_bytes: i64 = client
        .query_one(
            "select sum(pg_total_relation_size(pt.relid))::int8
               from pg_partition_tree('audit.audit_logs') pt
               join pg_class c on c.oid = pt.relid
              where pt.isleaf
                and c.relname = to_char(date_trunc('month', now()) - interval '1 month', '\"audit_logs_p\"YYYY_MM')",
            &[],
        )
        .await?
        .get(0);
    let scratch =
        std::env::temp_dir().join(format!("audit-logs-bench-archive-{}", std::process::id()));
    let result = archive_rounds(plan, audit, audit_rows, &scratch, live_bytes).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn archive_rounds(
    plan: &Plan,
    audit: &AuditLogs,
    audit_rows: i64,
    scratch: &std::path::Path,
    live_bytes: i64,
) -> BenchResult<ArchiveFigures> {
    let (mut rates, mut byte_rates, mut last) = (Vec::new(), Vec::new(), None);
    for round in 0..plan.rounds.max(2) {
        progress(&format!(
            "archiving {audit_rows} audit rows (round {})",
            round + 1
        ));
        let dir = scratch.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir)?;
        let to = format!("file://{}", dir.display());
        let started = Instant::now();
        let report = audit
            .archive(&ArchiveOptions {
                to: to.clone(),
                ..Default::default()
            })
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        if report.rows != audit_rows {
            return Err(format!("archived {} rows, expected {audit_rows}", report.rows).into());
        }
        rates.push(report.rows as f64 / seconds);
        byte_rates.push(report.bytes as f64 / seconds);
        last = Some((to, report.bytes));
    }
    let (to, archive_bytes) = last.expect("at least two rounds");
    let parquet_bytes = parquet_size(&scratch.join(format!("round-{}", plan.rounds.max(2) - 1)))?;
    let mut verify_rates = Vec::new();
    for round in 0..plan.rounds.max(2) {
        progress(&format!(
            "verifying the archive offline (round {})",
            round + 1
        ));
        let started = Instant::now();
        let report = archive::verify_archive(&to, None).await?;
        let seconds = started.elapsed().as_secs_f64();
        if !report.ok || report.rows_checked != audit_rows {
            return Err(format!("archive verification failed: {report:?}").into());
        }
        verify_rates.push(audit_rows as f64 / seconds);
    }
    let (history_live_ms, history_archived_ms) = history_figures(audit, audit_rows, &to).await?;
    Ok(ArchiveFigures {
        rows_per_second: Stat::of(rates),
        bytes_per_second: Stat::of(byte_rates),
        archive_bytes,
        parquet_bytes,
        live_bytes,
        verify_rows_per_second: Stat::of(verify_rates),
        history_live_ms,
        history_archived_ms,
    })
}

/// Times the history of [`HISTORY_RECORDS`] records live, then drops the month (its archive
/// at `to` verified again first) and times the same histories from the archive, checking they
/// are the same entries.
async fn history_figures(
    audit: &AuditLogs,
    audit_rows: i64,
    to: &str,
) -> BenchResult<(Stat, Stat)> {
    // Keys the loader wrote (row g has key 1 + (g * 7919) % 200000), spread over the month.
    let records: Vec<i64> = (0..HISTORY_RECORDS)
        .map(|k| 1 + ((1 + k * (audit_rows / HISTORY_RECORDS)) * 7919) % 200_000)
        .collect();
    let query = |id: i64, include_archive| HistoryQuery {
        target: Target::Type("public.accounts".into()),
        id: id.to_string().into(),
        limit: None,
        before: None,
        include_archive,
    };
    let mut live = Vec::new();
    let mut live_ms = Vec::new();
    for &id in &records {
        let started = Instant::now();
        live.push(audit.history(&query(id, false)).await?);
        live_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    progress("dropping the archived month to read history from its archive");
    audit
        .archive(&ArchiveOptions {
            to: to.to_owned(),
            then_drop: Some(true),
            ..Default::default()
        })
        .await?;
    let mut archived_ms = Vec::new();
    for (&id, expected) in records.iter().zip(&live) {
        let started = Instant::now();
        let read = audit.history(&query(id, true)).await?;
        archived_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if &read != expected || read.is_empty() {
            return Err(
                format!("history of {id} from the archive differs from the live one").into(),
            );
        }
    }
    Ok((Stat::of(live_ms), Stat::of(archived_ms)))
}

/// Bytes of the Parquet files under an archive directory.
fn parquet_size(dir: &std::path::Path) -> BenchResult<i64> {
    let mut total = 0;
    for month in std::fs::read_dir(dir)? {
        for file in std::fs::read_dir(month?.path())? {
            let file = file?;
            if file.path().extension().is_some_and(|e| e == "parquet") {
                total += file.metadata()?.len() as i64;
            }
        }
    }
    Ok(total)
}

pub fn print(report: &VerifyReport) {
    println!(
        "\nSeal, verify and archive at {} audit rows (loaded in {:.0}s, in transactions of {ROWS_PER_TRANSACTION}):",
        report.audit_rows, report.load_seconds
    );
    println!(
        "  seal (SQL, one seal of every row)   {:>10.0} rows/s  ({:.1}s)",
        report.seal_rows_per_second, report.seal_seconds
    );
    let met = if report.verify_rows_per_second.median >= report.target_rows_per_second {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "  verify (Rust, streamed)             {:>10.0} rows/s  ({:.0}-{:.0})  target >= {:.0} {met}",
        report.verify_rows_per_second.median,
        report.verify_rows_per_second.min,
        report.verify_rows_per_second.max,
        report.target_rows_per_second
    );
    let a = &report.archive;
    // Bytes per row are MB per million rows.
    let per_million = |bytes: i64| bytes as f64 / report.audit_rows as f64;
    println!(
        "  archive (Parquet to a local directory) {:>7.0} rows/s  ({:.0}-{:.0}), {:.1} MB/s",
        a.rows_per_second.median,
        a.rows_per_second.min,
        a.rows_per_second.max,
        a.bytes_per_second.median / 1e6
    );
    println!(
        "  verify --archive --offline          {:>10.0} rows/s  ({:.0}-{:.0})",
        a.verify_rows_per_second.median, a.verify_rows_per_second.min, a.verify_rows_per_second.max
    );
    println!(
        "  history of one record: live {:.2} ms, its month archived and dropped {:.1} ms (p95 {:.1}), {} records",
        a.history_live_ms.median,
        a.history_archived_ms.median,
        a.history_archived_ms.quantile(0.95),
        a.history_archived_ms.samples.len()
    );
    println!(
        "  size per 1M rows: archive {:.1} MB (Parquet {:.1} MB), in PostgreSQL {:.1} MB",
        per_million(a.archive_bytes),
        per_million(a.parquet_bytes),
        per_million(a.live_bytes)
    );
}
