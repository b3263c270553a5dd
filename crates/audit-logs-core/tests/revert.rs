//! Undo. Expected results come from the live tables: snapshots taken before each change are
//! what a revert must bring back, exactly.
mod common;

use std::collections::BTreeMap;

use audit_logs_core::revert::{self, revert_steps};
use audit_logs_core::session::{Session, Step, Steps};
use audit_logs_core::{
    AuditContext, Error, OnConflict, RedactRequest, RevertError, RevertOptions, RevertReport,
    RevertTarget, Subject, TableRef, TimeRange, TrackingOptions,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::{Client, GenericClient};

const SHOP: &str = "
    create table orgs (
      id int primary key,
      name text not null,
      settings jsonb,
      tags text[],
      founded date);
    create table members (
      org_id int references orgs (id) on delete cascade on update cascade,
      user_name text,
      role text not null default 'member',
      primary key (org_id, user_name));
    create table posts (
      id bigint generated always as identity primary key,
      org_id int references orgs (id) on delete set null on update cascade,
      title text not null,
      body text,
      words int generated always as (coalesce(array_length(string_to_array(body, ' '), 1), 0)) stored,
      parent_id bigint references posts (id));
";
const TABLES: [&str; 3] = ["orgs", "members", "posts"];

async fn shop() -> common::Fixture {
    let f = common::migrated().await;
    f.sql().await.batch_execute(SHOP).await.unwrap();
    for table in TABLES {
        f.audit
            .enable_tracking(&table.into(), &TrackingOptions::default())
            .await
            .unwrap();
    }
    f
}

/// Every table's rows as JSON, in key order.
async fn snapshot(client: &impl GenericClient) -> BTreeMap<&'static str, Vec<Value>> {
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let rows = client
            .query(
                &format!("select to_jsonb(t) from {table} t order by to_jsonb(t)::text"),
                &[],
            )
            .await
            .unwrap();
        tables.insert(table, rows.iter().map(|r| r.get(0)).collect());
    }
    tables
}

