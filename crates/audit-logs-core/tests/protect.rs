//! Protecting the log: append-only, least privilege, seals and verification, retention,
//! anonymization and erasure, on a real PostgreSQL (a fresh database per test).
mod common;

use audit_logs_core::{
    ConnectOptions, ErasureError, Error, IntegrityError, MaintainOptions, ProblemKind,
    RedactRequest, RetentionError, Settings, Subject, TrackingOptions, VerifyOptions,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY: &[u8] = b"a secret of at least sixteen bytes";

/// A tracked table `orders` with `n` rows inserted by actor `u1` (with e-mail, IP, user agent).
async fn with_orders(n: i32) -> common::Fixture {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create table orders (id int primary key, total int, email text)")
        .await
        .unwrap();
    f.audit
        .enable_tracking(&"orders".into(), &TrackingOptions::default())
        .await
        .unwrap();
    write_orders(&f, "u1", 1, n).await;
    f
}

async fn write_orders(f: &common::Fixture, actor: &str, from: i32, to: i32) {
    f.sql()
        .await
        .batch_execute(&format!(
            "begin;
             select audit.set_context('{{\"actor_id\": \"{actor}\", \"actor_email\": \"{actor}@example.com\",
                                       \"ip_address\": \"203.0.113.7\", \"user_agent\": \"Firefox\"}}');
             insert into orders select g, g * 10, 'buyer' || g || '@example.com' from generate_series({from}, {to}) g;
             commit;"
        ))
        .await
        .unwrap();
}

/// A superuser session with triggers off: how an attacker with full rights edits the log.
async fn tamper(f: &common::Fixture, sql: &str) {
    f.sql()
        .await
        .batch_execute(&format!(
            "set session_replication_role = replica; {sql}; reset session_replication_role;"
        ))
        .await
        .unwrap();
}

async fn verify(f: &common::Fixture) -> audit_logs_core::VerifyReport {
    f.audit.verify(&VerifyOptions::default()).await.unwrap()
}

fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn updates_deletes_and_truncates_are_refused_even_for_the_owner() {
    let f = with_orders(3).await;
    let owner = f.sql().await;
    let partition: String = owner
        .query_one(
            "select tableoid::regclass::text from audit.audit_logs limit 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for statement in [
        "update audit.audit_logs set actor_id = 'someone else'".to_owned(),
        "delete from audit.audit_logs".to_owned(),
        "truncate audit.audit_logs".to_owned(),
        format!("delete from {partition}"),
        format!("update {partition} set actor_id = 'x'"),
        format!("truncate {partition}"),
        "truncate audit.audit_logs_default".to_owned(),
        // The setting alone, as an application could set it, unlocks nothing.
        "select set_config('audit.maintenance', 'on', false); delete from audit.audit_logs"
            .to_owned(),
    ] {
        let err = owner.batch_execute(&statement).await.expect_err(&statement);
        assert_eq!(sqlstate(&err), "AL008", "{statement}: {err:?}");
        let mapped = Error::from(err);
        assert_eq!(mapped.code(), "AUDIT_LOGS_APPEND_ONLY");
        assert!(mapped.to_string().contains("append-only"), "{mapped}");
    }
    owner
        .batch_execute("reset audit.maintenance")
        .await
        .unwrap();
    f.audit.seal().await.unwrap();
    // A month as audit.drop_archived_month records it (row triggers need a row to refuse).
    owner
        .batch_execute(
            "insert into audit.archived_months (month, archive, manifest_sha256, row_count) \
             values (202001, 'file:///var/archive/audit', 'x', 1)",
        )
        .await
        .unwrap();
    for statement in [
        "delete from audit.seals",
        "update audit.seal_chunks set head = head",
        "truncate audit.redactions",
        // Where history reads dropped months from: not movable to another archive.
        "update audit.archived_months set archive = 'file:///elsewhere'",
        "delete from audit.archived_months",
        "truncate audit.archived_months",
    ] {
        let err = owner.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "AL008", "{statement}: {err:?}");
    }
    assert_eq!(f.entries().await.len(), 3);
}

#[tokio::test]
async fn an_application_role_is_recorded_but_cannot_alter_rows_or_maintain() {
    let f = with_orders(1).await;
    let role = f.db.create_role("app").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "grant select, insert, update, delete on orders to {role}"
        ))
        .await
        .unwrap();
    let app = f.connect_as(&role).await;
    app.batch_execute(
        "begin; select audit.set_context('{\"actor_id\": \"7\"}');
         insert into orders values (2, 20); update orders set total = 21 where id = 2; commit;",
    )
    .await
    .unwrap();
    let entries = f.entries().await;
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2].actor_id.as_deref(), Some("7"));
    for statement in [
        "update audit.audit_logs set actor_id = 'x'",
        "delete from audit.audit_logs",
        "truncate audit.audit_logs",
        "select set_config('audit.maintenance', 'on', false); delete from audit.audit_logs",
        "select audit.seal()",
        "select audit.maintain()",
        "select audit.configure(retention_months => 1)",
        "select audit.redact('a secret of at least sixteen bytes'::bytea, actor_id => '7')",
        "select audit.move_default_rows()",
        "select audit.drop_expired_partitions(1)",
        "select audit.anonymize_due(1, '{ip_address}')",
        "delete from audit.seals",
        // A month of its own making, for history to read as archived.
        "insert into audit.archived_months (month, archive, manifest_sha256, row_count) \
         values (202001, 'file:///tmp/forged', 'x', 1)",
        "select audit.drop_archived_month(202001, 1, 'file:///tmp/forged', 'x')",
    ] {
        let err = app.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{statement}: {err:?}");
    }
    assert_eq!(f.entries().await.len(), 3);
}

