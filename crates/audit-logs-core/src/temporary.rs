//! A throwaway PostgreSQL server, for `audit-logs demo` and for tests when no `DATABASE_URL` is
//! given. It lives in a temporary directory, listens on a free port of 127.0.0.1 with trust
//! authentication, and is stopped and deleted when dropped.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{ConnectionError, Error, Result};

/// How to set up a throwaway server beyond the defaults (trust authentication, no TLS).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Require this password (scram-sha-256) from the `postgres` user over TCP.
    pub password: Option<String>,
    /// Files written into the data directory before start, readable by the server only
    /// (certificates and keys for `ssl_cert_file`...).
    pub files: Vec<(String, Vec<u8>)>,
    /// Extra `-c name=value` settings, e.g. `("ssl", "on")`.
    pub settings: Vec<(String, String)>,
}

/// A running throwaway PostgreSQL server.
#[derive(Debug)]
pub struct TemporaryPostgres {
    port: u16,
    path: PathBuf,
    // Behind locks so that stop() and restart() work through a shared reference (servers kept
    // in statics).
    running: Mutex<Option<Running>>,
    dir: Mutex<Option<tempfile::TempDir>>,
    command: ServerCommand,
}

/// How [`TemporaryPostgres::restart`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Rolls back open transactions, disconnects clients, checkpoints.
    Fast,
    /// Kills every backend at once, with no checkpoint: a crash, recovered on start.
    Immediate,
}

/// The server process and the thread that started it.
#[derive(Debug)]
struct Running {
    pid: u32,
    keeper: JoinHandle<()>,
}

impl Running {
    /// Waits up to 10 s for a signalled server to exit, then kills what is left (its whole
    /// process group: orphaned backends would hold its shared memory), and joins the keeper.
    fn finish(self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.keeper.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !self.keeper.is_finished() {
            os::kill_tree(self.pid);
        }
        let _ = self.keeper.join();
    }
}

/// What starting the server process needs, kept for restarts.
#[derive(Debug)]
struct ServerCommand {
    postgres: PathBuf,
    data: PathBuf,
    log: PathBuf,
    settings: Vec<(String, String)>,
    run_as: Option<RunAs>,
    password: Option<String>,
}

