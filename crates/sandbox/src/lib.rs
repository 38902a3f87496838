//! Private Redis and MariaDB servers, for the demo and for fault tests. One file (and
//! `sentinel` beside it) because the crate is one idea: a server process of its own,
//! of three kinds, whose process handling they all share.
//!
//! [`PrivateRedis`], [`PrivateSentinel`] and [`PrivateMysql`] each run one server
//! process of their own on a free `127.0.0.1` port, with all its files in a temporary
//! directory; all are one [`PrivateServer`] type over a [`ServerKind`] (the command
//! line, the readiness probe, the logs). A Redis may be started as a replica and with
//! any configuration directive ([`RedisOptions`]); [`ReplicatedRedis`] (in `sentinel`)
//! starts a primary, its replicas and the sentinels that fail it over, ready for a
//! failover test. [`PrivateCluster`] (in `cluster`) starts a Redis Cluster of such
//! servers, primaries and replicas, ready for slot migrations and a cluster failover.
//! They exist so that a test can do to a server what must never be done to
//! a shared one (SIGKILL it, restart it, lose its data) and so that `seatgate-tools
//! demo` can run on a machine that has the server binaries installed but not running.
//!
//! This crate does not depend on the gateway: the gateway's tests and the tools use it.
//!
//! The rules every server here follows:
//!
//! - Startup is awaited by polling the server with its own protocol (PING, `SELECT 1`)
//!   until a deadline, never by a fixed sleep: a server is ready when it answers.
//! - If the process exits before it answers, or the deadline passes, the error carries
//!   the tail of the server's log, which is kept in the temporary directory.
//! - [`kill`](PrivateRedis::kill) is SIGKILL (a crash, not a shutdown),
//!   [`pause`](PrivateRedis::pause) / [`resume`](PrivateRedis::resume) are SIGSTOP /
//!   SIGCONT (a stall), and
//!   [`restart`](PrivateRedis::restart) starts a new process on the same port and the
//!   same directory, so whatever the server had made durable survives, exactly as it
//!   would on a real host.
//! - Dropping the handle kills the process first, then removes the directory.
//!
//! A port comes from [`free_port`] (bind port 0, read it, let it go), so another
//! process can take it in between; `start` therefore tries a few ports before it gives
//! up. `restart` cannot (clients hold the URL), and fails if the port was taken.

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod cluster;
mod sentinel;
pub use cluster::{
    cluster_info, cluster_nodes, slot_of, ClusterNode, PrivateCluster, CLUSTER_SLOTS,
};
pub use sentinel::{GroupOptions, PrivateSentinel, ReplicatedRedis, Sentinel, SentinelOptions};

/// How long a private Redis may take to answer PING after it is started.
const REDIS_READY_DEADLINE: Duration = Duration::from_secs(10);
/// How long a private MariaDB may take to accept a connection (InnoDB crash recovery
/// after a SIGKILL is part of it).
const MYSQL_READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long `mariadb-install-db` may take to create the system tables.
const MYSQL_INSTALL_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Ports tried by `start` before giving up (see the module docs).
const START_ATTEMPTS: usize = 3;
/// Bytes of a server log quoted in an error.
const LOG_TAIL_BYTES: u64 = 4096;

/// A free TCP port on 127.0.0.1, as the kernel hands out for port 0.
///
/// The port is released before this returns, so it is free "just now", not reserved.
///
/// # Panics
///
/// If 127.0.0.1:0 cannot be bound (no loopback interface); see [`try_free_port`].
pub fn free_port() -> u16 {
    try_free_port().expect("binding 127.0.0.1:0 succeeds on any host with a loopback interface")
}

