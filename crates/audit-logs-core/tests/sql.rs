//! SQL-level regression tests (as supa_audit keeps them): each tests/sql/NAME.sql runs through
//! psql on a fresh, migrated database and its output must equal tests/expected/NAME.out.
//! `UPDATE_EXPECTED=1 cargo test --test sql` rewrites the expected files; review the diff.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn run(name: &str) {
    let f = common::migrated().await;
    // Roles are cluster-wide: each run gets its own, shown as "app_role" in the output.
    let role = f.db.create_role("app").await.unwrap();
    let owner = audit_logs_core::ConnectOptions::parse(&f.db.url).unwrap();
    let owner = owner.user();
    let psql = audit_logs_core::temporary::find_bin_dir()
        .unwrap()
        .join("psql");
    // One pipe for stdout and stderr, so errors stay next to the statements that caused them.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut child = Command::new(psql)
        .args([
            "-X",
            "-a",
            "-q",
            "-v",
            "ON_ERROR_STOP=0",
            "-P",
            "pager=off",
            "-d",
            &f.db.url,
        ])
        .args(["-v", &format!("app={role}"), "-f", &format!("{name}.sql")])
        .current_dir(repo().join("tests/sql"))
        .env("PGTZ", "UTC")
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .expect("psql runs");
    let mut actual = String::new();
    std::io::Read::read_to_string(&mut reader, &mut actual).unwrap();
    child.wait().unwrap();
    let actual = actual
        .replace(&role, "app_role")
        .replace(&format!("({owner})"), "(OWNER)");
    let expected_path = repo().join("tests/expected").join(format!("{name}.out"));
    if std::env::var_os("UPDATE_EXPECTED").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if actual != expected {
        panic!(
            "tests/sql/{name}.sql: output differs from tests/expected/{name}.out\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    }
}

#[tokio::test]
async fn capture() {
    run("capture").await;
}

#[tokio::test]
async fn errors() {
    run("errors").await;
}

#[tokio::test]
async fn events() {
    run("events").await;
}

#[tokio::test]
async fn privileges() {
    run("privileges").await;
}

#[tokio::test]
async fn protect() {
    run("protect").await;
}

#[test]
fn every_sql_file_has_a_test_and_an_expected_output() {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("tests/sql"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["capture", "errors", "events", "privileges", "protect"],
        "add a #[tokio::test] for each new file"
    );
    for name in names {
        assert!(
            repo()
                .join("tests/expected")
                .join(format!("{name}.out"))
                .is_file(),
            "{name}.out"
        );
    }
}