#[tokio::test]
async fn the_reader_and_maintainer_roles_exist_with_their_privileges() {
    let f = common::migrated().await;
    let client = f.sql().await;
    let row = client
        .query_one(
            "select has_table_privilege('audit_reader', 'audit.audit_logs', 'select'),
                    has_table_privilege('audit_reader', 'audit.audit_logs', 'update'),
                    has_function_privilege('audit_maintainer', 'audit.seal()', 'execute'),
                    has_function_privilege('audit_maintainer', 'audit.maintain(integer, integer, integer)', 'execute'),
                    has_function_privilege('audit_reader', 'audit.seal()', 'execute'),
                    pg_has_role('audit_maintainer', 'audit_reader', 'member')",
            &[],
        )
        .await
        .unwrap();
    let flags: Vec<bool> = (0..6).map(|i| row.get(i)).collect();
    assert_eq!(flags, [true, false, true, true, false, true]);
}

#[tokio::test]
async fn a_maintainer_that_is_not_the_owner_can_seal_maintain_and_verify() {
    let f = with_orders(5).await;
    let role = f.db.create_role("ops").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!("grant audit_maintainer to {role}"))
        .await
        .unwrap();
    let ops = audit_logs_core::AuditLogs::connect(&f.db.url_for(&role))
        .await
        .unwrap();
    assert_eq!(ops.seal().await.unwrap().row_count, 5);
    ops.maintain(&MaintainOptions::default()).await.unwrap();
    let report = ops.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.ok, "{report:?}");
    // Maintenance through the functions does not let it change rows directly.
    let client = f.connect_as(&role).await;
    let err = client
        .batch_execute("delete from audit.audit_logs")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
}

#[tokio::test]
async fn seal_covers_committed_rows_once_and_verify_passes() {
    let f = with_orders(25).await;
    let first = f.audit.seal().await.unwrap();
    assert_eq!(first.row_count, 25);
    assert_eq!(first.seal_id, Some(1));
    let again = f.audit.seal().await.unwrap();
    assert_eq!(again.row_count, 0);
    assert_eq!(again.seal_id, None);
    write_orders(&f, "u2", 26, 30).await;
    let second = f.audit.seal().await.unwrap();
    assert_eq!(second.row_count, 5);
    let report = verify(&f).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, 30);
    assert_eq!(report.seals_checked, 2);
    assert_eq!(report.head, second.head);
    assert_eq!(report.short_head.as_deref().map(str::len), Some(32));
    assert!(report.first_problem.is_none());
}

