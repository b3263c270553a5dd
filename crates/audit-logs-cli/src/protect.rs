//! `audit-logs seal`, `verify`, `maintain` and `redact`: protecting the log.

use std::io::IsTerminal;
use std::sync::Arc;

use audit_logs_core::{
    AuditLogs, ErasureError, Error, MaintainOptions, RedactRequest, Settings, Subject,
    VerifyOptions, VerifyReport,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::print::Printer;

/// The environment variable `redact` reads its key from (never a command-line argument, which
/// other users of the machine could see).
pub const KEY_VARIABLE: &str = "AUDIT_LOGS_REDACTION_KEY";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A head exported earlier (`audit-logs seal` or `verify` print it): fail unless the chain
    /// still passes through it, which detects even a rewrite of the whole chain.
    #[arg(long, value_name = "DIGEST")]
    pub against: Option<String>,
    /// Verify an archive (file:///dir) instead of the live log: every file, row, chunk and seal
    /// head from the files; with a database, also joined to the live chain.
    #[arg(long, value_name = "URL")]
    pub archive: Option<String>,
    /// With --archive: the files alone, even when a database URL is set.
    #[arg(long, requires = "archive")]
    pub offline: bool,
}

/// `maintain`: each flag applies to this run only, over the saved policy (`configure`), as
/// `maintain({ ... })` does in Node.
#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// For this run: drop partitions whose month ended more than N months ago (0: drop none).
    /// Default: the saved policy (audit-logs configure).
    #[arg(long, value_name = "N")]
    retention_months: Option<i32>,
    /// For this run: anonymize IP addresses and user agents of rows older than N days (0: none).
    /// Default: the saved policy.
    #[arg(long, value_name = "N")]
    anonymize_after_days: Option<i32>,
    /// For this run: monthly partitions to create ahead of the current one. Default: the saved
    /// policy.
    #[arg(long, value_name = "N")]
    months_ahead: Option<i32>,
}

/// `configure`: the policy saved in audit.settings, as `configure({ ... })` in Node.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// Keep N months of partitions, dropping older ones whole (0: keep everything).
    #[arg(long, value_name = "N")]
    retention_months: Option<i32>,
    /// Anonymize IP addresses and user agents of rows older than N days (0: never).
    #[arg(long, value_name = "N")]
    anonymize_after_days: Option<i32>,
    /// Monthly partitions to create ahead of the current one.
    #[arg(long, value_name = "N")]
    months_ahead: Option<i32>,
    /// A field to anonymize (ip_address, user_agent; repeat for both).
    #[arg(long = "anonymize-field", value_name = "FIELD")]
    anonymize_fields: Vec<String>,
    /// Archive each month before retention drops it, to file:///dir or s3://bucket/prefix, as
    /// `archive` does (maintain does it; "" turns it off).
    #[arg(long, value_name = "URL")]
    archive_to: Option<String>,
    /// S3 Object Lock of those archives: compliance or governance, with --archive-lock-days
    /// ("" turns it off).
    #[arg(long, value_name = "MODE")]
    archive_lock_mode: Option<String>,
    /// Days each archived object is locked, from its archiving.
    #[arg(long, value_name = "DAYS")]
    archive_lock_days: Option<i32>,
}

