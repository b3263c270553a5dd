//! What the commands print: short text for people, `--json` for programs.

use audit_logs_core::{AuditEntry, MigrateReport, MigrationState, Status, TrackedTable};
use serde::Serialize;
use serde_json::Value;

pub struct Printer {
    pub json: bool,
}

impl Printer {
    pub(crate) fn json(&self, value: &impl Serialize) -> bool {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("serializable")
            );
        }
        self.json
    }

    pub fn migrate(&self, report: &MigrateReport) {
        if self.json(report) {
            return;
        }
        match (report.dry_run, report.applied.is_empty()) {
            (_, true) => println!("Up to date: no migration to apply."),
            (true, false) => {
                println!("Would apply {} migration(s):", report.applied.len());
                for (migration, sql) in report.applied.iter().zip(&report.sql) {
                    println!("\n-- {}.sql\n{}", migration.file_name(), sql.trim_end());
                }
            }
            (false, false) => {
                for migration in &report.applied {
                    println!("applied {}", migration.file_name());
                }
            }
        }
    }

    pub fn status(&self, status: &Status) {
        if self.json(status) {
            return;
        }
        println!("Database {}", status.database);
        println!("Migrations:");
        for m in &status.migrations {
            let state = match m.state {
                MigrationState::Applied => {
                    format!("applied {}", m.applied_on.as_deref().unwrap_or(""))
                }
                MigrationState::Pending => "pending (run audit-logs migrate)".into(),
                MigrationState::Diverged => "DIVERGED: differs from the shipped file".into(),
                MigrationState::Unknown => "UNKNOWN: not shipped with this version".into(),
            };
            println!("  {:<28} {state}", m.file_name());
        }
        self.tracked(&status.tracked_tables);
    }

    pub fn tracked(&self, tables: &[TrackedTable]) {
        if self.json(&tables) {
            return;
        }
        if tables.is_empty() {
            println!("No tracked tables (audit-logs enable <table>).");
            return;
        }
        println!("Tracked tables:");
        for t in tables {
            let mut notes = Vec::new();
            if !t.excluded_columns.is_empty() {
                notes.push(format!("excluding {}", t.excluded_columns.join(", ")));
            }
            if t.record_unchanged {
                notes.push("recording unchanged updates".into());
            }
            if t.require_context {
                notes.push("requiring a context".into());
            }
            for reason in &t.needs_refresh {
                notes.push(format!(
                    "NEEDS REFRESH: {reason} (audit-logs enable {})",
                    t.target_type
                ));
            }
            println!(
                "  {} (key {}){}",
                t.target_type,
                t.primary_key.join(", "),
                join_notes(&notes)
            );
        }
    }

    pub fn enabled(&self, table: &TrackedTable) {
        if self.json(table) {
            return;
        }
        let mut notes = Vec::new();
        if !table.excluded_columns.is_empty() {
            notes.push(format!(
                "never storing {}",
                table.excluded_columns.join(", ")
            ));
        }
        if table.record_unchanged {
            notes.push("recording unchanged updates".into());
        }
        if table.require_context {
            notes.push("requiring a context".into());
        }
        println!(
            "Tracking {} (key {}){}.",
            table.target_type,
            table.primary_key.join(", "),
            join_notes(&notes)
        );
    }

    /// `--json`: whether the table was tracked, as Node's `disableTracking` resolves.
    pub fn disabled(&self, table: &str, was_tracked: bool) {
        if self.json(&was_tracked) {
            return;
        }
        if was_tracked {
            println!("Stopped tracking {table}; its history is kept.");
        } else {
            println!("{table} was not tracked.");
        }
    }

    pub fn history(&self, table: &str, id: &str, entries: &[AuditEntry]) {
        if self.json(&entries) {
            return;
        }
        if entries.is_empty() {
            println!("No history for {table} {id}.");
            // `2,1` reads as the text key "2,1": a composite key is a JSON array.
            if id.contains(',') && !id.trim_start().starts_with('[') {
                let parts: Vec<&str> = id.split(',').map(str::trim).collect();
                println!(
                    "A composite key is a JSON array: audit-logs history {table} '[{}]'",
                    parts.join(", ")
                );
            }
            return;
        }
        println!("History of {table} {id}, newest first:");
        for entry in entries {
            println!("{}", entry_line(entry));
            for change in changes(entry) {
                println!("      {change}");
            }
        }
    }

    pub fn logged(&self, entry: &AuditEntry) {
        if self.json(entry) {
            return;
        }
        println!("recorded {}", entry_line(entry));
    }
}

/// Names in a line of their own: `a, b`, or `none`.
pub fn names_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn join_notes(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(": {}", notes.join("; "))
    }
}

/// `#12  2026-11-23 14:02:11Z  UPDATE  by user 42 <a@x.io> from 10.0.0.1 (reason: spam)`
pub fn entry_line(entry: &AuditEntry) -> String {
    let mut who = match (&entry.actor_type, &entry.actor_id) {
        (None, None) => "by unknown".to_owned(),
        (Some(kind), None) => format!("by {kind}"),
        (None, Some(id)) => format!("by {id}"),
        (Some(kind), Some(id)) => format!("by {kind} {id}"),
    };
    if let Some(email) = &entry.actor_email {
        who.push_str(&format!(" <{email}>"));
    }
    if let Some(ip) = &entry.ip_address {
        who.push_str(&format!(" from {ip}"));
    }
    let metadata = entry.metadata.as_ref().and_then(Value::as_object);
    for key in ["migration_name", "reason"] {
        if let Some(value) = metadata.and_then(|m| m.get(key)).and_then(Value::as_str) {
            who.push_str(&format!(" ({}: {value})", key.replace('_', " ")));
        }
    }
    format!(
        "  #{:<5} {}  {:<8} {who}",
        entry.id,
        entry.created_at.format("%Y-%m-%d %H:%M:%SZ"),
        entry.action
    )
}

/// One line per changed column: `email: "a@x.io" → "b@x.io"`.
fn changes(entry: &AuditEntry) -> Vec<String> {
    let old = entry.old_values.as_ref().and_then(Value::as_object);
    let new = entry.new_values.as_ref().and_then(Value::as_object);
    match entry.action.as_str() {
        "UPDATE" => {
            let mut lines: Vec<String> = entry
                .changed_fields
                .iter()
                .flatten()
                .map(|field| {
                    match (
                        old.and_then(|o| o.get(field)),
                        new.and_then(|n| n.get(field)),
                    ) {
                        (Some(before), Some(after)) => format!("{field}: {before} → {after}"),
                        _ => format!("{field}: changed (value not stored)"),
                    }
                })
                .collect();
            if let Some(old_key) = &entry.old_target_id {
                lines.insert(0, format!("key changed from {old_key}"));
            }
            lines
        }
        "INSERT" => vec![format!(
            "{}",
            entry.new_values.as_ref().unwrap_or(&Value::Null)
        )],
        "DELETE" | "TRUNCATE" => vec![format!(
            "was {}",
            entry.old_values.as_ref().unwrap_or(&Value::Null)
        )],
        _ => entry
            .metadata
            .as_ref()
            .map(|m| vec![m.to_string()])
            .unwrap_or_default(),
    }
}
