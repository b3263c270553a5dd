//! Archives: whole, sealed months written as Parquet and verified from the files alone, on a
//! real PostgreSQL (a fresh database per test) and a real directory.
mod common;
// The same on S3 (an S3-compatible server started by the tests).
#[path = "archive/s3.rs"]
mod s3;

use std::path::Path;

use audit_logs_core::archive::{self, format, ArchiveOptions, Manifest};
use audit_logs_core::ProblemKind;
use audit_logs_core::{
    ArchiveError, Error, MaintainOptions, RedactRequest, Subject, VerifyOptions,
};

const KEY: &[u8] = b"a secret of at least sixteen bytes";

/// Rows in the months 3 and 2 before the current one, as a restore writes them (the owner may
/// insert), of every shape the digest reads: JSON with unicode, arrays that need quoting,
/// IPv4 and IPv6, nulls. Month -3 gets two seals (rows written after the first one). Returns
/// the months as `YYYY-MM`, oldest first.
async fn past_months(f: &common::Fixture, rows: i32) -> Vec<String> {
    let insert = |m: i32, from: i32, to: i32| {
        format!(
            "insert into audit.audit_logs (created_at, action, target_type, target_id, old_values, new_values,
                                           changed_fields, actor_id, actor_type, actor_email, ip_address,
                                           user_agent, request_id, metadata)
             select date_trunc('month', now()) - interval '{m} months' + interval '3 days' + g * interval '1 second',
                    case when g % 3 = 0 then 'UPDATE' else 'INSERT' end, 'public.orders', g::text,
                    case when g % 3 = 0 then jsonb_build_object('total', g, 'note', 'café ☕') end,
                    jsonb_build_object('id', g, 'total', g * 10, 'tags', jsonb_build_array('a', 'b c')),
                    case g % 4 when 0 then array['total', 'a b', '', 'NULL', 'x\"y\\z'] when 1 then null
                                when 2 then '{{}}'::text[] else array['total'] end,
                    'u' || (g % 5), 'user', 'u' || (g % 5) || '@example.com',
                    case when g % 2 = 0 then '203.0.113.7'::inet else '2001:db8::1'::inet end,
                    'Firefox', 'req-' || g, case when g % 7 = 0 then '{{\"k\": [1, 2.50]}}'::jsonb end
               from generate_series({from}, {to}) g"
        )
    };
    let db = f.sql().await;
    db.batch_execute(&insert(3, 1, rows)).await.unwrap();
    db.batch_execute(&insert(2, 1, rows)).await.unwrap();
    // Into the default partition; maintain moves them into their months and seals them.
    // (Anonymization off: the rows of month -3 may be more than 90 days old.)
    f.audit
        .maintain(&MaintainOptions {
            anonymize_after_days: Some(0),
            ..Default::default()
        })
        .await
        .unwrap();
    db.batch_execute(&insert(3, rows + 1, rows + 40))
        .await
        .unwrap();
    f.audit.seal().await.unwrap();
    let months: Vec<String> = db
        .query(
            "select to_char(date_trunc('month', now()) - interval '3 months', 'YYYY-MM'),
                    to_char(date_trunc('month', now()) - interval '2 months', 'YYYY-MM')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .flat_map(|r| [r.get::<_, String>(0), r.get::<_, String>(1)])
        .collect();
    months
}

fn url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn options(dir: &Path) -> ArchiveOptions {
    ArchiveOptions {
        to: url(dir),
        ..Default::default()
    }
}

async fn month_rows(f: &common::Fixture, month: &str) -> i64 {
    f.count(&format!(
        "select count(*) from audit.audit_logs where to_char(created_at at time zone 'UTC', 'YYYY-MM') = '{month}'"
    ))
    .await
}