/// The OS user the server runs as: ourselves, or `postgres` when we are root on Unix (initdb
/// refuses root).
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(unix), allow(dead_code))]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl TemporaryPostgres {
    /// Initializes a cluster in a temporary directory and starts it. Takes a few seconds.
    pub async fn start() -> Result<TemporaryPostgres> {
        TemporaryPostgres::start_with(Setup::default()).await
    }

    /// As [`TemporaryPostgres::start`], with a password, TLS files or settings.
    pub async fn start_with(setup: Setup) -> Result<TemporaryPostgres> {
        let bin = find_bin_dir()?;
        let run_as = os::run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("audit-logs-pg-")
            .tempdir()
            .map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?;
        if let Some(user) = &run_as {
            os::chown(dir.path(), user).map_err(|e| {
                fail(format!(
                    "cannot hand {} to the postgres user: {e}",
                    dir.path().display()
                ))
            })?;
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");

        let mut initdb = Command::new(bin.join(os::exe("initdb")));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdin(Stdio::null());
        match &setup.password {
            None => {
                initdb.args(["-A", "trust"]);
            }
            Some(password) => {
                let file = dir.path().join("password");
                write_private(&file, password.as_bytes(), &run_as)?;
                initdb
                    .args([
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--pwfile",
                    ])
                    .arg(&file);
            }
        }
        os::as_user(&mut initdb, &run_as);
        let output = tokio::task::spawn_blocking(move || initdb.output())
            .await
            .expect("initdb task")
            .map_err(|e| {
                fail(format!(
                    "cannot run {}: {e}",
                    bin.join(os::exe("initdb")).display()
                ))
            })?;
        if !output.status.success() {
            return Err(fail(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }

        for (name, contents) in &setup.files {
            write_private(&data.join(name), contents, &run_as)?;
        }

        let port = free_port()?;
        let mut settings = vec![
            ("listen_addresses".to_owned(), "127.0.0.1".to_owned()),
            ("unix_socket_directories".to_owned(), String::new()),
            // Throwaway data: durability buys nothing here.
            ("fsync".to_owned(), "off".to_owned()),
            ("synchronous_commit".to_owned(), "off".to_owned()),
            ("full_page_writes".to_owned(), "off".to_owned()),
            ("max_connections".to_owned(), "300".to_owned()),
        ];
        for (name, value) in setup.settings {
            match settings.iter_mut().find(|(known, _)| *known == name) {
                Some(setting) => setting.1 = value,
                None => settings.push((name, value)),
            }
        }
        let server = TemporaryPostgres {
            port,
            running: Mutex::new(None),
            path: dir.path().to_path_buf(),
            dir: Mutex::new(Some(dir)),
            command: ServerCommand {
                postgres: bin.join(os::exe("postgres")),
                data,
                log,
                settings,
                run_as,
                password: setup.password,
            },
        };
        server.launch().await?;
        Ok(server)
    }

    /// Starts the server process on the initialized data directory and waits until it answers.
    async fn launch(&self) -> Result<()> {
        let ServerCommand {
            postgres,
            data,
            log,
            settings,
            run_as,
            password,
        } = &self.command;
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| fail(format!("cannot open {}: {e}", log.display())))?;
        if let Some(user) = run_as {
            let _ = os::chown(log, user);
        }
        let mut server = Command::new(postgres);
        server
            .arg("-D")
            .arg(data)
            .args(["-p", &self.port.to_string()])
            .args(
                settings
                    .iter()
                    .flat_map(|(k, v)| ["-c".to_owned(), format!("{k}={v}")]),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| fail(e.to_string()))?)
            .stderr(log_file);
        os::as_user(&mut server, run_as);
        os::tie_to_this_thread(&mut server);

        // The server is started from a thread that lives exactly as long as the server does:
        // the parent-death signal is tied to the spawning thread, not to the process.
        let (started, pid) = mpsc::channel();
        let keeper = std::thread::Builder::new()
            .name("audit-logs-temporary-postgres".into())
            .spawn(move || match server.spawn() {
                Ok(mut child) => {
                    let _ = started.send(Ok(child.id()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            })
            .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
        let pid = pid
            .recv()
            .expect("the keeper thread reports")
            .map_err(|e| fail(format!("cannot run {}: {e}", postgres.display())))?;
        *self.running.lock().expect("running lock") = Some(Running { pid, keeper });
        self.wait_until_ready(log, password.as_deref()).await
    }

    /// Shuts the server down and starts it again on the same data. With
    /// [`Shutdown::Immediate`] the server stops as if it had crashed: every backend dies at once
    /// and the start replays the WAL (crash recovery). Clients see their connections drop.
    pub async fn restart(&self, shutdown: Shutdown) -> Result<()> {
        if let Some(running) = self.signal(shutdown) {
            // Waiting blocks: not on a runtime thread.
            tokio::task::spawn_blocking(move || running.finish())
                .await
                .expect("the shutdown task");
        }
        self.launch().await
    }

    /// Asks the server process to stop; returns it, to wait for.
    fn signal(&self, shutdown: Shutdown) -> Option<Running> {
        let running = self.running.lock().expect("running lock").take()?;
        os::stop(
            running.pid,
            shutdown,
            &self.command.postgres,
            &self.command.data,
        );
        Some(running)
    }

    /// The port on 127.0.0.1 the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temporary directory, deleted when it stops: a place for test files too.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A URL for a database of this server (user `postgres`, no password).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    async fn wait_until_ready(&self, log: &Path, password: Option<&str>) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        if let Some(password) = password {
            config.password(password);
        }
        loop {
            match config.connect(tokio_postgres::NoTls).await {
                Ok(_) => return Ok(()),
                // Up, and answering: it only refused us (say, a server that demands TLS).
                Err(e)
                    if e.as_db_error()
                        .is_some_and(|db| db.code().code().starts_with("28")) =>
                {
                    return Ok(())
                }
                Err(_) => {}
            }
            let exited = self
                .running
                .lock()
                .expect("running lock")
                .as_ref()
                .is_none_or(|r| r.keeper.is_finished());
            if exited || Instant::now() > deadline {
                let log = fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(fail(format!(
                    "the server did not start: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (fast shutdown) and deletes its directory. Also done on drop, and at
    /// exit for a server given to [`TemporaryPostgres::stop_at_exit`].
    pub fn stop(&self) {
        if let Some(running) = self.signal(Shutdown::Fast) {
            running.finish();
        }
        self.dir.lock().expect("dir lock").take();
        let forgotten: Vec<Arc<TemporaryPostgres>> = {
            let mut servers = STOP_AT_EXIT.lock().expect("servers lock");
            let (forgotten, kept) = std::mem::take(&mut *servers)
                .into_iter()
                .partition(|server| std::ptr::eq(Arc::as_ptr(server), self));
            *servers = kept;
            forgotten
        };
        // Dropped once the lock is released: the last reference's drop stops again, locking.
        drop(forgotten);
    }

    /// Stops (and deletes) this server when the process exits, if it is still running then.
    /// For servers kept in statics or handed to JavaScript, which are never dropped at exit
    /// (the parent-death signal alone would leave the directory behind). Registering the same
    /// server again does nothing; [`TemporaryPostgres::stop`] unregisters it.
    pub fn stop_at_exit(self: &Arc<Self>) {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            // SAFETY: registers a plain function with no arguments.
            unsafe {
                libc::atexit(stop_servers_at_exit);
            }
        });
        let mut servers = STOP_AT_EXIT.lock().expect("servers lock");
        if !servers.iter().any(|server| Arc::ptr_eq(server, self)) {
            servers.push(Arc::clone(self));
        }
    }
}

static STOP_AT_EXIT: Mutex<Vec<Arc<TemporaryPostgres>>> = Mutex::new(Vec::new());

extern "C" fn stop_servers_at_exit() {
    let servers = match STOP_AT_EXIT.lock() {
        Ok(mut servers) => std::mem::take(&mut *servers),
        Err(_) => return,
    };
    for server in servers {
        server.stop();
    }
}

impl Drop for TemporaryPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a file only its owner (the server's user) can read, as PostgreSQL demands of keys.
fn write_private(path: &Path, contents: &[u8], run_as: &Option<RunAs>) -> Result<()> {
    fs::write(path, contents).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
    os::make_private(path).map_err(|e| fail(format!("cannot protect {}: {e}", path.display())))?;
    if let Some(user) = run_as {
        os::chown(path, user).map_err(|e| {
            fail(format!(
                "cannot hand {} to the postgres user: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

fn fail(reason: String) -> Error {
    Error::Connection(ConnectionError::TemporaryPostgres { reason })
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| fail(format!("no free port: {e}")))?;
    Ok(listener
        .local_addr()
        .map_err(|e| fail(e.to_string()))?
        .port())
}

/// Finds the directory holding `initdb` and `postgres` (and `psql`): from PATH (following
/// symlinks, as Debian's wrappers are), else `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/*/bin.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| {
        dir.join(os::exe("initdb")).is_file() && dir.join(os::exe("postgres")).is_file()
    };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(initdb) = fs::canonicalize(dir.join(os::exe("initdb"))) {
                if let Some(parent) = initdb.parent() {
                    if has_server(parent) {
                        return Ok(parent.to_path_buf());
                    }
                }
            }
        }
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        fail(
            "no PostgreSQL server found: initdb is neither on PATH nor in `pg_config --bindir`; \
             install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL"
                .into(),
        )
    })
}

/// What differs between systems: who the server runs as, how it is tied to us and stopped.
#[cfg(unix)]
mod os {
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::Command;

    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;

    use super::{fail, RunAs, Shutdown};
    use crate::error::Result;

    pub(super) fn exe(name: &str) -> String {
        name.to_owned()
    }

    pub(super) fn chown(path: &Path, user: &RunAs) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
    }

    pub(super) fn make_private(path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    pub(super) fn as_user(command: &mut Command, run_as: &Option<RunAs>) {
        if let Some(user) = run_as {
            command.uid(user.uid).gid(user.gid);
            // initdb and postgres look at HOME and the working directory; root's are not readable.
            command.current_dir("/").env("HOME", "/tmp");
        }
    }

    pub(super) fn run_as() -> Result<Option<RunAs>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name("postgres") {
            Ok(Some(user)) => Ok(Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })),
            _ => Err(fail(
                "initdb refuses to run as root and there is no `postgres` OS user to run it as; \
                 create one (useradd postgres) or set DATABASE_URL"
                    .into(),
            )),
        }
    }

    /// Its own process group, so that a last-resort SIGKILL reaches its backends too; on Linux,
    /// SIGQUIT (immediate shutdown) if the thread that started it dies, so that a crashed test
    /// run leaves no server behind (elsewhere the drop and the last-resort kill stop it).
    pub(super) fn tie_to_this_thread(server: &mut Command) {
        server.process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel for that signal.
        #[cfg(target_os = "linux")]
        unsafe {
            server.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT)?;
                Ok(())
            });
        }
    }

    /// SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one.
    pub(super) fn stop(pid: u32, shutdown: Shutdown, _postgres: &Path, _data: &Path) {
        let signal = match shutdown {
            Shutdown::Fast => Signal::SIGINT,
            Shutdown::Immediate => Signal::SIGQUIT,
        };
        // Gone already is fine: there is nothing left to stop.
        let _ = kill(server_pid(pid), signal);
    }

    /// The process group the server leads: its backends too.
    pub(super) fn kill_tree(pid: u32) {
        let _ = killpg(server_pid(pid), Signal::SIGKILL);
    }

    fn server_pid(pid: u32) -> Pid {
        Pid::from_raw(pid as i32)
    }
}

/// Windows: the server runs as ourselves (initdb drops an administrator's rights by itself),
/// and is stopped through pg_ctl, as PostgreSQL has no signals there.
#[cfg(windows)]
mod os {
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::{RunAs, Shutdown};
    use crate::error::Result;

    pub(super) fn exe(name: &str) -> String {
        format!("{name}.exe")
    }

    pub(super) fn chown(_path: &Path, _user: &RunAs) -> std::io::Result<()> {
        Ok(())
    }

    /// The temporary directory is the current user's own already.
    pub(super) fn make_private(_path: &Path) -> std::io::Result<()> {
        Ok(())
    }

    pub(super) fn as_user(_command: &mut Command, _run_as: &Option<RunAs>) {}

    pub(super) fn run_as() -> Result<Option<RunAs>> {
        Ok(None)
    }

    pub(super) fn tie_to_this_thread(_server: &mut Command) {}

    pub(super) fn stop(_pid: u32, shutdown: Shutdown, postgres: &Path, data: &Path) {
        let mode = match shutdown {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        };
        let _ = Command::new(postgres.with_file_name(exe("pg_ctl")))
            .arg("stop")
            .arg("-D")
            .arg(data)
            .args(["-m", mode, "--no-wait"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub(super) fn kill_tree(pid: u32) {
        let _ = Command::new("taskkill")
            .args(["/F", "/T", "/PID", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
