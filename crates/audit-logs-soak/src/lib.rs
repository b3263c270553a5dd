//! The soak test: many concurrent writers on several tracked tables (composite keys, key
//! changes, bulk statements, TRUNCATE, an excluded column), each with its own actor, with random
//! rollbacks and savepoints. Afterwards it proves the log's promises:
//! - exact accounting: each committed transaction has exactly the audit rows of the row changes
//!   it made, and each rolled-back transaction (or savepoint) has none;
//! - attribution: every audit row names the writer whose transaction made it;
//! - replay: each table rebuilt from the audit log alone equals the live table, row for row.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use audit_logs_core::{AuditContext, AuditLogs, ConnectOptions, TrackingOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, Transaction};

pub type SoakResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub writers: usize,
    /// Each writer stops after this long...
    pub duration: Duration,
    /// ...or after this many transactions, whichever comes first.
    pub transactions_per_writer: usize,
    pub seed: u64,
}

/// What happened and what was checked.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    pub writers: usize,
    pub seconds: f64,
    pub transactions_committed: u64,
    pub transactions_rolled_back: u64,
    pub savepoints_rolled_back: u64,
    pub row_changes_committed: u64,
    pub audit_rows: u64,
    /// Transactions whose audit rows differ in number from the changes they committed.
    pub accounting_errors: Vec<String>,
    /// Audit rows attributed to another writer than the one whose transaction made them.
    pub attribution_errors: u64,
    /// Rows that differ between a table and its replay from the log, per table.
    pub replay_differences: BTreeMap<String, u64>,
    pub rows_replayed: u64,
}

impl SoakReport {
    /// Nothing lost, nothing extra, nothing misattributed, every table replayed exactly.
    pub fn passed(&self) -> bool {
        self.accounting_errors.is_empty()
            && self.attribution_errors == 0
            && self.replay_differences.values().all(|n| *n == 0)
            && self.transactions_committed > 0
    }
}

const TABLES: &str = "
  create table soak_accounts (id bigint primary key, owner text not null, balance int not null, secret text);
  create table soak_lines (order_id bigint, line int, qty int not null, primary key (order_id, line));
  create table \"Soak Tags\" (id bigint primary key, label text not null);
  create table soak_scratch (id bigint primary key, note text);";

/// Each tracked table: its name in SQL, and how to select its rows as the log keys them, as
/// they would be replayed (the excluded column left out).
const REPLAYED: [(&str, &str, &str); 4] = [
    ("soak_accounts", "id::text", "to_jsonb(t) - 'secret'"),
    (
        "soak_lines",
        "jsonb_build_array(order_id, line)::text",
        "to_jsonb(t)",
    ),
    ("\"Soak Tags\"", "id::text", "to_jsonb(t)"),
    ("soak_scratch", "id::text", "to_jsonb(t)"),
];

