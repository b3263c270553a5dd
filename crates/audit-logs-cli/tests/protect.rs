//! `audit-logs seal`, `verify`, `maintain` and `redact` as a user runs them.

use assert_cmd::Command;
use audit_logs_core::testing::TestDatabase;
use predicates::prelude::*;

fn audit_logs(url: &str) -> Command {
    let mut command = Command::cargo_bin("audit-logs").unwrap();
    command
        .env("DATABASE_URL", url)
        .env_remove("AUDIT_LOGS_REDACTION_KEY");
    command
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

async fn migrated_with_rows() -> TestDatabase {
    let db = TestDatabase::create().await.unwrap();
    audit_logs(&db.url).arg("migrate").assert().success();
    sql(&db, "create table users (id int primary key, email text)").await;
    audit_logs(&db.url)
        .args(["enable", "users"])
        .assert()
        .success();
    sql(
        &db,
        r#"begin; select audit.set_context('{"actor_id": "42", "ip_address": "203.0.113.7"}');
           insert into users select g, 'u' || g || '@x.io' from generate_series(1, 20) g; commit;"#,
    )
    .await;
    db
}

#[test]
fn the_protect_commands_have_help() {
    for command in ["seal", "verify", "maintain", "redact", "archive"] {
        Command::cargo_bin("audit-logs")
            .unwrap()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("--database-url"));
    }
}

