//! Connection strings as users already have them (psql, libpq, Prisma) translated into what
//! tokio-postgres and deadpool take, and the pool built from them.
//!
//! tokio-postgres rejects several parameters that are common in real `DATABASE_URL`s
//! (`schema`, `connection_limit`, `sslmode=verify-full`, `sslrootcert`...); they are taken out
//! here and honoured by us.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;

use crate::error::{ConnectionError, Error, Result};
use crate::tls::{self, RootCerts, TlsMode};
use crate::tracking::quote_ident;

const DEFAULT_POOL_SIZE: usize = 10;
const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parameters tokio-postgres understands itself; passed through unchanged.
const PASSED_THROUGH: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "application_name",
    "options",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// Parameters of Prisma, node-postgres and libpq that tune things this library does not have
/// (statement caches, pgbouncer mode, GSS...). Accepted so the same URL works everywhere.
const IGNORED: &[&str] = &[
    "pgbouncer",
    "statement_cache_size",
    "socket_timeout",
    "max_connection_lifetime",
    "max_idle_connection_lifetime",
    "single_use_connections",
    "sslcompression",
    "gssencmode",
    "krbsrvname",
    "client_encoding",
    "fallback_application_name",
    "sslnegotiation",
    "sslsni",
];

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) config: Config,
    pub(crate) tls: TlsMode,
    pub(crate) roots: RootCerts,
    /// Prisma's `?schema=`: the schema unqualified table names resolve in.
    pub schema: Option<String>,
    /// Prisma's `?connection_limit=`.
    pub pool_size: usize,
    /// Prisma's `?pool_timeout=` (seconds).
    pub pool_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl FromStr for ConnectOptions {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self> {
        ConnectOptions::parse(url)
    }
}

impl ConnectOptions {
    /// Parses a `postgres://` or `postgresql://` URL.
    pub fn parse(url: &str) -> Result<ConnectOptions> {
        let url = url.trim();
        if url.is_empty() {
            return Err(invalid(
                "it is empty; set DATABASE_URL or pass --database-url",
            ));
        }
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
            return Err(invalid(if scheme.is_empty() {
                "it must start with postgres:// or postgresql://".to_owned()
            } else {
                format!("the scheme is {scheme}://; it must be postgres:// or postgresql://")
            }));
        };
        check_escapes(rest)?;
        let rest = rest.split_once('#').map(|(r, _)| r).unwrap_or(rest);
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = base.split('/').next().unwrap_or("");
        if authority.matches('@').count() > 1 {
            return Err(invalid(
                "it has more than one '@' before the host; percent-encode '@' in the user or password as %40",
            ));
        }