/// Creates and tracks the tables on a migrated database.
pub async fn prepare(url: &str) -> SoakResult<()> {
    let audit = AuditLogs::connect(url).await?;
    audit.migrate(false).await?;
    connect(url).await?.batch_execute(TABLES).await?;
    for (table, _, _) in REPLAYED {
        let options = TrackingOptions {
            exclude_columns: if table == "soak_accounts" {
                vec!["secret".into()]
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        audit.enable_tracking(&table.into(), &options).await?;
    }
    audit.close();
    Ok(())
}

async fn connect(url: &str) -> SoakResult<Client> {
    Ok(ConnectOptions::parse(url)?.connect().await?)
}

/// Runs the writers on a prepared database, then checks everything.
pub async fn run(url: &str, options: &SoakOptions) -> SoakResult<SoakReport> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..options.writers {
        let url = url.to_owned();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            Writer::new(writer, &options).run(&url, &options).await
        }));
    }
    let mut report = SoakReport {
        writers: options.writers,
        ..Default::default()
    };
    let mut expected: HashMap<String, (usize, u64)> = HashMap::new();
    for task in tasks {
        let writer = task.await??;
        report.transactions_committed += writer.committed;
        report.transactions_rolled_back += writer.rolled_back;
        report.savepoints_rolled_back += writer.savepoints_rolled_back;
        for (request, changes) in writer.expected {
            report.row_changes_committed += changes;
            expected.insert(request, (writer.id, changes));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    check(url, &expected, &mut report).await?;
    Ok(report)
}

/// Accounting, attribution and replay.
async fn check(
    url: &str,
    expected: &HashMap<String, (usize, u64)>,
    report: &mut SoakReport,
) -> SoakResult<()> {
    let client = connect(url).await?;
    let rows = client
        .query(
            "select request_id, actor_id, count(*) from audit.audit_logs group by request_id, actor_id",
            &[],
        )
        .await?;
    let mut found: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        let request: Option<String> = row.get(0);
        let actor: Option<String> = row.get(1);
        let count = row.get::<_, i64>(2) as u64;
        report.audit_rows += count;
        let request = request.unwrap_or_else(|| "(none)".into());
        match expected.get(&request) {
            Some((writer, _)) if actor.as_deref() == Some(&writer_name(*writer)) => {}
            _ => report.attribution_errors += count,
        }
        *found.entry(request).or_default() += count;
    }
    for (request, (_, changes)) in expected {
        let logged = found.remove(request).unwrap_or(0);
        if logged != *changes {
            report.accounting_errors.push(format!(
                "{request}: {changes} changes committed, {logged} audit rows"
            ));
        }
    }
    // Rows of transactions that rolled back, or that nobody made.
    for (request, logged) in found {
        report
            .accounting_errors
            .push(format!("{request}: not committed, yet {logged} audit rows"));
    }

    let audit = AuditLogs::connect(url).await?;
    let tracked = audit.tracked_tables().await?;
    audit.close();
    for (table, key, row) in REPLAYED {
        let target_type = &tracked
            .iter()
            .find(|t| t.name == table.trim_matches('"'))
            .ok_or_else(|| format!("{table} is not tracked"))?
            .target_type;
        let entries = client
            .query(
                "select action, target_id, old_target_id, new_values from audit.audit_logs
                  where target_type = $1 order by id",
                &[target_type],
            )
            .await?;
        let mut replayed: HashMap<String, Value> = HashMap::new();
        for entry in &entries {
            let action: String = entry.get(0);
            let target: String = entry.get(1);
            let old_target: Option<String> = entry.get(2);
            match action.as_str() {
                "INSERT" => {
                    replayed.insert(target, entry.get(3));
                }
                "UPDATE" => {
                    if let Some(old) = old_target {
                        replayed.remove(&old);
                    }
                    replayed.insert(target, entry.get(3));
                }
                "DELETE" | "TRUNCATE" => {
                    replayed.remove(&target);
                }
                other => return Err(format!("unexpected action {other} on {table}").into()),
            }
        }
        report.rows_replayed += entries.len() as u64;
        let live = client
            .query(&format!("select {key}, {row} from {table} t"), &[])
            .await?;
        let mut differences = 0u64;
        for row in &live {
            let key: String = row.get(0);
            let value: Value = row.get(1);
            if replayed.remove(&key) != Some(value) {
                differences += 1;
            }
        }
        differences += replayed.len() as u64;
        report
            .replay_differences
            .insert(table.to_owned(), differences);
    }
    Ok(())
}

/// Failures a busy database gives a correct program: deadlocks, serialization failures.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| ["40P01", "40001"].contains(&db.code().code()))
}

fn writer_name(id: usize) -> String {
    format!("writer-{id}")
}

/// One writer: its own key band in every table, so writers never wait on each other's rows
/// (they still share pages, indexes, the audit table and the TRUNCATEd scratch table).
struct Writer {
    id: usize,
    rng: StdRng,
    band: i64,
    next_account: i64,
    next_order: i64,
    next_tag: i64,
    tag_shifts: u32,
    committed: u64,
    rolled_back: u64,
    savepoints_rolled_back: u64,
    /// Request id of each committed transaction and its row changes.
    expected: Vec<(String, u64)>,
}

const BAND: i64 = 10_000_000;

