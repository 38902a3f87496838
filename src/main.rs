use clap::Parser;

fn main() -> std::process::ExitCode {
    seatgate::cli::Cli::parse().run()
}
