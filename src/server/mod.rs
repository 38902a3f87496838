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
//! The timeouts are enforced by a watchdog per connection ([`watchdog`]) that reads
//! the connection's activity, which its socket wrapper and its requests keep up to
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
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

mod watchdog;

use watchdog::{watchdog, Activity, GuardedBody, RequestGuard, Tracked};

/// What the server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
    pub(crate) listen_backlog: u32,
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
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
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
            Ok::<_, std::convert::Infallible>(
                response.map(|body| Body::new(GuardedBody::new(body, request))),
            )
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
