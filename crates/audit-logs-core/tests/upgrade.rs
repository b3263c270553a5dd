//! Upgrades: a database migrated, tracked and filled by released migrations, then migrated by
//! this build, keeps its history and gets every fix.
mod common;

use audit_logs_core::{migrate, ConnectOptions, HistoryQuery, TrackingOptions, VerifyOptions};

/// A database as V1-V4 left it: tracked tables (an excluded column, a required context, a
/// partitioned table), history in them, and an application role that, as V4 allowed, attached
/// payroll's capture function to a table of its own and forged an entry with it.
async fn released_v4_install() -> (common::Fixture, tokio_postgres::Client) {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until_v4 = migrate::MigrateOptions {
        until: Some(4),
        ..Default::default()
    };
    let report = migrate::run(&options, &until_v4).await.unwrap();
    assert_eq!(
        report.applied.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    let app_role = f.db.create_role("app").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "create table payroll (id int primary key, salary int);
             create table users (id int primary key, email text, password_hash text);
             create table events (id int, region text, v int, primary key (id, region)) partition by list (region);
             create table events_eu partition of events for values in ('eu');
             select audit.enable_tracking('payroll');
             select audit.enable_tracking('users', '{{password_hash}}', true, true);
             select audit.enable_tracking('events');
             begin;
             select audit.set_context('{{\"actor_id\": \"1\"}}');
             insert into payroll values (1, 100);
             insert into users values (1, 'a@x.io', 'secret');
             insert into events values (1, 'eu', 1);
             update payroll set salary = 110;
             commit;
             grant create on schema public to {app_role};"
        ))
        .await
        .unwrap();
    let app = f.connect_as(&app_role).await;
    app.batch_execute(
        "create table mine (id int primary key, salary int);
         create trigger forge after insert on mine referencing new table as new_rows
           for each statement execute function audit.\"capture public.payroll\"('{\"target_type\": \"public.payroll\", \"primary_key\": [\"id\"], \"columns\": [\"id\", \"salary\"], \"exclude_columns\": [], \"skip_unchanged\": true}');
         insert into mine values (99, 1);",
    )
    .await
    .unwrap();
    (f, app)
}

