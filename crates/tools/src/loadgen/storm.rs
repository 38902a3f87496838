//! A connection storm: N clients connect at the same instant, each on a fresh TCP
//! connection, and send one claim. One file because it is one procedure (connect,
//! exchange, tally, report) whose parts, the raw HTTP exchange and the kernel
//! counters included, serve the storm alone.
//!
//! This is what the first second of a drop looks like to the gateway's listener: every
//! client's SYN arrives at once, before the gateway has accepted any of them. Whatever
//! does not fit in the listen backlog is dropped by the kernel (counted in
//! `TcpExtListenOverflows` / `TcpExtListenDrops`), and its client only tries again when
//! its SYN (or its handshake's last ACK) is retransmitted, 1 s, 3 s, 7 s later. So the
//! figures are the kernel's counters around the storm and each client's **time to
//! first answer**: from just before its `connect` to the moment its response's status
//! line has been read.
//!
//! The clients are raw [`TcpStream`]s, not a pooled HTTP client: a pool would reuse
//! connections or open them as it sees fit, and the point is one new connection per
//! claim. Every request is built (token signed, key drawn) before the clock starts;
//! the connections are spawned as tasks that all wait on one start signal, then each
//! connects, writes its request (`Connection: close`), reads the status line, and
//! drains the answer until the gateway closes.
//!
//! The kernel counters are the whole host's (`/proc/net/netstat`): on a shared machine
//! another process's overflows in the same seconds would be counted too.

use anyhow::{ensure, Context};
use hdrhistogram::Histogram;
use seatgate::cli::thousands;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use uuid::Uuid;

use super::client::Api;
use super::report::{histogram, millis};
use seatgate::api::auth::sign_user_token;
use seatgate::config::Secret;

/// Lifetime of the storm's user tokens.
const TOKEN_TTL_SECS: u64 = 3600;
/// The longest status line we wait for before calling the answer malformed.
const MAX_HEAD_BYTES: usize = 8192;
/// The kernel counters the report shows (fields of `TcpExt:` in `/proc/net/netstat`).
pub const KERNEL_COUNTERS: [&str; 5] = [
    "ListenOverflows",
    "ListenDrops",
    "SyncookiesSent",
    "TCPReqQFullDoCookies",
    "TCPReqQFullDrop",
];

/// What a storm does.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Connections opened at once, one claim each.
    pub connections: u32,
    /// Seats in the event; connection i claims seat i mod seats.
    pub seats: u32,
    /// Time allowed to each connection, from its connect to its status line.
    pub timeout: Duration,
    /// The event created and warmed for the storm.
    pub event_id: String,
}

/// The gateway a storm runs against.
pub struct StormTarget {
    /// `http://host:port`.
    pub base: String,
    pub admin_token: String,
    pub jwt_secret: Secret,
}

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A status line was read.
    Answered { status: u16 },
    /// It failed at `stage` (`connect`, `write`, `read`) with an error of `kind`, or
    /// timed out (`kind` = `timeout`).
    Failed {
        stage: &'static str,
        kind: &'static str,
    },
}

/// One connection's result, times from the storm's start signal, in µs.
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// When it called `connect`, after the start signal.
    connect_started_us: u64,
    /// From `connect` to an established connection (None: never established).
    connect_us: Option<u64>,
    /// From `connect` to the status line (None: no status line).
    first_answer_us: Option<u64>,
    /// When its status line was read or it failed.
    ended_us: u64,
    ending: Ending,
}

/// The storm's figures.
#[derive(Debug)]
pub struct StormReport {
    pub target: String,
    pub event_id: String,
    pub connections: u32,
    pub seats: u32,
    pub timeout: Duration,
    /// `net.core.somaxconn` on the client's host (the gateway's too on one host).
    pub somaxconn: Option<u32>,
    /// Status code → connections answered with it.
    pub statuses: BTreeMap<u16, u64>,
    /// `"<stage> <kind>"` → connections that failed so.
    pub failures: BTreeMap<String, u64>,
    /// Connect start → status line, µs.
    pub first_answer: Histogram<u64>,
    /// Connect start → established, µs.
    pub connect: Histogram<u64>,
    /// From the start signal to the last connection's `connect` call.
    pub spread: Duration,
    /// From the start signal to the last status line read or failure.
    pub wall: Duration,
    /// Deltas of [`KERNEL_COUNTERS`] across the storm (None: not readable).
    pub kernel: Option<BTreeMap<String, i64>>,
}