/// `redact`: a data subject (as for `subject`: with --email, --ip or --value, every value that
/// mentions them, wherever; with --actor alone, the actor columns of their entries), or a record.
#[derive(Debug, Args)]
pub struct RedactArgs {
    #[command(flatten)]
    subject: crate::query::SubjectArgs,
    /// Erase the values of this record: its table as in the log (public.users) ...
    #[arg(long, requires = "target_id")]
    target_type: Option<String>,
    /// ... and its key (42, abc, or a JSON array for a composite key).
    #[arg(long, requires = "target_type")]
    target_id: Option<String>,
    /// A column, values.KEY or metadata.KEY to redact (repeat for several). Default: the actor
    /// columns for --actor alone, old_values and new_values for a record.
    #[arg(long = "field", value_name = "FIELD")]
    fields: Vec<String>,
    /// Why (recorded in the redaction event).
    #[arg(long)]
    reason: Option<String>,
    /// List what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn seal(audit: &AuditLogs, out: &Printer) -> Result<i32, Error> {
    let report = audit.seal().await?;
    if out.json(&report) {
        return Ok(0);
    }
    match (&report.seal_id, &report.head, &report.short_head) {
        (Some(id), Some(head), Some(short)) => {
            println!(
                "Sealed {} row(s) as seal #{id} (txids {} to {}).",
                report.row_count,
                report.from_txid,
                report.to_txid - 1
            );
            println!("Head: {head}");
            println!("Export {short} and check later with audit-logs verify --against {short}");
        }
        (None, Some(head), _) => {
            println!("Nothing to seal: every committed row is sealed.");
            println!("Head: {head}");
        }
        _ => println!("Nothing to seal, and nothing sealed yet: no committed audit row."),
    }
    Ok(0)
}

