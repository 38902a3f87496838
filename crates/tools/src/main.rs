use clap::Parser;

/// The gateway's allocator: `demo` and `drop` run the gateway in this process, and
/// their figures should be the ones the `seatgate` binary would show.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    seatgate_tools::cli::Cli::parse().run()
}