impl StormReport {
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn counter(&self, name: &str) -> Option<i64> {
        self.kernel.as_ref().and_then(|k| k.get(name).copied())
    }

    /// A short human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "storm on {}: {} connections at once, one claim each ({} seats, event {})",
            self.target,
            thousands(u64::from(self.connections)),
            self.seats,
            self.event_id
        );
        let statuses = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} × {}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "  answered        {} ({})",
            thousands(self.answered()),
            if statuses.is_empty() {
                "none".into()
            } else {
                statuses
            }
        );
        if !self.failures.is_empty() {
            let failures = self
                .failures
                .iter()
                .map(|(f, n)| format!("{f} × {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "  failed          {failures}");
        }
        let _ = writeln!(out, "  first answer    {}", quantiles(&self.first_answer));
        let _ = writeln!(out, "  connect         {}", quantiles(&self.connect));
        let _ = writeln!(
            out,
            "  connects issued within {} of the start; last answer or failure at {}",
            millis(self.spread.as_micros() as u64),
            millis(self.wall.as_micros() as u64)
        );
        match &self.kernel {
            Some(k) => {
                let counters = KERNEL_COUNTERS
                    .iter()
                    .map(|name| format!("{name} +{}", k.get(*name).copied().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(out, "  kernel (TcpExt) {counters}");
            }
            None => {
                let _ = writeln!(out, "  kernel (TcpExt) /proc/net/netstat not readable");
            }
        }
        if let Some(max) = self.somaxconn {
            let _ = writeln!(out, "  net.core.somaxconn {max}");
        }
        out
    }

    /// The machine-readable report (`"schema": "seatgate.storm.v1"`, times in µs).
    pub fn to_json(&self) -> Value {
        json!({
            "schema": "seatgate.storm.v1",
            "target": self.target,
            "event_id": self.event_id,
            "connections": self.connections,
            "seats": self.seats,
            "timeout_ms": self.timeout.as_millis() as u64,
            "somaxconn": self.somaxconn,
            "answered": self.answered(),
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "failures": self.failures,
            "first_answer_us": quantiles_json(&self.first_answer),
            "connect_us": quantiles_json(&self.connect),
            "spread_us": self.spread.as_micros() as u64,
            "wall_us": self.wall.as_micros() as u64,
            "kernel": self.kernel,
            "listen_overflows": self.counter("ListenOverflows"),
            "listen_drops": self.counter("ListenDrops"),
        })
    }
}

fn quantiles(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "(none)".into();
    }
    format!(
        "p50 {}   p99 {}   p99.9 {}   max {}   (n = {})",
        millis(h.value_at_quantile(0.5)),
        millis(h.value_at_quantile(0.99)),
        millis(h.value_at_quantile(0.999)),
        millis(h.max()),
        thousands(h.len())
    )
}

fn quantiles_json(h: &Histogram<u64>) -> Value {
    let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
    json!({
        "count": h.len(),
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "max": (!h.is_empty()).then(|| h.max()),
    })
}

/// Creates and warms the storm's event, runs the storm, and reports.
pub async fn run(target: &StormTarget, plan: &StormPlan) -> anyhow::Result<StormReport> {
    ensure!(
        plan.connections > 0,
        "a storm needs at least one connection"
    );
    ensure!(plan.seats > 0, "the event needs at least one seat");
    let base = target.base.trim_end_matches('/');
    let addr = socket_addr(base).await?;

    let api = Api::new(base, &target.admin_token, 1)?;
    let seat_ids: Vec<String> = (0..plan.seats).map(|i| format!("S{i:05}")).collect();
    api.create_and_warm(&plan.event_id, "seatgate connection storm", &seat_ids, 4, 0)
        .await?;
    // The admin client's connection must not linger into the storm.
    drop(api);

    // Every request is built before the clock starts, off the runtime's threads.
    let requests = {
        let secret = target.jwt_secret.clone();
        let host = base
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_owned();
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || build_requests(&secret, &host, &plan, &seat_ids))
            .await
            .context("building the storm's requests failed")?
    };

    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let mut tasks = Vec::with_capacity(requests.len());
    for request in requests {
        let mut start = start_rx.clone();
        let timeout = plan.timeout;
        tasks.push(tokio::spawn(async move {
            let started = match start.wait_for(Option::is_some).await {
                Ok(s) => s.expect("waited for Some"),
                Err(_) => return None,
            };
            Some(one_connection(addr, &request, started, timeout).await)
        }));
    }
    // Let every task reach its wait before the signal (they are spawned, not yet
    // polled); a short pause is enough and costs nothing in the figures, which are
    // measured from each connection's own connect.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = read_kernel_counters();
    let started = Instant::now();
    start_tx.send_replace(Some(started));

    let mut conns = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(conn) = task.await.context("a storm connection task failed")? {
            conns.push(conn);
        }
    }
    let after = read_kernel_counters();
    let kernel = match (before, after) {
        (Some(b), Some(a)) => Some(counter_deltas(&b, &a)),
        _ => None,
    };
    Ok(tally(target, plan, &conns, kernel))
}

