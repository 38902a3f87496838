use clap::Parser;

/// mimalloc rather than glibc's malloc: a profile of the claim path under load spent
/// about a fifth of the gateway's CPU in malloc/free (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    seatgate::cli::Cli::parse().run()
}
