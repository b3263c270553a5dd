//! What protecting the log costs: sealing N audit rows (`audit.seal()`, in SQL) and verifying
//! them (`AuditLogs::verify`, which streams the log and recomputes every digest in Rust), in a
//! database of their own so that their transaction ids are real ones.

use std::time::Instant;

use audit_logs_core::{AuditLogs, ConnectOptions, VerifyOptions};
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
}

pub async fn measure(plan: &Plan, url: &str, audit_rows: i64) -> BenchResult<VerifyReport> {
    let audit = AuditLogs::connect(url).await?;
    audit.migrate(false).await?;
    let client = ConnectOptions::parse(url)?.connect().await?;
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
                "insert into audit.audit_logs (action, target_type, target_id, old_values, new_values,
                                               changed_fields, actor_id, actor_type, ip_address, request_id)
                 select 'UPDATE', 'public.accounts', (1 + (g * 7919) % 200000)::text,
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
    Ok(VerifyReport {
        audit_rows,
        load_seconds,
        seal_seconds,
        seal_rows_per_second: audit_rows as f64 / seal_seconds,
        verify_rows_per_second: Stat::of(rates),
        target_rows_per_second: TARGET_ROWS_PER_SECOND,
    })
}

pub fn print(report: &VerifyReport) {
    println!(
        "\nSeal and verify at {} audit rows (loaded in {:.0}s, in transactions of {ROWS_PER_TRANSACTION}):",
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
}
