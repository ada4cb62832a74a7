//! `roller-demo`: synthesises a small stream of forecast files, ingests it in embedded mode,
//! rolls the window and shows what is visible at every step. It links only the embedded runner,
//! so `./dev demo` on a fresh clone builds far less than the whole workspace.

mod demo;

use std::path::PathBuf;

use clap::Parser;

/// Synthesise a small stream, ingest it, roll the window and show what is visible.
#[derive(Parser)]
#[command(name = "roller-demo", version)]
struct Args {
    /// Working directory for the demo's files and dataset (replaced).
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    demo::run(&args.dir)
}
