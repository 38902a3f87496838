//! seatgate-tools: what measures and shows the gateway, kept out of the gateway's own
//! crate so none of its dependencies (plotters, hdrhistogram, the HTTP client) reach
//! the server binary.
//!
//! - [`loadgen`]: the ticket-drop load generator and the connection storm, against a
//!   gateway started in this process or one already running at a URL.
//! - [`schema`]: the JSON drop report as types, written by `drop` and read by `plot`.
//! - [`plot`]: SVG plots of the benchmarks' results.
//! - [`cli`]: the `seatgate-tools` command line (`demo`, `drop`, `storm`, `plot`).
//!
//! Private Redis and MariaDB servers for the demo come from `seatgate-sandbox`.

pub mod cli;
pub mod loadgen;
pub mod plot;
pub mod schema;