/// [`free_port`], reporting a failure to bind instead of panicking.
pub fn try_free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The path of an executable named `name`, looked up on `PATH` and then in
/// `/usr/sbin`, `/usr/local/sbin` and `/sbin` (where `mariadbd` lives, and which are
/// often not on a non-root `PATH`).
///
/// The path is returned as found, not canonicalised: Debian's `redis-server` is a
/// symlink to `redis-check-rdb`, which picks its role from the name it was run by.
pub fn binary_on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when this process runs as root (mariadbd then needs `--user=root`).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Answers `Ok` when a Redis server at `url` answers PING within `timeout`.
pub async fn redis_ping(url: &str, timeout: Duration) -> anyhow::Result<()> {
    // Messages leave the URL out: it may hold a password (callers name it, redacted).
    let client = redis::Client::open(url).context("bad Redis URL")?;
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e).context("Redis did not answer PING"),
        Err(_) => bail!("Redis did not answer PING within {timeout:?}"),
    }
}

/// Answers `Ok` when the MySQL server named by `url` accepts a connection within
/// `timeout`. Only the server is checked, not the database in the URL's path, which
/// may not exist yet (the gateway creates it).
pub async fn mysql_ping(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use sqlx::migrate::MigrateDatabase;
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(url).context("bad MySQL URL")?;
    let check = async {
        if options.get_database().is_some() {
            // Connects without the database and asks the server whether it exists:
            // exactly "the server answers".
            sqlx::MySql::database_exists(url).await.map(|_| ())
        } else {
            options.connect().await?.close().await
        }
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e).context("MySQL did not accept a connection"),
        Err(_) => bail!("MySQL did not accept a connection within {timeout:?}"),
    }
}

/// The last few KiB of a log file, for error messages.
fn log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => format!("({} is empty)", path.display()),
        Ok(text) => format!("--- tail of {} ---\n{}", path.display(), text.trim_end()),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A running server process and where its output goes.
struct Process {
    child: Child,
    pid: u32,
}

impl Process {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    fn spawn(mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone().context("cannot duplicate the log handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
        let pid = child.id();
        Ok(Self { child, pid })
    }

    /// The exit status, if the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap (a killed process is gone within milliseconds, so the
    /// blocking wait is short).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a start failed: the process could not be run, it died before it answered
/// (worth another port on a first start), or it never answered.
enum NotReady {
    Spawn(anyhow::Error),
    Exited(ExitStatus),
    Timeout(anyhow::Error),
}

/// What differs between the servers [`PrivateServer`] runs: the command line, the
/// readiness probe, and where the logs are.
pub trait ServerKind {
    /// How long the server may take to answer after it is started.
    const READY_DEADLINE: Duration;
    /// The file in the server's directory that receives its stdout and stderr.
    const OUTPUT_FILE: &'static str;
    /// What the server does when it is ready, for errors ("answer PING").
    const READY_VERB: &'static str;
    /// [`READY_VERB`](Self::READY_VERB) as a gerund, for errors ("answering PING").
    const READY_GERUND: &'static str;

    /// The server's name in errors.
    fn name(&self) -> String;
    /// The command that runs the server on `port` with its files in `dir`.
    fn command(&self, port: u16, dir: &Path) -> Command;
    /// Answers `Ok` once the server on `port` serves clients.
    fn probe(&self, port: u16) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// The tail of the server's logs in `dir`.
    fn log_tail(&self, dir: &Path) -> String;
}

/// One server process of its own, on a free port, with its files in a temporary
/// directory: [`PrivateRedis`] and [`PrivateMysql`] are this type for each
/// [`ServerKind`].
pub struct PrivateServer<K> {
    // Field order matters for Drop: the process is killed in `Drop::drop`, before the
    // directory it writes to is removed.
    process: Option<Process>,
    pid: u32,
    port: u16,
    kind: K,
    dir: TempDir,
}

/// A `redis-server` of its own (see [`PrivateServer`]).
pub type PrivateRedis = PrivateServer<Redis>;

/// A MariaDB (or MySQL) server of its own, with a fresh data directory (see
/// [`PrivateServer`]). `root` connects over TCP with no password.
pub type PrivateMysql = PrivateServer<Mysql>;

/// A temporary directory named after `prefix`, for `server`'s files.
fn server_dir(prefix: &str, server: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .with_context(|| format!("cannot create a temporary directory for {server}"))
}

impl<K: ServerKind> PrivateServer<K> {
    /// Starts the server in `dir` on a free port and waits until it answers, trying
    /// another port when the process exits before answering (see the module docs).
    async fn launch(kind: K, dir: TempDir) -> anyhow::Result<Self> {
        let mut server = Self {
            process: None,
            pid: 0,
            port: 0,
            kind,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.port = try_free_port().context("cannot find a free port")?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                // Most likely someone took the port between free_port and the bind.
                Err(NotReady::Exited(_)) if attempt < START_ATTEMPTS => continue,
                Err(e) => return Err(server.startup_error(e)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the server process most recently started (after [`kill`](Self::kill),
    /// the pid the dead process had).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary directory holding the server's data and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// True while the server process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// Kills the server with SIGKILL: a crash. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the server with SIGSTOP: it holds its connections but answers nothing
    /// (a stalled host, a long GC pause, a replica that stops acknowledging) until
    /// [`resume`](Self::resume). Does nothing if it is not running.
    /// Returns once the kernel shows the process stopped, so nothing it would do
    /// after this call (acknowledge a write, say) slips in between.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let stat = format!("/proc/{}/stat", self.pid);
        let until = Instant::now() + Duration::from_secs(2);
        // The state is the field after the command name, which is in parentheses.
        let stopped = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state == "T" || state == "t")
            })
        };
        while !stopped() {
            if Instant::now() > until {
                bail!("pid {} did not stop within 2 s of SIGSTOP", self.pid);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Lets a [`pause`](Self::pause)d server run again (SIGCONT).
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&mut self, signal: libc::c_int) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill(2) takes plain integers; the pid is this handle's own child,
        // not yet reaped (is_running just checked), so it names no other process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot signal pid {pid}"));
        }
        Ok(())
    }

    /// Starts the server again on the same port and directory (killing it first if it
    /// still runs) and waits until it answers. Whatever the server had made durable (an
    /// AOF, committed InnoDB transactions) is recovered.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait()
            .await
            .map_err(|e| self.startup_error(e))
    }

