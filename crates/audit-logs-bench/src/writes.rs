//! What capture costs writers: pgbench throughput and latency of single-row transactions, time
//! per row of bulk statements, bytes per audit row and WAL per change.

use std::process::Command;

use audit_logs_core::ConnectOptions;
use serde::Serialize;
use tokio_postgres::Client;

use crate::setups::{self, Setup, ALL};
use crate::{progress, BenchResult, Plan, Stat};

/// Every transaction sets a context, for every setup (each setup reads its own setting).
const CONTEXT: &str = "select audit.set_checked_context('{\"actor_id\":\"user-' || :actor || '\",\"actor_type\":\"user\",\
\"ip_address\":\"10.0.0.1\",\"request_id\":\"req-' || :id || '\"}'), set_config('app.current_user', \
'{\"user_id\":\"user-' || :actor || '\",\"ip_address\":\"10.0.0.1\"}', true);";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Workload {
    #[serde(rename = "single-row UPDATE")]
    Update,
    #[serde(rename = "single-row INSERT")]
    Insert,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Update => "single-row UPDATE",
            Workload::Insert => "single-row INSERT",
        }
    }

    fn script(self, accounts: i64) -> String {
        let change = match self {
            Workload::Update => "update accounts set abalance = abalance + :delta where id = :id;",
            Workload::Insert => "insert into accounts (id, bid, abalance, filler) values (nextval('bench_ids'), 1, :delta, '');",
        };
        format!(
            "\\set id random(1, {accounts})\n\\set delta random(-5000, 5000)\n\\set actor random(1, 10000)\n\
             begin;\n{CONTEXT}\n{change}\ncommit;\n"
        )
    }
}

#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    pub workload: Workload,
    pub setup: Setup,
    pub tps: Stat,
    /// Median tps over untracked's median tps.
    pub ratio: f64,
    /// WAL bytes per transaction, more than untracked's.
    pub added_wal_bytes: f64,
}

#[derive(Debug, Serialize)]
pub struct LatencyRow {
    pub workload: Workload,
    pub setup: Setup,
    pub latency_ms: Stat,
    /// Microseconds added to a transaction, one client.
    pub added_us: f64,
}

#[derive(Debug, Serialize)]
pub struct BulkRow {
    pub operation: String,
    pub setup: Setup,
    pub us_per_row: Stat,
    /// Microseconds per row more than untracked.
    pub added_us_per_row: f64,
    /// WAL bytes per changed row, more than untracked's.
    pub added_wal_bytes_per_row: f64,
}

/// Table and index bytes per audit row and WAL per change, from a committed 100,000-row UPDATE
/// into empty audit tables (rolled-back runs leave dead space that later runs reuse).
#[derive(Debug, Serialize)]
pub struct SizeRow {
    pub setup: Setup,
    pub audit_bytes_per_row: f64,
    pub wal_bytes_per_row: f64,
}

#[derive(Debug, Serialize)]
pub struct WriteReport {
    pub sizes: Vec<SizeRow>,
    pub throughput: Vec<ThroughputRow>,
    pub latency: Vec<LatencyRow>,
    pub bulk: Vec<BulkRow>,
}

/// One bulk statement's measurements.
struct BulkRun {
    operation: &'static str,
    setup: Setup,
    micros: f64,
    wal_bytes: f64,
}

struct Run {
    tps: f64,
    latency_ms: f64,
    wal_bytes_per_txn: f64,
}