#[tokio::test]
async fn months_archive_and_verify_from_the_files_alone() {
    let f = common::migrated().await;
    let months = past_months(&f, 300).await;
    let dir = tempfile::tempdir().unwrap();
    let report = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(report.months_archived, months);
    assert!(report.months_skipped.is_empty());
    assert_eq!(report.rows, 640);
    assert_eq!(
        report.files, 8,
        "a Parquet file, entries, redactions, manifest per month"
    );
    for month in &months {
        let manifest = archive::read_manifest(
            &*archive::destination::open(&url(dir.path()), None)
                .await
                .unwrap(),
            month,
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(manifest.row_count, month_rows(&f, month).await);
        // What a reader gets: the same rows as the live log, in (txid, id) order.
        let rows =
            format::read_rows(std::fs::read(dir.path().join(&manifest.files[0].path)).unwrap())
                .unwrap();
        let live: Vec<(i64, i64, Option<String>, Option<String>)> = f
            .sql()
            .await
            .query(
                "select txid, id, new_values::text, changed_fields::text from audit.audit_logs
                  where to_char(created_at at time zone 'UTC', 'YYYY-MM') = $1 order by txid, id",
                &[month],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let archived: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.txid,
                    r.id,
                    r.text("new_values").map(str::to_owned),
                    r.changed_fields.as_deref().map(format::array_text),
                )
            })
            .collect();
        assert_eq!(archived, live);
    }
    // Month -3 spans two seals.
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(dir.path().join(&months[0]).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest.seals.len(), 2, "{:?}", manifest.seals);

    // No database: the files alone.
    drop(f);
    let verified = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.months_checked, 2);
    assert_eq!(verified.rows_checked, 640);
    assert_eq!(verified.seals_checked, 2);
    let head = verified.head.clone().unwrap();
    let against = archive::verify_archive(&url(dir.path()), Some(&head[..32]))
        .await
        .unwrap();
    assert!(
        against.ok && against.against_found == Some(true),
        "{against:?}"
    );
    let elsewhere =
        archive::verify_archive(&url(dir.path()), Some("00112233445566778899aabbccddeeff"))
            .await
            .unwrap();
    assert!(!elsewhere.ok);
    assert_eq!(
        elsewhere.first_problem.unwrap().kind,
        ProblemKind::DigestNotFound
    );
}

