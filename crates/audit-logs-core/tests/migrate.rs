mod common;

use audit_logs_core::{migrate, Error, MigrationError, MigrationState};

#[tokio::test]
async fn migrate_applies_every_migration_once_and_status_reports_it() {
    let f = common::empty().await;
    let before = f.audit.status().await.unwrap();
    assert!(!before.is_up_to_date());
    assert!(before
        .migrations
        .iter()
        .all(|m| m.state == MigrationState::Pending));

    let report = f.audit.migrate(false).await.unwrap();
    let shipped = migrate::shipped();
    assert_eq!(report.applied.len(), shipped.len());
    assert_eq!(
        report.applied.iter().map(|m| m.version).collect::<Vec<_>>(),
        shipped.iter().map(|(v, _, _)| *v).collect::<Vec<_>>()
    );

    let again = f.audit.migrate(false).await.unwrap();
    assert!(again.applied.is_empty());
    let status = f.audit.status().await.unwrap();
    assert!(status.is_up_to_date());
    assert!(status.migrations.iter().all(|m| m.applied_on.is_some()));
}

#[tokio::test]
async fn history_table_lives_in_the_audit_schema() {
    let f = common::migrated().await;
    let n = f
        .count("select count(*) from audit.refinery_schema_history")
        .await;
    assert_eq!(n as usize, migrate::shipped().len());
    let elsewhere = f
        .count("select count(*) from pg_tables where tablename = 'refinery_schema_history' and schemaname <> 'audit'")
        .await;
    assert_eq!(elsewhere, 0);
}

#[tokio::test]
async fn dry_run_lists_pending_sql_and_changes_nothing() {
    let f = common::empty().await;
    let report = f.audit.migrate(true).await.unwrap();
    assert!(report.dry_run);
    assert_eq!(report.applied.len(), migrate::shipped().len());
    assert!(report.sql[0].contains("create table audit.audit_logs"));
    let schemas = f
        .count("select count(*) from pg_namespace where nspname = 'audit'")
        .await;
    assert_eq!(schemas, 0, "a dry run must not even create the schema");
}

#[tokio::test]
async fn eight_concurrent_migrations_all_succeed_and_apply_each_migration_once() {
    let f = common::empty().await;
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let audit = f.audit.clone();
            tokio::spawn(async move { audit.migrate(false).await })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        applied += run
            .await
            .unwrap()
            .expect("every concurrent migrate succeeds")
            .applied
            .len();
    }
    assert_eq!(
        applied,
        migrate::shipped().len(),
        "each migration applied exactly once in all"
    );
    let rows = f
        .count("select count(*) from audit.refinery_schema_history")
        .await;
    assert_eq!(rows as usize, migrate::shipped().len());
}

#[tokio::test]
async fn an_edited_migration_is_refused_by_kind() {
    let f = common::migrated().await;
    f.sql()
        .await
        .execute(
            "update audit.refinery_schema_history set checksum = '1' where version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = f.audit.migrate(false).await.unwrap_err();
    assert!(
        matches!(err, Error::Migration(MigrationError::Diverged { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "AUDIT_LOGS_MIGRATION_DIVERGED");
    let status = f.audit.status().await.unwrap();
    assert_eq!(status.migrations[0].state, MigrationState::Diverged);
}

#[tokio::test]
async fn a_migration_from_a_newer_version_is_refused() {
    let f = common::migrated().await;
    f.sql()
        .await
        .execute(
            "insert into audit.refinery_schema_history values (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            &[],
        )
        .await
        .unwrap();
    let err = f.audit.migrate(false).await.unwrap_err();
    assert!(
        matches!(err, Error::Migration(MigrationError::Unknown { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_column_and_table_is_commented_and_no_oid_is_stored() {
    let f = common::migrated().await;
    let uncommented = f
        .count(
            "select count(*) from pg_attribute a join pg_class c on c.oid = a.attrelid
              where c.relnamespace = 'audit'::regnamespace and c.relkind in ('r', 'p', 'v')
                and c.relname not like 'audit_logs\\_%' and c.relname <> 'refinery_schema_history'
                and a.attnum > 0 and not a.attisdropped and col_description(c.oid, a.attnum) is null",
        )
        .await;
    assert_eq!(uncommented, 0);
    let oid_columns = f
        .count(
            "select count(*) from pg_attribute a join pg_class c on c.oid = a.attrelid
              where c.relnamespace = 'audit'::regnamespace and c.relkind in ('r', 'p') and a.attnum > 0
                and a.atttypid in ('oid'::regtype, 'regclass'::regtype, 'regproc'::regtype, 'regprocedure'::regtype)",
        )
        .await;
    assert_eq!(oid_columns, 0);
}

#[tokio::test]
async fn the_audit_table_is_partitioned_by_month_with_a_default_partition() {
    let f = common::migrated().await;
    let strategy: String = f
        .sql()
        .await
        .query_one(
            "select pg_get_partkeydef('audit.audit_logs'::regclass)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(strategy, "RANGE (created_at)");
    let default = f
        .count("select count(*) from pg_partition_tree('audit.audit_logs') t join pg_class c on c.oid = t.relid where c.relname = 'audit_logs_default'")
        .await;
    assert_eq!(default, 1);
    let current = f
        .count("select count(*) from pg_class where relname = 'audit_logs_p' || to_char(now() at time zone 'UTC', 'YYYY_MM')")
        .await;
    assert_eq!(current, 1);
    // A row far outside every monthly partition still goes in.
    f.sql()
        .await
        .execute(
            "insert into audit.audit_logs (created_at, action) values ('1999-01-01', 'test.old')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        f.count("select count(*) from audit.audit_logs_default")
            .await,
        1
    );
}

#[tokio::test]
async fn calling_the_api_before_migrating_says_to_migrate() {
    let f = common::empty().await;
    let err = f.audit.tracked_tables().await.unwrap_err();
    assert!(
        matches!(err, Error::Migration(MigrationError::NotMigrated)),
        "{err:?}"
    );
}
