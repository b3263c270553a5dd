//! Faults: a backend terminated in the middle of a transaction or of a seal leaves no partial
//! state; the work re-runs cleanly and verification passes.
mod common;

use std::time::Duration;

use audit_logs_core::{AuditContext, MigrationState, TrackingOptions, VerifyOptions};

async fn tracked(f: &common::Fixture) {
    f.sql()
        .await
        .batch_execute("create table items (id int primary key, n int)")
        .await
        .unwrap();
    f.audit
        .enable_tracking(&"items".into(), &TrackingOptions::default())
        .await
        .unwrap();
}

/// A change on the (empty) tracked table is recorded as usual, and the log seals and verifies.
async fn records_and_verifies(f: &common::Fixture) {
    f.as_actor("next", "insert into items values (1, 1)").await;
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where actor_id = 'next'")
            .await,
        1
    );
    f.audit.seal().await.unwrap();
    let report = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.ok && report.rows_checked == 1, "{report:?}");
}

/// Terminates a backend and waits until it is gone: a backend that has sent its FATAL error
/// may take a while to roll back and close its socket, and until then its client cannot tell
/// that the connection is dead (a pool would hand it out once more).
async fn terminate(f: &common::Fixture, pid: i32) {
    let admin = f.sql().await;
    let killed: bool = admin
        .query_one("select pg_terminate_backend($1, 30000)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed, "backend {pid} was running and is gone");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_backend_killed_mid_transaction_leaves_neither_rows_nor_audit_rows() {
    let f = common::migrated().await;
    tracked(&f).await;
    let mut victim = f.sql().await;
    let pid: i32 = victim
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let tx = victim.transaction().await.unwrap();
    let who = AuditContext {
        actor_id: Some("victim".into()),
        ..Default::default()
    };
    audit_logs_core::set_context(&tx, &who).await.unwrap();
    tx.batch_execute(
        "insert into items select g, g from generate_series(1, 1000) g; update items set n = n + 1",
    )
    .await
    .unwrap();
    terminate(&f, pid).await;
    assert!(
        tx.commit().await.is_err(),
        "the commit of a killed backend fails"
    );

    assert_eq!(f.count("select count(*) from items").await, 0);
    assert_eq!(f.count("select count(*) from audit.audit_logs").await, 0);
    records_and_verifies(&f).await;
}

#[tokio::test]
async fn a_seal_killed_midway_reruns_cleanly_and_verifies() {
    let f = common::migrated().await;
    tracked(&f).await;
    // Enough rows that a seal takes a few seconds.
    f.as_actor(
        "loader",
        "insert into items select g, g from generate_series(1, 150000) g",
    )
    .await;
    let sealing = {
        let audit = f.audit.clone();
        tokio::spawn(async move { audit.seal().await })
    };
    // Find the sealing backend, and kill it while it works.
    let watcher = f.sql().await;
    let pid = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let row = watcher
            .query_opt(
                "select pid from pg_stat_activity where datname = current_database()
                   and state = 'active' and query like '%audit.seal%' and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            break row.get::<_, i32>(0);
        }
        assert!(
            !sealing.is_finished(),
            "the seal finished before it could be killed"
        );
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Not waiting for the backend to exit: it sends its FATAL error, then rolls back before it
    // closes its socket. The pool must not hand that connection out again meanwhile.
    let killed: bool = watcher
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let error = sealing.await.unwrap().unwrap_err();
    assert!(error.ends_connection(), "{error:?}");

    // Right away, on the same pool.
    let sealed = f.audit.seal().await.unwrap();
    assert_eq!(sealed.row_count, 150_000, "{sealed:?}");
    assert_eq!(
        f.count("select count(*) from audit.seals").await,
        1,
        "nothing of the killed seal remains"
    );
    let report = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.ok && report.rows_checked == 150_000, "{report:?}");
}