/// A transaction of `statements` under `context`; returns its txid.
async fn change(client: &mut Client, context: &AuditContext, statements: &str) -> i64 {
    let tx = client.transaction().await.unwrap();
    audit_logs_core::set_context(&tx, context).await.unwrap();
    tx.batch_execute(statements).await.unwrap();
    let txid: i64 = tx
        .query_one("select txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    txid
}

fn actor(id: &str) -> AuditContext {
    AuditContext {
        actor_id: Some(id.into()),
        actor_type: Some("user".into()),
        ..Default::default()
    }
}

/// Every row change of one transaction.
fn tx(txid: i64) -> RevertTarget {
    RevertTarget::Transaction { txid, at: None }
}

/// What a revert did, record by record: (table, operation).
fn operations(report: &RevertReport) -> Vec<(&str, &str)> {
    report
        .changes
        .iter()
        .map(|c| (c.table.as_str(), c.operation.as_str()))
        .collect()
}

/// The error of a revert that must fail.
async fn refused(f: &common::Fixture, target: RevertTarget) -> Error {
    f.audit
        .revert(&target, &RevertOptions::default())
        .await
        .expect_err("the revert is refused")
}

async fn revert(f: &common::Fixture, target: RevertTarget) -> RevertReport {
    f.audit
        .revert(&target, &RevertOptions::default())
        .await
        .unwrap_or_else(|e| panic!("revert {target:?}: {e}"))
}

/// A small deterministic generator (xorshift), so that a failing history can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// One random transaction over the three tables: inserts, updates (of keys too), deletes
/// (cascading), truncates, multi-row statements.
fn random_transaction(dice: &mut Dice, n: u64) -> String {
    let mut statements = Vec::new();
    for _ in 0..1 + dice.roll(3) {
        let a = dice.roll(12);
        let b = dice.roll(12);
        statements.push(match dice.roll(12) {
            0 | 1 => format!(
                "insert into orgs values ({a}, 'org {a} {n}', '{{\"plan\": \"p{b}\", \"seats\": {b}}}', '{{x,\"y z\"}}', '2020-01-{:02}') \
                 on conflict (id) do nothing",
                1 + b
            ),
            2 => format!("update orgs set name = name || '!', settings = settings || '{{\"n\": {n}}}' where id % 3 = {}", a % 3),
            3 => format!("update orgs set id = id + 100 where id = {a} and not exists (select from orgs where id = {a} + 100)"),
            4 => format!("delete from orgs where id = {a} or id = {a} + 100"),
            5 | 6 => format!(
                "insert into members select id, 'user{b}', 'r{n}' from orgs where id % 2 = {} on conflict do nothing",
                a % 2
            ),
            7 => format!("update members set role = role || '+' where user_name = 'user{b}'"),
            8 => format!("delete from members where user_name = 'user{b}'"),
            9 => format!(
                "insert into posts (org_id, title, body, parent_id) \
                 select id, 'post {n}', repeat('w ', {b}), (select max(id) from posts) from orgs where id % 4 = {}",
                a % 4
            ),
            10 => format!("update posts set body = body || ' more', title = upper(title) where id % 3 = {}", a % 3),
            _ => match dice.roll(4) {
                0 => "truncate members".to_owned(),
                _ => format!("delete from posts where id % 5 = {} and id not in (select parent_id from posts where parent_id is not null)", a % 5),
            },
        });
    }
    statements.join(";\n")
}

#[tokio::test]
async fn reverting_transactions_newest_first_brings_back_every_earlier_state() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 7] {
        let f = shop().await;
        let mut client = f.sql().await;
        let mut dice = Dice(seed);
        let mut history = Vec::new();
        for n in 0..40 {
            let before = snapshot(&client).await;
            let statements = random_transaction(&mut dice, n);
            let txid = change(&mut client, &actor(&format!("a{}", n % 3)), &statements).await;
            history.push((txid, before, statements));
        }
        let mut undone = 0;
        for (txid, before, statements) in history.iter().rev() {
            let target = tx(*txid);
            match f.audit.revert(&target, &RevertOptions::default()).await {
                Ok(_) => undone += 1,
                // A transaction whose statements changed nothing has no entries to undo.
                Err(Error::InvalidArgument { .. }) => {}
                Err(e) => panic!("seed {seed}: revert of {statements}: {e}"),
            }
            assert_eq!(
                &snapshot(&client).await,
                before,
                "seed {seed}: after reverting:\n{statements}"
            );
        }
        assert!(
            undone > 20,
            "seed {seed}: only {undone} of 40 transactions changed something"
        );
    }
}