    /// The tail of the server's logs.
    pub fn log_tail(&self) -> String {
        self.kind.log_tail(self.dir.path())
    }

    /// Polls the probe until it succeeds, the process exits, or the deadline passes;
    /// a server that did not answer is killed.
    async fn spawn_and_wait(&mut self) -> Result<(), NotReady> {
        let dir = self.dir.path();
        let cmd = self.kind.command(self.port, dir);
        let process = Process::spawn(cmd, &dir.join(K::OUTPUT_FILE)).map_err(NotReady::Spawn)?;
        self.pid = process.pid;
        let result = self.wait_until_ready(process).await;
        if result.is_err() {
            self.kill();
        }
        result
    }

    async fn wait_until_ready(&mut self, process: Process) -> Result<(), NotReady> {
        let process = self.process.insert(process);
        let until = Instant::now() + K::READY_DEADLINE;
        loop {
            if let Some(status) = process.exited() {
                return Err(NotReady::Exited(status));
            }
            let last = match self.kind.probe(self.port).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= until {
                return Err(NotReady::Timeout(last));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn startup_error(&self, e: NotReady) -> anyhow::Error {
        let what = match e {
            NotReady::Spawn(e) => format!("could not be started: {e:#}"),
            NotReady::Exited(status) => format!("exited ({status}) before {}", K::READY_GERUND),
            NotReady::Timeout(e) => format!("did not {} in time: {e:#}", K::READY_VERB),
        };
        anyhow::anyhow!(
            "private {} on port {} {what}\n{}",
            self.kind.name(),
            self.port,
            self.log_tail()
        )
    }
}

impl<K> Drop for PrivateServer<K> {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

/// `redis-server`, run from a configuration file of its own (see [`RedisOptions`]).
pub struct Redis {
    binary: PathBuf,
}

/// The name of a private Redis's configuration file in its directory.
const REDIS_CONFIG_FILE: &str = "redis.conf";

impl ServerKind for Redis {
    const READY_DEADLINE: Duration = REDIS_READY_DEADLINE;
    // Output before the logfile is open (bad arguments) lands here.
    const OUTPUT_FILE: &'static str = "redis-server.out";
    const READY_VERB: &'static str = "answer PING";
    const READY_GERUND: &'static str = "answering PING";

    fn name(&self) -> String {
        "redis-server".to_owned()
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        // Everything but the port is in the configuration file, written once by
        // `start_with`; the port is chosen per attempt.
        let mut cmd = Command::new(&self.binary);
        cmd.arg(dir.join(REDIS_CONFIG_FILE))
            .arg("--port")
            .arg(port.to_string());
        cmd
    }

    fn probe(&self, port: u16) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let url = redis_url(port);
        async move { redis_ping(&url, Duration::from_millis(500)).await }
    }

    fn log_tail(&self, dir: &Path) -> String {
        format!(
            "{}\n{}",
            log_tail(&dir.join(Self::OUTPUT_FILE)),
            log_tail(&dir.join("redis.log"))
        )
    }
}

/// `redis://127.0.0.1:<port>`.
pub fn redis_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A value quoted for a Redis configuration file (paths, which may hold spaces).
pub(crate) fn config_quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// How a private `redis-server` is configured: persistence, replication and any other
/// configuration directive.
///
/// The options are written to `redis.conf` in the server's directory when it is first
/// started, and every [`restart`](PrivateServer::restart) reads that file again. So a
/// `CONFIG REWRITE` (which Sentinel sends with every `REPLICAOF` it orders) survives a
/// restart, exactly as on a real host: a promoted replica restarts as a primary.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    appendonly: bool,
    replica_of: Option<u16>,
    config: Vec<(String, String)>,
}

impl RedisOptions {
    /// No persistence, a primary, nothing else: what [`PrivateRedis::start`]`(false)`
    /// runs.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `true`, writes go to an AOF fsynced every second (`appendfsync everysec`),
    /// so they survive [`kill`](PrivateServer::kill) +
    /// [`restart`](PrivateServer::restart).
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Starts as a replica of the Redis on `127.0.0.1:<port>` (`replicaof`).
    pub fn replica_of(mut self, port: u16) -> Self {
        self.replica_of = Some(port);
        self
    }

    /// Adds the directive `<name> <value>` to the configuration file, after the
    /// sandbox's own (so it wins over them). `value` is written as it is, in the
    /// file's syntax: `("maxmemory", "2mb")`, `("maxmemory-policy", "allkeys-lru")`,
    /// `("save", "60 1")` for RDB snapshots, `("rename-command", "CONFIG \"\"")`.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.push((name.into(), value.into()));
        self
    }

    /// The configuration file's text for a server with its files in `dir`.
    fn file(&self, dir: &Path) -> String {
        let dir_text = dir.display().to_string();
        let log = dir.join("redis.log").display().to_string();
        let mut lines = vec![
            "bind 127.0.0.1".to_owned(),
            format!("dir {}", config_quote(&dir_text)),
            "daemonize no".to_owned(),
            format!("logfile {}", config_quote(&log)),
            // No RDB snapshots unless asked for (`config("save", ...)`: the first
            // `save` line of a file replaces the default, later ones add to it).
            "save \"\"".to_owned(),
            format!("appendonly {}", if self.appendonly { "yes" } else { "no" }),
            "appendfsync everysec".to_owned(),
            // A full sync starts at once instead of waiting 5 s for more replicas, so a
            // replica is in sync within milliseconds (any node may become a primary).
            "repl-diskless-sync-delay 0".to_owned(),
        ];
        if let Some(port) = self.replica_of {
            lines.push(format!("replicaof 127.0.0.1 {port}"));
        }
        lines.extend(
            self.config
                .iter()
                .map(|(name, value)| format!("{name} {value}")),
        );
        lines.push(String::new());
        lines.join("\n")
    }
}

impl PrivateServer<Redis> {
    /// Starts `redis-server` and waits until it answers PING.
    ///
    /// With `appendonly`, writes go to an AOF fsynced every second
    /// (`appendfsync everysec`, what README.md's durability contract assumes), so data
    /// survives [`kill`](Self::kill) + [`restart`](Self::restart). RDB snapshots are
    /// off either way. [`start_with`](Self::start_with) takes more options.
    pub async fn start(appendonly: bool) -> anyhow::Result<Self> {
        Self::start_with(RedisOptions::new().appendonly(appendonly)).await
    }