        let mut options = ConnectOptions {
            config: Config::new(),
            tls: TlsMode::Prefer,
            roots: RootCerts::System,
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        let mut passed = Vec::new();
        let mut strict_certificates = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| invalid(format!("the value of {key} is not valid UTF-8")))?
                .into_owned();
            match key {
                "sslmode" => options.tls = parse_sslmode(&value)?,
                "sslrootcert" => {
                    options.roots = if value == "system" {
                        RootCerts::System
                    } else {
                        RootCerts::File(PathBuf::from(value))
                    }
                }
                // Prisma: strict = check certificates, accept_invalid_certs = do not.
                "sslaccept" => match value.as_str() {
                    "strict" => strict_certificates = true,
                    "accept_invalid_certs" => {}
                    other => return Err(invalid(format!("sslaccept={other}: use strict or accept_invalid_certs"))),
                },
                "schema" | "search_path" if !value.is_empty() => options.schema = Some(value),
                "connection_limit" => options.pool_size = parse_number(key, &value, 1, 10_000)?,
                "pool_timeout" => {
                    // Prisma: 0 disables the timeout.
                    let seconds = parse_number(key, &value, 0, 86_400)?;
                    options.pool_timeout = if seconds == 0 {
                        Duration::from_secs(86_400)
                    } else {
                        Duration::from_secs(seconds as u64)
                    };
                }
                "connect_timeout" => {
                    let seconds = parse_number(key, &value, 0, 86_400)?;
                    if seconds > 0 {
                        options.connect_timeout = Duration::from_secs(seconds as u64);
                        passed.push((key.to_owned(), value));
                    }
                }
                "sslcert" | "sslkey" | "sslidentity" | "sslpassword" => {
                    return Err(invalid(format!(
                        "{key}: client certificates are not supported; authenticate with a password"
                    )))
                }
                key if PASSED_THROUGH.contains(&key) => passed.push((key.to_owned(), value)),
                key if IGNORED.contains(&key) || key == "schema" || key == "search_path" => {}
                key => {
                    return Err(invalid(format!(
                        "unknown parameter {key:?}; remove it (understood: sslmode, sslrootcert, sslaccept, schema, \
                         connection_limit, pool_timeout, connect_timeout, application_name, options and the other libpq parameters)"
                    )))
                }
            }
        }
        if strict_certificates && matches!(options.tls, TlsMode::Prefer | TlsMode::Require) {
            options.tls = TlsMode::VerifyFull;
        }

        // libpq: a host= parameter replaces the host of the URL (tokio-postgres would add it).
        let mut base = base.to_owned();
        if passed.iter().any(|(k, _)| k == "host") {
            let (authority, path) = base.split_once('/').unwrap_or((base.as_str(), ""));
            let (userinfo, hostport) = authority
                .rsplit_once('@')
                .map_or(("", authority), |(u, h)| (u, h));
            if let Some((_, port)) = hostport
                .rsplit_once(':')
                .filter(|(_, p)| p.parse::<u16>().is_ok())
            {
                if !passed.iter().any(|(k, _)| k == "port") {
                    passed.push(("port".into(), port.to_owned()));
                }
            }
            let at = if userinfo.is_empty() { "" } else { "@" };
            base = format!("{userinfo}{at}/{path}");
        }
        let mut rebuilt = format!("postgres://{base}");
        for (i, (key, value)) in passed.iter().enumerate() {
            rebuilt.push(if i == 0 { '?' } else { '&' });
            rebuilt.push_str(key);
            rebuilt.push('=');
            rebuilt.extend(utf8_percent_encode(value, NON_ALPHANUMERIC));
        }
        options.config = rebuilt.parse().map_err(|e: tokio_postgres::Error| {
            let detail = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| e.to_string());
            invalid(detail.replace('`', "'"))
        })?;
        if options.config.get_hosts().is_empty() {
            options.config.host("localhost");
        }
        if options.config.get_user().is_none() {
            // libpq's default: PGUSER, else the operating system user.
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .unwrap_or_else(|_| "postgres".into());
            options.config.user(&user);
        }
        if options.config.get_dbname().is_none() {
            return Err(invalid(
                "it names no database; write postgres://USER@HOST/DATABASE",
            ));
        }
        // libpq ignores sslmode on Unix sockets; so do we.
        if options.config.get_hosts().iter().all(is_socket) {
            options.tls = TlsMode::Disable;
        }
        options.config.ssl_mode(match options.tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if let Some(schema) = &options.schema {
            let mut server_options = options.config.get_options().unwrap_or("").to_owned();
            server_options.push_str(&format!(
                " -c search_path={}",
                escape_option(&quote_ident(schema))
            ));
            options.config.options(server_options.trim());
        }
        Ok(options)
    }

    /// `host:port/database`, for messages: never the password.
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(host) => host_text(host),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.config.get_dbname().unwrap_or(""))
    }

    /// The same connection, to another database of the same server.
    pub fn with_database(&self, database: &str) -> ConnectOptions {
        let mut other = self.clone();
        other.config.dbname(database);
        other
    }

    /// The libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, ...)
    /// that makes libpq tools such as psql and pgbench reach the same server.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            env.push(("PGHOST", host_text(host)));
        }
        if let Some(port) = self.config.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        env.push(("PGUSER", self.user().to_owned()));
        env.push(("PGDATABASE", self.database().to_owned()));
        if let Some(password) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        let sslmode = match self.tls {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        };
        env.push(("PGSSLMODE", sslmode.to_owned()));
        if let RootCerts::File(path) = &self.roots {
            env.push(("PGSSLROOTCERT", path.display().to_string()));
        }
        env
    }

    /// The user the connection logs in as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("")
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    /// Opens one connection outside any pool (migrations hold a session lock on it).
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let tls = tls::connector(self.tls, &self.roots, &self.target())?;
        let attempt = tokio::time::timeout(self.connect_timeout, self.config.connect(tls)).await;
        match attempt {
            Err(_) => Err(Error::Connection(ConnectionError::Connect {
                target: self.target(),
                reason: format!("no answer within {}s", self.connect_timeout.as_secs()),
                source: None,
            })),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Ok(Ok((client, connection))) => {
                tokio::spawn(connection);
                Ok(client)
            }
        }
    }

    /// Builds a pool and opens its first connection, so a bad URL fails here, not later.
    pub async fn pool(&self) -> Result<Pool> {
        let tls = tls::connector(self.tls, &self.roots, &self.target())?;
        let manager = Manager::from_config(
            self.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .wait_timeout(Some(self.pool_timeout))
            .create_timeout(Some(self.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        drop(self.checkout(&pool).await?);
        Ok(pool)
    }

    /// A connection from the pool, with connection errors explained.
    pub(crate) async fn checkout(&self, pool: &Pool) -> Result<deadpool_postgres::Object> {
        pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => self.connect_error(e),
            PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
                Error::Connection(ConnectionError::Connect {
                    target: self.target(),
                    reason: format!("no answer within {}s", self.connect_timeout.as_secs()),
                    source: None,
                })
            }
            PoolError::Timeout(_) => Error::Connection(ConnectionError::PoolTimeout {
                seconds: self.pool_timeout.as_secs(),
                size: self.pool_size,
            }),
            other => Error::Connection(ConnectionError::Connect {
                target: self.target(),
                reason: other.to_string(),
                source: None,
            }),
        })
    }

    /// The error for a failed connection: the reason is read out of the driver's error (whose
    /// own text is "error connecting to server"), and the driver's error is kept as the source.
    fn connect_error(&self, e: tokio_postgres::Error) -> Error {
        let target = self.target();
        if let Some(db) = e.as_db_error() {
            let reason = db.message().to_owned();
            let code = db.code().code().to_owned();
            let source = Some(e);
            return match code.as_str() {
                "28P01" | "28000" => ConnectionError::Authentication {
                    target,
                    reason,
                    source,
                },
                "3D000" => ConnectionError::Connect {
                    target,
                    reason: format!("{reason}; create it (createdb {})", self.database()),
                    source,
                },
                _ => ConnectionError::Connect {
                    target,
                    reason,
                    source,
                },
            }
            .into();
        }
        // The interesting part of a connection error is in its source chain.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        let mut is_tls = reason.contains("TLS");
        while let Some(inner) = source {
            if let Some(io) = inner.downcast_ref::<std::io::Error>() {
                if let Some(rustls_error) =
                    io.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>())
                {
                    is_tls = true;
                    reason = rustls_error.to_string();
                    break;
                }
                reason = match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused; is PostgreSQL running and listening on that host and port?".into()
                    }
                    _ => io.to_string(),
                };
            } else {
                reason = inner.to_string();
            }
            source = inner.source();
        }
        let source = Some(e);
        if is_tls {
            ConnectionError::Tls {
                target,
                reason,
                source,
            }
            .into()
        } else {
            ConnectionError::Connect {
                target,
                reason,
                source,
            }
            .into()
        }
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Connection(ConnectionError::InvalidUrl {
        reason: reason.into(),
    })
}