#[tokio::test]
async fn a_v4_install_upgrades_to_capture_without_rights_and_keeps_its_history() {
    let (f, app) = released_v4_install().await;
    let forged = f
        .count("select count(*) from audit.audit_logs where target_type = 'public.payroll' and target_id = '99'")
        .await;
    assert_eq!(forged, 1, "V4 let the application forge an entry");
    let history_before = f.entries().await;

    let report = f.audit.migrate(false).await.unwrap();
    assert!(report.applied.iter().any(|m| m.version == 5));
    assert_eq!(f.entries().await, history_before, "history is untouched");

    // Every tracked table kept its options and now captures as audit_writer.
    let tables = f.audit.tracked_tables().await.unwrap();
    let by_name = |name: &str| tables.iter().find(|t| t.name == name).unwrap().clone();
    assert_eq!(by_name("users").excluded_columns, ["password_hash"]);
    assert!(by_name("users").require_context);
    assert!(tables.iter().all(|t| t.capture_role == "audit_writer"));
    assert!(
        tables.iter().all(|t| t.needs_refresh.is_empty()),
        "{tables:?}"
    );
    assert_eq!(
        f.count("select count(*) from pg_trigger where tgname = 'forge'")
            .await,
        0,
        "the forging trigger is gone"
    );

    // Writes are recorded as before; the forging table records nothing in payroll's name.
    f.as_actor(
        "2",
        "update payroll set salary = 120; insert into users values (2, 'b@x.io', 'x');
         insert into events values (2, 'eu', 2); insert into events_eu values (3, 'eu', 3)",
    )
    .await;
    app.batch_execute("insert into mine values (100, 1)")
        .await
        .unwrap();
    let new_entries: Vec<_> = f.entries().await[history_before.len()..]
        .iter()
        .map(|e| {
            (
                e.action.clone(),
                e.target_type.clone().unwrap(),
                e.target_id.clone().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("UPDATE", "public.payroll", "1"),
        ("INSERT", "public.users", "2"),
        ("INSERT", "public.events", "[2, \"eu\"]"),
        ("INSERT", "public.events", "[3, \"eu\"]"),
    ]
    .iter()
    .map(|(a, t, i)| (a.to_string(), t.to_string(), i.to_string()))
    .collect();
    assert_eq!(new_entries, expected);
    assert!(f.entries().await[history_before.len() + 1]
        .new_values
        .as_ref()
        .unwrap()
        .get("password_hash")
        .is_none());

    // The old history still verifies in the same chain as the new.
    f.audit.seal().await.unwrap();
    let verified = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.ok, "{verified:?}");
}

/// A database as V1-V5 left it, with a tracked table renamed under V5 (which kept recording it
/// under its old name), then migrated by this build.
#[tokio::test]
async fn a_v5_install_upgrades_to_recorded_schema_changes_and_history_follows_its_renames() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until_v5 = migrate::MigrateOptions {
        until: Some(5),
        ..Default::default()
    };
    migrate::run(&options, &until_v5).await.unwrap();
    f.sql()
        .await
        .batch_execute(
            "create table users (id int primary key, email text);
             select audit.enable_tracking('users');
             insert into users values (1, 'a@x.io');
             alter table users rename to members;
             update members set email = 'b@x.io';",
        )
        .await
        .unwrap();
    let before = f.entries().await;
    assert!(
        before
            .iter()
            .all(|e| e.target_type.as_deref() == Some("public.users")),
        "V5 kept the old name"
    );

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(6));
    assert_eq!(
        &f.entries().await[..before.len()],
        &before[..],
        "history untouched"
    );
    let rename = f.schema_changes().await;
    assert_eq!(rename.len(), 1, "{rename:?}");
    assert_eq!(rename[0].action, "ddl.rename");
    assert_eq!(rename[0].target_type.as_deref(), Some("public.members"));

    f.as_actor("2", "update members set email = 'c@x.io'").await;
    assert_eq!(
        f.history_trail("members", 1).await,
        [
            ("UPDATE", "public.members"),
            ("UPDATE", "public.users"),
            ("INSERT", "public.users")
        ]
        .map(|(a, t)| (a.to_owned(), t.to_owned()))
    );
    assert!(f.audit.tracked_tables().await.unwrap()[0]
        .needs_refresh
        .is_empty());

    // Schema changes are recorded from now on, and a hand-set context no longer breaks a write.
    f.sql()
        .await
        .batch_execute(
            "alter table members add column name text;
             begin; select set_config('audit.context', 'oops', true);
             insert into members values (2, 'd@x.io', 'D'); commit;",
        )
        .await
        .unwrap();
    assert_eq!(
        f.schema_changes().await.last().unwrap().action,
        "ddl.alter_table"
    );
    f.audit.seal().await.unwrap();
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// The same changes, in the same kinds of transaction, to one of two identically tracked tables:
/// attributed by set_context (every field, metadata and a reason), by a context set by hand
/// (ignored, and flagged), by none; a key change, an unchanged row, an excluded column, a
/// delete and a TRUNCATE.
fn workload(table: &str) -> String {
    format!(
        "begin;
         select audit.set_context('{{\"actor_id\": \"7\", \"actor_type\": \"user\", \"actor_email\": \"a@x.io\",
           \"ip_address\": \"10.0.0.1\", \"user_agent\": \"ua\", \"request_id\": \"r-1\", \"reason\": \"why\",
           \"metadata\": {{\"k\": 1}}}}');
         insert into {table} values (1, 'a@x.io', 'secret', 1), (2, 'b@x.io', 'secret', 2);
         update {table} set n = n + 1 where id = 1;
         update {table} set id = 20 where id = 2;
         update {table} set n = n where id = 1;
         update {table} set secret = 'other' where id = 1;
         commit;
         begin;
         select set_config('audit.context', '{{\"actor_id\": \"forged\"}}', true);
         update {table} set email = 'c@x.io' where id = 1;
         commit;
         begin;
         select audit.set_context('{{\"reason\": \"cleanup\"}}');
         delete from {table} where id = 20;
         commit;
         insert into {table} values (3, 'd@x.io', 'secret', 3);
         truncate {table};"
    )
}

/// What an entry says, without what differs between two runs (ids, times, the table's name).
fn content(e: &audit_logs_core::AuditEntry) -> String {
    format!(
        "{} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        e.action,
        e.target_id,
        e.old_target_id,
        e.old_values,
        e.new_values,
        e.changed_fields,
        e.actor_id,
        e.actor_type,
        e.actor_email,
        e.ip_address,
        e.user_agent,
        e.request_id,
        e.metadata
    )
}

/// A database as migrations up to `from` left it, with three tracked tables (one requiring a
/// context) and history, then migrated by this build, whose first migration must be `from + 1`.
/// Checks what a capture upgrade must keep: the application's triggers are the same ones, the
/// history is untouched, every capture function is regenerated (`regenerated` counts the
/// functions that are, out of `expected`), nothing drifts, and the same workload records the
/// same entries. Returns the fixture's connection and the entries from before.
async fn upgrade_capture(
    f: &common::Fixture,
    from: i32,
    regenerated: &str,
    expected: i64,
) -> (tokio_postgres::Client, Vec<audit_logs_core::AuditEntry>) {
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until = migrate::MigrateOptions {
        until: Some(from),
        ..Default::default()
    };
    migrate::run(&options, &until).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        "create table before_upgrade (id int primary key, email text, secret text, n int);
         create table after_upgrade (id int primary key, email text, secret text, n int);
         create table strict (id int primary key);
         select audit.enable_tracking('before_upgrade', '{secret}');
         select audit.enable_tracking('after_upgrade', '{secret}');
         select audit.enable_tracking('strict', require_context => true);",
    )
    .await
    .unwrap();
    db.batch_execute(&workload("before_upgrade")).await.unwrap();
    let before = f.row_changes().await;
    assert_eq!(before.len(), 10, "{before:?}");
    let triggers = "select string_agg(oid::text, ',' order by oid) from pg_trigger where tgname like 'audit_capture_%'";
    let triggers_before: String = db.query_one(triggers, &[]).await.unwrap().get(0);

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(from + 1));
    let triggers_after: String = db.query_one(triggers, &[]).await.unwrap().get(0);
    assert_eq!(
        triggers_after, triggers_before,
        "the application's tables are left alone: their triggers are the same ones"
    );
    assert_eq!(f.row_changes().await, before, "history untouched");
    assert_eq!(
        f.count(regenerated).await,
        expected,
        "every capture function was regenerated"
    );
    assert!(f
        .audit
        .tracked_tables()
        .await
        .unwrap()
        .iter()
        .all(|t| t.needs_refresh.is_empty() && t.capture_role == "audit_writer"));

    db.batch_execute(&workload("after_upgrade")).await.unwrap();
    let after = f.row_changes().await[before.len()..].to_vec();
    assert!(after
        .iter()
        .all(|e| e.target_type.as_deref() == Some("public.after_upgrade")));
    assert_eq!(
        after.iter().map(content).collect::<Vec<_>>(),
        before.iter().map(content).collect::<Vec<_>>()
    );
    (db, before)
}