#[tokio::test]
async fn a_row_of_an_open_transaction_is_sealed_next_time() {
    let f = with_orders(2).await;
    let mut open = f.sql().await;
    let tx = open.transaction().await.unwrap();
    tx.batch_execute("insert into orders values (100, 1)")
        .await
        .unwrap();
    // Committed after the open transaction started: still waits for it (txid order).
    write_orders(&f, "u3", 3, 3).await;
    let first = f.audit.seal().await.unwrap();
    assert_eq!(first.row_count, 2, "{first:?}");
    tx.commit().await.unwrap();
    let second = f.audit.seal().await.unwrap();
    assert_eq!(second.row_count, 2, "{second:?}");
    let report = verify(&f).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, 4);
    assert_eq!(report.rows_unsealed, 0);
}

#[tokio::test]
async fn seal_refuses_a_repeatable_read_transaction() {
    let f = with_orders(1).await;
    let err = f
        .sql()
        .await
        .batch_execute("begin isolation level repeatable read; select audit.seal(); commit")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "AL011");
    assert!(matches!(
        Error::from(err),
        Error::Integrity(IntegrityError::Seal { .. })
    ));
}

#[tokio::test]
async fn verify_finds_a_superuser_edit_at_the_right_row() {
    let f = with_orders(50).await;
    f.audit.seal().await.unwrap();
    let target: i64 = f.entries().await[30].id;
    tamper(
        &f,
        &format!("update audit.audit_logs set new_values = new_values || '{{\"total\": 1}}' where id = {target}"),
    )
    .await;
    let report = verify(&f).await;
    assert!(!report.ok);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Changed);
    assert_eq!(problem.row_id, Some(target));
    assert_eq!(problem.seal_id, Some(1));
    assert_eq!(report.rows_changed, 1);
    assert_eq!(report.rows_missing, 0);
    assert_eq!(report.rows_checked, 50);
}

#[tokio::test]
async fn verify_finds_an_edit_of_any_column() {
    let f = with_orders(3).await;
    f.audit.seal().await.unwrap();
    let id = f.entries().await[1].id;
    for (column, value) in [
        ("created_at", "created_at + interval '1 microsecond'"),
        ("action", "'DELETE'"),
        ("target_type", "'public.other'"),
        ("target_id", "'999'"),
        ("actor_id", "'someone else'"),
        ("actor_email", "null"),
        ("ip_address", "'198.51.100.1'"),
        ("user_agent", "'curl'"),
        ("request_id", "'r1'"),
        ("metadata", "'{\"reason\": \"x\"}'"),
        ("changed_fields", "'{total}'"),
        ("old_values", "'{}'"),
        ("actor_type", "'system'"),
        ("old_target_id", "'1'"),
    ] {
        let f = with_orders(3).await;
        f.audit.seal().await.unwrap();
        tamper(
            &f,
            &format!("update audit.audit_logs set {column} = {value} where id = {id}"),
        )
        .await;
        let report = verify(&f).await;
        let problem = report.first_problem.expect(column);
        assert_eq!(problem.kind, ProblemKind::Changed, "{column}");
        assert_eq!(problem.row_id, Some(id), "{column}");
    }
}