/// Every `%` starts a percent-encoded byte (libpq refuses the URL otherwise), and none of them,
/// nor the text itself, is a NUL: no name, password or setting may hold one.
fn check_escapes(url: &str) -> Result<()> {
    let bytes = url.as_bytes();
    for (i, _) in url.match_indices('%') {
        let escape = bytes.get(i + 1..i + 3);
        if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
            let found: String = url[i..].chars().take(3).collect();
            return Err(invalid(format!(
                "{found:?} is not a percent-encoded byte (% and two hex digits); write % itself as %25"
            )));
        }
    }
    if percent_decode_str(url).any(|byte| byte == 0) {
        return Err(invalid(
            "it holds a NUL character (%00), which no user, password, host, database or setting may contain",
        ));
    }
    Ok(())
}

fn parse_sslmode(value: &str) -> Result<TlsMode> {
    Ok(match value {
        "disable" => TlsMode::Disable,
        "allow" | "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        other => {
            return Err(invalid(format!(
                "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
            )))
        }
    })
}

fn parse_number(key: &str, value: &str, min: usize, max: usize) -> Result<usize> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(format!(
                "{key}={value}: expected a whole number from {min} to {max}"
            ))
        })
}

/// The server splits `options` on spaces; a backslash keeps one in a value.
fn escape_option(value: &str) -> String {
    value.replace('\\', "\\\\").replace(' ', "\\ ")
}

