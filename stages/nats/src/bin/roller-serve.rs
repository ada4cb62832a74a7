//! `roller-serve`: every configured dataset's logical view over HTTP (see the README).

use clap::Parser;
use roller_nats::serve::ServeCli;

fn main() -> std::process::ExitCode {
    roller_nats::run::init_logging();
    match roller_nats::serve::run(&ServeCli::parse().args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