#[tokio::test]
async fn reverting_an_actors_many_transactions_at_once_brings_back_the_state_before_them() {
    for seed in [11, 0xdead_beef, 0x1234_5678_9abc] {
        let f = shop().await;
        let mut client = f.sql().await;
        let mut dice = Dice(seed);
        for n in 0..15 {
            let statements = random_transaction(&mut dice, n);
            change(&mut client, &actor("ann"), &statements).await;
        }
        let before = snapshot(&client).await;
        let from: DateTime<Utc> = client
            .query_one("select clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        // A script gone wrong: records inserted, changed (keys too), deleted, re-created.
        let mut script = Vec::new();
        for n in 15..45 {
            let statements = random_transaction(&mut dice, n);
            let context = AuditContext {
                request_id: Some(format!("job-{}", n % 4)),
                ..actor("bot")
            };
            change(&mut client, &context, &statements).await;
            script.push(statements);
        }
        let to: DateTime<Utc> = client
            .query_one("select clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        let report = f
            .audit
            .revert(
                &RevertTarget::Actor {
                    actor_id: "bot".into(),
                    range: TimeRange {
                        from: Some(from),
                        to: Some(to),
                    },
                },
                &RevertOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{}", script.join("\n")));
        assert!(
            report.entries > 30,
            "seed {seed}: {} entries",
            report.entries
        );
        assert_eq!(
            snapshot(&client).await,
            before,
            "seed {seed}:\n{}",
            script.join("\n")
        );
    }
}

#[tokio::test]
async fn a_revert_is_recorded_with_what_it_reverts_and_can_itself_be_reverted() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null)",
    )
    .await;
    let before = snapshot(&client).await;
    let txid = change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'Evil' where id = 1; insert into members values (1, 'mallory', 'owner')",
    )
    .await;
    let after = snapshot(&client).await;

    let admin = AuditContext {
        actor_id: Some("admin".into()),
        reason: Some("undo bob".into()),
        ..Default::default()
    };
    let report = f
        .audit
        .revert(
            &tx(txid),
            &RevertOptions {
                context: Some(admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(snapshot(&client).await, before);
    assert_eq!(report.entries, 2);
    assert_eq!(report.reverts, json!({ "transaction": txid }));
    // Deletions that no foreign key holds back come first, children before parents.
    let done = operations(&report);
    assert_eq!(
        done,
        [("public.members", "delete"), ("public.orgs", "update")]
    );
    let name = &report.changes[1].fields[0];
    assert_eq!(
        (name.field.as_str(), &name.current, &name.restored),
        ("name", &json!("Evil"), &json!("Acme"))
    );

    let entries = f.row_changes().await;
    let revert_entries: Vec<_> = entries
        .iter()
        .filter(|e| e.actor_id.as_deref() == Some("admin"))
        .collect();
    assert_eq!(revert_entries.len(), 2);
    for entry in &revert_entries {
        let metadata = entry.metadata.as_ref().unwrap();
        assert_eq!(metadata["reverts"], json!({ "transaction": txid }));
        assert_eq!(metadata["reason"], "undo bob");
    }
    // Reverting the revert redoes bob's change.
    let revert_txid = revert_entries[0].txid;
    revert(&f, tx(revert_txid)).await;
    assert_eq!(snapshot(&client).await, after);
}

#[tokio::test]
async fn a_dry_run_reports_what_would_change_and_changes_nothing() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', '{\"plan\": \"pro\"}', '{a}', '2020-02-02'), (2, 'Bolt', null, null, null);
         insert into posts (org_id, title, body) values (1, 'hello', 'a b c')",
    )
    .await;
    let txid = change(&mut client, &actor("bob"), "delete from orgs where id = 1").await;
    let before_revert = snapshot(&client).await;
    let entries_before = f.entries().await.len();

    let report = f
        .audit
        .revert(
            &tx(txid),
            &RevertOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(
        snapshot(&client).await,
        before_revert,
        "a dry run changes nothing"
    );
    assert_eq!(
        f.entries().await.len(),
        entries_before,
        "and records nothing"
    );
    // The cascade set the post's org to null: the revert puts it back after re-creating the org.
    let done = operations(&report);
    assert_eq!(
        done,
        [("public.orgs", "insert"), ("public.posts", "update")]
    );
    let org_id = report.changes[1]
        .fields
        .iter()
        .find(|f| f.field == "org_id")
        .unwrap();
    assert_eq!(
        (&org_id.current, &org_id.restored),
        (&Value::Null, &json!(1))
    );
    assert_eq!(report.statements.len(), 2);
    assert!(
        report.statements[0].starts_with("insert into public.orgs"),
        "{}",
        report.statements[0]
    );
    // The statements shown are runnable as they are, and do the same.
    let replay = client.transaction().await.unwrap();
    for statement in &report.statements {
        replay
            .batch_execute(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let shown = snapshot(&replay).await;
    replay.rollback().await.unwrap();
    revert(&f, tx(txid)).await;
    assert_eq!(snapshot(&client).await, shown);
}

#[tokio::test]
async fn a_record_changed_again_since_is_a_conflict_unless_overwriting() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null), (2, 'Bolt', null, null, null)",
    )
    .await;
    let bad = change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'Evil ' || name",
    )
    .await;
    change(
        &mut client,
        &actor("cid"),
        "update orgs set tags = '{fixed}' where id = 2",
    )
    .await;
    let before = snapshot(&client).await;

    let err = refused(&f, tx(bad)).await;
    let Error::Revert(RevertError::Conflict { conflicts, message }) = &err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(err.code(), "AUDIT_LOGS_REVERT_CONFLICT");
    assert_eq!(conflicts.len(), 1, "{message}");
    assert_eq!(
        (conflicts[0].table.as_str(), conflicts[0].id.as_str()),
        ("public.orgs", "2")
    );
    assert_eq!(conflicts[0].later.len(), 1);
    assert_eq!(conflicts[0].later[0].actor_id.as_deref(), Some("cid"));
    assert!(
        message.contains("cid") && message.contains("tags"),
        "{message}"
    );
    assert_eq!(
        snapshot(&client).await,
        before,
        "a refused revert changes nothing"
    );

    let report = f
        .audit
        .revert(
            &tx(bad),
            &RevertOptions {
                on_conflict: OnConflict::Overwrite,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.changes.len(), 2);
    let names: Vec<(i32, String, Option<Vec<String>>)> = client
        .query("select id, name, tags from orgs order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    // Bob's rename is undone; cid's later change of another field stays.
    assert_eq!(
        names,
        [
            (1, "Acme".into(), None),
            (2, "Bolt".into(), Some(vec!["fixed".into()]))
        ]
    );
}

#[tokio::test]
async fn a_record_re_created_since_conflicts_with_undoing_its_delete() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null)",
    )
    .await;
    let delete = change(&mut client, &actor("bob"), "delete from orgs where id = 1").await;
    change(
        &mut client,
        &actor("cid"),
        "insert into orgs values (1, 'New', null, null, null)",
    )
    .await;
    let err = refused(&f, tx(delete)).await;
    assert_eq!(err.code(), "AUDIT_LOGS_REVERT_CONFLICT", "{err}");
    // Overwriting puts the deleted row's values over the new one.
    f.audit
        .revert(
            &tx(delete),
            &RevertOptions {
                on_conflict: OnConflict::Overwrite,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let name: String = client
        .query_one("select name from orgs where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Acme");
}

#[tokio::test]
async fn a_change_made_while_not_tracked_is_a_conflict_too() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null)",
    )
    .await;
    let rename = change(&mut client, &actor("bob"), "update orgs set name = 'Evil'").await;
    client
        .batch_execute("set session_replication_role = replica; update orgs set name = 'Quiet'; reset session_replication_role")
        .await
        .unwrap();
    let err = refused(&f, tx(rename)).await;
    let Error::Revert(RevertError::Conflict { conflicts, message }) = &err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert!(conflicts[0].later.is_empty());
    assert!(message.contains("where the log does not see"), "{message}");
}

