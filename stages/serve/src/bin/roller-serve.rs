//! `roller-serve`: every configured dataset's logical view over HTTP (see the README).

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "roller-serve",
    version,
    about = "Serve rolling Zarr datasets over HTTP, read-only"
)]
struct Cli {
    #[command(flatten)]
    args: roller_serve::run::ServeArgs,
}

fn main() -> std::process::ExitCode {
    roller_nats::run::init_logging();
    match roller_serve::run::run(&Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
