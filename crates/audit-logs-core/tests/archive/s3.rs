//! Archives on S3: a real S3-compatible server (moto's, from PyPI, started here on a free port
//! and stopped after each test), reached through the same SDK and credentials chain as users'.

use audit_logs_core::archive::{self, format, ArchiveOptions, S3};
use audit_logs_core::testing::S3Server;
use audit_logs_core::{ArchiveError, Error, ProblemKind};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockMode;

use super::{common, month_rows, past_months};

/// A moto server of the test's own, the environment holding credentials and region as a
/// deployment's would: the destination signs with them (moto accepts any). The same values in
/// every test, so tests sharing a process agree.
fn start() -> S3Server {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "audit-logs-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "audit-logs-test-secret");
        std::env::set_var("AWS_REGION", "us-east-1");
    });
    S3Server::start()
}

/// A bucket, with Object Lock when `locked`; the destination on it.
async fn bucket(moto: &S3Server, name: &str, locked: bool) -> S3 {
    moto.create_bucket(name, locked).await;
    S3::open(&moto.url(name), None).await.unwrap()
}

fn to(url: &str) -> ArchiveOptions {
    ArchiveOptions {
        to: url.to_owned(),
        ..Default::default()
    }
}

async fn object(s3: &S3, key: &str) -> Vec<u8> {
    let out = s3
        .client()
        .get_object()
        .bucket(s3.bucket())
        .key(s3.object_key(key))
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test]
async fn months_archive_to_s3_in_parts_and_verify_offline_and_against_the_live_chain() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 300).await;
    let s3 = bucket(&moto, "plain", false).await;
    let url = moto.url("plain");
    let report = f.audit.archive(&to(&url)).await.unwrap();
    assert_eq!(report.months_archived, months);
    assert_eq!(report.rows, 640);
    assert_eq!(report.locked_until, None);
    let manifest = archive::read_manifest(&s3, &months[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.row_count, month_rows(&f, &months[0]).await);
    assert!(
        manifest.files[0].bytes > 4096,
        "the Parquet file is uploaded in several parts: {manifest:?}"
    );
    // The keys are under the prefix, as DuckDB's read_parquet('s3://plain/audit/*/*.parquet')
    // would look for them.
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket("plain")
        .prefix("audit/")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&format!("audit/{}/part-0000.parquet", months[1]).as_str()),
        "{keys:?}"
    );

    let offline = archive::verify_archive(&url, None).await.unwrap();
    assert!(offline.ok, "{offline:?}");
    assert_eq!(offline.rows_checked, 640);
    assert_eq!(offline.months_checked, 2);
    let head = offline.head.clone().unwrap();
    let joined = f
        .audit
        .verify_archive(&url, Some(&head[..32]))
        .await
        .unwrap();
    assert!(
        joined.ok && joined.against_found == Some(true),
        "{joined:?}"
    );
    assert!(joined.live_head.is_some());

    let again = f.audit.archive(&to(&url)).await.unwrap();
    assert_eq!(again.months_skipped, months);
    assert!(again.months_archived.is_empty());
}

#[tokio::test]
async fn a_changed_object_on_s3_is_named_by_row_month_and_file() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 200).await;
    let s3 = bucket(&moto, "plain", false).await;
    let url = moto.url("plain");
    f.audit.archive(&to(&url)).await.unwrap();

    // Without a lock, whoever can write the bucket can replace an object.
    let key = format!("{}/part-0000.parquet", months[1]);
    let mut rows = format::read_rows(object(&s3, &key).await).unwrap();
    let victim = rows[57].clone();
    rows[57].set_text("new_values", Some(r#"{"id": 58, "total": 1}"#.into()));
    s3.client()
        .put_object()
        .bucket("plain")
        .key(s3.object_key(&key))
        .body(ByteStream::from(format::write_rows(&rows).unwrap()))
        .send()
        .await
        .unwrap();

    let report = archive::verify_archive(&url, None).await.unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Changed, "{problem:?}");
    assert_eq!(problem.row_id, Some(victim.id));
    assert_eq!(problem.month.as_deref(), Some(months[1].as_str()));
    assert_eq!(problem.file.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn an_interrupted_archive_on_s3_leaves_no_manifest_and_reruns_cleanly() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 200).await;
    let s3 = bucket(&moto, "plain", false).await;
    let url = moto.url("plain");
    f.audit.archive(&to(&url)).await.unwrap();

    // What a run killed mid-way through the second month leaves: its first file, a multipart
    // upload of its next begun (two parts sent, never completed), and no manifest.
    let client = s3.client();
    client
        .delete_object()
        .bucket("plain")
        .key(s3.object_key(&format!("{}/manifest.json", months[1])))
        .send()
        .await
        .unwrap();
    let key = s3.object_key(&format!("{}/part-0000.parquet", months[1]));
    let upload = client
        .create_multipart_upload()
        .bucket("plain")
        .key(&key)
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    for part in 1..=2 {
        client
            .upload_part()
            .bucket("plain")
            .key(&key)
            .upload_id(id)
            .part_number(part)
            .body(ByteStream::from(vec![part as u8; 2048]))
            .send()
            .await
            .unwrap();
    }
    let interrupted = archive::verify_archive(&url, None).await.unwrap();
    assert_eq!(interrupted.months_incomplete, [months[1].clone()]);
    assert_eq!(interrupted.months_checked, 1);

    let rerun = f.audit.archive(&to(&url)).await.unwrap();
    assert_eq!(rerun.months_skipped, [months[0].clone()]);
    assert_eq!(rerun.months_archived, [months[1].clone()]);
    let uploads = client
        .list_multipart_uploads()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "the stale upload is aborted: {uploads:?}"
    );
    let verified = archive::verify_archive(&url, None).await.unwrap();
    assert!(verified.ok && verified.months_checked == 2, "{verified:?}");
}

