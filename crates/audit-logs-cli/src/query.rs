//! `log`, `export`, `subject` and `schema`: recording an event, streaming the log out (all of
//! it, or what mentions a data subject), and the audit table's model for ORMs.

use std::io::{self, Write};

use audit_logs_core::history::ENTRY_COLUMNS;
use audit_logs_core::queries::parse_time;
use audit_logs_core::{
    AuditContext, AuditEntry, AuditLogs, DataSubject, Error, EventError, Filters, NewEvent, Order,
    SubjectEntry, TableRef,
};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// Which entries `export` writes. Every filter given must hold.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Changes of this table's rows.
    #[arg(long)]
    table: Option<String>,
    /// Entries with this target_type (a table's schema.table, or an event's).
    #[arg(long, conflicts_with = "table")]
    target_type: Option<String>,
    /// One record's key (42, abc, or '[1, "a"]' for a composite key) or an event target's id.
    #[arg(long)]
    target_id: Option<String>,
    /// This action; repeat for any of several (UPDATE, user.login...).
    #[arg(long = "action", value_name = "ACTION")]
    actions: Vec<String>,
    #[arg(long = "actor", value_name = "ACTOR_ID")]
    actor_id: Option<String>,
    #[arg(long)]
    actor_type: Option<String>,
    #[arg(long)]
    actor_email: Option<String>,
    #[arg(long = "request", value_name = "REQUEST_ID")]
    request_id: Option<String>,
    #[arg(long)]
    txid: Option<i64>,
    /// UPDATEs that changed this column.
    #[arg(long)]
    changed_field: Option<String>,
    /// Entries whose metadata contains this JSON object: '{"reason": "gdpr"}'.
    #[arg(long, value_name = "JSON")]
    metadata_contains: Option<String>,
    /// Entries at or after this time (ISO 8601: 2026-01-31T00:00:00Z).
    #[arg(long)]
    from: Option<String>,
    /// Entries before this time.
    #[arg(long)]
    to: Option<String>,
}

impl FilterArgs {
    fn filters(self) -> Result<Filters, Error> {
        Ok(Filters {
            table: self.table.map(TableRef::Sql),
            target_type: self.target_type,
            target_id: self.target_id.as_deref().map(crate::parse_id),
            actions: self.actions,
            actor_id: self.actor_id,
            actor_type: self.actor_type,
            actor_email: self.actor_email,
            request_id: self.request_id,
            txid: self.txid,
            changed_field: self.changed_field,
            metadata_contains: self
                .metadata_contains
                .as_deref()
                .map(|text| json_arg("--metadata-contains", text))
                .transpose()?,
            from: self
                .from
                .as_deref()
                .map(|t| parse_time(t, "--from"))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .map(|t| parse_time(t, "--to"))
                .transpose()?,
        })
    }
}

fn json_arg(name: &str, text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid_argument(name, format!("{text:?} is not JSON: {e}")))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row; JSON columns hold JSON text.
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportOrder {
    Oldest,
    Newest,
}

/// `audit-logs export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Oldest first (as a log file reads) or newest first.
    #[arg(long, value_enum, default_value_t = ExportOrder::Oldest)]
    order: ExportOrder,
    #[command(flatten)]
    filters: FilterArgs,
}

/// Streams the matching entries to stdout from one snapshot, in bounded memory, with a
/// progress counter on stderr when it is a terminal. Returns how many were written.
pub async fn export(audit: &AuditLogs, args: ExportArgs) -> Result<u64, Error> {
    let order = match args.order {
        ExportOrder::Oldest => Order::OldestFirst,
        ExportOrder::Newest => Order::NewestFirst,
    };
    let mut stream = audit.stream(&args.filters.filters()?, order, None).await?;
    // Hidden by indicatif itself when stderr is not a terminal.
    let progress = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {human_pos} entries exported ({per_sec})")
            .expect("a valid template"),
    );
    let stdout = io::stdout();
    let mut writer = Writer::new(
        args.format,
        io::BufWriter::with_capacity(1 << 16, stdout.lock()),
    );
    let mut written = 0u64;
    let outcome: Result<(), ExportError> = async {
        while let Some(batch) = stream.next_batch().await? {
            for entry in &batch {
                writer.write(entry, None)?;
            }
            written += batch.len() as u64;
            progress.set_position(written);
        }
        writer.finish()
    }
    .await;
    progress.finish_and_clear();
    match outcome {
        Ok(()) => Ok(written),
        // The reader (say, `| head`) has had enough: not an error.
        Err(ExportError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(written),
        Err(ExportError::Io(source)) => Err(Error::Output { source }),
        Err(ExportError::Audit(e)) => Err(e),
    }
}