#[tokio::test]
async fn a_changed_value_in_a_parquet_file_is_named_by_row_month_and_file() {
    let f = common::migrated().await;
    let months = past_months(&f, 200).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();

    // Rewritten as a valid Parquet file, one value changed.
    let file = dir.path().join(&months[1]).join("part-0000.parquet");
    let mut rows = format::read_rows(std::fs::read(&file).unwrap()).unwrap();
    let victim = rows[57].clone();
    rows[57].set_text("new_values", Some(r#"{"id": 58, "total": 1}"#.into()));
    std::fs::write(&file, format::write_rows(&rows).unwrap()).unwrap();

    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.clone().unwrap();
    assert_eq!(problem.kind, ProblemKind::Changed, "{problem:?}");
    assert_eq!(problem.row_id, Some(victim.id));
    assert_eq!(problem.txid, Some(victim.txid));
    assert_eq!(problem.month.as_deref(), Some(months[1].as_str()));
    assert_eq!(
        problem.file.as_deref(),
        Some(format!("{}/part-0000.parquet", months[1]).as_str())
    );
    // The file's digest differs too, and the other month is untouched.
    assert!(report.problem_count >= 2, "{report:?}");

    // Re-hashing the file into the manifest does not hide it: the seal's entries and chunk
    // heads still disagree.
    let manifest_path = dir.path().join(&months[1]).join("manifest.json");
    let mut manifest: Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    manifest.files[0].bytes = bytes.len() as u64;
    manifest.files[0].sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert_eq!(report.first_problem.unwrap().row_id, Some(victim.id));
}

#[tokio::test]
async fn a_tampered_manifest_fails_verification() {
    let f = common::migrated().await;
    let months = past_months(&f, 50).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    let manifest_path = dir.path().join(&months[0]).join("manifest.json");
    let original = std::fs::read(&manifest_path).unwrap();

    // A chunk head changed (in both places the manifest lists it): the seal no longer recomputes.
    let mut manifest: Manifest = serde_json::from_slice(&original).unwrap();
    let forged = "ab".repeat(32);
    manifest.chunks[0].head = forged.clone();
    for seal in &mut manifest.seals {
        for chunk in &mut seal.chunks {
            if chunk.chunk == manifest.chunks[0].chunk && seal.id == manifest.chunks[0].seal_id {
                chunk.head = forged.clone();
            }
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(!report.ok);
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::SealMismatch
    );

    // A row count changed.
    let mut manifest: Manifest = serde_json::from_slice(&original).unwrap();
    manifest.row_count += 1;
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(
        !archive::verify_archive(&url(dir.path()), None)
            .await
            .unwrap()
            .ok
    );

    // Not a manifest at all.
    std::fs::write(&manifest_path, b"{\"format\": 1").unwrap();
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert_eq!(
        report.first_problem.unwrap().kind,
        ProblemKind::ManifestInvalid
    );
}

#[tokio::test]
async fn an_interrupted_archive_leaves_no_manifest_and_reruns_cleanly() {
    let f = common::migrated().await;
    let months = past_months(&f, 100).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    // As a run killed while writing month -2 leaves it: files, a half-written one, no manifest.
    let month = dir.path().join(&months[1]);
    std::fs::remove_file(month.join("manifest.json")).unwrap();
    std::fs::write(month.join("part-0001.parquet.tmp"), b"PAR1 half").unwrap();
    std::fs::write(month.join("part-0003.parquet"), b"PAR1 garbage").unwrap();

    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(
        report.ok,
        "an incomplete month is not part of the archive: {report:?}"
    );
    assert_eq!(report.months_incomplete, vec![months[1].clone()]);

    let rerun = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(rerun.months_skipped, vec![months[0].clone()]);
    assert_eq!(rerun.months_archived, vec![months[1].clone()]);
    let mut left: Vec<String> = std::fs::read_dir(&month)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "entries.bin",
            "manifest.json",
            "part-0000.parquet",
            "redactions.bin"
        ]
    );
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(report.ok && report.months_checked == 2, "{report:?}");

    // And a third run has nothing to do.
    let again = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(again.months_skipped, months);
    assert_eq!(again.rows, 0);
}

#[tokio::test]
async fn then_drop_drops_verified_months_and_the_live_log_still_verifies() {
    let f = common::migrated().await;
    let months = past_months(&f, 120).await;
    let dir = tempfile::tempdir().unwrap();
    let before = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(before.ok, "{before:?}");

    let report = f
        .audit
        .archive(&ArchiveOptions {
            then_drop: Some(true),
            ..options(dir.path())
        })
        .await
        .unwrap();
    assert_eq!(report.months_dropped, months);
    for month in &months {
        assert_eq!(month_rows(&f, month).await, 0);
    }
    assert_eq!(
        f.count("select count(*) from audit.dropped_partitions")
            .await,
        2
    );
    assert_eq!(
        f.count("select count(*) from audit.audit_logs where action = 'audit.partition_archived'")
            .await,
        2
    );
    let live = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(live.ok, "{live:?}");
    assert_eq!(live.rows_expired, 280);

    // The archive joins the live chain, and through it the head exported before the drop.
    let joined = f
        .audit
        .verify_archive(&url(dir.path()), before.short_head.as_deref())
        .await
        .unwrap();
    assert!(joined.ok, "{joined:?}");
    assert_eq!(joined.against_found, Some(true));
    assert_eq!(joined.live_head, live.head);
}

#[tokio::test]
async fn a_month_redacted_after_sealing_archives_and_verifies() {
    let f = common::migrated().await;
    let months = past_months(&f, 60).await;
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
    assert!(report.rows_redacted >= 24, "{report:?}");
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    let verified = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(verified.rows_redacted, report.rows_redacted);

    // The redacted values are bound by the redaction's digest: changing them is seen.
    let file = dir.path().join(&months[0]).join("part-0000.parquet");
    let mut rows = format::read_rows(std::fs::read(&file).unwrap()).unwrap();
    let i = rows
        .iter()
        .position(|r| {
            !r.text("actor_id")
                .is_some_and(|a| a.len() == 2 && a.starts_with('u'))
        })
        .expect("a redacted row");
    rows[i].set_text("actor_id", Some("u1".into()));
    std::fs::write(&file, format::write_rows(&rows).unwrap()).unwrap();
    let problem = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.kind, ProblemKind::RedactionMismatch);
    assert_eq!(problem.row_id, Some(rows[i].id));
}