fn tally(
    target: &StormTarget,
    plan: &StormPlan,
    conns: &[Conn],
    kernel: Option<BTreeMap<String, i64>>,
) -> StormReport {
    let mut report = StormReport {
        target: target.base.clone(),
        event_id: plan.event_id.clone(),
        connections: plan.connections,
        seats: plan.seats,
        timeout: plan.timeout,
        somaxconn: seatgate::server::somaxconn(),
        statuses: BTreeMap::new(),
        failures: BTreeMap::new(),
        first_answer: histogram(),
        connect: histogram(),
        spread: Duration::ZERO,
        wall: Duration::ZERO,
        kernel,
    };
    for c in conns {
        report.spread = report
            .spread
            .max(Duration::from_micros(c.connect_started_us));
        if let Some(us) = c.connect_us {
            let _ = report.connect.record(us.max(1));
        }
        if let Some(us) = c.first_answer_us {
            let _ = report.first_answer.record(us.max(1));
        }
        report.wall = report.wall.max(Duration::from_micros(c.ended_us));
        match c.ending {
            Ending::Answered { status } => *report.statuses.entry(status).or_default() += 1,
            Ending::Failed { stage, kind } => {
                *report
                    .failures
                    .entry(format!("{stage} {kind}"))
                    .or_default() += 1;
            }
        }
    }
    report
}

/// The address of `base` (`http://host:port`).
async fn socket_addr(base: &str) -> anyhow::Result<SocketAddr> {
    let host_port = base
        .strip_prefix("http://")
        .with_context(|| format!("{base}: a storm speaks plain http:// only"))?;
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("{host_port} resolves to nothing"))
}

/// One HTTP/1.1 claim per connection: user `storm-<i>` (one claim per user, so no
/// per-user limit or rate limit is hit), seat `i mod seats`, a fresh idempotency key.
fn build_requests(
    secret: &Secret,
    host: &str,
    plan: &StormPlan,
    seat_ids: &[String],
) -> Vec<Vec<u8>> {
    (0..plan.connections)
        .map(|i| {
            let token = sign_user_token(secret, &format!("storm-{i}"), TOKEN_TTL_SECS);
            let body = json!({ "seats": [seat_ids[i as usize % seat_ids.len()]] }).to_string();
            format!(
                "POST /v1/events/{event}/bookings HTTP/1.1\r\n\
                 Host: {host}\r\n\
                 Authorization: Bearer {token}\r\n\
                 Idempotency-Key: {key}\r\n\
                 Content-Type: application/json\r\n\
                 Content-Length: {len}\r\n\
                 Connection: close\r\n\
                 \r\n\
                 {body}",
                event = plan.event_id,
                key = Uuid::now_v7(),
                len = body.len(),
            )
            .into_bytes()
        })
        .collect()
}