/// A table that requires a context still refuses a write without one, and takes one with.
async fn strict_still_requires_a_context(f: &common::Fixture, db: &tokio_postgres::Client) {
    let refused = db
        .batch_execute("insert into strict values (1)")
        .await
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "AL006");
    f.as_actor("8", "insert into strict values (2)").await;
    let last = f.row_changes().await.pop().unwrap();
    assert_eq!(last.actor_id.as_deref(), Some("8"));
}

/// What `audit.current_context()` gives: in the transaction that set it through the Node and
/// Rust layers' setter, in the next transaction, and for a value set by hand.
async fn current_contexts(db: &tokio_postgres::Client) -> Vec<Option<serde_json::Value>> {
    db.simple_query(
        "begin;
         select audit.set_checked_context('{\"actor_id\": \"9\"}');
         select audit.current_context()::text;
         commit;
         select audit.current_context()::text;
         begin;
         select set_config('audit.context', '{\"actor_id\": \"forged\"}', true);
         select audit.current_context()::text;
         commit;",
    )
    .await
    .unwrap()
    .into_iter()
    .filter_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r)
            if r.columns()[0].name() == "current_context" =>
        {
            Some(r.get(0).map(|t| serde_json::from_str(t).unwrap()))
        }
        _ => None,
    })
    .collect()
}

