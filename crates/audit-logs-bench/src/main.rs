//! `audit-logs-bench [--full] [--json FILE]`: see the crate documentation. Uses DATABASE_URL's
//! server when set (in a database of its own), otherwise a throwaway PostgreSQL.

use audit_logs_bench::{print, print_verify, run, run_verify, Mode};
use audit_logs_core::temporary::Setup;
use audit_logs_core::TemporaryPostgres;
use clap::Parser;

/// Measures what audit-logs costs writers and readers, against untracked writes, the blog post's
/// trigger and the bare audit INSERT.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The full run (under 20 minutes; 1M and 10M audit rows) instead of the quick one (under 3).
    #[arg(long)]
    full: bool,
    /// Only the seal and verify benchmark (300k audit rows; 1M with --full).
    #[arg(long)]
    verify_only: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Server to use (a database is created on it for the run). Default: a throwaway server.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = Args::parse();
    let mode = if args.full { Mode::Full } else { Mode::Quick };
    let mut _server = None;
    let url = match args.database_url {
        Some(url) => url,
        None => {
            eprintln!(
                "[bench] no DATABASE_URL: starting a throwaway PostgreSQL with durable settings"
            );
            let server = TemporaryPostgres::start_with(bench_server()).await?;
            let url = server.url("postgres");
            _server = Some(server);
            url
        }
    };
    if args.verify_only {
        let report = run_verify(mode, &url).await?;
        print_verify(&report);
        if let Some(path) = args.json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(());
    }
    let report = run(mode, &url).await?;
    print(&report);
    if let Some(path) = args.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("[bench] figures written to {}", path.display());
    }
    Ok(())
}

/// Like a production server where it matters for the comparison: WAL with full-page writes,
/// fsync on; pgbench sessions turn synchronous_commit off so commits do not hide CPU costs.
fn bench_server() -> Setup {
    let setting = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    Setup {
        settings: vec![
            setting("fsync", "on"),
            setting("full_page_writes", "on"),
            setting("shared_buffers", "512MB"),
            setting("max_wal_size", "8GB"),
            setting("checkpoint_timeout", "30min"),
        ],
        ..Setup::default()
    }
}