pub async fn measure(
    plan: &Plan,
    options: &ConnectOptions,
    client: &Client,
) -> BenchResult<WriteReport> {
    let dir = tempfile::tempdir()?;
    let pgbench = audit_logs_core::temporary::find_bin_dir()?.join("pgbench");
    let workloads = [Workload::Update, Workload::Insert];
    for w in workloads {
        std::fs::write(
            dir.path().join(format!("{w:?}.sql")),
            w.script(plan.accounts),
        )?;
    }
    client.batch_execute(BULK_FUNCTION).await?;
    let sizes = measure_sizes(client, plan.bulk_rows).await?;

    // Rounds interleave the setups (rotated each round, so none always runs first).
    let mut runs: Vec<(Workload, Setup, u32, Run)> = Vec::new();
    let mut bulk_runs: Vec<BulkRun> = Vec::new();
    let rounds = plan.rounds.max(plan.bulk_rounds);
    for round in 0..rounds {
        let mut order = ALL.to_vec();
        order.rotate_left(round as usize % ALL.len());
        for setup in order {
            setups::install(client, setup).await?;
            if round < plan.rounds {
                for workload in workloads {
                    for clients in [plan.clients, 1] {
                        let seconds = if clients == 1 {
                            plan.latency_seconds
                        } else {
                            plan.throughput_seconds
                        };
                        progress(&format!(
                            "round {}/{rounds}: {} with {setup:?}, {clients} client(s), {seconds}s",
                            round + 1,
                            workload.name()
                        ));
                        let script = dir.path().join(format!("{workload:?}.sql"));
                        let run = pgbench_run(&pgbench, options, client, &script, clients, seconds)
                            .await?;
                        runs.push((workload, setup, clients, run));
                    }
                }
            }
            if round < plan.bulk_rounds {
                for operation in ["UPDATE", "INSERT", "DELETE"] {
                    progress(&format!(
                        "round {}/{rounds}: bulk {operation} of {} rows with {setup:?}",
                        round + 1,
                        plan.bulk_rows
                    ));
                    let (micros, wal_bytes) = bulk_run(client, operation, plan.bulk_rows).await?;
                    bulk_runs.push(BulkRun {
                        operation,
                        setup,
                        micros,
                        wal_bytes,
                    });
                }
            }
        }
    }
    setups::install(client, Setup::Untracked).await?;

    let stat = |w: Workload, s: Setup, clients: u32, f: &dyn Fn(&Run) -> f64| {
        Stat::of(
            runs.iter()
                .filter(|(rw, rs, rc, _)| *rw == w && *rs == s && *rc == clients)
                .map(|(_, _, _, r)| f(r))
                .collect(),
        )
    };
    let mut throughput = Vec::new();
    let mut latency = Vec::new();
    for w in workloads {
        let base_tps = stat(w, Setup::Untracked, plan.clients, &|r| r.tps).median;
        let base_wal = stat(w, Setup::Untracked, plan.clients, &|r| r.wal_bytes_per_txn).median;
        let base_latency = stat(w, Setup::Untracked, 1, &|r| r.latency_ms).median;
        for s in ALL {
            let tps = stat(w, s, plan.clients, &|r| r.tps);
            throughput.push(ThroughputRow {
                workload: w,
                setup: s,
                ratio: tps.median / base_tps,
                added_wal_bytes: stat(w, s, plan.clients, &|r| r.wal_bytes_per_txn).median
                    - base_wal,
                tps,
            });
            let latency_ms = stat(w, s, 1, &|r| r.latency_ms);
            latency.push(LatencyRow {
                workload: w,
                setup: s,
                added_us: (latency_ms.median - base_latency) * 1000.0,
                latency_ms,
            });
        }
    }
    let mut bulk = Vec::new();
    for operation in ["UPDATE", "INSERT", "DELETE"] {
        let of = |s: Setup, f: &dyn Fn(&BulkRun) -> Option<f64>| {
            Stat::of(
                bulk_runs
                    .iter()
                    .filter(|r| r.operation == operation && r.setup == s)
                    .filter_map(f)
                    .collect(),
            )
        };
        let rows = plan.bulk_rows as f64;
        let base = of(Setup::Untracked, &|r| Some(r.micros / rows)).median;
        let base_wal = of(Setup::Untracked, &|r| Some(r.wal_bytes / rows)).median;
        for s in ALL {
            let us_per_row = of(s, &|r| Some(r.micros / rows));
            bulk.push(BulkRow {
                operation: operation.into(),
                setup: s,
                added_us_per_row: us_per_row.median - base,
                us_per_row,
                added_wal_bytes_per_row: of(s, &|r| Some(r.wal_bytes / rows)).median - base_wal,
            });
        }
    }
    Ok(WriteReport {
        sizes,
        throughput,
        latency,
        bulk,
    })
}

