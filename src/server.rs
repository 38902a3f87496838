//! The HTTP server loop: how connections are accepted and what each may cost.
//!
//! `axum::serve` listens with a backlog of 128 (tokio's `TcpListener::bind`, as the
//! standard library), puts no bound on
//! open connections and none on how long a client may take to send a request, so in
//! the first second of a drop the accept queue overflows (clients wait 1 s, 3 s, 7 s
//! for SYN retransmits before their claim is read) and a slowloris client keeps a
//! socket for as long as it likes. This loop replaces it:
//!
//! - the listener is bound with an explicit backlog ([`ServerLimits::listen_backlog`]),
//!   and a warning is logged when the kernel's `net.core.somaxconn` caps it lower;
//! - accepted sockets get `TCP_NODELAY` (answers are small and must not wait for
//!   Nagle's algorithm to coalesce them);
//! - at most [`ServerLimits::max_connections`] connections are open at once: beyond
//!   it the loop stops accepting and new connections wait in the kernel's backlog;
//! - a connection that has started a request head must complete it within
//!   [`ServerLimits::header_timeout`], and one with no request in flight and no byte
//!   moving either way is closed after [`ServerLimits::idle_timeout`].
//!
//! The timeouts are enforced by a watchdog per connection that reads the
//! connection's [`Activity`], which its socket wrapper and its requests keep up to
//! date. A connection is only ever cut while no request of it is in flight, so a cut
//! never abandons a claim halfway (requests themselves are bounded by the request
//! timeout, see `api::router`).

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// What the server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// Connections open at once.
    pub max_connections: usize,
    /// Longest a client may take to send a whole request head, counted from its
    /// first byte.
    pub header_timeout: Duration,
    /// Longest a connection may sit with no request in flight and no byte moving.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            listen_backlog: 4096,
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A TCP listener bound with an explicit backlog; accepted sockets have
/// `TCP_NODELAY` set.
pub struct HttpListener {
    inner: TcpListener,
}

impl HttpListener {
    /// Binds `addr` (`host:port`; port 0 picks a free one) with `backlog`.
    pub async fn bind(addr: &str, backlog: u32) -> io::Result<Self> {
        let mut last_err = None;
        for addr in tokio::net::lookup_host(addr).await? {
            match Self::bind_one(addr, backlog) {
                Ok(inner) => {
                    warn_if_capped(backlog);
                    return Ok(Self { inner });
                }
                Err(err) => last_err = Some(err),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolves to nothing",
            )
        }))
    }

    fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted gateway can bind its port at once, while the old one's
        // connections are still in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The next connection, with `TCP_NODELAY` set.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }
}

/// The kernel's cap on listen backlogs, if it can be read.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn warn_if_capped(backlog: u32) {
    if let Some(max) = somaxconn().filter(|&max| max < backlog) {
        tracing::warn!(
            listen_backlog = backlog,
            somaxconn = max,
            "net.core.somaxconn caps the listen backlog; raise it (sysctl -w net.core.somaxconn={backlog}) so connection storms are not dropped"
        );
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting, lets every connection finish the requests it has in flight, and returns
/// once all connections are closed.
pub async fn serve(
    listener: HttpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    // At most u32::MAX: shutdown waits for all permits with one `acquire_many(u32)`.
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut at_cap = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(
                        max_connections = max,
                        "connection limit reached; new connections wait in the backlog"
                    );
                    at_cap = true;
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let conn = serve_connection(stream, peer, router.clone(), limits, stop_rx.clone());
                tokio::spawn(async move {
                    conn.await;
                    drop(permit);
                });
            }
            // The peer gave up before we accepted: nothing to do.
            Err(err) if is_connection_error(&err) => {}
            Err(err) => {
                // Out of file descriptors, typically: wait for connections to close
                // rather than spin.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it is closed: having them all back means
    // every connection is done.
    let _ = permits.acquire_many(max as u32).await;
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it closes, breaks a limit, or (after `stop`) has
/// finished its requests in flight.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let request = RequestGuard::new(service_activity.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let response = router
                .oneshot(req.map(Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            // The request stays in flight until its response body is sent (or dropped):
            // a live map stream is one long request, never an idle connection.
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(GuardedBody {
                    inner: body,
                    _request: request,
                })
            }))
        }
    });
    // HTTP/1.1, as `axum::serve` spoke it without axum's `http2` feature.
    let mut conn = pin!(hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades());
    let mut watchdog = pin!(watchdog(&activity, limits));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::trace!(error = %err, "connection ended with an error");
                }
                return;
            }
            cut = &mut watchdog => {
                // No client address: it is personal data, and the reason is what matters.
                tracing::debug!(reason = cut.as_str(), "closing connection");
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why the watchdog cut a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    SlowHeader,
    Idle,
}