/// A database as V1-V6 left it, tracked and with history, then migrated by this build: V7
/// regenerates the capture functions in place (the context read in fewer statements), which
/// record exactly what V6's did.
#[tokio::test]
async fn a_v6_install_upgrades_to_lean_capture_that_records_exactly_the_same() {
    let f = common::empty().await;
    let (db, _) = upgrade_capture(
        &f,
        6,
        // V6's template said "attributed"; V7's does not.
        "select 3 - count(*) from pg_proc where pronamespace = 'audit'::regnamespace
          and proname like 'capture %' and prosrc like '%attributed%'",
        3,
    )
    .await;
    strict_still_requires_a_context(&f, &db).await;
    db.batch_execute(
        "begin; select audit.set_context('{\"actor_id\": \"7\"}'); insert into strict values (1); commit;",
    )
    .await
    .unwrap();
    // The Node and Rust layers' setter is PL/pgSQL now (planned once per session, not inlined
    // into each caller), and still attributes.
    let language: String = db
        .query_one(
            "select l.lanname::text from pg_proc p join pg_language l on l.oid = p.prolang
              where p.oid = 'audit.set_checked_context(text)'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(language, "plpgsql");
    assert_eq!(
        current_contexts(&db).await,
        [Some(serde_json::json!({"actor_id": "9"})), None, None]
    );
    f.audit.seal().await.unwrap();
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// A database as V1-V8 left it, tracked and with history, then migrated by this build: V9
/// regenerates the capture functions in place (the context's marker read beside it, each row
/// serialized once), which record exactly what V8's did, in the same transaction, with the same
/// rules; the Node and Rust layers' setter still attributes, and a context set by hand does not.
#[tokio::test]
async fn a_v8_install_upgrades_to_the_context_marker_and_records_exactly_the_same() {
    let f = common::empty().await;
    let (db, before) = upgrade_capture(
        &f,
        8,
        "select count(*) from pg_proc where pronamespace = 'audit'::regnamespace
          and proname like 'capture %' and prosrc like '%from new_rows r offset 0%'
          and prosrc like '%audit.context_marker%'",
        3,
    )
    .await;
    // In the same transaction: a rolled-back change leaves no entry.
    db.batch_execute("begin; insert into after_upgrade values (9, 'e@x.io', 's', 9); rollback;")
        .await
        .unwrap();
    assert_eq!(f.row_changes().await.len(), before.len() * 2);
    strict_still_requires_a_context(&f, &db).await;
    assert_eq!(
        current_contexts(&db).await,
        [Some(serde_json::json!({"actor_id": "9"})), None, None]
    );
    f.audit.seal().await.unwrap();
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// A database as V9 left it, tracked, filled, sealed, and with an erasure by actor done under
/// V9, then migrated by this build: the old redaction still verifies, and a data subject is
/// found wherever the log mentions them and erased there (V10), the chain intact.
#[tokio::test]
async fn a_v9_install_with_redactions_upgrades_to_data_subject_requests() {
    use audit_logs_core::{DataSubject, Page, RedactRequest, Subject};
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until_v9 = migrate::MigrateOptions {
        until: Some(9),
        ..Default::default()
    };
    migrate::run(&options, &until_v9).await.unwrap();
    f.sql()
        .await
        .batch_execute(
            r#"create table notes (id int primary key, author_email text, body text);
               select audit.enable_tracking('notes');
               begin;
               select audit.set_context('{"actor_id": "42", "actor_email": "ann@x.io", "ip_address": "203.0.113.9"}');
               insert into notes values (1, 'ann@x.io', 'Ann Smith wrote this');
               commit;
               begin;
               select audit.set_context('{"actor_id": "7", "metadata": {"reason": "ann@x.io asked"}}');
               update notes set body = 'About Ann Smith' where id = 1;
               commit;
               insert into notes values (2, 'bob@x.io', 'Bob wrote this');
               select audit.seal();
               select audit.redact('a secret of at least sixteen bytes'::bytea, actor_id => '42');"#,
        )
        .await
        .unwrap();
    let verified = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.ok && verified.rows_redacted == 1, "{verified:?}");

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(10));
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);

    let ann = DataSubject {
        email: Some("ann@x.io".into()),
        values: Some(vec!["Ann Smith".into()]),
        ..Default::default()
    };
    let found = f.audit.subject(&ann, &Page::default()).await.unwrap();
    let paths: Vec<(String, Vec<String>)> = found
        .entries
        .iter()
        .map(|m| (m.entry.action.clone(), m.paths.clone()))
        .collect();
    // V9's redaction already hashed Ann's actor columns; her e-mail and name remain in values.
    assert_eq!(
        paths,
        [
            (
                "UPDATE".to_owned(),
                [
                    "old_values.body",
                    "new_values.author_email",
                    "new_values.body",
                    "metadata.reason"
                ]
                .map(str::to_owned)
                .to_vec()
            ),
            (
                "INSERT".to_owned(),
                ["new_values.author_email", "new_values.body"]
                    .map(str::to_owned)
                    .to_vec()
            ),
        ]
    );
    let before = f.entries().await;
    let erased = f
        .audit
        .redact(
            &RedactRequest {
                subject: Subject::Person(ann.clone()),
                fields: None,
                reason: None,
                dry_run: false,
            },
            b"a secret of at least sixteen bytes",
        )
        .await
        .unwrap();
    assert_eq!(erased.rows_redacted, 2);
    assert!(f
        .audit
        .subject(&ann, &Page::default())
        .await
        .unwrap()
        .entries
        .is_empty());
    let after = f.entries().await;
    let bob = |entries: &[audit_logs_core::AuditEntry]| {
        entries
            .iter()
            .find(|e| e.target_id.as_deref() == Some("2"))
            .cloned()
    };
    assert_eq!(
        bob(&after),
        bob(&before),
        "another person's entry is untouched"
    );
    let verified = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_redacted, 2);
}