#[tokio::test]
async fn requests_actors_and_single_entries_are_reverted_as_named() {
    let f = shop().await;
    let mut client = f.sql().await;
    let request = |id: &str, who: &str| AuditContext {
        request_id: Some(id.into()),
        ..actor(who)
    };
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null), (2, 'Bolt', null, null, null)",
    )
    .await;
    let start = snapshot(&client).await;
    let from: DateTime<Utc> = client
        .query_one("select clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    // One request in two transactions.
    change(
        &mut client,
        &request("req-1", "bob"),
        "update orgs set name = 'B1' where id = 1",
    )
    .await;
    change(
        &mut client,
        &request("req-1", "bob"),
        "insert into members values (1, 'bob')",
    )
    .await;
    let after_request = snapshot(&client).await;
    change(
        &mut client,
        &request("req-2", "eve"),
        "update orgs set name = 'E2' where id = 2",
    )
    .await;
    change(&mut client, &request("req-3", "eve"), "delete from members").await;
    let to: DateTime<Utc> = client
        .query_one("select clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);

    let report = revert(
        &f,
        RevertTarget::Actor {
            actor_id: "eve".into(),
            range: TimeRange {
                from: Some(from),
                to: Some(to),
            },
        },
    )
    .await;
    assert_eq!(report.entries, 2);
    assert_eq!(snapshot(&client).await, after_request);

    revert(
        &f,
        RevertTarget::Request {
            request_id: "req-1".into(),
            range: TimeRange::default(),
        },
    )
    .await;
    assert_eq!(snapshot(&client).await, start);

    // One entry: redo the rename by reverting its revert's entry.
    let rename_back = f
        .row_changes()
        .await
        .into_iter()
        .rfind(|e| e.action == "UPDATE" && e.target_id.as_deref() == Some("1"))
        .unwrap();
    revert(&f, RevertTarget::Entry { id: rename_back.id }).await;
    let name: String = client
        .query_one("select name from orgs where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "B1");

    let err = f
        .audit
        .revert(
            &RevertTarget::Actor {
                actor_id: "eve".into(),
                range: TimeRange::default(),
            },
            &RevertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "AUDIT_LOGS_INVALID_ARGUMENT",
        "an actor's range needs both ends: {err}"
    );
    let err = f
        .audit
        .revert(
            &RevertTarget::Request {
                request_id: "nope".into(),
                range: TimeRange::default(),
            },
            &RevertOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no row change matches"), "{err}");
}

#[tokio::test]
async fn a_record_goes_back_to_its_state_at_a_time_even_once_deleted() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', '{\"a\": [1, 2]}', '{x}', '2021-03-04')",
    )
    .await;
    change(&mut client, &actor("ann"), "insert into members values (1, 'ann', 'owner'); insert into posts (org_id, title, body) values (1, 't', 'one two')").await;
    let at: DateTime<Utc> = client
        .query_one("select clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    let then = snapshot(&client).await;
    change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'X', tags = null where id = 1",
    )
    .await;
    change(
        &mut client,
        &actor("bob"),
        "update posts set body = 'gone', title = 'T'",
    )
    .await;
    change(&mut client, &actor("bob"), "delete from members").await;

    for (table, id) in [
        ("orgs", json!(1)),
        ("members", json!([1, "ann"])),
        ("posts", json!(1)),
    ] {
        revert(
            &f,
            RevertTarget::Record {
                table: table.into(),
                id,
                to: at,
            },
        )
        .await;
    }
    assert_eq!(snapshot(&client).await, then);

    // Back to before it existed: deleted.
    let long_ago = at - chrono::Duration::days(1);
    let report = revert(
        &f,
        RevertTarget::Record {
            table: "posts".into(),
            id: json!(1),
            to: long_ago,
        },
    )
    .await;
    assert_eq!(report.changes[0].operation, "delete");
    assert_eq!(f.count("select count(*) from posts").await, 0);
    let err = f
        .audit
        .revert(
            &RevertTarget::Record {
                table: TableRef::from("members"),
                id: json!(1),
                to: at,
            },
            &RevertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_ARGUMENT", "{err}");
    assert!(err.to_string().contains("org_id, user_name"), "{err}");
}

#[tokio::test]
async fn excluded_columns_are_left_as_they_are_or_refused_when_a_row_needs_them() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute(
            "create table users (id int primary key, email text, password_hash text, api_key text not null);",
        )
        .await
        .unwrap();
    f.audit
        .enable_tracking(
            &"users".into(),
            &TrackingOptions {
                exclude_columns: Some(vec!["password_hash".into(), "api_key".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into users values (1, 'a@x.io', 'h1', 'k1')",
    )
    .await;
    let update = change(
        &mut client,
        &actor("bob"),
        "update users set email = 'b@x.io', password_hash = 'h2'",
    )
    .await;
    let report = revert(&f, tx(update)).await;
    let row: (String, String) = client
        .query_one("select email, password_hash from users", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        row,
        ("a@x.io".into(), "h2".into()),
        "the excluded field is left as it is"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("password_hash") && n.contains("excluded")),
        "{:?}",
        report.notes
    );

    let delete = change(&mut client, &actor("bob"), "delete from users").await;
    let err = refused(&f, tx(delete)).await;
    let Error::Revert(RevertError::Impossible { column, .. }) = &err else {
        panic!("expected CannotRevert, got {err:?}");
    };
    assert_eq!(column.as_deref(), Some("api_key"), "{err}");
    assert_eq!(
        f.count("select count(*) from users").await,
        0,
        "nothing was changed"
    );
}

#[tokio::test]
async fn redacted_values_are_not_restored_and_each_is_named() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, '{a}', null)",
    )
    .await;
    let update = change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'Evil', tags = '{b}'",
    )
    .await;
    f.audit
        .redact(
            &RedactRequest {
                subject: Subject::Target {
                    target_type: "public.orgs".into(),
                    id: json!(1),
                },
                fields: Some(vec!["values.name".into()]),
                reason: None,
                dry_run: false,
            },
            b"0123456789abcdef0123",
        )
        .await
        .unwrap();
    let report = revert(&f, tx(update)).await;
    let row: (String, Vec<String>) = client
        .query_one("select name, tags from orgs", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(row, ("Evil".into(), vec!["a".into()]));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("name") && n.contains("redacted")),
        "{:?}",
        report.notes
    );
}

