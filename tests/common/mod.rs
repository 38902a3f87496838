//! What the test binaries share: whether a test that needs a private server process
//! (`seatgate_sandbox`) can run on this machine.
//!
//! A test whose server binary is missing prints `SKIPPED …` and passes, so a laptop
//! without `redis-server` or `mariadbd` still runs the rest. Where the servers are known
//! to be installed (`.ci/run` sets `SEATGATE_REQUIRE_SERVERS=1`), a missing binary fails
//! the test instead, so a broken install cannot turn the fault tests into silent passes.

use seatgate_sandbox::{binary_on_path, PrivateMysql};

/// True when `redis-server` is installed. Otherwise skips or fails as the module says:
/// the caller returns early on `false`.
pub fn redis_server_installed() -> bool {
    required(
        "redis-server",
        binary_on_path("redis-server").is_some(),
        "apt-get install redis-server",
    )
}

/// True when a MariaDB (or MySQL) server binary is installed. Otherwise skips or fails
/// as the module says: the caller returns early on `false`.
pub fn mysql_server_installed() -> bool {
    required(
        "mariadbd",
        PrivateMysql::available(),
        "apt-get install mariadb-server",
    )
}

/// The one place that decides between skipping and failing.
fn required(binary: &str, installed: bool, install_hint: &str) -> bool {
    if installed {
        return true;
    }
    // libtest runs each test on a thread named after it (tokio's `block_on` keeps the
    // test body on that thread), so the message can say which test was skipped.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    if std::env::var("SEATGATE_REQUIRE_SERVERS").as_deref() == Ok("1") {
        panic!(
            "{test} must run here (SEATGATE_REQUIRE_SERVERS=1) but {binary} is not installed \
             ({install_hint})"
        );
    }
    eprintln!("SKIPPED {test}: {binary} is not installed ({install_hint})");
    false
}
