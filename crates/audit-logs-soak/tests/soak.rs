//! The short soak that runs in `npm test`: 16 writers for a few seconds, every check.

use std::time::Duration;

use audit_logs_core::testing::TestDatabase;
use audit_logs_soak::{prepare, run, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_lose_nothing_and_replay_exactly() {
    let db = TestDatabase::create().await.unwrap();
    prepare(&db.url).await.unwrap();
    let options = SoakOptions {
        writers: 16,
        duration: Duration::from_secs(6),
        transactions_per_writer: 150,
        seed: 7,
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