#[tokio::test]
async fn with_object_lock_every_object_is_retained_and_cannot_be_deleted_before_its_date() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 200).await;
    let s3 = bucket(&moto, "locked", true).await;
    let url = moto.url("locked");
    let report = f
        .audit
        .archive(&ArchiveOptions {
            lock_mode: Some("compliance".into()),
            lock_days: Some(30),
            ..to(&url)
        })
        .await
        .unwrap();
    let until = report.locked_until.clone().expect("a retention date");
    assert_eq!(report.months_archived, months);

    let client = s3.client();
    for name in ["part-0000.parquet", "entries.bin", "manifest.json"] {
        let key = s3.object_key(&format!("{}/{name}", months[0]));
        let head = client
            .head_object()
            .bucket("locked")
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&ObjectLockMode::Compliance),
            "{key}"
        );
        let retained = head.object_lock_retain_until_date().unwrap().secs();
        assert_eq!(
            chrono::DateTime::from_timestamp(retained, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            until
        );
        // The version written cannot be deleted, by anyone, before its date.
        let version = head.version_id().unwrap();
        let err = client
            .delete_object()
            .bucket("locked")
            .key(&key)
            .version_id(version)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
            Some("AccessDenied"),
            "{key}"
        );
    }
    // Nor can governance's bypass shorten compliance retention.
    let key = s3.object_key(&format!("{}/part-0000.parquet", months[1]));
    let head = client
        .head_object()
        .bucket("locked")
        .key(&key)
        .send()
        .await
        .unwrap();
    let err = client
        .delete_object()
        .bucket("locked")
        .key(&key)
        .version_id(head.version_id().unwrap())
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(err.is_err(), "a compliance-locked version was deleted");

    let verified = f.audit.verify_archive(&url, None).await.unwrap();
    assert!(verified.ok, "{verified:?}");
}

