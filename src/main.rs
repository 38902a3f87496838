use clap::Parser;

/// mimalloc rather than glibc's malloc: the claim path allocates and frees many small
/// buffers, and malloc/free showed up high in its profile under load (BENCHMARKS.md,
/// "Claim path profile and allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    seatgate::cli::Cli::parse().run()
}