#[tokio::test]
async fn dropped_columns_and_untracked_tables_are_refused_by_name_changing_nothing() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, '{a}', '2020-01-01')",
    )
    .await;
    let update = change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'Evil', founded = null",
    )
    .await;
    client
        .batch_execute("alter table orgs drop column founded")
        .await
        .unwrap();
    let before = snapshot(&client).await;
    let err = refused(&f, tx(update)).await;
    let Error::Revert(RevertError::Impossible { table, column, .. }) = &err else {
        panic!("expected CannotRevert, got {err:?}");
    };
    assert_eq!(
        (table.as_str(), column.as_deref()),
        ("public.orgs", Some("founded"))
    );
    assert_eq!(err.code(), "AUDIT_LOGS_CANNOT_REVERT");
    assert_eq!(snapshot(&client).await, before);

    let insert = change(
        &mut client,
        &actor("bob"),
        "insert into members values (1, 'x')",
    )
    .await;
    f.audit.disable_tracking(&"members".into()).await.unwrap();
    let err = refused(&f, tx(insert)).await;
    assert_eq!(err.code(), "AUDIT_LOGS_CANNOT_REVERT");
    assert!(err.to_string().contains("no longer tracked"), "{err}");
    assert_eq!(f.count("select count(*) from members").await, 1);
}