#[tokio::test]
async fn seal_then_verify_passes_and_tampering_fails_with_status_1() {
    let db = migrated_with_rows().await;
    audit_logs(&db.url)
        .arg("seal")
        .assert()
        .success()
        .stdout(predicate::str::contains("Sealed 20 row(s) as seal #1"));
    audit_logs(&db.url)
        .arg("seal")
        .assert()
        .success()
        .stdout(predicate::str::contains("Nothing to seal"));
    let ok = audit_logs(&db.url)
        .args(["verify", "--json"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&ok.get_output().stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rowsChecked"], 20);
    let head = report["shortHead"].as_str().unwrap().to_owned();
    audit_logs(&db.url)
        .args(["verify", "--against", &head])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Verification OK")
                .and(predicate::str::contains("found in the chain")),
        );

    sql(
        &db,
        "set session_replication_role = replica;
         update audit.audit_logs set new_values = '{\"id\": 3, \"email\": \"evil@x.io\"}' where target_id = '3'",
    )
    .await;
    audit_logs(&db.url).arg("verify").assert().code(1).stdout(
        predicate::str::contains("Verification FAILED")
            .and(predicate::str::contains("changed: 1, missing: 0"))
            .and(predicate::str::contains("was changed after it was sealed")),
    );
    audit_logs(&db.url)
        .args(["verify", "--against", "zz"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_INVALID_ARGUMENT"));
}

#[tokio::test]
async fn configure_saves_the_policy_and_maintain_flags_apply_to_one_run() {
    let db = migrated_with_rows().await;
    sql(
        &db,
        "insert into audit.audit_logs (created_at, action, ip_address) values (now() - interval '40 days', 'test.old', '10.1.2.3')",
    )
    .await;
    audit_logs(&db.url)
        .args([
            "configure",
            "--retention-months",
            "24",
            "--anonymize-after-days",
            "30",
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Retention: 24 months")
                .and(predicate::str::contains("after 30 days")),
        );
    audit_logs(&db.url)
        .arg("maintain")
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Partitions dropped (older than 24 months): none")
                .and(predicate::str::contains(
                    "Rows anonymized (older than 30 days): 1",
                ))
                // 20 rows, the old one, and the settings_changed event of configure.
                .and(predicate::str::contains("Rows sealed: 22")),
        );
    let maintain_json = |args: &[&str]| {
        let run = audit_logs(&db.url)
            .args(["maintain", "--json"])
            .args(args)
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&run.get_output().stdout).unwrap()
    };
    // A flag is for its run: the next run without it applies the saved policy again.
    let once = maintain_json(&["--retention-months", "12"]);
    assert_eq!(once["retentionMonths"], 12);
    let report = maintain_json(&[]);
    assert_eq!(report["retentionMonths"], 24);
    assert_eq!(report["anonymizeAfterDays"], 30);
    assert_eq!(report["rowsAnonymized"], 0);
    audit_logs(&db.url)
        .args(["configure", "--retention-months", "5000"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_INVALID_SETTINGS"));
    audit_logs(&db.url).arg("verify").assert().success();
}

#[tokio::test]
async fn redact_takes_its_key_from_the_environment() {
    let db = migrated_with_rows().await;
    audit_logs(&db.url)
        .args(["redact", "--actor", "42"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_REDACTION_KEY"));
    audit_logs(&db.url)
        .args(["redact", "--actor", "42", "--target-type", "public.users"])
        .assert()
        .code(2);
    audit_logs(&db.url)
        .args(["redact", "--actor", "42", "--reason", "ticket 7"])
        .env(
            "AUDIT_LOGS_REDACTION_KEY",
            "a secret of at least sixteen bytes",
        )
        .assert()
        .success()
        .stdout(predicate::str::contains("Redacted 20 row(s)"));
    audit_logs(&db.url)
        .args([
            "redact",
            "--target-type",
            "public.users",
            "--target-id",
            "3",
            "--field",
            "values.email",
        ])
        .env(
            "AUDIT_LOGS_REDACTION_KEY",
            "a secret of at least sixteen bytes",
        )
        .assert()
        .success()
        .stdout(predicate::str::contains("Redacted 1 row(s) (values.email)"));
    audit_logs(&db.url)
        .args(["history", "users", "3"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hmac:").and(predicate::str::contains("u3@x.io").not()));
    audit_logs(&db.url).arg("seal").assert().success();
    audit_logs(&db.url).arg("verify").assert().success();
}

/// `archive --to file:///dir --then-drop`, then `verify --archive` as an auditor runs it: with
/// no database at all, and joined to the live chain.
#[tokio::test]
async fn archive_then_verify_the_archive_without_the_database() {
    let db = migrated_with_rows().await;
    sql(
        &db,
        "insert into audit.audit_logs (created_at, action, actor_id)
         select date_trunc('month', now()) - interval '2 months' + g * interval '1 hour', 'test.old', 'u' || g
           from generate_series(1, 30) g;
         select audit.maintain(anonymize_after_days => 0);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let to = format!("file://{}", dir.path().display());
    audit_logs(&db.url)
        .args([
            "archive",
            "--to",
            &to,
            "--older-than-months",
            "1",
            "--then-drop",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("Months dropped: "))
        .stdout(predicate::str::contains("Rows: 30,"));
    // Re-run: nothing left to do, and --json gives the report's keys.
    audit_logs(&db.url)
        .args(["--json", "archive", "--to", &to])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"monthsArchived\": []"));

    let auditor = || {
        let mut command = Command::cargo_bin("audit-logs").unwrap();
        command.env_remove("DATABASE_URL").current_dir(dir.path());
        command
    };
    auditor()
        .args(["verify", "--archive", &to])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Archive verification OK: 30 row(s) of 1 month(s)",
        ));
    audit_logs(&db.url)
        .args(["verify", "--archive", &to])
        .assert()
        .success()
        .stdout(predicate::str::contains("joined to the live chain"));
    audit_logs(&db.url).arg("verify").assert().success();

    // A file changed: status 1, and the row named.
    let month = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let file = month.join("part-0000.parquet");
    let mut rows =
        audit_logs_core::archive::format::read_rows(std::fs::read(&file).unwrap()).unwrap();
    rows[4].action = "test.forged".into();
    let id = rows[4].id;
    std::fs::write(
        &file,
        audit_logs_core::archive::format::write_rows(&rows).unwrap(),
    )
    .unwrap();
    auditor()
        .args(["verify", "--archive", &to])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!("row {id} ")));

    // Another scheme is refused, naming the two it takes; a lock needs its days, and S3.
    audit_logs(&db.url)
        .args(["archive", "--to", "gs://bucket/audit"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_ARCHIVE_UNSUPPORTED"))
        .stderr(predicate::str::contains("s3://bucket/prefix"));
    audit_logs(&db.url)
        .args(["archive", "--to", &to, "--lock-mode", "compliance"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--lock-days"));
    audit_logs(&db.url)
        .args([
            "archive",
            "--to",
            &to,
            "--lock-mode",
            "compliance",
            "--lock-days",
            "7",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("AUDIT_LOGS_ARCHIVE_UNSUPPORTED"))
        .stderr(predicate::str::contains("Object Lock"));
}

/// `archive --to s3://...` and `verify --archive s3://...` as a deployment runs them, against a
/// real S3-compatible server: credentials, region and endpoint from an AWS profile (the files
/// `aws configure` writes), none in the environment; without credentials, a storage error.
#[tokio::test]
async fn archive_to_s3_with_a_profile_and_verify_it_from_the_bucket() {
    let db = migrated_with_rows().await;
    sql(
        &db,
        "insert into audit.audit_logs (created_at, action, actor_id)
         select date_trunc('month', now()) - interval '2 months' + g * interval '1 hour', 'test.old', 'u' || g
           from generate_series(1, 30) g;
         select audit.maintain(anonymize_after_days => 0);",
    )
    .await;
    let moto = audit_logs_core::testing::S3Server::start();
    moto.create_bucket("locked", true).await;
    let home = tempfile::tempdir().unwrap();
    let (config, credentials) = (home.path().join("config"), home.path().join("credentials"));
    std::fs::write(
        &config,
        format!(
            "[profile archiver]\nregion = eu-west-3\nendpoint_url = {}\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    std::fs::write(
        &credentials,
        "[archiver]\naws_access_key_id = AKIDARCHIVER\naws_secret_access_key = archiver-secret\n",
    )
    .unwrap();
    let aws = |command: &mut Command| {
        command
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_PROFILE", "archiver")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ] {
            command.env_remove(name);
        }
    };
    let to = "s3://locked/audit";
    let mut archive = audit_logs(&db.url);
    aws(&mut archive);
    archive
        .args([
            "archive",
            "--to",
            to,
            "--older-than-months",
            "1",
            "--lock-mode",
            "governance",
            "--lock-days",
            "7",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("Objects locked until: "));
    let mut verify = Command::cargo_bin("audit-logs").unwrap();
    aws(&mut verify);
    verify
        .env_remove("DATABASE_URL")
        .args(["verify", "--archive", to])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Archive verification OK: 30 row(s)",
        ));

    // No credentials anywhere: the SDK's own message, under the storage code.
    let mut anonymous = Command::cargo_bin("audit-logs").unwrap();
    aws(&mut anonymous);
    anonymous
        .env_remove("DATABASE_URL")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", home.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
        .args([
            "verify",
            "--archive",
            &format!("{to}?endpoint={}", moto.endpoint()),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "AUDIT_LOGS_ARCHIVE_STORAGE_FAILED",
        ))
        .stderr(predicate::str::contains(
            "no providers in chain provided credentials",
        ));
}