/// Everything a migration creates or replaces in a database: relations, functions (their bodies and
/// grants) and triggers of the audit schema, and event triggers. (Roles are cluster-wide, and
/// other tests create them too.)
async fn audit_objects(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "select 'relation ' || relname || ' ' || relkind::text || coalesce(' ' || relacl::text, '') from pg_class
              where relnamespace = 'audit'::regnamespace
             union all
             -- With a digest of the body and the grants: a migration may only replace functions
             -- (V7 does) or grant (V8).
             select 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) || coalesce(' ' || proacl::text, '') from pg_proc p
              where pronamespace = 'audit'::regnamespace
             union all
             select 'trigger ' || tgname || ' on ' || tgrelid::regclass::text from pg_trigger
              where tgrelid in (select oid from pg_class where relnamespace = 'audit'::regnamespace)
             union all
             select 'event trigger ' || evtname from pg_event_trigger
             order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn a_backend_killed_mid_migrate_leaves_each_migration_whole_and_reruns_cleanly() {
    let shipped = audit_logs_core::migrate::shipped();
    for (version, name, _) in &shipped {
        let f = common::empty().await;
        let admin = f.sql().await;
        // refinery's history table, made beforehand so that an uncommitted history row for
        // this version can hold the migrate back after the migration's own SQL has run, in its
        // transaction, uncommitted: the most partial moment there is.
        admin
            .batch_execute(
                "create schema audit;
                 create table audit.refinery_schema_history (
                   version int4 primary key, name varchar(255), applied_on varchar(255),
                   checksum varchar(255))",
            )
            .await
            .unwrap();
        let mut blocker = f.sql().await;
        let hold = blocker.transaction().await.unwrap();
        hold.execute(
            "insert into audit.refinery_schema_history (version, name) values ($1, 'held')",
            &[version],
        )
        .await
        .unwrap();

        let migrating = {
            let audit = f.audit.clone();
            tokio::spawn(async move { audit.migrate(false).await })
        };
        let pid = loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let row = admin
                .query_opt(
                    "select pid from pg_stat_activity where datname = current_database()
                       and wait_event_type = 'Lock' and query ilike '%insert into audit.refinery_schema_history%'",
                    &[],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                break row.get::<_, i32>(0);
            }
            assert!(!migrating.is_finished(), "V{version} was never held back");
        };
        // What other sessions see now: the migrations before this one, committed.
        let before = audit_objects(&admin).await;
        terminate(&f, pid).await;
        match migrating.await.unwrap() {
            Err(audit_logs_core::Error::Migration(
                audit_logs_core::error::MigrationError::Failed {
                    migration, applied, ..
                },
            )) => {
                assert_eq!(migration, format!("V{version}__{name}"));
                assert_eq!(
                    applied,
                    (1..*version).collect::<Vec<_>>(),
                    "the ones before V{version} were applied"
                );
            }
            other => panic!("V{version}: a killed migrate reports a migration error: {other:?}"),
        }
        hold.rollback().await.unwrap();

        assert_eq!(
            audit_objects(&admin).await,
            before,
            "nothing of V{version} remains after its backend was killed"
        );
        let applied: Vec<i32> = f
            .audit
            .status()
            .await
            .unwrap()
            .migrations
            .iter()
            .filter(|m| m.state == MigrationState::Applied)
            .map(|m| m.version)
            .collect();
        assert_eq!(applied, (1..*version).collect::<Vec<_>>());

        // The re-run applies the rest, once, and the log works and verifies.
        let rerun = f.audit.migrate(false).await.unwrap();
        assert_eq!(
            rerun.applied.iter().map(|m| m.version).collect::<Vec<_>>(),
            shipped
                .iter()
                .map(|(v, _, _)| *v)
                .filter(|v| v >= version)
                .collect::<Vec<_>>()
        );
        assert_ne!(
            audit_objects(&admin).await,
            before,
            "V{version} is in place"
        );
        assert!(f.audit.status().await.unwrap().is_up_to_date());
        tracked(&f).await;
        records_and_verifies(&f).await;
    }
}
