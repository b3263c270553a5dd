//! The soak test: many concurrent writers on several tracked tables (composite keys, key
//! changes, bulk statements, TRUNCATE, an excluded column), each with its own actor, with random
//! rollbacks and savepoints. Afterwards it proves the log's promises:
//! - exact accounting: each committed transaction has exactly the audit rows of the row changes
//!   it made, and each rolled-back transaction (or savepoint) has none;
//! - attribution: every audit row names the writer whose transaction made it;
//! - replay: each table rebuilt from the audit log alone equals the live table, row for row;
//! - tamper evidence: the log, sealed while the writers ran, verifies.
//!
//! With faults, writers' backends are terminated at random and the server is crashed and
//! restarted while they write. Each transaction also writes its request id to an untracked
//! table, a witness committed with it or not at all: so even a transaction whose connection
//! was lost while its COMMIT was in flight is accounted exactly, committed with all its audit
//! rows or gone with all of them. (Not `txid_status`: after a crash, the id of a transaction
//! that never reached the WAL is handed out again, and would report another's fate.)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_logs_core::error::ends_connection;
use audit_logs_core::temporary::Setup;
use audit_logs_core::{
    AuditContext, AuditLogs, ConnectOptions, Shutdown, TemporaryPostgres, TrackingOptions,
    VerifyOptions,
};
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
    pub faults: Faults,
}

/// Faults injected while the writers run.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Terminate a random writer's backend this often.
    pub kill_every: Option<Duration>,
    /// Crash this server (immediate shutdown) and start it again this often.
    pub restart_every: Option<(Duration, Arc<TemporaryPostgres>)>,
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
    pub backends_killed: u64,
    pub server_restarts: u64,
    /// Transactions whose connection was lost (resolved by their witness row)...
    pub transactions_interrupted: u64,
    /// ...of which this many while their COMMIT was in flight...
    pub commits_in_doubt: u64,
    /// ...and of those, this many had committed.
    pub commits_in_doubt_committed: u64,
    /// Seals taken while the writers ran (some may have been cut short by a fault).
    pub seals: u64,
    /// Whether the log, sealed after the writers stopped, verified; and the rows it checked.
    pub verified: bool,
    pub rows_verified: u64,
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
            && self.verified
            && self.rows_verified == self.audit_rows
            && self.transactions_committed > 0
    }
}

const TABLES: &str = "
  create table soak_accounts (id bigint primary key, owner text not null, balance int not null, secret text);
  create table soak_lines (order_id bigint, line int, qty int not null, primary key (order_id, line));
  create table \"Soak Tags\" (id bigint primary key, label text not null);
  create table soak_scratch (id bigint primary key, note text);
  create table soak_commits (request text primary key);";

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

/// A throwaway server to crash: it keeps every commit it acknowledged through a crash (the
/// default throwaway server turns `synchronous_commit` off, and would lose some).
pub async fn crash_safe_server() -> SoakResult<Arc<TemporaryPostgres>> {
    let setup = Setup {
        settings: vec![("synchronous_commit".into(), "on".into())],
        ..Default::default()
    };
    Ok(Arc::new(TemporaryPostgres::start_with(setup).await?))
}

