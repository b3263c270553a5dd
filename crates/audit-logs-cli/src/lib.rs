//! The `audit-logs` command, shared by the native binary and `npx audit-logs` (the Node
//! package hands its arguments to [`run`]).

mod archive;
mod demo;
mod print;
mod protect;
mod query;
mod revert;

use std::io::Write;

use audit_logs_core::{
    AuditLogs, ConnectionError, Error, HistoryQuery, TableRef, Target, TrackingOptions,
};
use clap::{Parser, Subcommand};

/// A PostgreSQL audit trail: who changed what, when, from where.
#[derive(Debug, Parser)]
#[command(name = "audit-logs", version, propagate_version = true)]
struct Cli {
    /// Database URL, as psql or Prisma write it (postgres://user:password@host:5432/db?sslmode=require).
    /// Default: DATABASE_URL from the environment, else from ./.env (as Prisma's CLI reads it).
    #[arg(
        short = 'D',
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// Print machine-readable JSON instead of text: the objects the Node API returns, with the
    /// same keys (a field without a value is left out, as JSON.stringify leaves out undefined).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install or upgrade the audit schema (safe to run from several processes at once).
    Migrate {
        /// Show the migrations that would run, and their SQL, without applying them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show applied and pending migrations and the tracked tables.
    Status {
        /// Exit with status 1 when migrations are pending or tracking needs a refresh.
        #[arg(long)]
        check: bool,
    },
    /// Record every change of a table (run again after altering the table: options not given
    /// are kept).
    Enable {
        /// The table: users, public.users, or public."Order Items" (quoted as in SQL).
        table: String,
        /// A column whose values are never stored (repeat for several), e.g. password_hash.
        #[arg(long = "exclude", value_name = "COLUMN", conflicts_with = "no_exclude")]
        exclude: Vec<String>,
        /// Store every column again (drop the excluded ones).
        #[arg(long)]
        no_exclude: bool,
        /// Also record updates that change nothing.
        #[arg(long, conflicts_with = "no_record_unchanged")]
        record_unchanged: bool,
        /// Skip updates that change nothing again (the default). Formerly --skip-unchanged,
        /// which still works.
        #[arg(long, alias = "skip-unchanged")]
        no_record_unchanged: bool,
        /// Fail writes that carry no audit context instead of recording them unattributed.
        #[arg(long, conflicts_with = "no_require_context")]
        require_context: bool,
        /// Record writes without an audit context again (the default).
        #[arg(long)]
        no_require_context: bool,
    },
    /// Stop recording a table's changes (its history is kept).
    Disable {
        /// The table, as for `enable`.
        table: String,
    },
    /// List the tracked tables.
    Tracked,
    /// Show the history of one record, newest first.
    History {
        /// The table (it may have been dropped since).
        table: String,
        /// The primary key: 42, abc, or a JSON array for a composite key: '[1, "a"]'.
        id: String,
        /// How many entries to show (1 to 10000).
        #[arg(long, default_value_t = audit_logs_core::history::DEFAULT_LIMIT)]
        limit: u32,
        /// Show entries older than this entry id (to page).
        #[arg(long)]
        before: Option<i64>,
        /// Also read the months archived and dropped from the live log, from their archives
        /// (AWS credentials from the environment for s3://).
        #[arg(long)]
        include_archive: bool,
    },
    /// Record an application event (user.login, report.exported...).
    Log(query::LogArgs),
    /// Stream entries to stdout as JSON lines or CSV, oldest first, from one snapshot.
    Export(query::ExportArgs),
    /// Every entry that mentions a data subject (GDPR access request), with where: by actor id,
    /// e-mail, IP address and other values (text, or jsonl/csv to hand over).
    Subject(query::FindSubjectArgs),
    /// Print a model of the audit table for your ORM (Prisma or Drizzle).
    Schema(query::SchemaArgs),
    /// Chain every committed, not yet sealed audit row into the hash chain (run it often).
    Seal,
    /// Recompute the chain and report the first row that differs; exit 1 if anything does.
    Verify(protect::VerifyArgs),
    /// Write whole, sealed months to Parquet with their seals (verifiable without the
    /// database), and with --then-drop drop them from the live log once read back and verified.
    Archive(archive::ArchiveArgs),
    /// Create partitions, move default-partition rows, seal, drop expired partitions and
    /// anonymize due rows (safe from cron). Flags apply to this run; `configure` saves a policy.
    Maintain(protect::MaintainArgs),
    /// Save the retention policy `maintain` applies (flags not given are kept) and print it.
    Configure(protect::ConfigureArgs),
    /// GDPR erasure: replace a data subject's values with keyed hashes (key in
    /// AUDIT_LOGS_REDACTION_KEY).
    Redact(protect::RedactArgs),
    /// Undo a transaction, a request, an actor's changes or one entry, or put one record back
    /// as it was at a time; recorded like any change (--dry-run shows what and the SQL).
    Revert(revert::RevertArgs),
    /// Serve the history viewer in the browser (`npx audit-logs ui [--port N] [--host H]
    /// [--open]`): the npm package serves it, the native binary does not.
    Ui {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Try it: migrate, track a table, make attributed changes and show their history, on a
    /// throwaway PostgreSQL (or, with a database URL, in a new database on that server).
    Demo {
        /// Keep the demo database (with a database URL) instead of dropping it.
        #[arg(long)]
        keep: bool,
    },
}

/// Runs the command line `args` (without the program name) and returns the exit status.
pub async fn run(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(std::iter::once("audit-logs".to_owned()).chain(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let json = cli.json;
    let status = match execute(cli).await {
        Ok(status) => status,
        Err(e) => {
            if json {
                // The code, the message and the structured fields, as a JavaScript error has them.
                let mut error = serde_json::json!({ "code": e.code(), "message": e.to_string() });
                if let (Some(error), Ok(serde_json::Value::Object(fields))) =
                    (error.as_object_mut(), serde_json::to_value(e.fields()))
                {
                    error.extend(fields);
                }
                println!("{}", serde_json::json!({ "error": error }));
            } else {
                eprintln!("error[{}]: {e}", e.code());
            }
            1
        }
    };
    let _ = std::io::stdout().flush();
    status
}

async fn execute(cli: Cli) -> Result<i32, Error> {
    match &cli.command {
        Command::Demo { keep } => {
            return demo::run(cli.database_url.as_deref(), *keep)
                .await
                .map(|()| 0)
        }
        Command::Schema(args) => {
            print!("{}", query::schema(args));
            return Ok(0);
        }
        Command::Ui { .. } => {
            return Err(Error::invalid_argument(
                "ui",
                "the viewer is served by the npm package: run `npx audit-logs ui` in a project that installed audit-logs",
            ))
        }
        _ => {}
    }
    let url = match cli.database_url {
        Some(url) => Some(url),
        None => dot_env_database_url()?,
    };
    // An auditor has the files and no database: `verify --archive` then checks them alone.
    if let Command::Verify(args) = &cli.command {
        if let Some(archive) = &args.archive {
            if url.is_none() || args.offline {
                let out = print::Printer { json: cli.json };
                return archive::verify(None, &out, archive, args.against.as_deref()).await;
            }
        }
    }
    let url = url.ok_or_else(|| Error::Connection(ConnectionError::InvalidUrl {
        reason: "no database given: set DATABASE_URL (in the environment or in ./.env) or pass --database-url (-D)".into(),
    }))?;
    let audit = AuditLogs::connect(&url).await?;
    let out = print::Printer { json: cli.json };
    let status = match cli.command {
        Command::Migrate { dry_run } => {
            out.migrate(&audit.migrate(dry_run).await?);
            0
        }
        Command::Status { check } => {
            let status = audit.status().await?;
            out.status(&status);
            let stale = status
                .tracked_tables
                .iter()
                .any(|t| !t.needs_refresh.is_empty());
            i32::from(check && (!status.is_up_to_date() || stale))
        }
        Command::Enable {
            table,
            exclude,
            no_exclude,
            record_unchanged,
            no_record_unchanged,
            require_context,
            no_require_context,
        } => {
            let given = |set: bool, unset: bool| (set || unset).then_some(set);
            let options = TrackingOptions {
                exclude_columns: (no_exclude || !exclude.is_empty()).then_some(exclude),
                record_unchanged: given(record_unchanged, no_record_unchanged),
                require_context: given(require_context, no_require_context),
            };
            out.enabled(
                &audit
                    .enable_tracking(&TableRef::Sql(table), &options)
                    .await?,
            );
            0
        }
        Command::Disable { table } => {
            let was_tracked = audit
                .disable_tracking(&TableRef::Sql(table.clone()))
                .await?;
            out.disabled(&table, was_tracked);
            0
        }
        Command::Tracked => {
            out.tracked(&audit.tracked_tables().await?);
            0
        }
        Command::History {
            table,
            id,
            limit,
            before,
            include_archive,
        } => {
            let query = HistoryQuery {
                target: Target::Table(TableRef::Sql(table.clone())),
                id: parse_id(&id),
                limit: Some(limit),
                before,
                include_archive,
            };
            let entries = audit.history(&query).await?;
            out.history(&table, &id, &entries);
            0
        }
        Command::Log(args) => {
            out.logged(&audit.log(&args.event()?, None).await?);
            0
        }
        Command::Export(args) => {
            query::export(&audit, args).await?;
            0
        }
        Command::Subject(args) => {
            query::subject(&audit, &out, args).await?;
            0
        }
        Command::Seal => protect::seal(&audit, &out).await?,
        Command::Verify(args) => match &args.archive {
            Some(url) => archive::verify(Some(&audit), &out, url, args.against.as_deref()).await?,
            None => protect::verify(&audit, &out, args).await?,
        },
        Command::Archive(args) => archive::archive(&audit, &out, args).await?,
        Command::Maintain(args) => protect::maintain(&audit, &out, args).await?,
        Command::Configure(args) => protect::configure(&audit, &out, args).await?,
        Command::Redact(args) => protect::redact(&audit, &out, args).await?,
        Command::Revert(args) => revert::revert(&audit, &out, args).await?,
        Command::Demo { .. } | Command::Schema(_) | Command::Ui { .. } => {
            unreachable!("handled above")
        }
    };
    audit.close();
    Ok(status)
}

/// The file read for `DATABASE_URL` when the environment has none: `.env` in the current
/// directory, where Prisma's CLI and most Node projects keep it.
const DOT_ENV: &str = ".env";

/// `DATABASE_URL` from `./.env` (dotenv syntax: quotes, `export`, `${VAR}` expansion), saying
/// so on stderr; `None` without the file or the variable. The process environment is left
/// alone: a variable set there wins, and is read by clap before this is asked.
fn dot_env_database_url() -> Result<Option<String>, Error> {
    let entries = match dotenvy::from_path_iter(DOT_ENV) {
        Ok(entries) => entries,
        Err(e) if e.not_found() => return Ok(None),
        Err(e) => return Err(dot_env_error(e)),
    };
    for entry in entries {
        let (key, value) = entry.map_err(dot_env_error)?;
        if key == "DATABASE_URL" {
            eprintln!("audit-logs: DATABASE_URL read from {DOT_ENV}");
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn dot_env_error(e: dotenvy::Error) -> Error {
    Error::Connection(ConnectionError::InvalidUrl {
        reason: format!("cannot read DATABASE_URL from {DOT_ENV}: {e}"),
    })
}

/// A record id as typed on the command line (see [`audit_logs_core::history::parse_record_id`]).
fn parse_id(id: &str) -> serde_json::Value {
    audit_logs_core::history::parse_record_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