/// An error while exporting: from the database, or from writing stdout.
enum ExportError {
    Audit(Error),
    Io(io::Error),
}

impl From<Error> for ExportError {
    fn from(e: Error) -> Self {
        ExportError::Audit(e)
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Io(e)
    }
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Io(e.into())
    }
}

enum Writer<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>, bool),
}

impl<W: Write> Writer<W> {
    fn new(format: Format, out: W) -> Self {
        match format {
            Format::Jsonl => Writer::Jsonl(out),
            Format::Csv => Writer::Csv(Box::new(csv::Writer::from_writer(out)), false),
        }
    }

    /// Writes an entry; with `paths` (a data subject's export), where it mentions them: the
    /// JSON line is `{"entry": ..., "paths": [...]}` and the CSV has a last column `paths`.
    fn write(&mut self, entry: &AuditEntry, paths: Option<&[String]>) -> Result<(), ExportError> {
        match self {
            Writer::Jsonl(out) => {
                match paths {
                    None => serde_json::to_writer(&mut *out, entry),
                    Some(paths) => serde_json::to_writer(
                        &mut *out,
                        &serde_json::json!({ "entry": entry, "paths": paths }),
                    ),
                }
                .map_err(io::Error::from)?;
                out.write_all(b"\n")?;
            }
            Writer::Csv(out, header_written) => {
                if !*header_written {
                    let mut header = ENTRY_COLUMNS.to_vec();
                    if paths.is_some() {
                        header.push("paths");
                    }
                    out.write_record(header)?;
                    *header_written = true;
                }
                let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
                let fields = [
                    Some(entry.id.to_string()),
                    Some(entry.created_at.to_rfc3339()),
                    Some(entry.txid.to_string()),
                    Some(entry.action.clone()),
                    entry.target_type.clone(),
                    entry.target_id.clone(),
                    entry.old_target_id.clone(),
                    json(&entry.old_values),
                    json(&entry.new_values),
                    entry
                        .changed_fields
                        .as_ref()
                        .map(|f| serde_json::to_string(f).expect("strings serialize")),
                    entry.actor_id.clone(),
                    entry.actor_type.clone(),
                    entry.actor_email.clone(),
                    entry.ip_address.clone(),
                    entry.user_agent.clone(),
                    entry.request_id.clone(),
                    json(&entry.metadata),
                    paths.map(|p| serde_json::to_string(p).expect("strings serialize")),
                ];
                let columns = ENTRY_COLUMNS.len() + usize::from(paths.is_some());
                out.write_record(fields[..columns].iter().map(|f| f.as_deref().unwrap_or("")))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(), ExportError> {
        match self {
            Writer::Jsonl(mut out) => out.flush()?,
            Writer::Csv(mut out, _) => out.flush()?,
        }
        Ok(())
    }
}

/// A data subject, as `subject` and `redact` take it (see the README's "Data subject
/// requests" for what is found where).
#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// Their actor id (compared with actor_id only, for equality).
    #[arg(long = "actor", value_name = "ACTOR_ID")]
    actor_id: Option<String>,
    /// Their e-mail address, found as a whole word, ignoring case, in every personal column and
    /// JSON value.
    #[arg(long)]
    email: Option<String>,
    /// An IP address of theirs.
    #[arg(long = "ip", value_name = "ADDRESS")]
    ip_address: Option<String>,
    /// Another value that identifies them (a name, a phone number), found as the e-mail is;
    /// repeat for several.
    #[arg(long = "value", value_name = "TEXT")]
    values: Vec<String>,
}

impl SubjectArgs {
    pub fn subject(self) -> DataSubject {
        DataSubject {
            actor_id: self.actor_id,
            email: self.email,
            ip_address: self.ip_address,
            values: (!self.values.is_empty()).then_some(self.values),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SubjectFormat {
    /// One line per entry: its id, time, action, target and where it mentions them.
    Text,
    /// One JSON object per line: {"entry": {...}, "paths": [...]}.
    Jsonl,
    /// The columns of `export` and a last one, paths (a JSON array).
    Csv,
}

/// `audit-logs subject`.
#[derive(Debug, Args)]
pub struct FindSubjectArgs {
    #[command(flatten)]
    subject: SubjectArgs,
    /// text to read, jsonl or csv to hand over (an access request's export).
    #[arg(long, value_enum, default_value_t = SubjectFormat::Text)]
    format: SubjectFormat,
    /// Oldest first or newest first.
    #[arg(long, value_enum, default_value_t = ExportOrder::Oldest)]
    order: ExportOrder,
}

/// Streams every entry that mentions the subject, with where, from one snapshot (with `--json`,
/// one array of them, as Node's `subject()` gives its entries). Returns how many were written.
pub async fn subject(
    audit: &AuditLogs,
    out: &crate::print::Printer,
    args: FindSubjectArgs,
) -> Result<u64, Error> {
    let order = match args.order {
        ExportOrder::Oldest => Order::OldestFirst,
        ExportOrder::Newest => Order::NewestFirst,
    };
    let mut stream = audit
        .subject_stream(&args.subject.subject(), order, None)
        .await?;
    if out.json {
        let mut all = Vec::new();
        while let Some(batch) = stream.next_batch().await? {
            all.extend(batch);
        }
        out.json(&all);
        return Ok(all.len() as u64);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut writer = match args.format {
        SubjectFormat::Text => None,
        SubjectFormat::Jsonl => Some(Writer::new(Format::Jsonl, &mut out)),
        SubjectFormat::Csv => Some(Writer::new(Format::Csv, &mut out)),
    };
    let mut written = 0u64;
    let outcome: Result<(), ExportError> = async {
        while let Some(batch) = stream.next_batch().await? {
            for found in &batch {
                match &mut writer {
                    Some(writer) => writer.write(&found.entry, Some(&found.paths))?,
                    None => print_found(&mut io::stdout(), found)?,
                }
            }
            written += batch.len() as u64;
        }
        match writer {
            Some(writer) => writer.finish()?,
            None if written == 0 => println!("No entry mentions this subject."),
            None => println!("{written} entries mention this subject."),
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(written),
        Err(ExportError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(written),
        Err(ExportError::Io(source)) => Err(Error::Output { source }),
        Err(ExportError::Audit(e)) => Err(e),
    }
}

fn print_found(out: &mut impl Write, found: &SubjectEntry) -> io::Result<()> {
    let e = &found.entry;
    writeln!(
        out,
        "#{} {} {} {}{}: {}",
        e.id,
        e.created_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        e.action,
        e.target_type.as_deref().unwrap_or("-"),
        e.target_id
            .as_deref()
            .map(|id| format!(" {id}"))
            .unwrap_or_default(),
        found.paths.join(", ")
    )
}

/// `audit-logs log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// What happened: user.login, report.exported...
    #[arg(long)]
    action: String,
    #[arg(long = "actor", value_name = "ACTOR_ID")]
    actor_id: Option<String>,
    /// user, system, api_key, moderator, migration, or any string.
    #[arg(long)]
    actor_type: Option<String>,
    #[arg(long)]
    actor_email: Option<String>,
    #[arg(long)]
    target_type: Option<String>,
    #[arg(long)]
    target_id: Option<String>,
    /// Details, as a JSON object: '{"rows": 120}'.
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// Why: stored in metadata.reason.
    #[arg(long)]
    reason: Option<String>,
    /// The client address, IPv4 or IPv6.
    #[arg(long = "ip", value_name = "IP")]
    ip_address: Option<String>,
    #[arg(long = "request", value_name = "REQUEST_ID")]
    request_id: Option<String>,
}

impl LogArgs {
    pub fn event(self) -> Result<NewEvent, Error> {
        let metadata = match self
            .metadata
            .as_deref()
            .map(|t| json_arg("--metadata", t))
            .transpose()?
        {
            None => None,
            Some(serde_json::Value::Object(map)) => Some(map),
            Some(other) => {
                return Err(Error::Event(EventError::Invalid {
                    reason: format!("--metadata must be a JSON object, got {other}"),
                }))
            }
        };
        Ok(NewEvent {
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            metadata,
            context: AuditContext {
                actor_id: self.actor_id,
                actor_type: self.actor_type,
                actor_email: self.actor_email,
                ip_address: self
                    .ip_address
                    .as_deref()
                    .map(AuditContext::parse_ip)
                    .transpose()?,
                request_id: self.request_id,
                reason: self.reason,
                ..Default::default()
            },
        })
    }
}

/// `audit-logs schema`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SchemaArgs {
    /// A Prisma model of the audit table.
    #[arg(long)]
    prisma: bool,
    /// A Drizzle table of the audit table.
    #[arg(long)]
    drizzle: bool,
}

pub fn schema(args: &SchemaArgs) -> &'static str {
    if args.prisma {
        audit_logs_core::orm::prisma_model()
    } else {
        audit_logs_core::orm::drizzle_schema()
    }
}