impl Writer {
    fn new(id: usize, options: &SoakOptions) -> Writer {
        let band = (id as i64 + 1) * BAND;
        Writer {
            id,
            rng: StdRng::seed_from_u64(
                options.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            band,
            next_account: band,
            next_order: band,
            next_tag: band,
            tag_shifts: 0,
            committed: 0,
            rolled_back: 0,
            savepoints_rolled_back: 0,
            expected: Vec::new(),
        }
    }

    async fn run(mut self, url: &str, options: &SoakOptions) -> SoakResult<Writer> {
        let mut client = connect(url).await?;
        let deadline = Instant::now() + options.duration;
        let mut n = 0;
        while n < options.transactions_per_writer && Instant::now() < deadline {
            let request = format!("w{}-t{n}", self.id);
            let mut tx = client.transaction().await?;
            match self.transaction(&mut tx, &request).await {
                Ok(Some(changes)) => {
                    tx.commit().await?;
                    self.committed += 1;
                    self.expected.push((request, changes));
                }
                Ok(None) => {
                    tx.rollback().await?;
                    self.rolled_back += 1;
                }
                // A deadlock with another writer's TRUNCATE, say: the transaction failed and
                // rolled back, so it must leave no audit row either.
                Err(e) if is_transient(&e) => {
                    drop(tx);
                    self.rolled_back += 1;
                }
                Err(e) => return Err(e.into()),
            }
            n += 1;
        }
        Ok(self)
    }

    /// One transaction's statements: `Some(changes)` to commit, `None` to roll back.
    async fn transaction(
        &mut self,
        tx: &mut Transaction<'_>,
        request: &str,
    ) -> Result<Option<u64>, tokio_postgres::Error> {
        let who = AuditContext {
            actor_id: Some(writer_name(self.id)),
            actor_type: Some("system".into()),
            request_id: Some(request.to_owned()),
            ..Default::default()
        };
        let setting = who
            .to_setting()
            .expect("a valid context")
            .unwrap_or_default();
        tx.execute("select set_config('audit.context', $1, true)", &[&setting])
            .await?;
        let mut changes = 0;
        for _ in 0..self.rng.random_range(1..=4) {
            changes += self.operation(tx).await?;
        }
        if self.rng.random_bool(0.3) {
            // A savepoint whose work is kept or undone.
            let savepoint = tx.savepoint("soak").await?;
            let undone = self.operation(&savepoint).await?;
            if self.rng.random_bool(0.5) {
                savepoint.rollback().await?;
                self.savepoints_rolled_back += 1;
            } else {
                savepoint.commit().await?;
                changes += undone;
            }
        }
        Ok((!self.rng.random_bool(0.2)).then_some(changes))
    }

    /// One random statement; returns the row changes it made (the audit rows it must leave).
    async fn operation(&mut self, tx: &Transaction<'_>) -> Result<u64, tokio_postgres::Error> {
        let band = self.band;
        let end = band + BAND;
        let n = match self.rng.random_range(0..100) {
            // Bulk insert of accounts, with the excluded column filled.
            0..=19 => {
                let count = self.rng.random_range(1..=40);
                let first = self.next_account;
                self.next_account += count;
                tx.execute(
                    "insert into soak_accounts select g, 'owner-' || g, 0, md5(g::text)
                       from generate_series($1::bigint, $2::bigint) g",
                    &[&first, &(first + count - 1)],
                )
                .await?
            }
            // Bulk update (always a change: skip-unchanged must not hide it).
            20..=34 => {
                let from = self.rng.random_range(band..=self.next_account.max(band));
                tx.execute(
                    "update soak_accounts set balance = balance + 1, secret = md5(random()::text)
                      where id between $1 and $1 + 20 and id < $2",
                    &[&from, &end],
                )
                .await?
            }
            35..=41 => {
                let id = self.rng.random_range(band..=self.next_account.max(band));
                tx.execute("delete from soak_accounts where id = $1", &[&id])
                    .await?
            }
            // Composite keys: an order's lines.
            42..=54 => {
                let order = self.next_order;
                self.next_order += 1;
                let lines = self.rng.random_range(1..=5);
                tx.execute(
                    "insert into soak_lines select $1, g, g from generate_series(1, $2::int) g",
                    &[&order, &lines],
                )
                .await?
            }
            55..=64 => {
                let order = self.rng.random_range(band..=self.next_order.max(band));
                tx.execute(
                    "update soak_lines set qty = qty + 1 where order_id = $1",
                    &[&order],
                )
                .await?
            }
            65..=69 => {
                let order = self.rng.random_range(band..=self.next_order.max(band));
                tx.execute(
                    "delete from soak_lines where order_id = $1 and line = 1",
                    &[&order],
                )
                .await?
            }
            // Tags, with ids ten apart so that a bulk key change can shift them all.
            70..=79 => {
                let count = self.rng.random_range(1..=10);
                let first = self.next_tag;
                self.next_tag += count * 10;
                tx.execute(
                    "insert into \"Soak Tags\" select $1 + g * 10, 'tag-' || g from generate_series(0, $2::bigint - 1) g",
                    &[&first, &count],
                )
                .await?
            }
            80..=84 if self.tag_shifts < 5 => {
                self.tag_shifts += 1;
                tx.execute(
                    "update \"Soak Tags\" set id = id + 1 where id >= $1 and id < $2",
                    &[&band, &end],
                )
                .await?
            }
            85..=96 => {
                let id = self.band * 10 + self.rng.random_range(0..1000);
                tx.execute(
                    "insert into soak_scratch values ($1, 'scratch') on conflict (id) do nothing",
                    &[&id],
                )
                .await?
            }
            // TRUNCATE of a table every writer writes: its rows, whoever wrote them, are recorded
            // as truncated by this writer.
            97..=99 => {
                tx.batch_execute("lock table soak_scratch in access exclusive mode")
                    .await?;
                let rows: i64 = tx
                    .query_one("select count(*) from soak_scratch", &[])
                    .await?
                    .get(0);
                tx.batch_execute("truncate soak_scratch").await?;
                rows as u64
            }
            _ => 0,
        };
        Ok(n)
    }
}
