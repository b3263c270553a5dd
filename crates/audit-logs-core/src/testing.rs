//! Fresh databases for tests: on the server of `DATABASE_URL` when it is set, otherwise on one
//! throwaway server per process (see [`TemporaryPostgres`]), stopped when the process exits.
//! And an S3-compatible server of a test's own ([`S3Server`]).

use std::sync::{Arc, Mutex};

use tokio_postgres::types::Type;

use postgres_protocol::escape::escape_identifier;

use crate::connection::ConnectOptions;
use crate::error::{ConnectionError, Error, Result};
use crate::temporary::TemporaryPostgres;

static SERVER: tokio::sync::OnceCell<Arc<TemporaryPostgres>> = tokio::sync::OnceCell::const_new();

/// The URL of a database on the test server (`DATABASE_URL`, or a throwaway server).
pub async fn server_url() -> Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    let server = SERVER
        .get_or_try_init(|| async {
            let server = Arc::new(TemporaryPostgres::start().await?);
            server.stop_at_exit();
            Ok::<_, Error>(server)
        })
        .await?;
    Ok(server.url("postgres"))
}

/// A database created for one test and dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    admin: ConnectOptions,
    roles: Mutex<Vec<String>>,
}

impl TestDatabase {
    /// Creates an empty database with a unique name on the test server.
    pub async fn create() -> Result<TestDatabase> {
        let admin = ConnectOptions::parse(&server_url().await?)?;
        let name = format!("audit_logs_test_{}", uuid::Uuid::new_v4().simple());
        let client = admin.connect().await?;
        client
            .batch_execute(&format!("create database {}", escape_identifier(&name)))
            .await
            .map_err(|e| crate::error::from_query(e, None))?;
        let url = database_url(&server_url().await?, &name)?;
        Ok(TestDatabase {
            url,
            name,
            admin,
            roles: Mutex::new(Vec::new()),
        })
    }

    /// Creates a login role (no password needed on the test server) that is dropped with the
    /// database, and returns its name. Roles are cluster-wide, hence the unique name.
    pub async fn create_role(&self, prefix: &str) -> Result<String> {
        let role = format!(
            "{prefix}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let client = self.admin.connect().await?;
        client
            .batch_execute(&format!("create role {} login", escape_identifier(&role)))
            .await
            .map_err(|e| crate::error::from_query(e, None))?;
        self.roles.lock().expect("roles lock").push(role.clone());
        Ok(role)
    }

    /// The URL of this database for another user.
    pub fn url_for(&self, user: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}@{rest}")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().expect("roles lock"));
        // Drop may run inside a runtime, where blocking on another would panic: use a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                if let Ok(client) = admin.connect().await {
                    let _ = client
                        .query_typed(
                            "select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity where datname = $1",
                            &[(&name, Type::TEXT)],
                        )
                        .await;
                    let _ = client
                        .batch_execute(&format!("drop database if exists {}", escape_identifier(&name)))
                        .await;
                    for role in roles {
                        let _ = client.batch_execute(&format!("drop role if exists {}", escape_identifier(&role))).await;
                    }
                }
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// The same server URL with another database name (the path of the URL replaced).
pub fn database_url(server_url: &str, database: &str) -> Result<String> {
    let (before_query, query) = server_url
        .split_once('?')
        .map_or((server_url, None), |(b, q)| (b, Some(q)));
    let scheme_end = before_query.find("://").map(|i| i + 3).ok_or_else(|| {
        Error::Connection(ConnectionError::InvalidUrl {
            reason: "expected postgres://...".into(),
        })
    })?;
    let authority_end = before_query[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(before_query.len());
    let mut url = format!("{}/{}", &before_query[..authority_end], database);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// An S3-compatible server of a test's own: moto's (`python3 -m pip install
/// 'moto[server]==5.2.5'`, which `.ci/run` does), on a free port of 127.0.0.1, killed when
/// dropped. Its multipart parts may be as small as 1 KiB, so that a test's month is uploaded in
/// several. Panics when moto cannot be started.
pub struct S3Server {
    child: std::process::Child,
    endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        use std::time::{Duration, Instant};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("S3_UPLOAD_PART_MIN_SIZE", "1024")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3, to run moto's S3 server");
        let mut server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("moto exited ({status}): python3 -m pip install 'moto[server]==5.2.5'");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `s3://bucket/audit` on this server, uploading in parts of 4 KiB.
    pub fn url(&self, bucket: &str) -> String {
        format!(
            "s3://{bucket}/audit?endpoint={}&part_size=4096",
            self.endpoint
        )
    }

    /// A client of this server with credentials of its own (moto takes any), whatever the
    /// environment holds: for a test to set up and inspect buckets.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .http_client(crate::archive::destination::https_client())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates `bucket`, with Object Lock (and so versioning) when `locked`.
    pub async fn create_bucket(&self, bucket: &str, locked: bool) {
        self.client()
            .create_bucket()
            .bucket(bucket)
            .object_lock_enabled_for_bucket(locked)
            .send()
            .await
            .expect("create a bucket");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_url_replaces_only_the_path() {
        assert_eq!(
            super::database_url("postgres://u:p@h:1/old?sslmode=disable", "new").unwrap(),
            "postgres://u:p@h:1/new?sslmode=disable"
        );
        assert_eq!(
            super::database_url("postgres://h", "new").unwrap(),
            "postgres://h/new"
        );
    }
}