#[tokio::test]
async fn a_truncate_and_rows_that_reference_each_other_come_back_in_one_statement() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', null, null, null);
         insert into posts (org_id, title, body) values (1, 'root', 'r');
         insert into posts (org_id, title, body, parent_id) select 1, 'reply ' || i, 'x y', 1 from generate_series(1, 50) i;
         insert into members select 1, 'u' || i from generate_series(1, 200) i",
    )
    .await;
    let before = snapshot(&client).await;
    let wipe = change(
        &mut client,
        &actor("bob"),
        "delete from posts; truncate members",
    )
    .await;
    let report = revert(&f, tx(wipe)).await;
    assert_eq!(snapshot(&client).await, before);
    assert_eq!(report.entries, 251);
    assert_eq!(
        report.statements.len(),
        2,
        "{:?}",
        report
            .statements
            .iter()
            .map(|s| &s[..40])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_key_change_is_undone_under_its_new_key() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(&mut client, &actor("ann"), "insert into orgs values (1, 'Acme', null, null, null); insert into members values (1, 'ann')").await;
    let before = snapshot(&client).await;
    let rekey = change(
        &mut client,
        &actor("bob"),
        "update orgs set id = 7, name = 'Seven' where id = 1",
    )
    .await;
    revert(&f, tx(rekey)).await;
    assert_eq!(snapshot(&client).await, before);
}

