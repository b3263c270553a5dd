//! The short soak that runs in `npm test`: 16 writers for a few seconds, every check.

use std::time::Duration;

use audit_logs_core::testing::TestDatabase;
use audit_logs_soak::{crash_safe_server, prepare, run, Faults, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_lose_nothing_and_replay_exactly() {
    let db = TestDatabase::create().await.unwrap();
    prepare(&db.url).await.unwrap();
    let options = SoakOptions {
        writers: 16,
        duration: Duration::from_secs(6),
        transactions_per_writer: 150,
        seed: 7,
        faults: Faults::default(),
    };
    let report = run(&db.url, &options).await.unwrap();
    assert!(report.passed(), "{report:#?}");
    // The run exercised what it claims to.
    assert!(report.transactions_committed > 100, "{report:#?}");
    assert!(report.transactions_rolled_back > 10, "{report:#?}");
    assert!(report.savepoints_rolled_back > 5, "{report:#?}");
    assert_eq!(report.audit_rows, report.row_changes_committed);
    assert!(
        report.replay_differences.len() == 4 && report.rows_replayed > 1000,
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_through_killed_backends_and_server_crashes_lose_nothing() {
    let server = crash_safe_server().await.unwrap();
    let url = server.url("postgres");
    prepare(&url).await.unwrap();
    let options = SoakOptions {
        writers: 16,
        duration: Duration::from_secs(10),
        transactions_per_writer: 1_000_000,
        seed: 11,
        faults: Faults {
            kill_every: Some(Duration::from_millis(200)),
            restart_every: Some((Duration::from_secs(3), server.clone())),
        },
    };
    let report = run(&url, &options).await.unwrap();
    assert!(report.passed(), "{report:#?}");
    // The faults happened, and hit transactions.
    assert!(
        report.server_restarts >= 2 && report.backends_killed >= 10,
        "{report:#?}"
    );
    assert!(report.transactions_interrupted >= 10, "{report:#?}");
    assert!(report.transactions_committed > 100, "{report:#?}");
    assert_eq!(report.audit_rows, report.row_changes_committed);
}