/// A database as V1-V10 left it, tracked and with history, then migrated by this build: V11
/// replaces the setters' PERFORMs by assignments (no query per setting), and nothing else: the
/// capture functions and the triggers are the same, the same workload records the same entries,
/// the Node and Rust layers' setter still attributes, a context set by hand still does not, and a
/// table requiring a context still refuses a write without one.
#[tokio::test]
async fn a_v10_install_upgrades_to_setters_without_perform_and_records_exactly_the_same() {
    let f = common::empty().await;
    let (db, before) = upgrade_capture(
        &f,
        10,
        // Not the capture functions this time: the two setters, neither running a query.
        "select count(*) from pg_proc
          where oid in ('audit.set_checked_context(text)'::regprocedure, 'audit.set_context(jsonb)'::regprocedure)
            and prosrc !~* 'perform'",
        2,
    )
    .await;
    db.batch_execute("begin; insert into after_upgrade values (9, 'e@x.io', 's', 9); rollback;")
        .await
        .unwrap();
    assert_eq!(f.row_changes().await.len(), before.len() * 2);
    strict_still_requires_a_context(&f, &db).await;
    assert_eq!(
        current_contexts(&db).await,
        [Some(serde_json::json!({"actor_id": "9"})), None, None]
    );
    // set_context still checks, drops null keys, and returns what it set.
    let set: serde_json::Value = db
        .query_one(
            "select audit.set_context('{\"actor_id\": \"5\", \"actor_type\": null}')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(set, serde_json::json!({"actor_id": "5"}));
    let refused = db
        .query_one("select audit.set_context('{\"actor_id\": 5}')", &[])
        .await
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "AL004");
    f.audit.seal().await.unwrap();
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// A database as V1-V11 left it, tracked and with history, then migrated by this build: V12 reads
/// a record's history and states through functions that keep their plans, and changes nothing
/// else (the same workload records the same entries). History and states of the records from
/// before the upgrade, key changes included, read as the entries say they must.
#[tokio::test]
async fn a_v11_install_upgrades_to_record_queries_that_read_its_history() {
    let f = common::empty().await;
    let (_db, before) = upgrade_capture(
        &f,
        11,
        // Not the capture functions this time: the readers V12 adds.
        "select count(*) from pg_proc
          where pronamespace = 'audit'::regnamespace
            and proname in ('record_key', 'record_history', 'state_of', 'state_at', 'states_at')",
        5,
    )
    .await;
    let table = || audit_logs_core::TableRef::from("before_upgrade");
    let mine = |key: &str, e: &&audit_logs_core::AuditEntry| {
        e.target_id.as_deref() == Some(key) || e.old_target_id.as_deref() == Some(key)
    };
    let mut times: Vec<_> = before.iter().map(|e| e.created_at).collect();
    times.push(chrono::Utc::now());
    for key in ["1", "2", "20", "3"] {
        let id = serde_json::json!(key.parse::<i64>().unwrap());
        let history = f
            .audit
            .history(&audit_logs_core::HistoryQuery::of_table(
                table(),
                id.clone(),
            ))
            .await
            .unwrap();
        let mut expected: Vec<i64> = before
            .iter()
            .filter(|e| mine(key, e))
            .map(|e| e.id)
            .collect();
        expected.reverse();
        assert!(!expected.is_empty());
        assert_eq!(
            history.iter().map(|e| e.id).collect::<Vec<_>>(),
            expected,
            "history of {key}"
        );

        let mut points = Vec::new();
        for &at in &times {
            let newest = before.iter().rfind(|e| mine(key, e) && e.created_at <= at);
            let state = newest.and_then(|e| {
                let exists = ["INSERT", "UPDATE"].contains(&e.action.as_str())
                    && e.target_id.as_deref() == Some(key);
                exists.then(|| e.new_values.clone()).flatten()
            });
            let read = f.audit.state_at(&table(), &id, at).await.unwrap();
            assert_eq!(read, state, "state of {key} at {at}");
            points.push((
                audit_logs_core::StatePoint { id: id.clone(), at },
                state,
                newest.map(|e| e.id),
            ));
        }
        let states = f
            .audit
            .states_at(
                &table(),
                &points.iter().map(|(p, _, _)| p.clone()).collect::<Vec<_>>(),
            )
            .await
            .unwrap();
        assert_eq!(
            states
                .iter()
                .map(|s| (s.state.clone(), s.entry_id))
                .collect::<Vec<_>>(),
            points
                .iter()
                .map(|(_, state, entry)| (state.clone(), *entry))
                .collect::<Vec<_>>(),
            "states of {key}"
        );
    }
}

/// V13 adds archives. A V12 install, tracked and filled (a past month sealed by V12's maintain
/// included), upgrades with its history untouched and its capture as it was, and its past
/// month archives, drops and verifies: the archive from its files, the live log across the
/// dropped month.
#[tokio::test]
async fn a_v12_install_upgrades_to_archives_and_archives_its_past_months() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until = migrate::MigrateOptions {
        until: Some(12),
        ..Default::default()
    };
    migrate::run(&options, &until).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        "create table before_upgrade (id int primary key, email text, secret text, n int);
         select audit.enable_tracking('before_upgrade', '{secret}');
         insert into audit.audit_logs (created_at, action, actor_id, ip_address, new_values, changed_fields)
         select date_trunc('month', now()) - interval '2 months' + g * interval '1 minute', 'test.old',
                'u' || g, '10.0.0.1', jsonb_build_object('n', g), array['n']
           from generate_series(1, 50) g;
         select audit.maintain(anonymize_after_days => 0);",
    )
    .await
    .unwrap();
    db.batch_execute(&workload("before_upgrade")).await.unwrap();
    let before = f.entries().await;

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(13));
    assert_eq!(f.entries().await, before, "history untouched");
    assert_eq!(
        f.count(
            "select count(*) from pg_proc
              where oid = 'audit.drop_archived_month(integer, bigint, text, text)'::regprocedure and prosecdef"
        )
        .await,
        1
    );

    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let archived = f
        .audit
        .archive(&audit_logs_core::archive::ArchiveOptions {
            to: url.clone(),
            then_drop: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(archived.rows, 50);
    assert_eq!(archived.months_dropped.len(), 1);
    let offline = audit_logs_core::archive::verify_archive(&url, None)
        .await
        .unwrap();
    assert!(offline.ok && offline.rows_checked == 50, "{offline:?}");
    let live = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(live.ok && live.rows_expired == 50, "{live:?}");
    // Capture goes on as before.
    db.batch_execute("insert into before_upgrade values (99, 'z@x.io', 's', 1)")
        .await
        .unwrap();
    assert_eq!(
        f.entries().await.last().unwrap().target_id.as_deref(),
        Some("99")
    );
}

/// V14 makes a record's history read events under other names only when there are some. A V13
/// install, tracked and filled (row changes, a key change, events under the table's other
/// names, one busy record), upgrades with its log untouched, and each record's history reads as
/// the log says: its row changes, the UPDATE that took its key away, its events, newest first.
#[tokio::test]
async fn a_v13_install_upgrades_to_history_that_reads_events_only_where_there_are() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until = migrate::MigrateOptions {
        until: Some(13),
        ..Default::default()
    };
    migrate::run(&options, &until).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        "create table before_upgrade (id int primary key, email text, secret text, n int);
         select audit.enable_tracking('before_upgrade', '{secret}');",
    )
    .await
    .unwrap();
    db.batch_execute(&workload("before_upgrade")).await.unwrap();
    db.batch_execute(
        "insert into before_upgrade values (5, 'e@x.io', 's', 0);
         do $$ begin for i in 1..300 loop update before_upgrade set n = i where id = 5; end loop; end $$;
         select audit.log_event('record.viewed', target_type => t, target_id => k)
           from (values ('BeforeUpgrade', '1'), ('before_upgrade', '20'), ('BeforeUpgrade', '5'),
                        ('other', '1')) as e(t, k);",
    )
    .await
    .unwrap();
    let before = f.entries().await;

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(14));
    assert_eq!(f.entries().await, before, "the log untouched");
    assert_eq!(
        f.count(
            "select count(*) from pg_proc
              where oid = 'audit.record_history(text, jsonb, bigint, bigint, text[])'::regprocedure
                and prosrc like '%limit 256%'"
        )
        .await,
        1
    );

    let names = ["public.before_upgrade", "BeforeUpgrade", "before_upgrade"];
    for key in ["1", "2", "20", "3", "5"] {
        let mut expected: Vec<i64> = before
            .iter()
            .filter(|e| {
                let name = e.target_type.as_deref().unwrap_or("");
                (e.target_id.as_deref() == Some(key) && names.contains(&name))
                    || (e.old_target_id.as_deref() == Some(key) && name == names[0])
            })
            .map(|e| e.id)
            .collect();
        expected.reverse();
        let mut query = audit_logs_core::HistoryQuery::of_table(
            "before_upgrade",
            serde_json::json!(key.parse::<i64>().unwrap()),
        );
        query.limit = Some(1000);
        let history: Vec<i64> = f
            .audit
            .history(&query)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(history, expected, "history of {key}");
    }
}

