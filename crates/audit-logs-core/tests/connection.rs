//! Connecting with real URLs: TLS modes against a server with its own certificates, bad
//! credentials, unreachable servers, Prisma's parameters.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use audit_logs_core::temporary::Setup;
use audit_logs_core::{AuditLogs, ConnectionError, Error, TemporaryPostgres, TrackingOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::sync::OnceCell;

const PASSWORD: &str = "s3cret/with@odd%chars";

struct TlsServer {
    server: std::sync::Arc<TemporaryPostgres>,
    ca: PathBuf,
    other_ca: PathBuf,
}

fn ca() -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "audit-logs test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (params, key, pem)
}

fn pem_file(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    path
}

/// One server per test binary: password authentication, TLS with a certificate for
/// `localhost` only, signed by a CA of our own.
async fn tls_server() -> &'static TlsServer {
    static SERVER: OnceCell<TlsServer> = OnceCell::const_new();
    let server = SERVER
        .get_or_init(|| async {
            let (ca_params, ca_key, ca_pem) = ca();
            let issuer = Issuer::new(ca_params, ca_key);
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, "localhost");
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            let server = std::sync::Arc::new(
                TemporaryPostgres::start_with(Setup {
                    password: Some(PASSWORD.into()),
                    files: vec![
                        ("server.crt".into(), cert.pem().into_bytes()),
                        ("server.key".into(), key.serialize_pem().into_bytes()),
                    ],
                    settings: vec![
                        ("ssl".into(), "on".into()),
                        ("ssl_cert_file".into(), "server.crt".into()),
                        ("ssl_key_file".into(), "server.key".into()),
                    ],
                })
                .await
                .unwrap(),
            );
            let (_, _, other_pem) = ca();
            // In the server's directory, so they are deleted with it.
            TlsServer {
                ca: pem_file(server.path(), "ca.pem", &ca_pem),
                other_ca: pem_file(server.path(), "other-ca.pem", &other_pem),
                server,
            }
        })
        .await;
    server.server.stop_at_exit();
    server
}

fn url(server: &TlsServer, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres:{}@{host}:{}/postgres?{query}",
        percent_encoding::utf8_percent_encode(PASSWORD, percent_encoding::NON_ALPHANUMERIC),
        server.server.port()
    )
}

async fn uses_tls(audit: &AuditLogs) -> bool {
    let client = audit.client().await.unwrap();
    client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmode_require_encrypts() {
    let s = tls_server().await;
    let audit = AuditLogs::connect(&url(s, "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    assert!(uses_tls(&audit).await);
    let plain = AuditLogs::connect(&url(s, "127.0.0.1", "sslmode=disable"))
        .await
        .unwrap();
    assert!(!uses_tls(&plain).await);
}

#[tokio::test]
async fn verify_full_checks_chain_and_host_name() {
    let s = tls_server().await;
    let ca = s.ca.display();
    let good = AuditLogs::connect(&url(
        s,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(uses_tls(&good.unwrap()).await);

    // The certificate names localhost, not 127.0.0.1.
    let wrong_name = AuditLogs::connect(&url(
        s,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(wrong_name, Error::Connection(ConnectionError::Tls { .. })),
        "{wrong_name:?}"
    );

    let other = s.other_ca.display();
    let wrong_ca = AuditLogs::connect(&url(
        s,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(wrong_ca, Error::Connection(ConnectionError::Tls { .. })),
        "{wrong_ca:?}"
    );
    assert_eq!(wrong_ca.code(), "AUDIT_LOGS_TLS_FAILED");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_name() {
    let s = tls_server().await;
    let ca = s.ca.display();
    let audit = AuditLogs::connect(&url(
        s,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .unwrap();
    assert!(uses_tls(&audit).await);
    let other = s.other_ca.display();
    let err = AuditLogs::connect(&url(
        s,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::Connection(ConnectionError::Tls { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_root_certificate_file_is_named() {
    let s = tls_server().await;
    let err = AuditLogs::connect(&url(
        s,
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::Connection(ConnectionError::Tls { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_without_the_password() {
    let s = tls_server().await;
    let bad = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        s.server.port()
    );
    let err = AuditLogs::connect(&bad).await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::Connection(ConnectionError::Authentication { .. })
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the password leaked: {err}"
    );
    // The server's refusal is kept as the cause, with its SQLSTATE.
    let source = std::error::Error::source(&err).expect("the driver's error as source");
    let driver = source
        .downcast_ref::<tokio_postgres::Error>()
        .expect("a tokio_postgres::Error");
    assert_eq!(driver.code().map(|c| c.code()), Some("28P01"), "{driver:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_one_line_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = AuditLogs::connect(&format!("postgres://u:secret@127.0.0.1:{port}/db"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Connection(ConnectionError::Connect { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("connection refused") && !text.contains('\n') && !text.contains("secret"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_database_says_how_to_create_it() {
    let f = common::empty().await;
    let url = audit_logs_core::testing::database_url(&f.db.url, "no_such_db").unwrap();
    let err = AuditLogs::connect(&url).await.err().unwrap();
    assert!(
        matches!(err, Error::Connection(ConnectionError::Connect { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("createdb no_such_db"), "{err}");
}

#[tokio::test]
async fn prisma_schema_parameter_resolves_unqualified_tables() {
    let f = common::migrated().await;
    f.sql()
        .await
        .batch_execute("create schema sales; create table sales.deals (id int primary key)")
        .await
        .unwrap();
    let url = format!(
        "{}?schema=sales&connection_limit=2&pgbouncer=true",
        f.db.url
    );
    let audit = AuditLogs::connect(&url).await.unwrap();
    let table = audit
        .enable_tracking(&"deals".into(), &TrackingOptions::default())
        .await
        .unwrap();
    assert_eq!(table.target_type, "sales.deals");
}
