//! Faults: a backend terminated in the middle of a transaction or of a seal leaves no partial
//! state; the work re-runs cleanly and verification passes.
mod common;

use std::time::Duration;

use audit_logs_core::{AuditContext, TrackingOptions, VerifyOptions};

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
    // The next transaction is recorded as usual, and the log verifies.
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
    terminate(&f, pid).await;
    assert!(
        sealing.await.unwrap().is_err(),
        "the killed seal reports an error"
    );
    assert_eq!(
        f.count("select count(*) from audit.seals").await,
        0,
        "nothing of the killed seal remains"
    );

    let sealed = f.audit.seal().await.unwrap();
    assert_eq!(sealed.row_count, 150_000, "{sealed:?}");
    let report = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(report.ok && report.rows_checked == 150_000, "{report:?}");
}
