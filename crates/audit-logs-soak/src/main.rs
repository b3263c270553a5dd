//! `npm run soak` / `cargo run --release -p audit-logs-soak`: the soak test on a new database
//! (on DATABASE_URL's server, or a throwaway one; always a throwaway one with `--restart-every`,
//! which crashes its server), with its report. Exit status 1 if any promise was broken.

use std::process::ExitCode;
use std::time::Duration;

use audit_logs_core::testing::TestDatabase;
use audit_logs_soak::{crash_safe_server, prepare, run, Faults, SoakOptions};
use clap::Parser;

/// Concurrent writers with rollbacks and savepoints, then exact accounting and replay.
#[derive(Debug, Parser)]
#[command(name = "audit-logs-soak")]
struct Args {
    /// Concurrent writers, each with its own actor and connection.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// How long the writers run.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// At most this many transactions per writer.
    #[arg(long, default_value_t = 1_000_000)]
    transactions: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Terminate a random writer's backend every this many milliseconds.
    #[arg(long, value_name = "MS")]
    kill_every: Option<u64>,
    /// Crash the server (immediate shutdown) and restart it every this many seconds. Runs on a
    /// throwaway server of its own, whatever DATABASE_URL says.
    #[arg(long, value_name = "SECONDS")]
    restart_every: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let mut faults = Faults {
        kill_every: args.kill_every.map(Duration::from_millis),
        restart_every: None,
    };
    // Held to the end, then dropped: the database, or the throwaway server.
    let mut _database = None;
    let mut _server = None;
    let url = match args.restart_every {
        Some(seconds) => {
            let server = crash_safe_server().await?;
            faults.restart_every = Some((Duration::from_secs(seconds), server.clone()));
            let url = server.url("postgres");
            _server = Some(server);
            url
        }
        None => {
            let db = TestDatabase::create().await?;
            let url = db.url.clone();
            _database = Some(db);
            url
        }
    };
    prepare(&url).await?;
    eprintln!(
        "[soak] {} writers for {}s on a new database",
        args.writers, args.seconds
    );
    let options = SoakOptions {
        writers: args.writers,
        duration: Duration::from_secs(args.seconds),
        transactions_per_writer: args.transactions,
        seed: args.seed,
        faults,
    };
    let report = run(&url, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Soak: {} writers for {:.0}s",
            report.writers, report.seconds
        );
        println!(
            "  transactions committed {}, rolled back {}; savepoints rolled back {}",
            report.transactions_committed,
            report.transactions_rolled_back,
            report.savepoints_rolled_back
        );
        println!(
            "  row changes committed {}, audit rows {}, rows replayed {}",
            report.row_changes_committed, report.audit_rows, report.rows_replayed
        );
        println!(
            "  faults: {} backends killed, {} server crashes; {} transactions interrupted, {} of them at COMMIT ({} had committed)",
            report.backends_killed,
            report.server_restarts,
            report.transactions_interrupted,
            report.commits_in_doubt,
            report.commits_in_doubt_committed
        );
        println!(
            "  {} seals while writing; final verify {} ({} rows)",
            report.seals,
            if report.verified { "ok" } else { "FAILED" },
            report.rows_verified
        );
        println!(
            "  accounting errors {}, misattributed rows {}, replay differences {:?}",
            report.accounting_errors.len(),
            report.attribution_errors,
            report.replay_differences
        );
        for error in report.accounting_errors.iter().take(10) {
            println!("    {error}");
        }
        println!(
            "  {}",
            if report.passed() {
                "PASSED: nothing lost, nothing extra"
            } else {
                "FAILED"
            }
        );
    }
    // Returned, not exit(): the database and the throwaway server are dropped on the way out.
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