    /// Starts `redis-server` configured by `options` and waits until it answers PING.
    ///
    /// A replica answers PING before it has synced with its primary; see
    /// [`ReplicatedRedis`] for a group that waits until its replicas are in sync.
    pub async fn start_with(options: RedisOptions) -> anyhow::Result<Self> {
        let binary = binary_on_path("redis-server")
            .context("redis-server is not installed (apt-get install redis-server)")?;
        let dir = server_dir("seatgate-redis-", "redis-server")?;
        let config = dir.path().join(REDIS_CONFIG_FILE);
        std::fs::write(&config, options.file(dir.path()))
            .with_context(|| format!("cannot write {}", config.display()))?;
        Self::launch(Redis { binary }, dir).await
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        redis_url(self.port)
    }

    /// The fields of `INFO <section>` (`role`, `master_link_status`, ...).
    pub async fn info(&self, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
        redis_info(&self.url(), section).await
    }
}

/// The fields of `INFO <section>` of the Redis at `url`, as `name → value`.
pub async fn redis_info(url: &str, section: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let client = redis::Client::open(url).context("bad Redis URL")?;
    let query = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg(section)
            .query_async::<String>(&mut conn)
            .await
    };
    let text = tokio::time::timeout(Duration::from_secs(2), query)
        .await
        .context("Redis did not answer INFO within 2 s")?
        .context("Redis did not answer INFO")?;
    Ok(parse_info(&text))
}