#[tokio::test]
async fn a_lock_asked_of_a_bucket_without_object_lock_is_a_typed_error_and_writes_nothing() {
    let moto = start();
    let f = common::migrated().await;
    past_months(&f, 50).await;
    let s3 = bucket(&moto, "plain", false).await;
    let err = f
        .audit
        .archive(&ArchiveOptions {
            lock_mode: Some("governance".into()),
            lock_days: Some(7),
            ..to(&moto.url("plain"))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Archive(ArchiveError::LockUnavailable { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_LOCK_UNAVAILABLE");
    assert!(
        err.to_string().contains("object-lock-enabled-for-bucket"),
        "{err}"
    );
    let listed = s3
        .client()
        .list_objects_v2()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty());
}

#[tokio::test]
async fn a_missing_bucket_is_a_storage_error_naming_it() {
    let moto = start();
    let err = archive::verify_archive(&moto.url("nowhere"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_ARCHIVE_STORAGE_FAILED");
    assert!(err.to_string().contains("s3://nowhere/audit/"), "{err}");
}

/// A TCP relay to `upstream` that stops relaying, for good, the first request that sends a
/// second multipart part: the network failing mid-upload. `stalled` is notified then.
async fn relay_stalling_at_part_2(
    upstream: std::net::SocketAddr,
) -> (u16, std::sync::Arc<tokio::sync::Notify>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(tokio::sync::Notify::new());
    let cut = Arc::new(AtomicBool::new(false));
    let notify = stalled.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let (cut, notify) = (cut.clone(), notify.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let part_2 = buffer[..n].windows(12).any(|w| w == b"partNumber=2");
                    if part_2 || cut.load(Ordering::SeqCst) {
                        cut.store(true, Ordering::SeqCst);
                        notify.notify_one();
                        // Held open, never answered, as a dead link would.
                        std::future::pending::<()>().await;
                    }
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    (port, stalled)
}

#[tokio::test]
async fn an_archive_cut_off_mid_upload_reruns_cleanly() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 200).await;
    let s3 = bucket(&moto, "plain", false).await;
    let upstream: std::net::SocketAddr = moto.endpoint()["http://".len()..].parse().unwrap();
    let (port, stalled) = relay_stalling_at_part_2(upstream).await;
    let through_relay = format!("s3://plain/audit?endpoint=http://127.0.0.1:{port}&part_size=4096");

    // The run is abandoned where it stands once its upload hangs: a killed process.
    let options = to(&through_relay);
    tokio::select! {
        done = f.audit.archive(&options) => panic!("the upload was not cut off: {done:?}"),
        () = stalled.notified() => {}
    }
    let client = s3.client();
    let uploads = client
        .list_multipart_uploads()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(uploads.uploads().len(), 1, "one upload left open");
    let interrupted = archive::verify_archive(&moto.url("plain"), None)
        .await
        .unwrap();
    assert_eq!(interrupted.months_checked, 0, "{interrupted:?}");

    let rerun = f.audit.archive(&to(&moto.url("plain"))).await.unwrap();
    assert_eq!(rerun.months_archived, months);
    let uploads = client
        .list_multipart_uploads()
        .bucket("plain")
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{uploads:?}");
    let verified = archive::verify_archive(&moto.url("plain"), None)
        .await
        .unwrap();
    assert!(verified.ok && verified.months_checked == 2, "{verified:?}");
}

#[tokio::test]
async fn history_reads_dropped_months_from_s3_by_ranges() {
    use audit_logs_core::{HistoryQuery, Target};
    let moto = start();
    let f = common::migrated().await;
    past_months(&f, 300).await;
    bucket(&moto, "history", false).await;
    // The rows past_months writes are about a table that does not exist: read them by type.
    let query = |include_archive| HistoryQuery {
        target: Target::Type("public.orders".into()),
        id: 7.into(),
        limit: None,
        before: None,
        include_archive,
    };
    let before = f.audit.history(&query(false)).await.unwrap();
    assert_eq!(before.len(), 2);
    f.audit
        .archive(&ArchiveOptions {
            then_drop: Some(true),
            ..to(&moto.url("history"))
        })
        .await
        .unwrap();
    assert!(f.audit.history(&query(false)).await.unwrap().is_empty());
    assert_eq!(f.audit.history(&query(true)).await.unwrap(), before);
}

#[tokio::test]
async fn a_month_rewritten_in_a_locked_bucket_is_named_even_when_its_content_checks_out() {
    let moto = start();
    let f = common::migrated().await;
    let months = past_months(&f, 100).await;
    let s3 = bucket(&moto, "versioned", true).await;
    let url = moto.url("versioned");
    f.audit
        .archive(&ArchiveOptions {
            lock_mode: Some("compliance".into()),
            lock_days: Some(1),
            ..to(&url)
        })
        .await
        .unwrap();
    let verified = archive::verify_archive(&url, None).await.unwrap();
    assert!(verified.ok, "{verified:?}");

    // Written again with the very same bytes, as a month rewritten whole and consistently
    // would be: its files still match its manifest, and only their versions tell.
    let rewrite = |key: String| {
        let s3 = &s3;
        async move {
            let bytes = object(s3, &key).await;
            s3.client()
                .put_object()
                .bucket(s3.bucket())
                .key(s3.object_key(&key))
                .body(ByteStream::from(bytes))
                .send()
                .await
                .unwrap();
        }
    };
    // S3 records times to the second: the rewrite comes in a later one than the archive.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    rewrite(format!("{}/part-0000.parquet", months[1])).await;
    let report = archive::verify_archive(&url, None).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.problem_count, 1, "{report:?}");
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::Rewritten);
    assert_eq!(
        problem.file,
        Some(format!("{}/part-0000.parquet", months[1]))
    );

    rewrite(format!("{}/manifest.json", months[0])).await;
    let report = archive::verify_archive(&url, None).await.unwrap();
    assert_eq!(report.problem_count, 2, "{report:?}");
    let problem = report.first_problem.unwrap();
    assert_eq!(
        (problem.kind, problem.file.as_deref()),
        (
            ProblemKind::Rewritten,
            Some(format!("{}/manifest.json", months[0]).as_str())
        )
    );
    assert!(
        problem.message.contains("2 versions"),
        "{}",
        problem.message
    );
}