/// Connects, sends `request`, reads the status line, then drains until the gateway
/// closes (so the connection ends cleanly, in the gateway's TIME_WAIT, not ours).
async fn one_connection(
    addr: SocketAddr,
    request: &[u8],
    start: Instant,
    timeout: Duration,
) -> Conn {
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::from_std(t0 + timeout);
    let mut connect_us = None;
    let exchanged = exchange(addr, request, t0, deadline, &mut connect_us).await;
    let ended = Instant::now();
    let mut conn = Conn {
        connect_started_us: (t0 - start).as_micros() as u64,
        connect_us,
        first_answer_us: None,
        ended_us: (ended - start).as_micros() as u64,
        ending: Ending::Failed {
            stage: "connect",
            kind: "timeout",
        },
    };
    match exchanged {
        Err(ending) => conn.ending = ending,
        Ok((status, mut stream)) => {
            conn.first_answer_us = Some((ended - t0).as_micros() as u64);
            conn.ending = Ending::Answered { status };
            // The rest of the answer: not measured, but read so that the gateway
            // closes first.
            let drain = async {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        }
    }
    conn
}

/// Connect, write, read up to the status line, all by `deadline`.
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    t0: Instant,
    deadline: tokio::time::Instant,
    connect_us: &mut Option<u64>,
) -> Result<(u16, TcpStream), Ending> {
    let failed = |stage: &'static str| {
        move |err: std::io::Error| Ending::Failed {
            stage,
            kind: io_kind(&err),
        }
    };
    let timed_out = |stage: &'static str| {
        move |_| Ending::Failed {
            stage,
            kind: "timeout",
        }
    };
    let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(timed_out("connect"))?
        .map_err(failed("connect"))?;
    *connect_us = Some((Instant::now() - t0).as_micros() as u64);
    let _ = stream.set_nodelay(true);
    tokio::time::timeout_at(deadline, stream.write_all(request))
        .await
        .map_err(timed_out("write"))?
        .map_err(failed("write"))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .map_err(timed_out("read"))?
            .map_err(failed("read"))?;
        if n == 0 {
            return Err(Ending::Failed {
                stage: "read",
                kind: "closed before an answer",
            });
        }
        head.extend_from_slice(&buf[..n]);
        match parse_status_line(&head) {
            StatusLine::Complete(status) => return Ok((status, stream)),
            StatusLine::Partial if head.len() < MAX_HEAD_BYTES => {}
            _ => {
                return Err(Ending::Failed {
                    stage: "read",
                    kind: "not an HTTP answer",
                })
            }
        }
    }
}

fn io_kind(err: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => "refused",
        K::ConnectionReset => "reset",
        K::ConnectionAborted => "aborted",
        K::BrokenPipe => "broken pipe",
        K::TimedOut => "timeout",
        K::AddrNotAvailable => "no local port",
        _ if err.raw_os_error() == Some(24) => "too many open files",
        _ => "other",
    }
}

/// What the bytes read so far say about the status line.
#[derive(Debug, PartialEq, Eq)]
enum StatusLine {
    /// `HTTP/1.x NNN …\r\n` was read.
    Complete(u16),
    /// No line end yet.
    Partial,
    /// A line that is not an HTTP/1.x status line.
    Malformed,
}

fn parse_status_line(bytes: &[u8]) -> StatusLine {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return StatusLine::Partial;
    };
    let line = &bytes[..end];
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with(b"HTTP/1.") || code.len() != 3 {
        return StatusLine::Malformed;
    }
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..600).contains(c))
        .map_or(StatusLine::Malformed, StatusLine::Complete)
}

