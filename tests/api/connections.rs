//! Connections: the listen backlog, TCP_NODELAY, the connection cap, and the header
//! and idle timeouts that cut slow clients off while other clients' claims flow.

use reqwest::StatusCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use seatgate::server::{somaxconn, HttpListener};

/// Reads until the server closes the connection (EOF or reset); panics if it is still
/// open after `deadline`. Returns what was read.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {deadline:?} (read so far: {:?})",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test]
async fn the_listener_queues_a_connection_storm_with_the_configured_backlog() {
    let app = spawn_app().await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local Peer: a listening socket's Send-Q is its backlog.
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the backlog from ss: {text:?}"));
    let expected = 4096.min(somaxconn().unwrap_or(4096));
    assert_eq!(backlog, expected, "ss -ltn: {text}");
}

#[tokio::test]
async fn accepted_sockets_have_nodelay_set() {
    let listener = HttpListener::bind("127.0.0.1:0", 16).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(TcpStream::connect(addr));
    let (stream, _) = listener.accept().await.unwrap();
    assert!(stream.nodelay().unwrap());
    drop(client.await.unwrap().unwrap());
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_while_other_claims_flow() {
    let app = spawn_app_with(|s| s.server.header_timeout = Duration::from_millis(500)).await;
    let event = app.event_with(&seat_names(50), 100).await;

    let mut slow = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"POST /v1/events/x/bookings HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        // One header byte every 100 ms, never the blank line that ends the head.
        for _ in 0..100 {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    // Meanwhile, claims go through.
    for i in 0..20 {
        let r = app.claim(&event, &format!("u{i}"), &best_of(1), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let mut slow = trickle.await.unwrap();
    // The trickle stopped because writes failed (the server closed the socket), or
    // the socket reads as closed now.
    let got = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(
        got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"),
        "no answer is owed to an incomplete request: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|s| s.server.idle_timeout = Duration::from_millis(300)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();

    // Never sends a byte.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .is_empty());

    // A keep-alive connection after its request.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut kept, Duration::from_secs(10)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "answered, then closed when idle: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_live_stream_is_a_request_in_flight_not_an_idle_connection() {
    let app = spawn_app_with(|s| s.server.idle_timeout = Duration::from_millis(200)).await;
    let event = app.event_with(&seat_names(4), 4).await;
    let mut stream = app.get(&format!("/v1/events/{event}/stream")).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("snapshot"));
    // Well past the idle timeout with nothing sent: the stream stays open.
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.claim_seats(&event, "alice", &["S0001"]).await;
    let delta = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("a delta arrives")
        .expect("the stream is still open")
        .expect("more data");
    assert!(String::from_utf8_lossy(&delta).contains("delta"));
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_wait_until_one_closes() {
    let app = spawn_app_with(|s| s.server.max_connections = 2).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let hold_a = TcpStream::connect(&addr).await.unwrap();
    let hold_b = TcpStream::connect(&addr).await.unwrap();
    // Both are accepted (the kernel completes the handshake either way); make sure
    // the server took them before the third comes, with a request on each.
    let mut held = Vec::new();
    for mut s in [hold_a, hold_b] {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let client = reqwest::Client::new();
    let third = tokio::spawn(async move {
        client
            .get(format!("http://{addr}/healthz"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection is served while two are open"
    );
    drop(held.pop());
    let r = third
        .await
        .unwrap()
        .expect("served once a connection closed");
    assert_eq!(r.status(), StatusCode::OK);
}
