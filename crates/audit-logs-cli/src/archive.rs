//! `audit-logs archive` and `audit-logs verify --archive`: months out to Parquet, and their
//! verification from the files (with the database, joined to the live chain).

use audit_logs_core::archive::{self, ArchiveOptions, ArchiveVerifyReport};
use audit_logs_core::{AuditLogs, Error};
use clap::Args;

use crate::print::Printer;

/// `archive`: as `archive({ to, before, olderThanMonths, thenDrop, lockMode, lockDays })` in
/// Node.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// Where: file:///absolute/dir, or s3://bucket/prefix[?endpoint=URL&region=NAME] (credentials
    /// and region from the AWS environment variables or profile).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Archive the months before this one (YYYY-MM). Default: every month that ended.
    #[arg(long, value_name = "YYYY-MM", conflicts_with = "older_than_months")]
    before: Option<String>,
    /// Archive the months that ended more than N months ago (as retention counts them).
    #[arg(long, value_name = "N")]
    older_than_months: Option<i32>,
    /// Drop each archived month's partition once its archive is read back and verified.
    #[arg(long)]
    then_drop: bool,
    /// S3 Object Lock: write every object retained in this mode (compliance or governance);
    /// the bucket must have Object Lock enabled.
    #[arg(long, value_name = "MODE", requires = "lock_days")]
    lock_mode: Option<String>,
    /// Days each object written is retained under --lock-mode.
    #[arg(long, value_name = "N", requires = "lock_mode")]
    lock_days: Option<i32>,
}

pub async fn archive(audit: &AuditLogs, out: &Printer, args: ArchiveArgs) -> Result<i32, Error> {
    let report = audit
        .archive(&ArchiveOptions {
            to: args.to,
            before: args.before,
            older_than_months: args.older_than_months,
            then_drop: Some(args.then_drop),
            lock_mode: args.lock_mode,
            lock_days: args.lock_days,
        })
        .await?;
    if out.json(&report) {
        return Ok(0);
    }
    let list = crate::print::names_or_none;
    println!("Archive: {}", report.destination);
    if let Some(until) = &report.locked_until {
        println!("Objects locked until: {until}");
    }
    println!("Months archived: {}", list(&report.months_archived));
    println!("Months already archived: {}", list(&report.months_skipped));
    if !report.months_dropped.is_empty() {
        println!("Months dropped: {}", list(&report.months_dropped));
    }
    println!(
        "Rows: {}, files: {}, bytes: {} (sealed first: {} rows)",
        report.rows, report.files, report.bytes, report.sealed_rows
    );
    Ok(0)
}

/// `verify --archive URL`: from the files alone when `audit` is `None`.
pub async fn verify(
    audit: Option<&AuditLogs>,
    out: &Printer,
    url: &str,
    against: Option<&str>,
) -> Result<i32, Error> {
    let report = match audit {
        Some(audit) => audit.verify_archive(url, against).await?,
        None => archive::verify_archive(url, against).await?,
    };
    if !out.json(&report) {
        print_verify(&report);
    }
    Ok(i32::from(!report.ok))
}

fn print_verify(report: &ArchiveVerifyReport) {
    let verdict = if report.ok { "OK" } else { "FAILED" };
    println!(
        "Archive verification {verdict}: {} row(s) of {} month(s) in {} file(s), {} seal(s) checked.",
        report.rows_checked, report.months_checked, report.files_checked, report.seals_checked
    );
    if report.rows_redacted > 0 {
        println!("  {} redacted", report.rows_redacted);
    }
    if !report.months_incomplete.is_empty() {
        println!(
            "  incomplete (no manifest: an interrupted archive, not checked): {}",
            report.months_incomplete.join(", ")
        );
    }
    if let Some(problem) = &report.first_problem {
        println!(
            "  problems: {}; first: {}",
            report.problem_count, problem.message
        );
    }
    if let Some(found) = report.against_found {
        println!(
            "  exported head: {}",
            if found {
                "found in the chain"
            } else {
                "NOT in the chain"
            }
        );
    }
    if let Some(live) = &report.live_head {
        println!(
            "  joined to the live chain, head {}",
            &live[..32.min(live.len())]
        );
    }
    if let (Some(head), true) = (&report.head, report.ok) {
        println!("Archive head: {}", &head[..32.min(head.len())]);
    }
}