/// `INFO`'s `name:value` lines as a map (section headers and blank lines skipped).
fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim_end().to_owned()))
        .collect()
}

/// `mariadbd` (or `mysqld`) with a data directory of its own.
pub struct Mysql {
    binary: PathBuf,
}

/// The server binary: MariaDB's name first, then the name both MariaDB and MySQL
/// install.
fn mysql_server_binary() -> Option<PathBuf> {
    binary_on_path("mariadbd").or_else(|| binary_on_path("mysqld"))
}

fn mysql_url(port: u16, database: &str) -> String {
    format!("mysql://root@127.0.0.1:{port}/{database}")
}

impl ServerKind for Mysql {
    // InnoDB crash recovery after a SIGKILL is part of it.
    const READY_DEADLINE: Duration = MYSQL_READY_DEADLINE;
    // Without --log-error the server logs to stderr, which goes here.
    const OUTPUT_FILE: &'static str = "mysqld.log";
    const READY_VERB: &'static str = "accept a connection";
    const READY_GERUND: &'static str = "accepting connections";

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        // --no-defaults first: the host's my.cnf (its port, socket, datadir) must not
        // leak in. Small buffers and no binlog keep startup and recovery quick.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            // Temporary tables in a directory of its own, not the /tmp every other
            // server on the machine uses.
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-log-file-size=16M")
            .arg("--skip-log-bin");
        if running_as_root() {
            // mysqld refuses to run as root unless told to.
            cmd.arg("--user=root");
        }
        cmd
    }

    fn probe(&self, port: u16) -> impl std::future::Future<Output = anyhow::Result<()>> + Send {
        let url = mysql_url(port, "");
        async move { mysql_ping(&url, Duration::from_secs(2)).await }
    }

    fn log_tail(&self, dir: &Path) -> String {
        log_tail(&dir.join(Self::OUTPUT_FILE))
    }
}