pub async fn verify(audit: &AuditLogs, out: &Printer, args: VerifyArgs) -> Result<i32, Error> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} rows ({per_sec}, {eta} left)",
            )
            .expect("a valid template"),
        );
        bar
    });
    let progress = bar.clone().map(|bar| {
        Arc::new(move |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        }) as Arc<dyn Fn(u64, u64) + Send + Sync>
    });
    let report = audit
        .verify(&VerifyOptions {
            against: args.against,
            progress,
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let status = i32::from(!report.ok);
    if !out.json(&report) {
        print_verify(&report);
    }
    Ok(status)
}

fn print_verify(report: &VerifyReport) {
    let verdict = if report.ok { "OK" } else { "FAILED" };
    println!(
        "Verification {verdict}: {} row(s) in {} seal(s) checked.",
        report.rows_checked, report.seals_checked
    );
    let mut notes = Vec::new();
    if report.rows_expired > 0 {
        notes.push(format!("{} expired by retention", report.rows_expired));
    }
    if report.rows_redacted > 0 {
        notes.push(format!("{} redacted or anonymized", report.rows_redacted));
    }
    if report.rows_unsealed > 0 {
        notes.push(format!("{} not sealed yet", report.rows_unsealed));
    }
    if !notes.is_empty() {
        println!("  {}", notes.join(", "));
    }
    if !report.ok {
        println!(
            "  changed: {}, missing: {}, unexpected: {}, problems: {}",
            report.rows_changed, report.rows_missing, report.rows_unexpected, report.problem_count
        );
    }
    if let Some(problem) = &report.first_problem {
        println!("  first problem: {}", problem.message);
    }
    for guard in &report.guard_problems {
        println!("  append-only guard: {guard}");
    }
    for capture in &report.capture_problems {
        println!("  capture: {capture}");
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
    // A head recomputed from rows that do not verify is nothing to export.
    if let (Some(short), true) = (&report.short_head, report.ok) {
        println!("Head: {short}");
    }
}

pub async fn configure(
    audit: &AuditLogs,
    out: &Printer,
    args: ConfigureArgs,
) -> Result<i32, Error> {
    let settings = audit
        .configure(&Settings {
            months_ahead: args.months_ahead,
            retention_months: args.retention_months,
            anonymize_after_days: args.anonymize_after_days,
            anonymize_fields: (!args.anonymize_fields.is_empty()).then_some(args.anonymize_fields),
            archive_to: args.archive_to,
            archive_lock_mode: args.archive_lock_mode,
            archive_lock_days: args.archive_lock_days,
        })
        .await?;
    if out.json(&settings) {
        return Ok(0);
    }
    println!("Saved in audit.settings; maintain applies it.");
    match settings.retention_months {
        Some(months) => println!("Retention: {months} months"),
        None => println!("Retention: off (everything is kept)"),
    }
    match (
        &settings.archive_to,
        &settings.archive_lock_mode,
        settings.archive_lock_days,
    ) {
        (Some(to), Some(mode), Some(days)) => {
            println!(
                "Archived before retention drops a month: to {to}, locked {days} days ({mode})"
            )
        }
        (Some(to), _, _) => println!("Archived before retention drops a month: to {to}"),
        (None, _, _) => println!("Archive before retention: off"),
    }
    let fields = settings.anonymize_fields.as_deref().unwrap_or_default();
    match settings.anonymize_after_days {
        Some(days) if fields.is_empty() => println!("Anonymization: after {days} days"),
        Some(days) => println!("Anonymization: {} after {days} days", fields.join(", ")),
        None => println!("Anonymization: off"),
    }
    if let Some(months) = settings.months_ahead {
        println!("Partitions created ahead: {months} months");
    }
    Ok(0)
}

pub async fn maintain(audit: &AuditLogs, out: &Printer, args: MaintainArgs) -> Result<i32, Error> {
    let report = audit
        .maintain(&MaintainOptions {
            months_ahead: args.months_ahead,
            retention_months: args.retention_months,
            anonymize_after_days: args.anonymize_after_days,
        })
        .await?;
    if out.json(&report) {
        return Ok(0);
    }
    let list = crate::print::names_or_none;
    println!("Partitions created: {}", list(&report.partitions_created));
    println!(
        "Rows moved out of the default partition: {}",
        report.rows_moved
    );
    println!("Rows sealed: {}", report.sealed_rows);
    match report.retention_months {
        Some(months) => println!(
            "Partitions dropped (older than {months} months): {}",
            list(&report.partitions_dropped)
        ),
        None => println!("Retention: off (everything is kept)"),
    }
    if !report.months_archived.is_empty() {
        println!("Months archived first: {}", list(&report.months_archived));
    }
    if !report.partitions_awaiting_archive.is_empty() {
        println!(
            "Past retention, kept until archived: {}",
            list(&report.partitions_awaiting_archive)
        );
    }
    match report.anonymize_after_days {
        Some(days) => println!(
            "Rows anonymized (older than {days} days): {}",
            report.rows_anonymized
        ),
        None => println!("Anonymization: off"),
    }
    Ok(0)
}

pub async fn redact(audit: &AuditLogs, out: &Printer, args: RedactArgs) -> Result<i32, Error> {
    let key = std::env::var(KEY_VARIABLE).map_err(|_| Error::Erasure(ErasureError::InvalidRedaction {
        reason: format!(
            "set {KEY_VARIABLE} to the secret key (at least 16 bytes; the same key gives the same pseudonyms)"
        ),
    }))?;
    let subject = Subject::of(
        args.subject.subject(),
        args.target_type,
        args.target_id.as_deref().map(crate::parse_id),
    )?;
    let report = audit
        .redact(
            &RedactRequest {
                subject,
                fields: (!args.fields.is_empty()).then_some(args.fields),
                reason: args.reason,
                dry_run: args.dry_run,
            },
            key.as_bytes(),
        )
        .await?;
    if !out.json(&report) {
        for entry in &report.entries {
            println!(
                "#{} {} {} {}{}: {}",
                entry.id,
                entry.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                entry.action,
                entry.target_type.as_deref().unwrap_or("-"),
                entry
                    .target_id
                    .as_deref()
                    .map(|id| format!(" {id}"))
                    .unwrap_or_default(),
                entry.paths.join(", ")
            );
        }
        match report.event_id {
            Some(event_id) => println!(
                "Redacted {} row(s) ({}); recorded as event #{event_id}.",
                report.rows_redacted,
                report.fields.join(", "),
            ),
            None => println!(
                "Dry run: would redact {} row(s) ({}); nothing was changed.",
                report.rows_redacted,
                report.fields.join(", "),
            ),
        }
    }
    Ok(0)
}