/// V15 adds the archive destination to the policy. A V14 install with a saved policy and a
/// month past its retention upgrades with the policy kept and no destination, so that its
/// retention drops as before; a library of the previous version still saves a policy (its
/// four-argument call), and a destination saved after the upgrade makes maintain archive first.
#[tokio::test]
async fn a_v14_install_upgrades_to_archiving_before_retention_and_keeps_its_policy() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until = migrate::MigrateOptions {
        until: Some(14),
        ..Default::default()
    };
    migrate::run(&options, &until).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        "select audit.configure(retention_months => 3, anonymize_after_days => 30);
         insert into audit.audit_logs (created_at, action, actor_id)
         select date_trunc('month', now()) - interval '2 months' + g * interval '1 minute', 'test.old', 'u' || g
           from generate_series(1, 20) g;
         select audit.maintain(anonymize_after_days => 0);",
    )
    .await
    .unwrap();
    let before = f.entries().await;
    let policy_before = f.audit.settings().await.unwrap();

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(15));
    assert_eq!(f.entries().await, before, "the log untouched");
    let policy = f.audit.settings().await.unwrap();
    assert_eq!(policy, policy_before);
    assert_eq!(
        (
            policy.retention_months,
            policy.anonymize_after_days,
            policy.archive_to
        ),
        (Some(3), Some(30), None)
    );
    // The previous version's call: four typed arguments.
    db.query(
        "select audit.configure($1, $2, $3, $4)",
        &[
            &None::<i32>,
            &Some(1i32),
            &None::<i32>,
            &None::<Vec<String>>,
        ],
    )
    .await
    .unwrap();
    assert_eq!(f.audit.settings().await.unwrap().retention_months, Some(1));

    let dir = tempfile::tempdir().unwrap();
    let to = format!("file://{}", dir.path().display());
    f.audit
        .configure(&audit_logs_core::Settings {
            archive_to: Some(to.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let maintained = f
        .audit
        .maintain(&audit_logs_core::MaintainOptions {
            anonymize_after_days: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(maintained.months_archived.len(), 1, "{maintained:?}");
    assert_eq!(maintained.partitions_dropped.len(), 1, "{maintained:?}");
    let archived = audit_logs_core::archive::verify_archive(&to, None)
        .await
        .unwrap();
    assert!(archived.ok, "{archived:?}");
    assert_eq!(archived.rows_checked, 20);
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// V16 records where each dropped month was archived (audit.archived_months), for history to
/// read it. A V15 install that archived and dropped a month learns it from the month's
/// audit.partition_archived event, and history reads the month back from its archive.
#[tokio::test]
async fn a_v15_install_with_dropped_months_upgrades_to_history_that_reads_them_from_the_archive() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until = migrate::MigrateOptions {
        until: Some(15),
        ..Default::default()
    };
    migrate::run(&options, &until).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        "create table orders (id int primary key, total int);
         insert into audit.audit_logs (created_at, action, target_type, target_id, new_values, actor_id)
         select date_trunc('month', now()) - interval '2 months' + g * interval '1 minute', 'UPDATE',
                'public.orders', (g % 3)::text, jsonb_build_object('id', g % 3, 'total', g), 'u' || g
           from generate_series(1, 30) g;
         select audit.maintain(anonymize_after_days => 0);",
    )
    .await
    .unwrap();
    f.audit
        .enable_tracking(&"orders".into(), &TrackingOptions::default())
        .await
        .unwrap();
    db.batch_execute(
        "insert into orders values (1, 100); update orders set total = 101 where id = 1",
    )
    .await
    .unwrap();
    let history = |include_archive| HistoryQuery {
        include_archive,
        ..HistoryQuery::of_table("orders", 1)
    };
    let whole = f.audit.history(&history(false)).await.unwrap();
    assert_eq!(whole.len(), 12, "10 archived-to-be, 2 live");
    // Archived and dropped by V15's drop_archived_month.
    let dir = tempfile::tempdir().unwrap();
    let to = format!("file://{}", dir.path().display());
    let archived = f
        .audit
        .archive(&audit_logs_core::archive::ArchiveOptions {
            to: to.clone(),
            then_drop: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(archived.months_dropped.len(), 1);
    let before = f.entries().await;

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(16));
    assert_eq!(f.entries().await, before, "the log untouched");
    // The month dropped before the upgrade is known from its audit.partition_archived event.
    let known: (String, i64, Option<i64>) = {
        let row = db
            .query_one(
                "select archive, row_count, last_id from audit.archived_months",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(known, (to, 30, None));
    assert_eq!(f.audit.history(&history(true)).await.unwrap(), whole);
    assert_eq!(f.audit.history(&history(false)).await.unwrap().len(), 2);
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
}

/// A database as V1-V16 left it, with mentions of two people in capitals and accents and an
/// erasure done by V16's `audit.redact_subject`, then migrated by this build: V17's first pass
/// (ASCII lower-casing where the terms allow it) finds exactly the entries V16's did, with the
/// same paths, V16's three-argument pass still answers (a library of before V17 during a deploy),
/// and an erasure through the new pass leaves nothing found and the chain verifying.
#[tokio::test]
async fn a_v16_install_with_an_erasure_upgrades_to_the_ascii_first_pass_and_finds_the_same() {
    use audit_logs_core::{DataSubject, Page, RedactRequest, Subject};
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until_v16 = migrate::MigrateOptions {
        until: Some(16),
        ..Default::default()
    };
    migrate::run(&options, &until_v16).await.unwrap();
    let db = f.sql().await;
    db.batch_execute(
        r#"create table people (id int primary key, name text, email text, notes jsonb);
           select audit.enable_tracking('people');
           begin;
           select audit.set_context('{"actor_id": "42", "actor_email": "JOSE@X.IO"}');
           insert into people values (1, 'JOSÉ MÜLLER', 'jose@x.io', '{"said": ["ask José Müller"]}'),
                                     (2, 'Ann Smith', 'ANN@X.IO', '{"by": "jose@x.io"}'),
                                     (3, 'Иван Петров', 'ivan@x.io', null);
           commit;
           update people set notes = '{"seen": "ИВАН ПЕТРОВ, ann@x.io"}' where id = 3;
           select audit.seal();
           select audit.redact_subject('a secret of at least sixteen bytes'::bytea, email => 'ann@x.io');"#,
    )
    .await
    .unwrap();
    // What V16 finds, through its own functions, for each of the other two.
    let v16_finds = "select l.id, audit.subject_paths(l, null, t)
                       from audit.audit_logs l, audit.subject_terms(null, $1, null, $2) as t
                      where audit.may_mention(l, null, audit.subject_patterns(t))
                        and cardinality(audit.subject_paths(l, null, t)) > 0
                      order by l.id desc";
    let people = [
        (Some("jose@x.io"), vec!["José Müller".to_owned()]),
        (None, vec!["Иван Петров".to_owned()]),
    ];
    let mut before = Vec::new();
    for (email, values) in &people {
        let rows = db.query(v16_finds, &[email, values]).await.unwrap();
        let found: Vec<(i64, Vec<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert!(!found.is_empty());
        before.push(found);
    }

    let report = f.audit.migrate(false).await.unwrap();
    assert_eq!(report.applied.first().map(|m| m.version), Some(17));
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);

    for ((email, values), found) in people.iter().zip(&before) {
        let subject = DataSubject {
            email: email.map(str::to_owned),
            values: Some(values.clone()),
            ..Default::default()
        };
        let page = f.audit.subject(&subject, &Page::default()).await.unwrap();
        let now: Vec<(i64, Vec<String>)> = page
            .entries
            .iter()
            .map(|m| (m.entry.id, m.paths.clone()))
            .collect();
        assert_eq!(&now, found, "{values:?}: the same entries, the same paths");
        let rows = db.query(v16_finds, &[email, values]).await.unwrap();
        assert_eq!(rows.len(), found.len(), "V16's pass still answers");

        let erased = f
            .audit
            .redact(
                &RedactRequest {
                    subject: Subject::Person(subject.clone()),
                    fields: None,
                    reason: None,
                    dry_run: false,
                },
                b"a secret of at least sixteen bytes",
            )
            .await
            .unwrap();
        assert_eq!(erased.rows_redacted as usize, found.len());
        let page = f.audit.subject(&subject, &Page::default()).await.unwrap();
        assert!(page.entries.is_empty(), "{values:?} erased");
    }
    let verified = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(verified.ok, "{verified:?}");
}
