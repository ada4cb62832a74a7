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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match roller_serve::run::run(&Cli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
