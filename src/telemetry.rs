//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Rules kept throughout the code: identifiers as fields (`event.id = %id`), an error
//! logged once where it is handled, and never a token, secret or request body.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber (once; later calls are no-ops).
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