impl Cut {
    fn as_str(self) -> &'static str {
        match self {
            Self::SlowHeader => "request head not complete within the header timeout",
            Self::Idle => "idle past the idle timeout",
        }
    }
}

/// Resolves when the connection breaks one of its limits. It sleeps until the
/// earliest moment a limit could be broken and checks again then, so a connection
/// costs a timer wake-up per timeout, not one per tick. Activity only moves that
/// moment later, except the first byte of a request head, which starts the (shorter)
/// header clock: that wakes the watchdog at once.
async fn watchdog(activity: &Activity, limits: ServerLimits) -> Cut {
    loop {
        match activity.verdict(now_ms(), limits) {
            Ok(cut) => return cut,
            Err(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = activity.head_started.notified() => {}
                }
            }
        }
    }
}

/// Milliseconds since the first call in this process, plus one (0 means "never").
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What a connection is doing, kept up to date by its socket wrapper ([`Tracked`])
/// and its requests ([`RequestGuard`]), read by its watchdog. Atomics, not a lock:
/// they are touched on every read and write.
#[derive(Debug)]
struct Activity {
    /// Requests whose head was read and whose response is not yet sent.
    in_flight: AtomicUsize,
    /// When the first byte of a request head arrived while no request was in flight
    /// (0: none since the last request started).
    head_started_ms: AtomicU64,
    /// When a byte last moved either way, or a request last ended.
    last_active_ms: AtomicU64,
    /// Wakes the watchdog when a request head starts (`head_started_ms` set).
    head_started: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            head_started_ms: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(now_ms()),
            head_started: Notify::new(),
        }
    }

    fn on_read(&self, now: u64) {
        self.last_active_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            // Only the first byte of a head starts its clock, and wakes the watchdog
            // (which may be asleep for a whole idle timeout).
            if self
                .head_started_ms
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.head_started.notify_one();
            }
        }
    }

    fn on_write(&self, now: u64) {
        self.last_active_ms.store(now, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    fn request_ended(&self, now: u64) {
        self.last_active_ms.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The limit the connection breaks at `now`, or how long until it could break one
    /// at the earliest. Never a cut while a request is in flight.
    fn verdict(&self, now: u64, limits: ServerLimits) -> Result<Cut, Duration> {
        // A request in flight may end any moment; the idle clock then starts from its
        // end, so the earliest cut is a whole idle timeout away.
        let recheck_in_flight = limits.idle_timeout.min(limits.header_timeout);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Err(recheck_in_flight);
        }
        let (since, limit, cut) = match self.head_started_ms.load(Ordering::Acquire) {
            0 => (
                self.last_active_ms.load(Ordering::Relaxed),
                limits.idle_timeout,
                Cut::Idle,
            ),
            started => (started, limits.header_timeout, Cut::SlowHeader),
        };
        let waited = Duration::from_millis(now.saturating_sub(since));
        if waited > limit {
            Ok(cut)
        } else {
            // Just past the limit, at millisecond resolution.
            Err(limit - waited + Duration::from_millis(1))
        }
    }
}

/// A request in flight on its connection, from its head until its response body is
/// done or dropped.
struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    fn new(activity: Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended(now_ms());
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct GuardedBody {
    inner: Body,
    _request: RequestGuard,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting in [`Activity`] when bytes move.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read(now_ms());
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write(now_ms());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write(now_ms());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            ..ServerLimits::default()
        }
    }

    #[test]
    fn a_head_that_started_must_finish_within_the_header_timeout() {
        let a = Activity {
            in_flight: AtomicUsize::new(0),
            head_started_ms: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(1),
            head_started: Notify::new(),
        };
        a.on_read(10);
        a.on_read(50); // a trickle does not restart the clock
        assert_eq!(a.verdict(110, limits()), Err(Duration::from_millis(1)));
        assert_eq!(a.verdict(111, limits()), Ok(Cut::SlowHeader));
        // Once the head is read, the request is in flight and never cut.
        a.request_started();
        assert!(a.verdict(10_000, limits()).is_err());
        a.request_ended(10_000);
        assert_eq!(a.verdict(10_500, limits()), Err(Duration::from_millis(501)));
        assert_eq!(a.verdict(11_001, limits()), Ok(Cut::Idle));
    }

    #[test]
    fn an_idle_connection_is_cut_after_the_idle_timeout_not_the_header_timeout() {
        let a = Activity {
            in_flight: AtomicUsize::new(0),
            head_started_ms: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(1),
            head_started: Notify::new(),
        };
        assert_eq!(a.verdict(900, limits()), Err(Duration::from_millis(102)));
        // Idle for a while, then a request begins: its head gets the full header time.
        a.on_read(950);
        assert_eq!(a.verdict(1040, limits()), Err(Duration::from_millis(11)));
        assert_eq!(a.verdict(1051, limits()), Ok(Cut::SlowHeader));
    }
}