/// A host as libpq writes it: a name or an address, or (Unix) a socket directory.
fn host_text(host: &Host) -> String {
    match host {
        Host::Tcp(name) => name.clone(),
        #[cfg(unix)]
        Host::Unix(path) => path.display().to_string(),
    }
}

/// Whether a host is a Unix socket directory (there are none on Windows).
fn is_socket(host: &Host) -> bool {
    #[cfg(unix)]
    return matches!(host, Host::Unix(_));
    #[cfg(not(unix))]
    {
        let _ = host;
        false
    }
}

/// Takes a session advisory lock on `client`, trying again for at most `max_wait` rather than
/// waiting in the server: any role can take the same lock, and a server-side wait would outlive
/// a client that gave up. `None` once taken (held until unlocked or the session ends); when the
/// wait runs out, who holds it ("pid N (role R, application A)"), for the caller's error.
pub(crate) async fn advisory_lock(
    client: &tokio_postgres::Client,
    key: i64,
    max_wait: Duration,
) -> Result<Option<String>> {
    let deadline = Instant::now() + max_wait;
    let mut pause = Duration::from_millis(20);
    loop {
        let locked: bool = client
            .query_one("select pg_catalog.pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| crate::error::from_query(e, None))?
            .get(0);
        if locked {
            return Ok(None);
        }
        if Instant::now() >= deadline {
            let holders: String = client
                .query_one(
                    "select coalesce(pg_catalog.string_agg(pg_catalog.format('pid %s (role %s%s)', a.pid, a.usename,
                              case when a.application_name <> '' then ', application ' || a.application_name else '' end), ', '),
                            'a session that has since ended')
                       from pg_catalog.pg_locks l join pg_catalog.pg_stat_activity a on a.pid = l.pid
                      where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                        and l.database = (select oid from pg_catalog.pg_database where datname = pg_catalog.current_database())
                        and l.classid = (($1::int8 >> 32) & 4294967295)::oid and l.objid = ($1::int8 & 4294967295)::oid",
                    &[&key],
                )
                .await
                .map_err(|e| crate::error::from_query(e, None))?
                .get(0);
            return Ok(Some(holders));
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> ConnectOptions {
        ConnectOptions::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn reason(url: &str) -> String {
        match ConnectOptions::parse(url) {
            Err(Error::Connection(ConnectionError::InvalidUrl { reason })) => reason,
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn plain_url() {
        let o = parse("postgres://app:secret@db.example.com:6543/shop");
        assert_eq!(o.target(), "db.example.com:6543/shop");
        assert_eq!(o.config.get_user(), Some("app"));
        assert_eq!(o.config.get_password(), Some(&b"secret"[..]));
        assert_eq!(o.tls, TlsMode::Prefer);
        assert_eq!(o.pool_size, DEFAULT_POOL_SIZE);
    }

    #[test]
    fn prisma_parameters_are_honoured() {
        let o = parse(
            "postgresql://app:p%40ss@localhost:5432/shop?schema=sales&connection_limit=3&pool_timeout=7&pgbouncer=true&statement_cache_size=0",
        );
        assert_eq!(o.schema.as_deref(), Some("sales"));
        assert_eq!(o.pool_size, 3);
        assert_eq!(o.pool_timeout, Duration::from_secs(7));
        assert_eq!(o.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(o.config.get_options(), Some("-c search_path=sales"));
    }

    #[test]
    fn schema_with_capitals_is_quoted_for_search_path() {
        let o = parse("postgres://u@h/d?schema=My%20Schema");
        assert_eq!(
            o.config.get_options(),
            Some(r#"-c search_path="My\ Schema""#)
        );
    }

    #[test]
    fn sslmodes_and_root_certificates() {
        assert_eq!(
            parse("postgres://u@h/d?sslmode=disable").tls,
            TlsMode::Disable
        );
        assert_eq!(
            parse("postgres://u@h/d?sslmode=require").tls,
            TlsMode::Require
        );
        assert_eq!(
            parse("postgres://u@h/d?sslmode=verify-ca").tls,
            TlsMode::VerifyCa
        );
        let full = parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(full.tls, TlsMode::VerifyFull);
        assert_eq!(full.roots, RootCerts::File("/etc/ca.pem".into()));
        assert_eq!(
            parse("postgres://u@h/d?sslmode=require&sslaccept=strict").tls,
            TlsMode::VerifyFull
        );
        assert!(reason("postgres://u@h/d?sslmode=maybe").contains("verify-full"));
    }

    #[test]
    fn unix_sockets_ignore_sslmode_like_libpq() {
        let o = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/d?sslmode=require");
        assert_eq!(o.tls, TlsMode::Disable);
        let o = parse("postgres://u@localhost:5433/d?host=/var/run/postgresql&sslmode=require");
        assert_eq!(o.tls, TlsMode::Disable);
        assert_eq!(o.config.get_ports(), &[5433]);
    }

    #[test]
    fn passes_libpq_parameters_through() {
        let o = parse("postgres://u@h/d?application_name=billing&options=-c%20statement_timeout%3D5s&connect_timeout=3");
        assert_eq!(o.config.get_application_name(), Some("billing"));
        assert_eq!(o.config.get_options(), Some("-c statement_timeout=5s"));
        assert_eq!(o.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(reason("").contains("empty"));
        assert!(reason("mysql://u@h/d").contains("mysql://"));
        assert!(reason("localhost:5432").contains("postgres://"));
        assert!(reason("postgres://u:p@ss@h/d").contains("%40"));
        assert!(reason("postgres://u@h/d?wat=1").contains("\"wat\""));
        assert!(reason("postgres://u@h/d?connection_limit=0").contains("connection_limit"));
        assert!(reason("postgres://u@h/d?port=abc").contains("port"));
        assert!(reason("postgres://u@h/d?sslcert=/x").contains("client certificates"));
        assert!(reason("postgres://u@h").contains("no database"));
    }

    #[test]
    fn libpq_env_reaches_the_same_server() {
        let env =
            parse("postgres://app:p%40ss@db:6543/shop?sslmode=verify-full&sslrootcert=%2Fca.pem")
                .libpq_env();
        for expected in [
            ("PGHOST", "db"),
            ("PGPORT", "6543"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "p@ss"),
            ("PGDATABASE", "shop"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
        ] {
            assert!(
                env.iter().any(|(k, v)| (*k, v.as_str()) == expected),
                "{expected:?} in {env:?}"
            );
        }
    }
}