async fn wal_lsn(client: &Client) -> BenchResult<f64> {
    let row = client
        .query_one(
            "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn pgbench_run(
    pgbench: &std::path::Path,
    options: &ConnectOptions,
    client: &Client,
    script: &std::path::Path,
    clients: u32,
    seconds: u32,
) -> BenchResult<Run> {
    // Equal footing: every run starts after a checkpoint (full-page writes alike). Needs
    // superuser; without it, runs simply share the checkpoint schedule.
    let _ = client.batch_execute("checkpoint").await;
    let wal_before = wal_lsn(client).await?;
    let output = tokio::task::spawn_blocking({
        let mut command = Command::new(pgbench);
        command
            .args(["-n", "-M", "prepared", "-j", "2"])
            .args(["-c", &clients.to_string(), "-T", &seconds.to_string(), "-f"])
            .arg(script)
            .envs(options.libpq_env())
            .env("PGOPTIONS", "-c synchronous_commit=off");
        move || command.output()
    })
    .await??;
    let wal_after = wal_lsn(client).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let number = |prefix: &str| -> BenchResult<f64> {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .ok_or_else(|| format!("pgbench printed no {prefix:?}: {text}"))?;
        Ok(line.split_whitespace().next().unwrap_or("").parse()?)
    };
    let transactions = number("number of transactions actually processed:")?;
    Ok(Run {
        tps: number("tps =")?,
        latency_ms: number("latency average =")?,
        wal_bytes_per_txn: (wal_after - wal_before) / transactions.max(1.0),
    })
}

/// One bulk statement in a transaction that is rolled back, timed by the server.
const BULK_FUNCTION: &str = r#"
create or replace function bench_bulk(operation text, n integer) returns float8 language plpgsql as $$
declare
  started timestamptz;
begin
  perform audit.set_checked_context('{"actor_id":"user-1","actor_type":"user","ip_address":"10.0.0.1","request_id":"req-1"}');
  perform set_config('app.current_user', '{"user_id":"user-1","ip_address":"10.0.0.1"}', true);
  started := clock_timestamp();
  if operation = 'UPDATE' then
    update accounts set abalance = abalance + 1 where id <= n;
  elsif operation = 'INSERT' then
    insert into accounts select -g, 1, 0, '' from generate_series(1, n) g;
  else
    delete from accounts where id > 500000 and id <= 500000 + n;
  end if;
  return extract(epoch from clock_timestamp() - started) * 1e6;
end $$;
"#;

async fn audit_size(client: &Client, setup: Setup) -> BenchResult<f64> {
    let sql = setup
        .audit_relations_sql()
        .expect("a setup that writes audit rows");
    Ok(client.query_one(sql, &[]).await?.get::<_, i64>(0) as f64)
}

/// Bytes per audit row and WAL per change of each capturing setup, from a committed bulk UPDATE
/// into empty audit tables. Runs first, before anything else wrote audit rows.
async fn measure_sizes(client: &Client, rows: i64) -> BenchResult<Vec<SizeRow>> {
    let mut sizes = Vec::new();
    for setup in [Setup::BlogTrigger, Setup::AuditLogs] {
        progress(&format!(
            "sizes: committed UPDATE of {rows} rows with {setup:?}"
        ));
        setups::install(client, setup).await?;
        let before = audit_size(client, setup).await?;
        let wal_before = wal_lsn(client).await?;
        client
            .query_one("select bench_bulk('UPDATE', $1)", &[&(rows as i32)])
            .await?;
        let wal_after = wal_lsn(client).await?;
        sizes.push(SizeRow {
            setup,
            audit_bytes_per_row: (audit_size(client, setup).await? - before) / rows as f64,
            wal_bytes_per_row: (wal_after - wal_before) / rows as f64,
        });
    }
    setups::install(client, Setup::Untracked).await?;
    Ok(sizes)
}

async fn bulk_run(client: &Client, operation: &str, rows: i64) -> BenchResult<(f64, f64)> {
    client.batch_execute("begin").await?;
    let wal_before = wal_lsn(client).await?;
    let micros: f64 = client
        .query_one("select bench_bulk($1, $2)", &[&operation, &(rows as i32)])
        .await?
        .get(0);
    let wal_after = wal_lsn(client).await?;
    client.batch_execute("rollback").await?;
    Ok((micros, wal_after - wal_before))
}

pub fn print(report: &WriteReport) {
    println!("\nSingle-row transactions (each sets a context), pgbench -M prepared:");
    println!(
        "  {:<18} {:<20} {:>9} {:>15} {:>8} {:>12} {:>12}",
        "workload", "setup", "tps", "(min-max)", "ratio", "+latency", "+WAL/txn"
    );
    for row in &report.throughput {
        let latency = report
            .latency
            .iter()
            .find(|l| l.workload == row.workload && l.setup == row.setup)
            .map(|l| l.added_us)
            .unwrap_or(f64::NAN);
        println!(
            "  {:<18} {:<20} {:>9.0} {:>15} {:>7.2}x {:>10.1}µs {:>11.0}B",
            row.workload.name(),
            row.setup.name(),
            row.tps.median,
            format!("({:.0}-{:.0})", row.tps.min, row.tps.max),
            row.ratio,
            latency,
            row.added_wal_bytes
        );
    }
    println!("\nBulk statements (one statement, rolled back), time per row:");
    println!(
        "  {:<8} {:<20} {:>10} {:>22} {:>12}",
        "", "setup", "µs/row", "added µs/row (range)", "+WAL B/row"
    );
    for row in &report.bulk {
        println!(
            "  {:<8} {:<20} {:>10.2} {:>22} {:>12.0}",
            row.operation,
            row.setup.name(),
            row.us_per_row.median,
            format!(
                "{:.2} ({:.1}-{:.1})",
                row.added_us_per_row, row.us_per_row.min, row.us_per_row.max
            ),
            row.added_wal_bytes_per_row
        );
    }
    println!("\nStorage, from a committed UPDATE of 100,000 rows into empty audit tables:");
    for row in &report.sizes {
        println!(
            "  {:<20} {:>6.0} bytes per audit row (table + indexes), {:>5.0} WAL bytes per change",
            row.setup.name(),
            row.audit_bytes_per_row,
            row.wal_bytes_per_row
        );
    }
    println!("\nTargets (issue 14), from the figures above:");
    for target in targets(report) {
        println!(
            "  {:<52} {:>10} {:<24} {}",
            target.name,
            target.measured,
            target.target,
            if target.met { "met" } else { "missed" }
        );
    }
}

/// One target of the benchmark issue, against this run's figures.
pub struct Target {
    pub name: String,
    pub measured: String,
    pub target: String,
    pub met: bool,
}

/// Single-row throughput at least the per-row trigger's (aiming at 0.75x untracked), bulk added
/// cost per row at most half of the per-row trigger's, at most 400 bytes per audit row.
pub fn targets(report: &WriteReport) -> Vec<Target> {
    let mut targets = Vec::new();
    for workload in [Workload::Update, Workload::Insert] {
        let ratio = |setup: Setup| {
            report
                .throughput
                .iter()
                .find(|r| r.workload == workload && r.setup == setup)
                .map_or(f64::NAN, |r| r.ratio)
        };
        let to_trigger = ratio(Setup::AuditLogs) / ratio(Setup::BlogTrigger);
        targets.push(Target {
            name: format!("{}: tps over the per-row trigger's", workload.name()),
            measured: format!("{to_trigger:.2}x"),
            target: ">= 1.00x".into(),
            met: to_trigger >= 1.0,
        });
        targets.push(Target {
            name: format!("{}: tps over untracked (aim)", workload.name()),
            measured: format!("{:.2}x", ratio(Setup::AuditLogs)),
            target: ">= 0.75x".into(),
            met: ratio(Setup::AuditLogs) >= 0.75,
        });
    }
    for operation in ["UPDATE", "INSERT", "DELETE"] {
        let added = |setup: Setup| {
            report
                .bulk
                .iter()
                .find(|r| r.operation == operation && r.setup == setup)
                .map_or(f64::NAN, |r| r.added_us_per_row)
        };
        let (ours, trigger) = (added(Setup::AuditLogs), added(Setup::BlogTrigger));
        targets.push(Target {
            name: format!("bulk {operation}: added µs/row"),
            measured: format!("{ours:.2}"),
            target: format!("<= {:.2} (the per-row trigger's / 2)", trigger / 2.0),
            met: ours <= trigger / 2.0,
        });
    }
    if let Some(size) = report.sizes.iter().find(|s| s.setup == Setup::AuditLogs) {
        targets.push(Target {
            name: "bytes per audit row".into(),
            measured: format!("{:.0}", size.audit_bytes_per_row),
            target: "<= 400".into(),
            met: size.audit_bytes_per_row <= 400.0,
        });
    }
    targets
}