#[tokio::test]
async fn months_not_ready_and_unknown_schemes_are_refused_with_typed_errors() {
    let f = common::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    // Rows of a past month still in the default partition (maintain not run).
    f.sql()
        .await
        .batch_execute(
            "create table audit.audit_logs_p2020_01 partition of audit.audit_logs
               for values from ('2020-01-01 00:00:00+00') to ('2020-02-01 00:00:00+00');
             insert into audit.audit_logs (created_at, action) values ('2020-01-05 00:00:00+00', 'test.old');",
        )
        .await
        .unwrap();
    // Not sealed: archive seals first, so this one is ready; a row inserted by a transaction
    // still open at the seal is not, which a forged later insert stands for here.
    let report = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(report.months_archived, ["2020-01"]);
    f.sql()
        .await
        .batch_execute("insert into audit.audit_logs (created_at, action, txid) values ('2020-01-06 00:00:00+00', 'test.late', 1)")
        .await
        .unwrap();
    std::fs::remove_file(dir.path().join("2020-01/manifest.json")).unwrap();
    let err = f.audit.archive(&options(dir.path())).await.unwrap_err();
    assert!(
        matches!(err, Error::Archive(ArchiveError::MonthNotReady { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_MONTH_NOT_READY");

    let err = f
        .audit
        .archive(&ArchiveOptions {
            to: "gs://bucket/audit".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_UNSUPPORTED");
    assert!(err.to_string().contains("s3://bucket/prefix"), "{err}");
    // A lock is S3's: asked of a directory, refused before anything is written.
    let err = f
        .audit
        .archive(&ArchiveOptions {
            lock_mode: Some("compliance".into()),
            lock_days: Some(1),
            ..options(dir.path())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_UNSUPPORTED");
}

/// Deployed as the README says: the application's role, granted audit_reader and
/// audit_maintainer (not the owner of the log), archives and drops; with audit_reader alone,
/// archive is refused (it seals first), naming the grant, and nothing is dropped.
#[tokio::test]
async fn the_maintainer_role_archives_and_drops_and_a_reader_alone_cannot_drop() {
    let f = common::migrated().await;
    let months = past_months(&f, 30).await;
    let (app, audit) = f.audit_as("app", "audit_reader").await;
    let dir = tempfile::tempdir().unwrap();
    let then_drop = ArchiveOptions {
        then_drop: Some(true),
        ..options(dir.path())
    };
    let err = audit.archive(&then_drop).await.unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");
    assert!(
        err.to_string().contains("grant audit_maintainer to"),
        "{err}"
    );
    assert_eq!(month_rows(&f, &months[0]).await, 70);

    f.sql()
        .await
        .batch_execute(&format!("grant audit_maintainer to {app}"))
        .await
        .unwrap();
    let report = audit.archive(&then_drop).await.unwrap();
    assert_eq!(report.months_dropped, months);
    assert!(f.audit.verify(&VerifyOptions::default()).await.unwrap().ok);
    assert!(
        audit
            .verify_archive(&url(dir.path()), None)
            .await
            .unwrap()
            .ok
    );
}

/// audit.drop_archived_month refuses a month whose rows are not exactly the archived ones, a
/// month not ended, and a caller without audit_maintainer.
#[tokio::test]
async fn drop_archived_month_refuses_what_was_not_archived() {
    let f = common::migrated().await;
    let months = past_months(&f, 10).await;
    let month: i32 = months[0].replace('-', "").parse().unwrap();
    let db = f.sql().await;
    let drop = |month: i32, rows: i64| {
        let db = &db;
        async move {
            db.query_one(
                "select audit.drop_archived_month($1, $2, 'file:///x', 'ab')",
                &[&month, &rows],
            )
            .await
            .map_err(Error::from)
        }
    };
    let err = drop(month, 49).await.unwrap_err();
    assert!(
        matches!(err, Error::Archive(ArchiveError::DropRefused { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_DROP_REFUSED");
    let current: i32 = db
        .query_one("select to_char(now(), 'YYYYMM')::int", &[])
        .await
        .unwrap()
        .get(0);
    let err = drop(current, 0).await.unwrap_err();
    assert!(err.to_string().contains("has not ended"), "{err}");
    assert_eq!(month_rows(&f, &months[0]).await, 50);

    let reader = f.db.create_role("reader").await.unwrap();
    db.batch_execute(&format!("grant audit_reader to {reader}"))
        .await
        .unwrap();
    let refused = f
        .connect_as(&reader)
        .await
        .query_one(
            "select audit.drop_archived_month($1, 50, 'file:///x', 'ab')",
            &[&month],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code().unwrap().code(), "42501");
    assert_eq!(month_rows(&f, &months[0]).await, 50);
}

/// A Parquet file damaged anywhere (here every 97th byte flipped, its footer included) is
/// reported as the month's problem: reading it back never ends the process.
#[tokio::test]
async fn a_damaged_parquet_file_is_reported_never_crashes() {
    let f = common::migrated().await;
    let months = past_months(&f, 120).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    let file = dir.path().join(&months[0]).join("part-0000.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    for at in (0..bytes.len()).step_by(97) {
        bytes[at] ^= 0xff;
    }
    std::fs::write(&file, bytes).unwrap();
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.clone().unwrap();
    assert_eq!(
        problem.month.as_deref(),
        Some(months[0].as_str()),
        "{report:?}"
    );
}

/// With an archive destination in the policy, a month past retention is never dropped
/// unarchived: `audit.maintain()` in SQL (cron) leaves it and names it; `maintain` of the
/// package archives it, verifies it and drops it; when archiving fails, nothing is dropped.
#[tokio::test]
async fn retention_archives_a_month_before_dropping_it_when_the_policy_says_where() {
    let f = common::migrated().await;
    let months = past_months(&f, 50).await;
    let partition = |month: &str| format!("audit_logs_p{}", month.replace('-', "_"));
    let dir = tempfile::tempdir().unwrap();
    let settings = |retention: i32, to: &str| audit_logs_core::Settings {
        retention_months: Some(retention),
        archive_to: Some(to.to_owned()),
        ..Default::default()
    };
    let saved = f
        .audit
        .configure(&settings(2, &url(dir.path())))
        .await
        .unwrap();
    assert_eq!(saved.archive_to, Some(url(dir.path())));
    let rows_3 = month_rows(&f, &months[0]).await;
    assert!(rows_3 > 0);

    // SQL alone cannot archive: the month stays, named.
    let sql: serde_json::Value = f
        .sql()
        .await
        .query_one("select audit.maintain(anonymize_after_days => 0)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sql["partitionsDropped"], serde_json::json!([]));
    assert_eq!(
        sql["partitionsAwaitingArchive"],
        serde_json::json!([partition(&months[0])])
    );
    assert_eq!(month_rows(&f, &months[0]).await, rows_3);

    // The package's maintain archives it, then drops it.
    let no_anonymization = MaintainOptions {
        anonymize_after_days: Some(0),
        ..Default::default()
    };
    let report = f.audit.maintain(&no_anonymization).await.unwrap();
    assert_eq!(report.months_archived, vec![months[0].clone()]);
    assert_eq!(report.partitions_dropped, vec![partition(&months[0])]);
    assert!(report.partitions_awaiting_archive.is_empty());
    assert_eq!(month_rows(&f, &months[0]).await, 0);
    let offline = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(offline.ok, "{offline:?}");
    assert_eq!(offline.rows_checked, rows_3);
    let live = f.audit.verify(&VerifyOptions::default()).await.unwrap();
    assert!(live.ok, "{live:?}");
    assert_eq!(live.rows_expired, rows_3);

    // A destination that cannot be written (a file where the directory should be): the next
    // month past retention stays, and maintain says why.
    let blocked = dir.path().join("not-a-directory");
    std::fs::write(&blocked, b"x").unwrap();
    f.audit
        .configure(&settings(1, &url(&blocked)))
        .await
        .unwrap();
    let rows_2 = month_rows(&f, &months[1]).await;
    let err = f.audit.maintain(&no_anonymization).await.unwrap_err();
    assert!(matches!(err, Error::Archive(_)), "{err:?}");
    assert_eq!(month_rows(&f, &months[1]).await, rows_2, "nothing dropped");
    f.audit
        .configure(&settings(1, &url(dir.path())))
        .await
        .unwrap();
    let report = f.audit.maintain(&no_anonymization).await.unwrap();
    assert_eq!(report.partitions_dropped, vec![partition(&months[1])]);
    assert_eq!(
        archive::verify_archive(&url(dir.path()), None)
            .await
            .unwrap()
            .rows_checked,
        rows_3 + rows_2
    );

    // Turned off (""), retention drops as before; a malformed destination, or a lock without
    // S3, is refused and changes nothing.
    let off = f.audit.configure(&settings(1, "")).await.unwrap();
    assert_eq!(off.archive_to, None);
    for bad in [
        settings(1, "http://bucket/audit"),
        settings(1, "file://relative"),
        audit_logs_core::Settings {
            archive_lock_mode: Some("compliance".into()),
            archive_lock_days: Some(30),
            ..settings(1, &url(dir.path()))
        },
        audit_logs_core::Settings {
            archive_lock_mode: Some("forever".into()),
            archive_lock_days: Some(30),
            ..settings(1, "s3://bucket/audit")
        },
    ] {
        let err = f.audit.configure(&bad).await.unwrap_err();
        assert_eq!(err.code(), "AUDIT_LOGS_INVALID_SETTINGS", "{bad:?}: {err}");
    }
    assert_eq!(f.audit.settings().await.unwrap(), off);
}

/// One archive run at a time per database: a session holding the archive's advisory lock (a
/// run in progress, or any role, which may take any advisory lock) makes another run stop at
/// once, naming that session, having written nothing; once it ends, the run goes ahead.
#[tokio::test]
async fn a_second_archive_run_stops_at_once_naming_the_first() {
    let f = common::migrated().await;
    past_months(&f, 20).await;
    let holder = f.sql().await;
    let pid: i32 = holder
        .query_one(
            "select pg_backend_pid() from (select pg_advisory_lock(x'6175646974617263'::int8)) as locked",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = f.audit.archive(&options(dir.path())).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_BUSY", "{err}");
    assert!(err.to_string().contains(&format!("pid {pid}")), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
    drop(holder);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let report = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(report.months_archived.len(), 2);
}

/// Archives store their seal entries compressed (schema version 2): fewer bytes than the 24 a
/// row they hold. An archive of the previous version (entries raw, version 1), as the previous
/// release wrote it, still verifies, and a run skips its months.
#[tokio::test]
async fn entries_are_stored_compressed_and_version_1_archives_still_verify() {
    use sha2::Digest;
    let f = common::migrated().await;
    let months = past_months(&f, 300).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    for month in &months {
        let manifest_path = dir.path().join(month).join("manifest.json");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        let rows = manifest["entries"]["rows"].as_i64().unwrap();
        let stored = std::fs::read(dir.path().join(month).join("entries.bin")).unwrap();
        assert!(rows >= 300);
        assert!(
            (stored.len() as i64) < rows * 24 / 2,
            "{} bytes for {rows} entries",
            stored.len()
        );

        // The same month as version 1 wrote it: entries raw, the manifest saying so.
        let raw = zstd::stream::decode_all(&stored[..]).unwrap();
        assert_eq!(raw.len() as i64, rows * 24);
        std::fs::write(dir.path().join(month).join("entries.bin"), &raw).unwrap();
        manifest["schemaVersion"] = 1.into();
        manifest["entries"]["bytes"] = raw.len().into();
        manifest["entries"]["sha256"] = hex::encode(sha2::Sha256::digest(&raw)).into();
        std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(report.ok && report.months_checked == 2, "{report:?}");
    let joined = f
        .audit
        .verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(joined.ok, "{joined:?}");
    let again = f.audit.archive(&options(dir.path())).await.unwrap();
    assert_eq!(again.months_skipped, months);

    // A compressed entries file that is not zstd (its manifest rewritten to match) is named.
    let month = &months[0];
    std::fs::remove_dir_all(dir.path().join(month)).unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    let garbage = vec![7u8; 100];
    std::fs::write(dir.path().join(month).join("entries.bin"), &garbage).unwrap();
    let manifest_path = dir.path().join(month).join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["entries"]["bytes"] = garbage.len().into();
    manifest["entries"]["sha256"] = hex::encode(sha2::Sha256::digest(&garbage)).into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let report = archive::verify_archive(&url(dir.path()), None)
        .await
        .unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.unwrap();
    assert_eq!(
        problem.file.as_deref(),
        Some(&*format!("{month}/entries.bin")),
        "{problem:?}"
    );
}

/// A month archived by an earlier run is read back and verified again before `then_drop`
/// drops it: its files changed since (a byte of its Parquet flipped), nothing is dropped.
#[tokio::test]
async fn then_drop_refuses_a_month_whose_earlier_archive_changed_since() {
    let f = common::migrated().await;
    let months = past_months(&f, 50).await;
    let dir = tempfile::tempdir().unwrap();
    f.audit.archive(&options(dir.path())).await.unwrap();
    let rows = month_rows(&f, &months[0]).await;
    let file = dir.path().join(&months[0]).join("part-0000.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();

    let err = f
        .audit
        .archive(&ArchiveOptions {
            then_drop: Some(true),
            ..options(dir.path())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_NOT_VERIFIED", "{err}");
    assert!(err.to_string().contains(&months[0]), "{err}");
    assert_eq!(month_rows(&f, &months[0]).await, rows, "nothing dropped");
}

/// Rows about `public.orders` key 7 written into past months before [`past_months`] fills
/// them, beside its rows there: the UPDATE that changed key 7 to 700 (found by its old key) and
/// an event logged under another name of the table (`purchase`, for `public.purchases`, the
/// name the test gives it later).
async fn order_7_in_past_months(f: &common::Fixture) {
    f.sql()
        .await
        .batch_execute(
            "insert into audit.audit_logs (created_at, action, target_type, target_id, old_target_id,
                                           old_values, new_values, changed_fields, actor_id)
             values (date_trunc('month', now()) - interval '3 months' + interval '9 days', 'UPDATE',
                     'public.orders', '700', '7', '{\"id\": 7}', '{\"id\": 700}', '{id}', 'ann'),
                    (date_trunc('month', now()) - interval '2 months' + interval '9 days', 'order.refunded',
                     'purchase', '7', null, null, null, null, 'bob'),
                    (date_trunc('month', now()) - interval '2 months' + interval '10 days', 'order.noted',
                     'public.invoices', '7', null, null, null, null, 'eve')",
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn history_reads_the_months_dropped_after_archiving_from_their_archive() {
    use audit_logs_core::{HistoryQuery, TableRef, TrackingOptions};
    let f = common::migrated().await;
    order_7_in_past_months(&f).await;
    past_months(&f, 200).await;
    // Today: the table exists, is tracked, is renamed, and key 7 changes again.
    let db = f.sql().await;
    db.batch_execute(
        "create table orders (id int primary key, total int); insert into orders values (7, 1)",
    )
    .await
    .unwrap();
    f.audit
        .enable_tracking(&TableRef::from("orders"), &TrackingOptions::default())
        .await
        .unwrap();
    for statement in [
        "update orders set total = 2 where id = 7",
        "alter table orders rename to purchases",
        "update purchases set total = 3 where id = 7",
    ] {
        db.batch_execute(statement).await.unwrap();
    }
    let query = |limit: u32, before: Option<i64>, include_archive: bool| HistoryQuery {
        limit: Some(limit),
        before,
        include_archive,
        ..HistoryQuery::of_table("purchases", 7)
    };
    let whole = f.audit.history(&query(1000, None, false)).await.unwrap();
    // In the past months: key 7's row in each, the key change and the event.
    let past: Vec<_> = whole
        .iter()
        .filter(|e| e.created_at < chrono::Utc::now() - chrono::Duration::days(20))
        .collect();
    assert_eq!(past.len(), 4, "{past:#?}");
    assert!(past.iter().any(|e| e.old_target_id.as_deref() == Some("7")));
    assert!(past.iter().any(|e| e.action == "order.refunded"));
    assert!(
        !whole.iter().any(|e| e.action == "order.noted"),
        "another table's event"
    );

    let dir = tempfile::tempdir().unwrap();
    f.audit
        .archive(&ArchiveOptions {
            then_drop: Some(true),
            ..options(dir.path())
        })
        .await
        .unwrap();
    // Where each month went, with the id range its manifest gives (what lets history skip it).
    let recorded = f
        .sql()
        .await
        .query(
            "select month, archive, first_id, last_id from audit.archived_months order by month",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    let dest = archive::destination::open(&url(dir.path()), None)
        .await
        .unwrap();
    for row in &recorded {
        let month: i32 = row.get(0);
        let key = format!("{}-{:02}", month / 100, month % 100);
        let manifest = archive::read_manifest(&*dest, &key).await.unwrap().unwrap();
        assert_eq!(row.get::<_, String>(1), url(dir.path()));
        assert_eq!(
            (row.get::<_, Option<i64>>(2), row.get::<_, Option<i64>>(3)),
            (manifest.first_id, manifest.last_id)
        );
    }
    let live = f.audit.history(&query(1000, None, false)).await.unwrap();
    assert_eq!(
        live.len(),
        whole.len() - past.len(),
        "the archived months left the live log"
    );

    // Read back from the archive, every field as the live log returned it before the drop.
    let read = f.audit.history(&query(1000, None, true)).await.unwrap();
    assert_eq!(read, whole);
    // Paged across the live log and the archive, a page at a time.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = f.audit.history(&query(2, before, true)).await.unwrap();
        paged.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 2 => before = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(paged, whole);
    // A record whose entries are all archived (past_months wrote key 8 in both months).
    let key_8 = |include_archive| HistoryQuery {
        include_archive,
        ..HistoryQuery::of_table("purchases", 8)
    };
    assert!(f.audit.history(&key_8(false)).await.unwrap().is_empty());
    let archived = f.audit.history(&key_8(true)).await.unwrap();
    assert_eq!(archived.len(), 2);
    assert!(archived.iter().all(|e| e.target_id.as_deref() == Some("8")));

    // A reader reads it too.
    let (_, as_reader) = f.audit_as("reader", "audit_reader").await;
    assert_eq!(
        as_reader.history(&query(1000, None, true)).await.unwrap(),
        whole
    );

    // The archive changed since the drop: history says so rather than read it.
    let month = f
        .sql()
        .await
        .query_one(
            "select to_char(date_trunc('month', now()) - interval '2 months', 'YYYY-MM')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let manifest = dir.path().join(&month).join("manifest.json");
    let manifest_bytes = std::fs::read(&manifest).unwrap();
    let mut bytes = manifest_bytes.clone();
    bytes.push(b'\n');
    std::fs::write(&manifest, bytes).unwrap();
    let err = f.audit.history(&query(1000, None, true)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Archive(ArchiveError::Invalid { path, .. }) if path.ends_with("manifest.json")),
        "{err:?}"
    );
    assert_eq!(
        f.audit.history(&query(1000, None, false)).await.unwrap(),
        live
    );

    // A Parquet file that is no longer one (its manifest restored): an error naming it.
    std::fs::write(&manifest, &manifest_bytes).unwrap();
    assert_eq!(
        f.audit.history(&query(1000, None, true)).await.unwrap(),
        whole
    );
    let part = dir.path().join(&month).join("part-0000.parquet");
    let size = std::fs::metadata(&part).unwrap().len() as usize;
    let mut footer_kept = std::fs::read(&part).unwrap();
    footer_kept[..size - 8].fill(0xa5);
    for garbage in [vec![0u8; size], footer_kept] {
        std::fs::write(&part, garbage).unwrap();
        let err = f.audit.history(&query(1000, None, true)).await.unwrap_err();
        assert!(
            matches!(&err, Error::Archive(ArchiveError::Invalid { path, .. }) if path.ends_with("part-0000.parquet")),
            "{err:?}"
        );
    }
}