/// Creates and tracks the tables on a migrated database.
pub async fn prepare(url: &str) -> SoakResult<()> {
    let audit = AuditLogs::connect(url).await?;
    audit.migrate(false).await?;
    connect(url).await?.batch_execute(TABLES).await?;
    for (table, _, _) in REPLAYED {
        let options = TrackingOptions {
            exclude_columns: (table == "soak_accounts").then(|| vec!["secret".into()]),
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

/// Connects, retrying while the server restarts.
async fn reconnect(url: &str) -> SoakResult<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Whether a transaction whose connection was lost committed: once its backend is gone (a
/// terminated backend rolls back before it exits), its witness row tells.
async fn committed(url: &str, backend: i32, request: &str) -> SoakResult<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = reconnect(url).await?;
    loop {
        let answer = client
            .query_one(
                "select exists (select from pg_stat_activity where pid = $1),
                        exists (select from soak_commits where request = $2)",
                &[&backend, &request],
            )
            .await;
        match answer {
            Ok(row) if !row.get::<_, bool>(0) => return Ok(row.get(1)),
            Ok(_) if Instant::now() > deadline => {
                return Err(format!("backend {backend} still running after a minute").into())
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            // The server restarted under us.
            Err(e) if ends_connection(&e) => client = reconnect(url).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the writers on a prepared database (and the faults, if any), then checks everything.
pub async fn run(url: &str, options: &SoakOptions) -> SoakResult<SoakReport> {
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = Vec::new();
    for writer in 0..options.writers {
        let url = url.to_owned();
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            Writer::new(writer, &options).run(&url, &options).await
        }));
    }
    let sealer = tokio::spawn(seal_while_writing(url.to_owned(), deadline));
    let killer = options
        .faults
        .kill_every
        .map(|every| tokio::spawn(kill_writers(url.to_owned(), every, deadline)));
    let restarter = options
        .faults
        .restart_every
        .clone()
        .map(|(every, server)| tokio::spawn(restart_server(server, every, deadline)));

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
        report.transactions_interrupted += writer.interrupted;
        report.commits_in_doubt += writer.commits_in_doubt;
        report.commits_in_doubt_committed += writer.commits_in_doubt_committed;
        for (request, changes) in writer.expected {
            report.row_changes_committed += changes;
            expected.insert(request, (writer.id, changes));
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(killer) = killer {
        report.backends_killed = killer.await??;
    }
    if let Some(restarter) = restarter {
        report.server_restarts = restarter.await??;
    }
    report.seals = sealer.await??;
    check(url, &expected, &mut report).await?;

    let audit = AuditLogs::connect(url).await?;
    audit.seal().await?;
    let verified = audit.verify(&VerifyOptions::default()).await?;
    audit.close();
    report.verified = verified.ok;
    report.rows_verified = u64::try_from(verified.rows_checked).unwrap_or(0);
    Ok(report)
}

/// Seals the log every second while the writers run: seals must never skip or split a
/// transaction that is still writing. Returns how many seals completed; faults may cut some
/// short, which must leave nothing behind (the final verify checks), and the pool must drop
/// the dead connection so that the next seal works.
async fn seal_while_writing(url: String, deadline: Instant) -> SoakResult<u64> {
    let audit = AuditLogs::connect(&url).await?;
    let mut seals = 0;
    while Instant::now() + Duration::from_secs(1) < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if audit.seal().await.is_ok() {
            seals += 1;
        }
    }
    audit.close();
    Ok(seals)
}

/// Terminates a random writer's backend every `every`; returns how many it killed.
async fn kill_writers(url: String, every: Duration, deadline: Instant) -> SoakResult<u64> {
    let mut killed = 0;
    let mut client = reconnect(&url).await?;
    while Instant::now() + every < deadline {
        tokio::time::sleep(every).await;
        let victim = client
            .query_opt(
                "select pg_terminate_backend(pid) from pg_stat_activity
                  where datname = current_database() and application_name = $1
                  order by random() limit 1",
                &[&WRITER_APPLICATION],
            )
            .await;
        match victim {
            Ok(Some(row)) if row.get::<_, bool>(0) => killed += 1,
            Ok(_) => {}
            // The server restarted under us.
            Err(e) if ends_connection(&e) => client = reconnect(&url).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(killed)
}

/// Crashes and restarts the server every `every`; returns how many times.
async fn restart_server(
    server: Arc<TemporaryPostgres>,
    every: Duration,
    deadline: Instant,
) -> SoakResult<u64> {
    let mut restarts = 0;
    while Instant::now() + every < deadline {
        tokio::time::sleep(every).await;
        server.restart(Shutdown::Immediate).await?;
        restarts += 1;
    }
    Ok(restarts)
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

/// How the fault injector recognises writers' backends.
const WRITER_APPLICATION: &str = "audit-logs-soak-writer";

/// A transaction that failed: its error, and (when it failed at COMMIT) the changes it was
/// committing.
struct Failure {
    error: tokio_postgres::Error,
    committing: Option<u64>,
}

impl Failure {
    fn before_commit(error: tokio_postgres::Error) -> Failure {
        Failure {
            error,
            committing: None,
        }
    }
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
    interrupted: u64,
    commits_in_doubt: u64,
    commits_in_doubt_committed: u64,
    /// The process id of the writer's backend.
    backend: i32,
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
            interrupted: 0,
            commits_in_doubt: 0,
            commits_in_doubt_committed: 0,
            backend: 0,
            expected: Vec::new(),
        }
    }

    async fn run(mut self, url: &str, options: &SoakOptions) -> SoakResult<Writer> {
        let deadline = Instant::now() + options.duration;
        let mut client: Option<Client> = None;
        let mut n = 0;
        while n < options.transactions_per_writer && Instant::now() < deadline {
            let connection = match &mut client {
                Some(connection) if !connection.is_closed() => connection,
                _ => {
                    let connection = reconnect(url).await?;
                    match connection
                        .query_one(
                            "select set_config('application_name', $1, false), pg_backend_pid()",
                            &[&WRITER_APPLICATION],
                        )
                        .await
                    {
                        Ok(row) => self.backend = row.get(1),
                        Err(e) if ends_connection(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    client.insert(connection)
                }
            };
            let request = format!("w{}-t{n}", self.id);
            n += 1;
            match self.attempt(connection, &request).await {
                Ok(Some(changes)) => {
                    self.committed += 1;
                    self.expected.push((request, changes));
                }
                Ok(None) => self.rolled_back += 1,
                // A deadlock with another writer's TRUNCATE, say: the transaction failed and
                // rolled back, so it must leave no audit row either.
                Err(failure) if is_transient(&failure.error) => self.rolled_back += 1,
                Err(failure) if ends_connection(&failure.error) => {
                    client = None;
                    self.interrupted += 1;
                    self.resolve(url, request, failure.committing).await?;
                }
                Err(failure) => return Err(failure.error.into()),
            }
        }
        Ok(self)
    }

    /// One transaction, committed or rolled back as `transaction` decides.
    async fn attempt(
        &mut self,
        client: &mut Client,
        request: &str,
    ) -> Result<Option<u64>, Failure> {
        let mut tx = client.transaction().await.map_err(Failure::before_commit)?;
        match self
            .transaction(&mut tx, request)
            .await
            .map_err(Failure::before_commit)?
        {
            Some(changes) => {
                tx.commit().await.map_err(|error| Failure {
                    error,
                    committing: Some(changes),
                })?;
                Ok(Some(changes))
            }
            None => {
                tx.rollback().await.map_err(Failure::before_commit)?;
                Ok(None)
            }
        }
    }

    /// Accounts for a transaction whose connection was lost, by its witness row.
    async fn resolve(
        &mut self,
        url: &str,
        request: String,
        committing: Option<u64>,
    ) -> SoakResult<()> {
        if committing.is_some() {
            self.commits_in_doubt += 1;
        }
        let committed = committed(url, self.backend, &request).await?;
        match (committed, committing) {
            (true, Some(changes)) => {
                self.commits_in_doubt_committed += 1;
                self.committed += 1;
                self.expected.push((request, changes));
            }
            (true, None) => {
                return Err(format!(
                    "{request} committed although its connection was lost before its COMMIT"
                )
                .into())
            }
            (false, _) => self.rolled_back += 1,
        }
        Ok(())
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
        // The witness comes with the context, in the same round trip.
        tx.execute(
            "with witness as (insert into soak_commits values ($2))
             select audit.set_checked_context($1)",
            &[&setting, &request],
        )
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