#[tokio::test]
async fn verify_finds_a_deleted_row_and_an_inserted_one() {
    let f = with_orders(20).await;
    f.audit.seal().await.unwrap();
    let entries = f.entries().await;
    tamper(
        &f,
        &format!("delete from audit.audit_logs where id = {}", entries[7].id),
    )
    .await;
    let report = verify(&f).await;
    assert!(!report.ok);
    let problem = report.first_problem.clone().unwrap();
    assert_eq!(problem.kind, ProblemKind::Missing);
    assert_eq!(problem.row_id, Some(entries[7].id));
    assert_eq!(report.rows_missing, 1);
    assert_eq!(report.rows_checked, 19);

    // A forged row slipped into the sealed range (an old txid).
    let g = with_orders(5).await;
    g.audit.seal().await.unwrap();
    let txid = g.entries().await[0].txid;
    g.sql()
        .await
        .batch_execute(&format!(
            "insert into audit.audit_logs (txid, action, actor_id) values ({txid}, 'user.login', 'forged')"
        ))
        .await
        .unwrap();
    let report = verify(&g).await;
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Unexpected);
    assert_eq!(report.rows_unexpected, 1);
    assert_eq!(report.rows_changed + report.rows_missing, 0);
}

#[tokio::test]
async fn a_full_chain_rewrite_is_detected_against_an_exported_digest() {
    let f = with_orders(10).await;
    f.audit.seal().await.unwrap();
    let exported = verify(&f).await.short_head.unwrap();
    write_orders(&f, "u2", 11, 12).await;
    f.audit.seal().await.unwrap();
    let later = f
        .audit
        .verify(&VerifyOptions {
            against: Some(exported.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(later.ok, "{later:?}");
    assert_eq!(later.against_found, Some(true));

    // Edit a row, then recompute every digest and seal consistently.
    let id = f.entries().await[3].id;
    tamper(
        &f,
        &format!(
            "update audit.audit_logs set actor_id = 'someone else' where id = {id};
             delete from audit.seal_chunks; delete from audit.seals"
        ),
    )
    .await;
    f.audit.seal().await.unwrap();
    let consistent = verify(&f).await;
    assert!(
        consistent.ok,
        "the rewritten chain is self-consistent: {consistent:?}"
    );
    let report = f
        .audit
        .verify(&VerifyOptions {
            against: Some(exported),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!report.ok);
    assert_eq!(report.against_found, Some(false));
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::DigestNotFound
    );

    let err = f
        .audit
        .verify(&VerifyOptions {
            against: Some("not hex".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[tokio::test]
async fn forged_seals_are_detected() {
    let f = with_orders(4).await;
    f.audit.seal().await.unwrap();
    tamper(&f, "update audit.seals set head = sha256(head)").await;
    let report = verify(&f).await;
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::SealMismatch
    );

    let g = with_orders(4).await;
    g.audit.seal().await.unwrap();
    tamper(&g, "update audit.seal_chunks set head = sha256(head)").await;
    let report = verify(&g).await;
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::SealMismatch
    );
}

#[tokio::test]
async fn a_disabled_guard_trigger_fails_verification() {
    let f = with_orders(2).await;
    f.audit.seal().await.unwrap();
    f.sql()
        .await
        .batch_execute("alter table audit.audit_logs disable trigger audit_append_only")
        .await
        .unwrap();
    let report = verify(&f).await;
    assert!(!report.ok);
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::GuardDisabled
    );
    assert!(!report.guard_problems.is_empty());
}

#[tokio::test]
async fn sealing_during_concurrent_writes_skips_nothing() {
    let f = with_orders(1).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8i32 {
        let url = f.db.url.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut client = ConnectOptions::parse(&url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut n = 0i32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tx = client.transaction().await.unwrap();
                let id = 1_000_000 + w * 100_000 + n;
                tx.execute("insert into orders values ($1, 1)", &[&id])
                    .await
                    .unwrap();
                // Keep the transaction open across seals now and then.
                tokio::time::sleep(std::time::Duration::from_millis((n % 7) as u64 * 3)).await;
                tx.execute("update orders set total = 2 where id = $1", &[&id])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut seals = 0;
    for _ in 0..30 {
        f.audit.seal().await.unwrap();
        seals += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 50, "only {written} transactions");
    f.audit.seal().await.unwrap();
    let total = f.count("select count(*) from audit.audit_logs").await;
    let sealed = f
        .count("select coalesce(sum(row_count), 0)::bigint from audit.seals")
        .await;
    assert_eq!(total, 1 + 2 * written as i64);
    assert_eq!(sealed, total, "after {seals} seals");
    let report = verify(&f).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.rows_checked, total);
    assert_eq!(report.rows_unsealed, 0);
    assert!(report.seals_checked > 5, "{report:?}");
}

#[tokio::test]
async fn concurrent_seals_do_not_overlap() {
    let f = with_orders(200).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let audit = f.audit.clone();
        tasks.push(tokio::spawn(async move {
            let mut sealed = 0;
            for _ in 0..5 {
                sealed += audit.seal().await.unwrap().row_count;
            }
            (i, sealed)
        }));
        write_orders(&f, "u", 1000 + i * 10, 1000 + i * 10 + 9).await;
    }
    let mut sealed = 0;
    for t in tasks {
        sealed += t.await.unwrap().1;
    }
    sealed += f.audit.seal().await.unwrap().row_count;
    assert_eq!(sealed, 240);
    assert!(verify(&f).await.ok);
}

/// Rows in old months, inserted as a restore would (the owner may insert).
async fn insert_old_rows(f: &common::Fixture, months_ago: &[i32]) {
    for m in months_ago {
        f.sql()
            .await
            .batch_execute(&format!(
                "insert into audit.audit_logs (created_at, action, ip_address, user_agent)
                 select date_trunc('month', now()) - interval '{m} months' + interval '3 days', 'test.old', '10.0.0.1', 'ua'
                   from generate_series(1, 3)"
            ))
            .await
            .unwrap();
    }
}

async fn partitions(f: &common::Fixture) -> Vec<String> {
    f.sql()
        .await
        .query(
            "select c.relname::text from pg_partition_tree('audit.audit_logs') t join pg_class c on c.oid = t.relid
              where t.isleaf order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn rows_in_the_default_partition_are_moved_without_loss() {
    let f = with_orders(2).await;
    insert_old_rows(&f, &[30]).await;
    assert_eq!(
        f.count("select count(*) from audit.audit_logs_default")
            .await,
        3
    );
    f.audit.seal().await.unwrap();
    let before = f.entries().await;
    let report = f
        .audit
        .maintain(&MaintainOptions {
            anonymize_after_days: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.rows_moved, 3);
    assert_eq!(
        f.count("select count(*) from audit.audit_logs_default")
            .await,
        0
    );
    let after = f.entries().await;
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} was lost or changed");
    }
    let moved_event = f
        .count("select count(*) from audit.audit_logs where action = 'audit.rows_moved'")
        .await;
    assert_eq!(moved_event, 1);
    let month_partition = f
        .count("select count(*) from audit.audit_logs l where l.action = 'test.old' and l.tableoid::regclass::text like 'audit.audit_logs_p%'")
        .await;
    assert_eq!(month_partition, 3);
    let report = verify(&f).await;
    assert!(report.ok, "{report:?}");
    // The new partition is append-only too.
    let err = f
        .sql()
        .await
        .batch_execute("delete from audit.audit_logs where action = 'test.old'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "AL008");
}

#[tokio::test]
async fn retention_drops_only_expired_partitions_and_verification_still_passes() {
    let f = with_orders(4).await;
    insert_old_rows(&f, &[26, 14, 11]).await;
    f.audit.seal().await.unwrap();
    let report = f
        .audit
        .maintain(&MaintainOptions {
            retention_months: Some(12),
            anonymize_after_days: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.partitions_dropped.len(), 2, "{report:?}");
    let left = partitions(&f).await;
    let month = |ago: i32| -> String {
        let now = chrono::Utc::now();
        let total = now.format("%Y").to_string().parse::<i32>().unwrap() * 12
            + now.format("%m").to_string().parse::<i32>().unwrap()
            - 1
            - ago;
        format!("audit_logs_p{:04}_{:02}", total / 12, total % 12 + 1)
    };
    assert!(
        !left.contains(&month(26)) && !left.contains(&month(14)),
        "{left:?}"
    );
    assert!(
        left.contains(&month(11)) && left.contains(&month(0)),
        "{left:?}"
    );
    assert_eq!(report.partitions_dropped, vec![month(26), month(14)]);
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'test.old'")
            .await,
        3
    );
    assert_eq!(
        f.count("select count(*) from audit.dropped_partitions")
            .await,
        2
    );
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'audit.partition_dropped'")
            .await,
        2
    );
    f.audit.seal().await.unwrap();
    let verified = verify(&f).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_expired, 6);

    // A row deleted from a month that was not dropped is still caught.
    tamper(&f, "delete from audit.audit_logs where action = 'test.old'").await;
    let verified = verify(&f).await;
    assert_eq!(verified.rows_missing, 3);
    assert_eq!(verified.rows_expired, 6);
}

#[tokio::test]
async fn anonymization_touches_only_due_rows() {
    let f = with_orders(3).await;
    let client = f.sql().await;
    client
        .batch_execute(
            "insert into audit.audit_logs (created_at, action, ip_address, user_agent, actor_email) values
               (now() - interval '100 days', 'test.due', '203.0.113.9', 'Firefox', 'a@example.com'),
               (now() - interval '95 days', 'test.due', '2001:db8:1:2::7', null, null),
               (now() - interval '10 days', 'test.recent', '203.0.113.9', 'Firefox', null)",
        )
        .await
        .unwrap();
    f.audit.seal().await.unwrap();
    let report = f.audit.maintain(&MaintainOptions::default()).await.unwrap();
    assert_eq!(report.rows_anonymized, 2, "{report:?}");
    let rows = client
        .query(
            "select action, ip_address::text, user_agent, actor_email from audit.audit_logs
              where action like 'test.%' order by id",
            &[],
        )
        .await
        .unwrap();
    type Anonymized = (String, Option<String>, Option<String>, Option<String>);
    let got: Vec<Anonymized> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [
            (
                "test.due".into(),
                Some("203.0.113.0/24".into()),
                None,
                Some("a@example.com".into())
            ),
            (
                "test.due".into(),
                Some("2001:db8:1::/48".into()),
                None,
                None
            ),
            (
                "test.recent".into(),
                Some("203.0.113.9/32".into()),
                Some("Firefox".into()),
                None
            ),
        ]
    );
    // Today's rows (with an IP and a user agent) are untouched.
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where target_type = 'public.orders' and user_agent = 'Firefox'")
            .await,
        3
    );
    assert_eq!(
        f.count("select count(*) from audit.redactions where kind = 'anonymization'")
            .await,
        2
    );
    let again = f.audit.maintain(&MaintainOptions::default()).await.unwrap();
    assert_eq!(again.rows_anonymized, 0);
    assert!(verify(&f).await.ok);
    // No index costs the capture writes: the due rows are found since a watermark.
    assert_eq!(
        f.count(
            "select count(*) from pg_indexes where schemaname = 'audit' and indexdef like '%user_agent%'"
        )
        .await,
        0
    );
    assert_eq!(
        f.count(
            "select count(*) from audit.anonymization_watermark
              where anonymized_before between now() - interval '90 days 1 minute' and now() - interval '90 days'"
        )
        .await,
        1,
        "the watermark is at the cutoff"
    );
}

#[tokio::test]
async fn anonymization_reads_only_rows_since_its_watermark_yet_finds_backfills_and_new_fields() {
    let f = with_orders(0).await;
    let client = f.sql().await;
    client
        .batch_execute(
            "insert into audit.audit_logs (created_at, action, ip_address, user_agent) values
               (now() - interval '100 days', 'test.old', '203.0.113.9', 'Firefox'),
               (now() - interval '50 days', 'test.middle', '203.0.113.9', 'Firefox')",
        )
        .await
        .unwrap();
    let anonymize = |days: i32, fields: &'static [&'static str]| {
        let audit = f.audit.clone();
        async move {
            let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            audit
                .configure(&Settings {
                    anonymize_fields: Some(fields),
                    ..Default::default()
                })
                .await
                .unwrap();
            audit
                .maintain(&MaintainOptions {
                    anonymize_after_days: Some(days),
                    ..Default::default()
                })
                .await
                .unwrap()
                .rows_anonymized
        }
    };
    let state = || async {
        client
            .query(
                "select ip_address::text, user_agent from audit.audit_logs
                  where action like 'test.%' order by id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect::<Vec<(String, Option<String>)>>()
    };
    let firefox = || Some("Firefox".to_owned());

    assert_eq!(anonymize(90, &["ip_address"]).await, 1);
    assert_eq!(
        state().await,
        [
            ("203.0.113.0/24".to_owned(), firefox()),
            ("203.0.113.9/32".to_owned(), firefox())
        ]
    );
    // A shorter delay reaches the rows between the watermark and the new cutoff.
    assert_eq!(anonymize(30, &["ip_address"]).await, 1);
    assert_eq!(
        state().await,
        [
            ("203.0.113.0/24".to_owned(), firefox()),
            ("203.0.113.0/24".to_owned(), firefox())
        ]
    );
    // The same policy again finds nothing to do...
    assert_eq!(anonymize(30, &["ip_address"]).await, 0);
    // ...but a row written since with an old time (a backfill) is still found.
    client
        .batch_execute(
            "insert into audit.audit_logs (created_at, action, ip_address, user_agent) values
               (now() - interval '120 days', 'test.backfilled', '203.0.113.9', 'Firefox')",
        )
        .await
        .unwrap();
    assert_eq!(anonymize(30, &["ip_address"]).await, 1);
    assert_eq!(anonymize(30, &["ip_address"]).await, 0);
    // A field the watermark does not cover: every due row is read again, the old ones too.
    assert_eq!(anonymize(30, &["ip_address", "user_agent"]).await, 3);
    assert_eq!(
        state().await,
        [
            ("203.0.113.0/24".to_owned(), None),
            ("203.0.113.0/24".to_owned(), None),
            ("203.0.113.0/24".to_owned(), None)
        ]
    );
    f.audit.seal().await.unwrap();
    assert!(verify(&f).await.ok);
}

fn hmac_hex(value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
    mac.update(value.as_bytes());
    format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn redaction_of_an_actor_keeps_verification_green() {
    let f = with_orders(6).await;
    write_orders(&f, "u2", 7, 8).await;
    f.audit.seal().await.unwrap();
    let report = f
        .audit
        .redact(
            &RedactRequest {
                subject: Subject::Actor("u1".into()),
                fields: None,
                reason: Some("GDPR request 12".into()),
                dry_run: false,
            },
            KEY,
        )
        .await
        .unwrap();
    assert_eq!(report.rows_redacted, 6);
    let entries = f.entries().await;
    let redacted: Vec<_> = entries
        .iter()
        .filter(|e| e.target_type.as_deref() == Some("public.orders"))
        .collect();
    for e in &redacted[..6] {
        assert_eq!(e.actor_id.as_deref(), Some(hmac_hex("u1").as_str()));
        assert_eq!(
            e.actor_email.as_deref(),
            Some(hmac_hex("u1@example.com").as_str())
        );
        assert_eq!(e.ip_address, None);
        assert_eq!(e.user_agent.as_deref(), Some(hmac_hex("Firefox").as_str()));
    }
    assert_eq!(redacted[6].actor_id.as_deref(), Some("u2"));
    // The event names the subject only by its pseudonym.
    let event = entries
        .iter()
        .find(|e| e.action == "audit.redaction")
        .unwrap();
    let metadata = event.metadata.as_ref().unwrap().to_string();
    assert!(!metadata.contains("\"u1\""), "{metadata}");
    assert!(metadata.contains("GDPR request 12"));

    let verified = verify(&f).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_redacted, 6);
    f.audit.seal().await.unwrap();
    assert!(verify(&f).await.ok);

    // Other tampering is still found: a redacted value changed afterwards, and another row.
    let first = redacted[0].id;
    tamper(
        &f,
        &format!("update audit.audit_logs set actor_email = 'back@example.com' where id = {first}"),
    )
    .await;
    let report = verify(&f).await;
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::RedactionMismatch);
    assert_eq!(problem.row_id, Some(first));
    let other = redacted[7].id;
    tamper(
        &f,
        &format!("update audit.audit_logs set actor_id = 'u9' where id = {other}"),
    )
    .await;
    let report = verify(&f).await;
    assert_eq!(report.rows_changed, 2, "{report:?}");
}

#[tokio::test]
async fn redaction_of_a_record_hashes_its_values_before_or_after_sealing() {
    let f = with_orders(3).await;
    f.audit.seal().await.unwrap();
    f.sql()
        .await
        .batch_execute("update orders set email = 'new@example.com' where id = 2")
        .await
        .unwrap();
    // The update is not sealed yet: the redaction covers sealed and unsealed rows alike.
    let email_of_order_2 = RedactRequest {
        subject: Subject::Target {
            target_type: "public.orders".into(),
            id: serde_json::json!(2),
        },
        fields: Some(vec!["values.email".into()]),
        reason: None,
        dry_run: false,
    };
    let report = f.audit.redact(&email_of_order_2, KEY).await.unwrap();
    assert_eq!(report.rows_redacted, 2);
    let history = f
        .audit
        .history(&audit_logs_core::HistoryQuery::of_table("orders", 2))
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        history[0].new_values.as_ref().unwrap()["email"],
        serde_json::json!(hmac_hex("new@example.com"))
    );
    assert_eq!(
        history[0].old_values.as_ref().unwrap()["email"],
        serde_json::json!(hmac_hex("buyer2@example.com"))
    );
    assert_eq!(
        history[1].new_values.as_ref().unwrap()["total"],
        serde_json::json!(20)
    );
    f.audit.seal().await.unwrap();
    let verified = verify(&f).await;
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_redacted, 2);
    // Redacting again (same key) changes nothing and still verifies.
    let again = f.audit.redact(&email_of_order_2, KEY).await.unwrap();
    assert_eq!(again.rows_redacted, 0);
    assert!(verify(&f).await.ok);
}