#[tokio::test]
async fn a_row_that_a_foreign_key_still_references_is_deleted_once_it_no_longer_is() {
    let f = shop().await;
    let mut client = f.sql().await;
    client
        .batch_execute(
            "create table invoices (id int primary key, org_id int not null references orgs (id))",
        )
        .await
        .unwrap();
    f.audit
        .enable_tracking(&"invoices".into(), &TrackingOptions::default())
        .await
        .unwrap();
    change(&mut client, &actor("ann"), "insert into orgs values (1, 'Acme', null, null, null); insert into invoices values (10, 1)").await;
    let before = snapshot(&client).await;
    let invoices_before = snapshot_of(&client, "invoices").await;
    // The new org is deleted only after the invoice points back to the old one.
    let moved = change(
        &mut client,
        &actor("bob"),
        "insert into orgs values (2, 'Shell', null, null, null); update invoices set org_id = 2",
    )
    .await;
    let report = revert(&f, tx(moved)).await;
    assert_eq!(snapshot(&client).await, before);
    let invoices_after = snapshot_of(&client, "invoices").await;
    assert_eq!(invoices_after, invoices_before);
    let done = operations(&report);
    assert_eq!(
        done,
        [("public.invoices", "update"), ("public.orgs", "delete")]
    );
}

#[tokio::test]
async fn a_time_logged_in_another_time_zone_is_no_conflict() {
    let f = common::migrated().await;
    let mut client = f.sql().await;
    client
        .batch_execute("create table meetings (id int primary key, starts timestamptz, title text)")
        .await
        .unwrap();
    f.audit
        .enable_tracking(&"meetings".into(), &TrackingOptions::default())
        .await
        .unwrap();
    // The application's sessions run in Tokyo time; the revert runs in UTC.
    change(
        &mut client,
        &actor("ann"),
        "set local time zone 'Asia/Tokyo'; insert into meetings values (1, '2026-12-01 09:00+09', 'Plan')",
    )
    .await;
    let before = snapshot_of(&client, "meetings").await;
    let moved = change(
        &mut client,
        &actor("bob"),
        "set local time zone 'Asia/Tokyo'; update meetings set starts = starts + interval '1 hour', title = 'Moved'",
    )
    .await;
    revert(&f, tx(moved)).await;
    assert_eq!(snapshot_of(&client, "meetings").await, before);
}

