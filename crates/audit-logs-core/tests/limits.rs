//! The checks the Rust layer makes before anything reaches the database (the ones Node users
//! meet, as typed errors) and the database's own checks (`audit.normalize_context`,
//! `audit.check_event`, which SQL users meet) are one rule: the same boundary cases get the
//! same verdict from both. A limit changed on one side only fails here.
mod common;

use audit_logs_core::{AuditContext, NewEvent};
use serde_json::{json, Map, Value};
use tokio_postgres::Client;

/// The database's verdict: accepted, or refused with the package's own code for bad input
/// (`AL004` context, `AL007` event) or because PostgreSQL cannot hold the value (`22P05`, `22021`: a NUL).
async fn database_accepts(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> bool {
    match client.query(sql, params).await {
        Ok(_) => true,
        Err(e) => {
            let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
            assert!(
                ["AL004", "AL007", "22P05", "22021"].contains(&code.as_str()),
                "refused for another reason than the input ({code}): {e:?}"
            );
            false
        }
    }
}

/// Each case's verdicts (its name, Rust's result, whether Rust accepts it, whether the database
/// does) must agree, and the cases must straddle the limits: both verdicts occur.
fn assert_same_verdicts(verdicts: &[(String, String, bool, bool)]) {
    let disagreements: Vec<String> = verdicts
        .iter()
        .filter(|(_, _, rust, database)| rust != database)
        .map(|(case, rust, _, database)| {
            format!("{case}: Rust {rust}, database accepts: {database}")
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "Rust and the database disagree on:\n{}",
        disagreements.join("\n")
    );
    let accepted = verdicts
        .iter()
        .filter(|(_, _, _, database)| *database)
        .count();
    assert!(
        accepted > 0 && accepted < verdicts.len(),
        "{accepted} of {} accepted",
        verdicts.len()
    );
}

/// A context in JavaScript's spelling, as the Rust layer reads it, and the same in the
/// database's spelling (snake_case keys), as SQL users pass it to `audit.set_context`.
fn context_case(fields: &[(&str, Value)]) -> (Value, Value) {
    let mut camel = Map::new();
    let mut snake = Map::new();
    for (key, value) in fields {
        camel.insert((*key).to_owned(), value.clone());
        let snake_key: String = key
            .chars()
            .flat_map(|c| match c.is_ascii_uppercase() {
                true => vec!['_', c.to_ascii_lowercase()],
                false => vec![c],
            })
            .collect();
        snake.insert(snake_key, value.clone());
    }
    (Value::Object(camel), Value::Object(snake))
}

fn text_of(bytes: usize, unit: &str) -> String {
    unit.repeat(bytes / unit.len())
}

#[tokio::test]
async fn a_context_is_accepted_by_rust_exactly_when_the_database_accepts_it() {
    let f = common::migrated().await;
    let client = f.sql().await;
    let mut cases: Vec<(String, Vec<(&str, Value)>)> = Vec::new();
    for key in [
        "actorId",
        "actorType",
        "actorEmail",
        "userAgent",
        "requestId",
        "reason",
        "migrationName",
    ] {
        for (unit, bytes) in [
            ("x", 1024),
            ("x", 1025),
            ("é", 1024),
            ("é", 1026),
            ("€", 1023),
            ("€", 1026),
        ] {
            cases.push((
                format!("{key} of {bytes} bytes of {unit}"),
                vec![(key, json!(text_of(bytes, unit)))],
            ));
        }
    }
    for ip in [
        "203.0.113.9",
        "::1",
        "2001:db8::1",
        "10.0.0.256",
        "not an address",
        "",
    ] {
        cases.push((format!("ipAddress {ip:?}"), vec![("ipAddress", json!(ip))]));
    }
    // The whole context around 8 KiB, as jsonb prints it: one long value, many short keys
    // (each adds the separators jsonb writes and compact JSON does not), nested arrays and
    // numbers whose plain notation is longer than their JSON.
    for padding in 8140..8156 {
        cases.push((
            format!("metadata with a value of {padding} bytes"),
            vec![
                ("actorId", json!("42")),
                ("metadata", json!({ "note": "x".repeat(padding) })),
            ],
        ));
    }
    for values in [98, 99, 100, 101] {
        let metadata: Map<String, Value> = (0..values)
            .map(|i| (format!("k{i:03}"), json!("v".repeat(70))))
            .collect();
        cases.push((
            format!("metadata with {values} keys"),
            vec![("metadata", Value::Object(metadata))],
        ));
    }
    for items in [1000, 1350, 1360, 1370, 2000] {
        cases.push((
            format!("metadata with an array of {items} numbers"),
            vec![("metadata", json!({ "list": vec![1; items] }))],
        ));
    }
    for count in [25, 26, 27, 28] {
        cases.push((
            format!("metadata holding {count} times 1e300"),
            vec![(
                "metadata",
                json!({ "n": vec![1e300; count], "m": [1.5e-7, 100.0, 0.1, -0.0, -12] }),
            )],
        ));
    }
    cases.push((
        "metadata with a NUL".into(),
        vec![("metadata", json!({ "a": "x\u{0}y" }))],
    ));
    cases.push(("an empty context".into(), vec![]));

    let mut verdicts = Vec::new();
    for (name, fields) in &cases {
        let (camel, snake) = context_case(fields);
        let rust = AuditContext::from_camel_case(camel).and_then(|c| c.to_setting());
        let database = database_accepts(
            &client,
            "select audit.normalize_context($1::text::jsonb)",
            &[&snake.to_string()],
        )
        .await;
        verdicts.push((name.clone(), format!("{rust:?}"), rust.is_ok(), database));
    }
    assert_same_verdicts(&verdicts);
}

#[tokio::test]
async fn an_event_is_accepted_by_rust_exactly_when_the_database_accepts_it() {
    let f = common::migrated().await;
    let client = f.sql().await;
    let event = |action: &str| NewEvent::new(action);
    let mut cases: Vec<(String, NewEvent)> = Vec::new();
    for action in [
        "user.login",
        "a",
        "Report:exported-v2_final",
        "1user",
        "_user",
        "user login",
        "usér.login",
        "",
        "INSERT",
        "truncate",
        "Delete",
        "inserted",
        "ddl.rename",
        "DDL.alter_table",
        "Ddl.x",
        "ddl",
        "ddlx.y",
    ] {
        cases.push((format!("action {action:?}"), event(action)));
    }
    for length in [99, 100, 101] {
        cases.push((
            format!("action of {length} characters"),
            event(&format!("a{}", "b".repeat(length - 1))),
        ));
    }
    for (unit, bytes) in [("t", 200), ("t", 201), ("é", 200), ("é", 202)] {
        let mut e = event("x.y");
        e.target_type = Some(text_of(bytes, unit));
        cases.push((format!("targetType of {bytes} bytes of {unit}"), e));
    }
    for (unit, bytes) in [("i", 1024), ("i", 1025), ("€", 1023), ("€", 1026)] {
        let mut e = event("x.y");
        e.target_id = Some(text_of(bytes, unit));
        cases.push((format!("targetId of {bytes} bytes of {unit}"), e));
    }
    let mut e = event("x.y");
    e.target_id = Some("a\u{0}b".into());
    cases.push(("targetId with a NUL".into(), e));
    for padding in 65_515..65_530 {
        let mut e = event("x.y");
        e.metadata = Some(
            json!({ "note": "x".repeat(padding) })
                .as_object()
                .unwrap()
                .clone(),
        );
        cases.push((format!("metadata with a value of {padding} bytes"), e));
    }
    for keys in [800, 809, 810, 811, 820] {
        let mut e = event("x.y");
        e.metadata = Some(
            (0..keys)
                .map(|i| (format!("k{i:04}"), json!("v".repeat(70))))
                .collect(),
        );
        cases.push((format!("metadata with {keys} keys"), e));
    }
    for count in [215, 216, 217, 218] {
        let mut e = event("x.y");
        e.metadata = Some(
            json!({ "n": vec![1e300; count] })
                .as_object()
                .unwrap()
                .clone(),
        );
        cases.push((format!("metadata with {count} times 1e300"), e));
    }

    let mut verdicts = Vec::new();
    for (name, e) in &cases {
        let rust = e.check();
        let metadata = e.metadata.clone().map(|m| Value::Object(m).to_string());
        let database = database_accepts(
            &client,
            "select audit.check_event($1, $2, $3, $4::text::jsonb)",
            &[&e.action, &e.target_type, &e.target_id, &metadata],
        )
        .await;
        verdicts.push((name.clone(), format!("{rust:?}"), rust.is_ok(), database));
    }
    assert_same_verdicts(&verdicts);
}