#[tokio::test]
async fn bad_redactions_and_settings_are_refused() {
    let f = with_orders(1).await;
    let err = f
        .audit
        .redact(
            &RedactRequest {
                subject: Subject::Actor("u1".into()),
                fields: None,
                reason: None,
                dry_run: false,
            },
            b"short",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_INVALID_REDACTION");
    let err = f
        .audit
        .redact(
            &RedactRequest {
                subject: Subject::Actor("u1".into()),
                fields: Some(vec!["password".into()]),
                reason: None,
                dry_run: false,
            },
            KEY,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Erasure(ErasureError::InvalidRedaction { .. })),
        "{err:?}"
    );
    let err = f
        .audit
        .configure(&Settings {
            anonymize_fields: Some(vec!["actor_email".into()]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Retention(RetentionError::InvalidSettings { .. })
        ),
        "{err:?}"
    );
    let err = f
        .audit
        .configure(&Settings {
            retention_months: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Retention(RetentionError::InvalidSettings { .. })
        ),
        "{err:?}"
    );
    let saved = f
        .audit
        .configure(&Settings {
            retention_months: Some(24),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(saved.retention_months, Some(24));
    assert_eq!(saved.anonymize_after_days, Some(90));
    assert_eq!(f.audit.settings().await.unwrap(), saved);
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'audit.settings_changed'")
            .await,
        1
    );
}
