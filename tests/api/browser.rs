//! The live seat map in a real browser: headless Chromium (Debian's `chromium`, driven
//! by `tests/browser/seatmap.mjs` through playwright-core) loads `/live/{id}` while a
//! small drop runs, and sees the won seats turn pending, then booked once the
//! reconciler runs, with the counters following; and, on an event with a short hold,
//! sees the claimed seats held in their own colour, then available again when the
//! holds expire. Screenshots go to `target/browser/`.
//!
//! Needs `node`, Chromium and `tests/browser/node_modules` (`npm ci` there); `.ci/run`
//! installs them. Without them the test says so and passes as skipped, unless
//! `SEATGATE_REQUIRE_BROWSER=1` (set by `.ci/run` once the install worked), where a
//! missing piece fails it.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

struct Browser {
    chromium: PathBuf,
    script_dir: PathBuf,
}

impl Browser {
    /// What the test needs, or why it cannot run.
    fn find() -> Result<Self, String> {
        let chromium = std::env::var_os("SEATGATE_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        if !chromium.exists() {
            return Err(format!(
                "no Chromium at {} (apt-get install chromium, or set SEATGATE_CHROMIUM)",
                chromium.display()
            ));
        }
        if seatgate_sandbox::binary_on_path("node").is_none() {
            return Err("node is not installed".into());
        }
        let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !script_dir.join("node_modules/playwright-core").exists() {
            return Err(format!(
                "playwright-core is not installed (cd {} && npm ci)",
                script_dir.display()
            ));
        }
        Ok(Self {
            chromium,
            script_dir,
        })
    }
}

/// The browser, or `None` when the test `name` is to be skipped (see the module's
/// documentation).
fn browser_or_skip(name: &str) -> Option<Browser> {
    match Browser::find() {
        Ok(b) => Some(b),
        Err(why) if std::env::var("SEATGATE_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("the browser test must run here but cannot: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED {name}: {why}");
            None
        }
    }
}

/// The seats of the browser tests' events: four rows of fifteen, so the page lays
/// them out as a theatre.
fn theatre() -> Vec<String> {
    ["A", "B", "C", "D"]
        .iter()
        .flat_map(|row| (1..=15).map(move |n| format!("{row}{n}")))
        .collect()
}

/// The screenshot directory, created.
fn shots_dir() -> PathBuf {
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Starts `seatmap.mjs` in `mode` on the live page of `event`: the child, its stdin and
/// its stdout's lines.
fn start_script(
    browser: &Browser,
    app: &TestApp,
    event: &str,
    seats: usize,
    mode: &str,
) -> (Child, ChildStdin, Lines<BufReader<ChildStdout>>) {
    let mut node = Command::new("node")
        .arg(browser.script_dir.join("seatmap.mjs"))
        .arg(app.url(&format!("/live/{event}")))
        .arg(shots_dir())
        .env("SEATS", seats.to_string())
        .env("MODE", mode)
        .env("CHROMIUM", &browser.chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let stdin = node.stdin.take().unwrap();
    let lines = BufReader::new(node.stdout.take().unwrap()).lines();
    (node, stdin, lines)
}

/// Waits for the script to exit, successfully, and checks it saved `shots`.
async fn script_done(mut node: Child, shots: &[&str]) {
    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("the browser script exits")
        .unwrap();
    assert!(status.success(), "the browser script failed: {status}");
    for shot in shots {
        let len = std::fs::metadata(shots_dir().join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 1000, "{shot} was saved");
    }
}

async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, want: &str) {
    let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the browser script did not print {want} within 90 s"))
        .unwrap();
    assert_eq!(
        line.as_deref(),
        Some(want),
        "the browser script failed before {want} (its stderr is above)"
    );
}

#[tokio::test]
async fn the_live_page_shows_seats_turn_pending_then_booked_in_a_real_browser() {
    let Some(browser) =
        browser_or_skip("the_live_page_shows_seats_turn_pending_then_booked_in_a_real_browser")
    else {
        return;
    };
    // No reconciler yet: the won seats stay pending until the test starts one.
    let app = spawn_app_with(|s| s.reconciler = false).await;
    let seats = theatre();
    let event = app.event_with(&seats, 4).await;
    let (node, mut stdin, mut lines) = start_script(&browser, &app, &event, seats.len(), "drop");
    expect_line(&mut lines, "READY").await;

    // A small drop while the page watches: 12 seats, 25 users racing for each.
    let hot = &seats[..12];
    let claims = (0..hot.len() * 25).map(|i| {
        let (app, event, seat) = (&app, &event, &hot[i % hot.len()]);
        async move {
            app.claim_retrying(event, &format!("fan{i}"), &json!({ "seats": [seat] }))
                .await
                .status()
        }
    });
    let won = join_all(claims)
        .await
        .into_iter()
        .filter(|s| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(won, hot.len(), "one winner per seat");
    stdin
        .write_all(format!("EXPECT {won}\n").as_bytes())
        .await
        .unwrap();
    expect_line(&mut lines, "PENDING").await;

    let reconciler = app.reconciler();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(reconciler.run(async move {
        let _ = stopped.await;
    }));
    expect_line(&mut lines, "BOOKED").await;
    script_done(node, &["seatmap-pending.png", "seatmap-booked.png"]).await;
    assert_eq!(app.mysql_confirmed(&event).await, won as i64);
    let _ = stop.send(());
    running.await.unwrap();
}

#[tokio::test]
async fn the_live_page_shows_seats_held_then_free_again_when_their_holds_expire() {
    let Some(browser) =
        browser_or_skip("the_live_page_shows_seats_held_then_free_again_when_their_holds_expire")
    else {
        return;
    };
    // The reconciler runs: it persists the claims held, and expires them.
    let app = spawn_app().await;
    let seats = theatre();
    let event = app.event_id();
    // A hold of 3 s: long enough for the page to see the seats held (they are from the
    // claim's persisting, some milliseconds after it, until at most 2 s past the hold's
    // end), short enough to watch them expire.
    let r = app
        .create_event(&json!({"id": event, "name": "Holds", "seats": seats, "hold_seconds": 3}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.warm(&event).await.status(), StatusCode::OK);
    let (node, mut stdin, mut lines) = start_script(&browser, &app, &event, seats.len(), "holds");
    expect_line(&mut lines, "READY").await;

    // Four people claim a seat each and never check out.
    let claimed = ["A3", "B7", "C7", "D12"];
    let mut bookings = Vec::new();
    for (i, seat) in claimed.iter().enumerate() {
        bookings.push(app.claim_seats(&event, &format!("fan{i}"), &[seat]).await);
    }
    stdin
        .write_all(format!("EXPECT {}\n", claimed.len()).as_bytes())
        .await
        .unwrap();
    expect_line(&mut lines, "HELD").await;
    expect_line(&mut lines, "EXPIRED").await;
    script_done(node, &["seatmap-held.png", "seatmap-expired.png"]).await;
    for booking in &bookings {
        let b = app.booking_json(&event, booking, &app.admin()).await;
        assert_eq!(b["status"], "expired", "{b}");
    }
}
