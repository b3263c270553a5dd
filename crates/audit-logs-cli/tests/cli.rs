//! The `audit-logs` binary as a user runs it.

use assert_cmd::Command;
use audit_logs_core::testing::TestDatabase;
use predicates::prelude::*;

fn audit_logs(url: Option<&str>) -> Command {
    let mut command = Command::cargo_bin("audit-logs").unwrap();
    command.env_remove("DATABASE_URL");
    if let Some(url) = url {
        command.env("DATABASE_URL", url);
    }
    command
}

async fn database() -> TestDatabase {
    TestDatabase::create().await.unwrap()
}

async fn sql(db: &TestDatabase, statements: &str) {
    audit_logs_core::ConnectOptions::parse(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap()
        .batch_execute(statements)
        .await
        .unwrap();
}

#[test]
fn no_arguments_is_a_usage_error() {
    audit_logs(None)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("Usage: audit-logs"));
}

#[test]
fn version_and_help_for_every_command() {
    audit_logs(None)
        .arg("--version")
        .assert()
        .success()
        .stdout(format!("audit-logs {}\n", env!("CARGO_PKG_VERSION")));
    for command in [
        "migrate", "status", "enable", "disable", "tracked", "history", "log", "export", "demo",
        "revert",
    ] {
        audit_logs(None)
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("--database-url"));
    }
}