async fn snapshot_of(client: &Client, table: &str) -> Vec<Value> {
    client
        .query(
            &format!("select to_jsonb(t) from {table} t order by 1::text"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn keep_later_restores_only_what_nobody_changed_since() {
    let f = shop().await;
    let mut client = f.sql().await;
    change(
        &mut client,
        &actor("ann"),
        "insert into orgs values (1, 'Acme', '{\"plan\": \"free\"}', '{a}', '2020-01-01'), (2, 'Bolt', null, null, null), (3, 'Cord', null, null, null)",
    )
    .await;
    let bad = change(
        &mut client,
        &actor("bob"),
        "update orgs set name = 'Evil', tags = '{evil}' where id = 1;
         update orgs set name = 'Evil 2' where id = 2;
         insert into orgs values (4, 'New', null, null, null)",
    )
    .await;
    // Later: cid fixes org 1's tags by hand, deletes org 2, renames org 4.
    change(
        &mut client,
        &actor("cid"),
        "update orgs set tags = '{fixed}' where id = 1; delete from orgs where id = 2; update orgs set name = 'Newer' where id = 4",
    )
    .await;
    let report = f
        .audit
        .revert(
            &tx(bad),
            &RevertOptions {
                on_conflict: OnConflict::KeepLater,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rows: Vec<(i32, String, Option<Vec<String>>)> = client
        .query("select id, name, tags from orgs order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            // Bob's name comes back; cid's later tags stay.
            (1, "Acme".to_owned(), Some(vec!["fixed".to_owned()])),
            (3, "Cord".to_owned(), None),
            // Created by bob, changed by cid since: kept.
            (4, "Newer".to_owned(), None),
        ]
    );
    let notes = report.notes.join("\n");
    assert!(
        notes.contains("public.orgs 1: changed since, so left as they are: tags"),
        "{notes}"
    );
    assert!(notes.contains("public.orgs 2: deleted since"), "{notes}");
    assert!(
        notes.contains("public.orgs 4: changed since it was created"),
        "{notes}"
    );
    assert_eq!(operations(&report), [("public.orgs", "update")]);
}

/// Runs `steps` on `client` as the JavaScript layer does: each statement it hands out, then its
/// answer back.
async fn drive(
    client: &Client,
    mut steps: Steps<RevertReport>,
) -> audit_logs_core::Result<RevertReport> {
    let mut answer = None;
    loop {
        match steps.resume(answer.take()) {
            Step::Run(statement) => answer = Some(client.rows(statement).await),
            Step::Done(result) => return result,
        }
    }
}

#[tokio::test]
async fn a_revert_in_the_callers_transaction_defers_constraints_only_while_it_writes() {
    let f = common::migrated().await;
    let mut client = f.sql().await;
    // Two tables referencing each other, through constraints deferrable but initially immediate.
    client
        .batch_execute(
            "create table a (id int primary key, b_id int);
             create table b (id int primary key, a_id int references a deferrable);
             alter table a add constraint a_b foreign key (b_id) references b deferrable;",
        )
        .await
        .unwrap();
    for table in ["a", "b"] {
        f.audit
            .enable_tracking(&table.into(), &TrackingOptions::default())
            .await
            .unwrap();
    }
    change(
        &mut client,
        &actor("ann"),
        "set constraints all deferred;
         insert into a values (1, 1); insert into b values (1, 1);",
    )
    .await;
    let deleted = change(
        &mut client,
        &actor("bob"),
        "set constraints all deferred; delete from a; delete from b;",
    )
    .await;

    client.batch_execute("begin").await.unwrap();
    audit_logs_core::set_context(&client, &actor("admin"))
        .await
        .unwrap();
    let steps = revert_steps(tx(deleted), RevertOptions::default());
    let report = drive(&client, steps).await.unwrap();
    assert_eq!(
        operations(&report),
        [("public.a", "insert"), ("public.b", "insert")]
    );
    // Immediate again: the caller's next violation fails now, not at its commit.
    let violation = client
        .batch_execute("savepoint s; insert into b values (2, 999)")
        .await
        .expect_err("checked at once");
    assert_eq!(violation.code().map(|c| c.code()), Some("23503"));
    client
        .batch_execute("rollback to savepoint s; commit")
        .await
        .unwrap();
    assert_eq!(
        f.count("select count(*) from a join b on b.a_id = a.id and a.b_id = b.id")
            .await,
        1
    );
    let reverting: Vec<(Option<String>, Option<Value>)> = f
        .row_changes()
        .await
        .into_iter()
        .rev()
        .take(2)
        .map(|e| (e.actor_id, e.metadata))
        .collect();
    let undone = json!({ "reverts": { "transaction": deleted } });
    assert_eq!(
        reverting,
        [
            (Some("admin".to_owned()), Some(undone.clone())),
            (Some("admin".to_owned()), Some(undone))
        ],
        "the caller's actor, and what was reverted"
    );
}

#[tokio::test]
async fn a_revert_on_a_connection_in_no_transaction_is_refused_and_changes_nothing() {
    let f = shop().await;
    let mut client = f.sql().await;
    let created = change(
        &mut client,
        &actor("ann"),
        "insert into orgs (id, name) values (1, 'Acme')",
    )
    .await;
    let before = snapshot(&client).await;
    let error = revert::revert(&client, &tx(created), &RevertOptions::default())
        .await
        .expect_err("no transaction");
    assert!(
        matches!(error, Error::Revert(RevertError::NotInTransaction { .. })),
        "{error:?}"
    );
    assert_eq!(error.code(), "AUDIT_LOGS_NOT_IN_TRANSACTION");
    assert_eq!(snapshot(&client).await, before);
}
