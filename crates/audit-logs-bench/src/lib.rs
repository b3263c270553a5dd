//! The benchmark behind `npm run bench` and `cargo bench`: the cost of capture against untracked
//! writes, the per-row trigger copied from a blog post and the floor (the audit INSERT alone),
//! all measured in one run on one database, setups interleaved and repeated; and the latency of
//! the queries users ask at 1M (and 10M) audit rows, before and after newer rows arrive.

mod queries;
mod setups;
mod verify;
mod writes;

use std::time::Instant;

use audit_logs_core::testing::database_url;
use audit_logs_core::{AuditLogs, ConnectOptions};
use serde::Serialize;

pub use setups::Setup;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Under 3 minutes: short runs, 1M audit rows.
    Quick,
    /// Under 20 minutes: longer runs, more rounds, 1M and 10M audit rows.
    Full,
}

/// How much of everything, per mode.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub accounts: i64,
    pub clients: u32,
    pub throughput_seconds: u32,
    pub latency_seconds: u32,
    pub rounds: u32,
    pub bulk_rows: i64,
    pub bulk_rounds: u32,
    pub audit_rows: Vec<i64>,
    pub newer_rows: i64,
    pub query_samples: u32,
    /// Audit rows sealed and verified.
    pub verify_rows: i64,
}

impl Plan {
    pub fn for_mode(mode: Mode) -> Plan {
        match mode {
            Mode::Quick => Plan {
                accounts: 1_000_000,
                clients: 8,
                throughput_seconds: 3,
                latency_seconds: 3,
                rounds: 2,
                bulk_rows: 100_000,
                bulk_rounds: 1,
                audit_rows: vec![1_000_000],
                newer_rows: 100_000,
                query_samples: 60,
                // Loading and sealing take ~60s per million rows: a third keeps the quick run quick.
                verify_rows: 300_000,
            },
            Mode::Full => Plan {
                accounts: 1_000_000,
                clients: 8,
                throughput_seconds: 15,
                latency_seconds: 8,
                rounds: 3,
                bulk_rows: 100_000,
                bulk_rounds: 3,
                audit_rows: vec![1_000_000, 10_000_000],
                newer_rows: 100_000,
                query_samples: 300,
                verify_rows: 1_000_000,
            },
        }
    }
}

/// A measurement repeated over rounds: median and spread.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Stat {
    pub fn of(mut samples: Vec<f64>) -> Stat {
        samples.sort_by(f64::total_cmp);
        let median = if samples.is_empty() {
            f64::NAN
        } else if samples.len() % 2 == 1 {
            samples[samples.len() / 2]
        } else {
            (samples[samples.len() / 2 - 1] + samples[samples.len() / 2]) / 2.0
        };
        Stat {
            median,
            min: samples.first().copied().unwrap_or(f64::NAN),
            max: samples.last().copied().unwrap_or(f64::NAN),
            samples,
        }
    }

    /// The sample at quantile q (0..1).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let index = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples[index]
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub plan: Plan,
    pub server: String,
    pub settings: Vec<(String, String)>,
    pub writes: writes::WriteReport,
    pub queries: Vec<queries::QueryReport>,
    pub verify: Option<verify::VerifyReport>,
    pub seconds: f64,
}

/// Runs the whole benchmark in a database created (and dropped) on the server of `server_url`,
/// then the seal and verify benchmark in another one.
pub async fn run(mode: Mode, server_url: &str) -> BenchResult<Report> {
    let started = Instant::now();
    let mut report = run_writes_and_queries(mode, server_url).await?;
    report.verify = Some(run_verify(mode, server_url).await?);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Only the seal and verify benchmark (`--verify-only`).
pub async fn run_verify(mode: Mode, server_url: &str) -> BenchResult<verify::VerifyReport> {
    let plan = Plan::for_mode(mode);
    let admin = ConnectOptions::parse(server_url)?;
    let name = format!("audit_logs_bench_verify_{}", std::process::id());
    let client = admin.connect().await?;
    client
        .batch_execute(&format!("drop database if exists {name}"))
        .await?;
    client
        .batch_execute(&format!("create database {name}"))
        .await?;
    let result = verify::measure(&plan, &database_url(server_url, &name)?, plan.verify_rows).await;
    admin
        .connect()
        .await?
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await?;
    result
}

/// Prints the seal and verify figures.
pub fn print_verify(report: &verify::VerifyReport) {
    verify::print(report);
}

async fn run_writes_and_queries(mode: Mode, server_url: &str) -> BenchResult<Report> {
    let started = Instant::now();
    let plan = Plan::for_mode(mode);
    let admin = ConnectOptions::parse(server_url)?;
    let name = format!("audit_logs_bench_{}", std::process::id());
    let client = admin.connect().await?;
    client
        .batch_execute(&format!("drop database if exists {name}"))
        .await?;
    client
        .batch_execute(&format!("create database {name}"))
        .await?;
    let result = run_in(mode, &plan, &database_url(server_url, &name)?, started).await;
    admin
        .connect()
        .await?
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await?;
    result
}

async fn run_in(mode: Mode, plan: &Plan, url: &str, started: Instant) -> BenchResult<Report> {
    let options = ConnectOptions::parse(url)?;
    let audit = AuditLogs::connect(url).await?;
    audit.migrate(false).await?;
    let client = options.connect().await?;
    let server: String = client.query_one("select version()", &[]).await?.get(0);
    let settings = client
        .query(
            "select name, setting from pg_settings where name in
               ('shared_buffers', 'fsync', 'full_page_writes', 'synchronous_commit', 'max_wal_size', 'jit')
             order by name",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    progress(&format!("preparing {} accounts", plan.accounts));
    setups::prepare(&client, plan.accounts).await?;

    let writes = writes::measure(plan, &options, &client).await?;
    let mut queries = Vec::new();
    for &rows in &plan.audit_rows {
        queries.push(queries::measure(plan, &client, rows).await?);
    }
    Ok(Report {
        mode,
        plan: plan.clone(),
        server,
        settings,
        writes,
        queries,
        verify: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}

pub(crate) fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

/// Prints the report as tables, with ratios and the targets of the benchmark issue.
pub fn print(report: &Report) {
    println!(
        "\naudit-logs benchmark ({:?} mode, {:.0}s)",
        report.mode, report.seconds
    );
    println!("{}", report.server);
    let settings: Vec<String> = report
        .settings
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "settings: {} (pgbench sessions: synchronous_commit=off)",
        settings.join(", ")
    );
    writes::print(&report.writes);
    for q in &report.queries {
        queries::print(q);
    }
    if let Some(v) = &report.verify {
        verify::print(v);
    }
}