/// The `TcpExt:` counters of `/proc/net/netstat`, if readable.
pub fn read_kernel_counters() -> Option<BTreeMap<String, i64>> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    Some(parse_netstat(&text, "TcpExt"))
}

/// The counters of `section` in `/proc/net/netstat`'s format: a line of names
/// (`TcpExt: SyncookiesSent ListenOverflows …`) followed by a line of values.
fn parse_netstat(text: &str, section: &str) -> BTreeMap<String, i64> {
    let prefix = format!("{section}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
        .collect()
}

/// `after - before` for each of [`KERNEL_COUNTERS`] (0 when a kernel lacks one).
fn counter_deltas(
    before: &BTreeMap<String, i64>,
    after: &BTreeMap<String, i64>,
) -> BTreeMap<String, i64> {
    KERNEL_COUNTERS
        .iter()
        .map(|&name| {
            let get = |m: &BTreeMap<String, i64>| m.get(name).copied().unwrap_or(0);
            (name.to_owned(), get(after) - get(before))
        })
        .collect()
}

/// A fresh event id for a storm: `storm-<uuid v7>`.
pub fn storm_event_id() -> String {
    format!("storm-{}", Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_is_read_once_its_line_end_has_arrived() {
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), StatusLine::Partial);
        assert_eq!(
            parse_status_line(b"HTTP/1.1 202 Accepted\r\ncontent-type"),
            StatusLine::Complete(202)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 409 Conflict\r\n"),
            StatusLine::Complete(409)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 503\r\n"),
            StatusLine::Complete(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-x\r\n"), StatusLine::Malformed);
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2x2 No\r\n"),
            StatusLine::Malformed
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 999 No\r\n"),
            StatusLine::Malformed
        );
    }

    const NETSTAT: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops
TcpExt: 3 1 120 125
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
";

    #[test]
    fn the_listen_counters_are_read_from_the_tcpext_section() {
        let before = parse_netstat(NETSTAT, "TcpExt");
        assert_eq!(before["ListenOverflows"], 120);
        assert_eq!(before["ListenDrops"], 125);
        assert!(!before.contains_key("InNoRoutes"));
        let after = parse_netstat(
            &NETSTAT.replace("TcpExt: 3 1 120 125", "TcpExt: 3 1 4120 4125"),
            "TcpExt",
        );
        let deltas = counter_deltas(&before, &after);
        assert_eq!(deltas["ListenOverflows"], 4000);
        assert_eq!(deltas["ListenDrops"], 4000);
        assert_eq!(deltas["SyncookiesSent"], 0);
        // A counter this kernel does not have reads as no change.
        assert_eq!(deltas["TCPReqQFullDrop"], 0);
    }

    #[test]
    fn the_report_counts_answers_failures_and_the_last_answer() {
        let target = StormTarget {
            base: "http://127.0.0.1:1".into(),
            admin_token: String::new(),
            jwt_secret: Secret::new("x"),
        };
        let plan = StormPlan {
            connections: 3,
            seats: 1,
            timeout: Duration::from_secs(10),
            event_id: "e".into(),
        };
        let answered = |status, at, took| Conn {
            connect_started_us: at,
            connect_us: Some(100),
            first_answer_us: Some(took),
            ended_us: at + took,
            ending: Ending::Answered { status },
        };
        let conns = [
            answered(202, 10, 2_000),
            answered(409, 500, 1_003_000),
            Conn {
                connect_started_us: 20,
                connect_us: None,
                first_answer_us: None,
                ended_us: 30,
                ending: Ending::Failed {
                    stage: "connect",
                    kind: "refused",
                },
            },
        ];
        let report = tally(&target, &plan, &conns, None);
        assert_eq!(report.answered(), 2);
        assert_eq!(report.statuses[&202], 1);
        assert_eq!(report.failures["connect refused"], 1);
        assert_eq!(report.spread, Duration::from_micros(500));
        assert_eq!(report.first_answer.len(), 2);
        assert_eq!(report.wall, Duration::from_micros(1_003_500));
        assert_eq!(report.to_json()["answered"], 2);
    }
}