impl PrivateServer<Mysql> {
    /// True when a MariaDB or MySQL server binary is installed.
    pub fn available() -> bool {
        mysql_server_binary().is_some()
    }

    /// Creates a data directory, starts the server and waits until `root` can connect
    /// over TCP.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = mysql_server_binary()
            .context("mariadbd is not installed (apt-get install mariadb-server)")?;
        let dir = server_dir("seatgate-mysql-", "mariadbd")?;
        install_data_dir(&binary, dir.path()).await?;
        Self::launch(Mysql { binary }, dir).await
    }

    /// `mysql://root@127.0.0.1:<port>/<database>` (`database` may be empty).
    pub fn url(&self, database: &str) -> String {
        mysql_url(self.port, database)
    }
}

/// Creates the system tables in `<dir>/data`, with a password-less `root`.
///
/// MariaDB ships `mariadb-install-db` (older: `mysql_install_db`); MySQL 5.7+ does it
/// with `mysqld --initialize-insecure`.
async fn install_data_dir(server: &Path, dir: &Path) -> anyhow::Result<()> {
    let data = dir.join("data");
    let log = dir.join("install.log");
    // A temporary directory of its own (see `command`), made here, before the first use.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut cmd = if let Some(install) =
        binary_on_path("mariadb-install-db").or_else(|| binary_on_path("mysql_install_db"))
    {
        let mut cmd = tokio::process::Command::new(install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            // root authenticates with its (empty) password, not unix_socket, so it can
            // connect over TCP.
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--tmpdir={}", tmp.display()));
        cmd
    } else {
        let mut cmd = tokio::process::Command::new(server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--initialize-insecure")
            .arg(format!("--tmpdir={}", tmp.display()));
        cmd
    };
    if running_as_root() {
        cmd.arg("--user=root");
    }
    let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone().context("cannot duplicate the log handle")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {:?}", cmd.as_std().get_program()))?;
    let status = tokio::time::timeout(MYSQL_INSTALL_DEADLINE, child.wait())
        .await
        .with_context(|| {
            format!(
                "creating the MySQL data directory took over {MYSQL_INSTALL_DEADLINE:?}\n{}",
                log_tail(&log)
            )
        })?
        .context("waiting for mariadb-install-db")?;
    if !status.success() {
        bail!(
            "creating the MySQL data directory failed ({status})\n{}",
            log_tail(&log)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
    }

    #[test]
    fn binaries_are_found_on_the_path_and_missing_ones_are_not() {
        assert!(binary_on_path("sh").is_some());
        assert!(binary_on_path("/bin/sh").is_some());
        assert!(binary_on_path("seatgate-no-such-binary").is_none());
        assert!(binary_on_path("/no/such/binary").is_none());
    }

    #[test]
    fn info_lines_become_fields_and_headers_are_skipped() {
        let info = parse_info("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\r\n");
        assert_eq!(info.len(), 2);
        assert_eq!(info["role"], "master");
        assert_eq!(info["connected_slaves"], "1");
    }

    #[test]
    fn extra_directives_come_after_the_sandboxs_own_so_they_win() {
        let file = RedisOptions::new()
            .appendonly(true)
            .replica_of(7001)
            .config("save", "60 1")
            .file(Path::new("/tmp/with space"));
        let lines: Vec<&str> = file.lines().collect();
        assert!(lines.contains(&"dir \"/tmp/with space\""));
        assert!(lines.contains(&"appendonly yes"));
        assert!(lines.contains(&"replicaof 127.0.0.1 7001"));
        let default_save = lines.iter().position(|l| *l == "save \"\"").unwrap();
        let extra_save = lines.iter().position(|l| *l == "save 60 1").unwrap();
        assert!(default_save < extra_save);
    }

    #[test]
    fn a_missing_log_is_reported_not_a_panic() {
        assert!(log_tail(Path::new("/no/such/log")).contains("cannot read"));
    }
}
