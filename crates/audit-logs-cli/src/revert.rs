//! `audit-logs revert`: undo a transaction, a request, an actor's changes, one entry, or one
//! record back to a time.

use audit_logs_core::queries::parse_time;
use audit_logs_core::{
    AuditContext, AuditLogs, Error, OnConflict, RevertFields, RevertOptions, RevertReport,
    RevertTarget, TableRef,
};
use chrono::{DateTime, Utc};

use crate::print::Printer;

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["transaction", "request", "actor", "entry", "table"]))]
pub struct RevertArgs {
    /// Undo every row change of this transaction (txid, as history shows it).
    #[arg(long)]
    transaction: Option<i64>,
    /// With --transaction: the time of one of its entries (reads one partition).
    #[arg(long, requires = "transaction")]
    at: Option<String>,
    /// Undo every row change made under this request id.
    #[arg(long)]
    request: Option<String>,
    /// Undo every row change this actor made between --from and --to.
    #[arg(long, requires_all = ["from", "to"])]
    actor: Option<String>,
    /// Undo one entry (its id).
    #[arg(long)]
    entry: Option<i64>,
    /// Put one record of this table back as it was at --to (re-created if deleted since).
    #[arg(long, requires_all = ["id", "to"])]
    table: Option<String>,
    /// With --table: the record's key (42, abc, or a JSON array for a composite key).
    #[arg(long, requires = "table")]
    id: Option<String>,
    /// Start of the range (ISO 8601, e.g. 2026-11-30T09:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// End of the range; with --table, the time to put the record back to.
    #[arg(long)]
    to: Option<String>,
    /// Show what would change, and the SQL, without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Restore even records changed again since (their later changes are overwritten).
    #[arg(long, conflicts_with = "keep_later")]
    force: bool,
    /// Restore only what nobody changed since: the fields later changes left alone (the rest
    /// is named and left as it is).
    #[arg(long)]
    keep_later: bool,
    /// Who reverts (the actor id recorded on the revert's entries).
    #[arg(long, value_name = "ACTOR_ID")]
    by: Option<String>,
    /// Why (recorded in the revert's metadata.reason).
    #[arg(long)]
    reason: Option<String>,
}

fn time(text: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
    text.map(|t| parse_time(t, name)).transpose()
}

pub async fn revert(audit: &AuditLogs, out: &Printer, args: RevertArgs) -> Result<i32, Error> {
    let target = RevertTarget::one_of(RevertFields {
        transaction: args.transaction,
        at: time(args.at.as_deref(), "at")?,
        request: args.request,
        actor: args.actor,
        from: time(args.from.as_deref(), "from")?,
        to: time(args.to.as_deref(), "to")?,
        entry: args.entry,
        table: args.table.map(TableRef::Sql),
        id: args.id.as_deref().map(crate::parse_id),
    })?;
    let context = (args.by.is_some() || args.reason.is_some()).then(|| AuditContext {
        actor_id: args.by,
        reason: args.reason,
        ..Default::default()
    });
    let options = RevertOptions {
        dry_run: args.dry_run,
        on_conflict: match (args.force, args.keep_later) {
            (true, _) => OnConflict::Overwrite,
            (_, true) => OnConflict::KeepLater,
            _ => OnConflict::Refuse,
        },
        context,
    };
    let report = audit.revert(&target, &options).await?;
    if !out.json(&report) {
        print(&report);
    }
    Ok(0)
}

pub(crate) fn print(report: &RevertReport) {
    let verb = if report.dry_run {
        "Would change"
    } else {
        "Changed"
    };
    if report.changes.is_empty() {
        println!("Nothing to change: every record is already as it was.");
    } else {
        println!("{verb} {} record(s):", report.changes.len());
    }
    for change in &report.changes {
        println!("  {} {} {}", change.operation, change.table, change.id);
        for field in &change.fields {
            println!(
                "    {}: {} → {}",
                field.field, field.current, field.restored
            );
        }
    }
    for note in &report.notes {
        println!("Note: {note}");
    }
    if report.dry_run {
        println!("SQL it would run (in one transaction, recorded with metadata.reverts):");
        for statement in &report.statements {
            println!("  {statement};");
        }
        println!("Nothing was changed (dry run).");
    } else if !report.changes.is_empty() {
        println!("Recorded with metadata.reverts = {}.", report.reverts);
    }
}
