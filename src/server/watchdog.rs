//! A connection's watchdog: what the connection is doing ([`Activity`], kept up to date
//! by its socket wrapper [`Tracked`] and its requests [`RequestGuard`]) and the task
//! that cuts it when it breaks the header or idle timeout, never while a request of
//! it is in flight.

use axum::body::Body;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::ServerLimits;

/// Why the watchdog cut a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    SlowHeader,
    Idle,
}

impl Cut {
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) async fn watchdog(activity: &Activity, limits: ServerLimits) -> Cut {
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
pub(super) struct Activity {
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
    pub(super) fn new() -> Self {
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
pub(super) struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    pub(super) fn new(activity: Arc<Activity>) -> Self {
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
pub(super) struct GuardedBody {
    inner: Body,
    _request: RequestGuard,
}

impl GuardedBody {
    pub(super) fn new(inner: Body, request: RequestGuard) -> Self {
        Self {
            inner,
            _request: request,
        }
    }
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
pub(super) struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Self { stream, activity }
    }
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