#[test]
fn unknown_flags_and_missing_arguments_fail() {
    audit_logs(None)
        .args(["migrate", "--nope"])
        .assert()
        .code(2);
    audit_logs(None)
        .args(["enable"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("<TABLE>"));
}

#[test]
fn no_database_url_says_how_to_give_one() {
    audit_logs(None).arg("status").assert().code(1).stderr(
        predicate::str::contains("AUDIT_LOGS_INVALID_URL")
            .and(predicate::str::contains("DATABASE_URL")),
    );
}

#[test]
fn a_bad_url_is_one_line_without_secrets() {
    let assert = audit_logs(Some("postgres://app:hunter2@127.0.0.1:1/db"))
        .arg("status")
        .assert()
        .code(1);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("AUDIT_LOGS_CONNECTION_FAILED"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    audit_logs(None)
        .args(["-D", "mysql://x", "status"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("postgres://"));
}

#[tokio::test]
async fn migrate_status_enable_history_disable() {
    let db = database().await;
    let url = db.url.clone();
    sql(&db, "create table users (id int primary key, email text, password_hash text); create table logs (line text)").await;

    audit_logs(Some(&url))
        .args(["status", "--check"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("pending"));
    audit_logs(Some(&url))
        .args(["migrate", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("create table audit.audit_logs"));
    audit_logs(Some(&url))
        .arg("migrate")
        .assert()
        .success()
        .stdout(predicate::str::contains("applied V1__audit_schema"));
    audit_logs(Some(&url))
        .arg("migrate")
        .assert()
        .success()
        .stdout("Up to date: no migration to apply.\n");
    audit_logs(Some(&url))
        .args(["status", "--check"])
        .assert()
        .success();

    audit_logs(Some(&url))
        .args(["enable", "users", "--exclude", "password_hash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("never storing password_hash"));
    audit_logs(Some(&url))
        .args(["enable", "logs"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("AUDIT_LOGS_NO_PRIMARY_KEY")
                .and(predicate::str::contains("add primary key")),
        );
    audit_logs(Some(&url))
        .args(["enable", "users", "--exclude", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_INVALID_COLUMN"));
    // Enabling again, as `--help` says to after altering the table, keeps the options.
    audit_logs(Some(&url))
        .args(["enable", "users", "--require-context"])
        .assert()
        .success();
    audit_logs(Some(&url))
        .args(["enable", "users"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("never storing password_hash")
                .and(predicate::str::contains("requiring a context")),
        );
    audit_logs(Some(&url))
        .arg("tracked")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("excluding password_hash")
                .and(predicate::str::contains("requiring a context")),
        );
    audit_logs(Some(&url))
        .args(["enable", "users", "--no-require-context"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("never storing password_hash")
                .and(predicate::str::contains("requiring a context").not()),
        );

    sql(
        &db,
        r#"begin; select audit.set_context('{"actor_id": "42", "actor_type": "user"}');
           insert into users values (1, 'a@x.io', 'h'); update users set email = 'b@x.io'; commit;"#,
    )
    .await;
    audit_logs(Some(&url))
        .args(["history", "users", "1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(r#"email: "a@x.io" → "b@x.io""#)
                .and(predicate::str::contains("by user 42")),
        );
    let json = audit_logs(Some(&url))
        .args(["history", "users", "1", "--json"])
        .assert()
        .success();
    let entries: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(entries[0]["action"], "UPDATE");
    assert_eq!(
        entries[1]["newValues"],
        serde_json::json!({"id": 1, "email": "a@x.io"})
    );
    audit_logs(Some(&url))
        .args(["history", "users", "1", "--limit", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_INVALID_ARGUMENT"));

    audit_logs(Some(&url))
        .arg("tracked")
        .assert()
        .success()
        .stdout(predicate::str::contains("public.users"));
    audit_logs(Some(&url))
        .args(["disable", "users"])
        .assert()
        .success()
        .stdout(predicate::str::contains("history is kept"));
    audit_logs(Some(&url))
        .arg("tracked")
        .assert()
        .success()
        .stdout(predicate::str::contains("No tracked tables"));
}

#[tokio::test]
async fn json_errors_carry_the_code() {
    let db = database().await;
    let assert = audit_logs(Some(&db.url))
        .args(["tracked", "--json"])
        .assert()
        .code(1);
    let error: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(error["error"]["code"], "AUDIT_LOGS_NOT_MIGRATED");
    // With the structured fields a JavaScript error has: here the table at fault.
    audit_logs(Some(&db.url)).arg("migrate").assert().success();
    sql(&db, "create table lines (line text)").await;
    let assert = audit_logs(Some(&db.url))
        .args(["enable", "lines", "--json"])
        .assert()
        .code(1);
    let error: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(error["error"]["code"], "AUDIT_LOGS_NO_PRIMARY_KEY");
    assert_eq!(error["error"]["table"], "public.lines");
}

#[test]
fn demo_on_a_throwaway_server() {
    audit_logs(None).arg("demo").assert().success().stdout(
        predicate::str::contains("Starting a throwaway PostgreSQL")
            .and(predicate::str::contains(
                "by moderator mod-7 (reason: upgrade requested in ticket 314)",
            ))
            .and(predicate::str::contains(
                "password_hash: changed (value not stored)",
            ))
            .and(predicate::str::contains("Mallory").not())
            .and(predicate::str::contains(
                "by migration (migration name: 0042_lowercase_emails)",
            ))
            // The cleanup job's delete, undone: a dry run, then the revert, then its entry.
            .and(predicate::str::contains(
                "Would change 1 record(s):\n  insert public.accounts 2",
            ))
            .and(predicate::str::contains(
                "password_hash is not stored in the log",
            ))
            .and(predicate::str::contains(
                "Changed 1 record(s):\n  insert public.accounts 2",
            ))
            .and(predicate::str::contains(
                "INSERT   by user admin-1 (reason: account 2 was deleted by mistake)",
            )),
    );
}

#[tokio::test]
async fn demo_with_a_database_url_uses_and_drops_its_own_database() {
    let db = database().await;
    audit_logs(Some(&db.url))
        .arg("demo")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Dropped database audit_logs_demo_",
        ));
    // The given database itself was not migrated.
    let client = audit_logs_core::ConnectOptions::parse(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let schemas: i64 = client
        .query_one(
            "select count(*) from pg_namespace where nspname = 'audit'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0);
}

#[tokio::test]
async fn log_records_an_event_and_export_streams_jsonl_and_csv() {
    let db = database().await;
    audit_logs(Some(&db.url)).arg("migrate").assert().success();
    sql(&db, "create table notes (id int primary key, body text)").await;
    audit_logs(Some(&db.url))
        .args(["enable", "notes"])
        .assert()
        .success();
    sql(
        &db,
        "insert into notes select g, 'n' || g from generate_series(1, 300) g",
    )
    .await;
    audit_logs(Some(&db.url))
        .args([
            "log",
            "--action",
            "report.exported",
            "--actor",
            "42",
            "--actor-type",
            "user",
        ])
        .args(["--metadata", r#"{"rows": 300}"#, "--ip", "192.0.2.1"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("report.exported").and(predicate::str::contains("by user 42")),
        );

    // JSON lines, oldest first: the 300 inserts, then the event.
    let output = audit_logs(Some(&db.url)).arg("export").output().unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 301);
    assert_eq!(lines[0]["targetId"], "1");
    assert_eq!(
        lines[0]["newValues"],
        serde_json::json!({"id": 1, "body": "n1"})
    );
    assert_eq!(lines[300]["action"], "report.exported");
    assert_eq!(lines[300]["metadata"], serde_json::json!({"rows": 300}));
    assert_eq!(lines[300]["ipAddress"], "192.0.2.1");

    // CSV with filters: a header and one row per matching entry, JSON columns as JSON text.
    let output = audit_logs(Some(&db.url))
        .args([
            "export",
            "--format",
            "csv",
            "--table",
            "notes",
            "--target-id",
            "7",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let mut reader = csv::Reader::from_reader(output.stdout.as_slice());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    assert_eq!(&header[8], "new_values");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][3], "INSERT");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rows[0][8]).unwrap(),
        serde_json::json!({"id": 7, "body": "n7"})
    );

    // A reader that stops early is not an error.
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} export | head -n 2",
            assert_cmd::cargo::cargo_bin("audit-logs").display()
        ))
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().lines().count(), 2);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("error"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn bad_events_and_filters_are_refused_with_their_code() {
    let db = database().await;
    audit_logs(Some(&db.url)).arg("migrate").assert().success();
    for (args, code) in [
        (
            vec!["log", "--action", "UPDATE"],
            "AUDIT_LOGS_INVALID_EVENT",
        ),
        (
            vec!["log", "--action", "ok", "--metadata", "[1]"],
            "AUDIT_LOGS_INVALID_EVENT",
        ),
        (
            vec!["log", "--action", "ok", "--metadata", "{oops"],
            "AUDIT_LOGS_INVALID_ARGUMENT",
        ),
        (
            vec!["log", "--action", "ok", "--ip", "1.2.3"],
            "AUDIT_LOGS_INVALID_CONTEXT",
        ),
        (
            vec!["export", "--from", "last tuesday"],
            "AUDIT_LOGS_INVALID_ARGUMENT",
        ),
        (
            vec!["export", "--metadata-contains", "\"x\""],
            "AUDIT_LOGS_INVALID_ARGUMENT",
        ),
    ] {
        audit_logs(Some(&db.url))
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(format!("error[{code}]")));
    }
    audit_logs(Some(&db.url))
        .args(["export", "--format", "xml"])
        .assert()
        .code(2);
    audit_logs(Some(&db.url)).args(["log"]).assert().code(2);
    let client = audit_logs_core::ConnectOptions::parse(&db.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let n: i64 = client
        .query_one("select count(*) from audit.audit_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing was written");
}

#[test]
fn schema_prints_orm_models() {
    audit_logs(None)
        .args(["schema", "--prisma"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("model AuditLog {")
                .and(predicate::str::contains("@@schema(\"audit\")")),
        );
    audit_logs(None)
        .args(["schema", "--drizzle"])
        .assert()
        .success()
        .stdout(predicate::str::contains("audit.table('audit_logs'"));
    audit_logs(None).arg("schema").assert().code(2);
}

#[tokio::test]
async fn eight_migrate_processes_started_at_once_all_succeed_and_apply_each_migration_once() {
    let db = database().await;
    let binary = assert_cmd::cargo::cargo_bin("audit-logs");
    let processes: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(&binary)
                .arg("migrate")
                .env("DATABASE_URL", &db.url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applying = 0;
    for process in processes {
        let output = process.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "every migrate succeeds: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if stdout.contains("applied V1__audit_schema") {
            applying += 1;
        } else {
            assert_eq!(stdout, "Up to date: no migration to apply.\n");
        }
    }
    assert_eq!(applying, 1, "exactly one process applied the migrations");
    let status = audit_logs_core::AuditLogs::connect(&db.url)
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    assert!(status.is_up_to_date(), "{status:?}");
    assert_eq!(
        status.migrations.len(),
        audit_logs_core::migrate::shipped().len(),
        "each migration is in the history once"
    );
}

#[tokio::test]
async fn a_composite_key_written_with_a_comma_gets_the_json_array_it_meant() {
    let db = database().await;
    sql(&db, "create table memberships (user_id int, org_id int, role text, primary key (user_id, org_id))").await;
    audit_logs(Some(&db.url)).arg("migrate").assert().success();
    audit_logs(Some(&db.url))
        .args(["enable", "memberships"])
        .assert()
        .success();
    sql(&db, "insert into memberships values (2, 1, 'owner')").await;
    audit_logs(Some(&db.url))
        .args(["history", "memberships", "2,1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "A composite key is a JSON array: audit-logs history memberships '[2, 1]'",
        ));
    audit_logs(Some(&db.url))
        .args(["history", "memberships", "[2, 1]"])
        .assert()
        .success()
        .stdout(predicate::str::contains("INSERT"));
}
