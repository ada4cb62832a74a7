//! `roller`: the zarr-roller command line. Parses arguments and calls the library.

mod bench;
mod bench_bridge;
mod bench_catalog;
mod bench_floor;
mod bench_nats;
mod bench_s3;
mod bench_serve;
mod nats_cmd;
mod sample;

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use roller_embedded::{Progress, RunOptions, RunSummary};
use roller_model::config::DatasetConfig;
use roller_model::inspect::describe;
use roller_model::rolling_store::RollingStore;
use roller_storage::LocalStore;
use roller_synth::{synth, SynthOptions};

#[derive(Parser)]
#[command(
    name = "roller",
    version,
    about = "Rolling Zarr datasets from streams of forecast NetCDF files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic UKV-like NetCDF files and a notifications.jsonl announcing them.
    Synth(SynthArgs),
    /// Ingest notifications (JSON lines) into a dataset, or every dataset of a catalog, all
    /// stages in this process.
    Run {
        /// Dataset config or catalog (TOML); repeat for several. Each dataset takes the
        /// notices it matches.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// Notifications file, or `-` for standard input.
        #[arg(long)]
        notifications: String,
        /// Threads encoding and storing chunks (default: twice the cores, as writers wait on fsync).
        #[arg(long)]
        write_workers: Option<usize>,
        /// Print one JSON line of throughput and peak memory instead of the summary.
        #[arg(long)]
        stats_json: bool,
    },
    /// Move a dataset's window so that a time is visible, even without data.
    Roll {
        /// Dataset config (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Time to make visible (RFC 3339); default: the newest run expected by now (the
        /// schedule's run hours and availability delay).
        #[arg(long)]
        until: Option<String>,
        /// `nats`: publish a roll event for the commit stage; `local`: commit directly to the
        /// store (only when no commit stage runs). Default: `nats` when NATS_URL is set.
        #[arg(long, value_parser = ["nats", "local"])]
        via: Option<String>,
    },
    /// Create (or update) a dataset's S3 buckets and lifecycle rule (when it is on S3) and its
    /// NATS streams, consumers and key-value buckets; for each dataset of a catalog.
    Setup {
        /// Dataset config or catalog (TOML); repeat for several.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
    },
    /// Check a dataset's config, or a catalog's datasets, and their storage: that the S3
    /// lifecycle rule deleting expired chunks exists and (for `expiry.policy = "at_write"`)
    /// keeps chunks longer than the window. Lists the datasets a catalog defines. Exits non-zero
    /// when something needs fixing.
    Check {
        /// Dataset config or catalog (TOML); repeat for several.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
    },
    /// Publish notifications (JSON lines) on a dataset's ingest subject, with deduplication ids.
    Replay {
        /// Dataset config or catalog (TOML); repeat for several. One dataset: its ingest
        /// subject; several: the feed subject, where each takes what it matches.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// Notifications file, or `-` for standard input.
        file: String,
    },
    /// Write a few runs of synthetic files that fit a dataset, timed for the window now, and
    /// publish their notifications on NATS (sample data for a new deployment).
    Sample(sample::SampleArgs),
    /// Serve datasets' logical views over HTTP, read-only (what `roller-serve` does).
    Serve(roller_nats::serve::ServeArgs),
    /// Print a dataset's committed state and logical view.
    Inspect {
        /// The dataset's store directory.
        path: PathBuf,
    },
    /// Benchmark embedded ingestion against the Python route (xarray + zarr-python).
    Bench(bench::BenchArgs),
    /// Benchmark the NATS pipeline (one process per stage) against embedded mode, and its
    /// notification-to-visible latency. Needs the stage binaries built next to this one.
    BenchNats(bench_nats::BenchNatsArgs),
    /// Benchmark the bridge: a burst of one UKV run's notices from an SQS queue (moto, started
    /// on loopback) onto the feed, with 1 and 4 pollers. Needs roller-bridge built next to this.
    BenchBridge(bench_bridge::BenchBridgeArgs),
    /// Benchmark a whole UKV run (3 445 files, reduced grid) through the NATS stages into the
    /// 51 datasets of examples/ukv-all-parameters.toml, against as many files into one dataset.
    /// Needs the stage binaries built next to this one.
    BenchCatalog(bench_catalog::BenchCatalogArgs),
    /// Benchmark a dataset on S3 (a SeaweedFS started on loopback) against local disk, with
    /// the requests per ingested file.
    BenchS3(bench_s3::BenchS3Args),
    /// Benchmark: chunk throughput through roller-serve vs zarrs reading the store directly.
    BenchServe(bench_serve::BenchServeArgs),
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Grid rows.
    #[arg(long, default_value_t = 970)]
    ny: usize,
    /// Grid columns.
    #[arg(long, default_value_t = 1042)]
    nx: usize,
    /// Ensemble members (adds a `realization` dim).
    #[arg(long)]
    realizations: Option<usize>,
    /// Height levels in metres, space-separated (adds a `height` dim).
    #[arg(long)]
    heights: Option<String>,
    /// Number of runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Lead times per run.
    #[arg(long, default_value_t = 4)]
    leads: usize,
    /// First run (RFC 3339).
    #[arg(long, default_value = "2024-01-01T00:00:00Z")]
    first_run: String,
    /// Time between runs.
    #[arg(long, default_value = "1h")]
    run_step: String,
    /// Time between lead times.
    #[arg(long, default_value = "1h")]
    lead_step: String,
    /// Notification `model`.
    #[arg(long, default_value = "mo-atmospheric-ukv-prd")]
    model: String,
    /// Variable name.
    #[arg(long, default_value = "air_temperature")]
    variable: String,
}

/// mimalloc instead of the system allocator: the pipeline allocates and frees megabyte-sized
/// buffers (slabs, chunks) at a high rate, and glibc returns those to the kernel and faults them
/// back in each time (measured: a third of the run's CPU went to the kernel).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of `roller run` when it ingested what it could but dead-lettered some notices.
const EXIT_DEAD_LETTERS: i32 = 3;

/// `roller run` finished, but some notices were dead-lettered (listed in its output).
#[derive(Debug, thiserror::Error)]
#[error("{0} notice(s) were dead-lettered; the rest was ingested (see the dead letters above)")]
struct DeadLettered(usize);

/// The image ships this one binary, linked under each stage's name: called as `roller-fetch`,
/// ..., `roller-serve`, it is that stage (its arguments and exit codes). One binary instead of
/// seven keeps the image's binaries small (each would carry the same libraries).
fn multi_call() -> Option<std::process::ExitCode> {
    use roller_nats::StageKind;
    let called = std::env::args_os().next()?;
    let name = Path::new(&called).file_name()?.to_str()?;
    let kind = match name {
        "roller-fetch" => StageKind::Fetch,
        "roller-decode" => StageKind::Decode,
        "roller-write" => StageKind::Write,
        "roller-commit" => StageKind::Commit,
        "roller-scheduler" => StageKind::Scheduler,
        "roller-bridge" => return Some(roller_nats::bridge::main()),
        "roller-serve" => {
            let cli = roller_nats::serve::ServeCli::parse();
            roller_nats::run::init_logging();
            return Some(match roller_nats::serve::run(&cli.args) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            });
        }
        _ => return None,
    };
    Some(roller_nats::run::main(kind))
}

fn main() -> std::process::ExitCode {
    if let Some(code) = multi_call() {
        return code;
    }
    roller_nats::run::init_logging();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        let code = if e.downcast_ref::<DeadLettered>().is_some() {
            EXIT_DEAD_LETTERS
        } else {
            1
        };
        std::process::exit(code);
    }
    std::process::ExitCode::SUCCESS
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Synth(args) => {
            let options = synth_options(&args)?;
            let files = synth(&options)?;
            println!(
                "wrote {} files and {}",
                files.len(),
                options.out.join("notifications.jsonl").display()
            );
            Ok(())
        }
        Command::Run {
            configs,
            notifications,
            write_workers,
            stats_json,
        } => {
            let catalog = roller_model::catalog::load_catalog(&configs)?;
            if let ([config], []) = (&catalog.datasets[..], &catalog.discovering[..]) {
                return run_one(config, &notifications, write_workers, stats_json);
            }
            if notifications == "-" {
                bail!("with several datasets, or templates making them from the feed, give the notifications as a file: each dataset reads all of them");
            }
            let found = roller_embedded::discover::datasets_for(
                &catalog,
                std::io::BufReader::new(
                    std::fs::File::open(&notifications)
                        .with_context(|| format!("reading notifications from {notifications}"))?,
                ),
            )?;
            if found.made > 0 && !stats_json {
                println!(
                    "templates made {} datasets for parameters of the feed",
                    found.made
                );
            }
            for (notice, reason) in &found.refused {
                eprintln!("dead letter: {notice}: {reason}");
            }
            let mut dead_letters = found.refused.len();
            let configs = found.datasets;
            for config in &configs {
                if !stats_json {
                    println!("== {}", config.name);
                }
                match run_one(config, &notifications, write_workers, stats_json) {
                    Ok(()) => {}
                    Err(e) => match e.downcast_ref::<DeadLettered>() {
                        Some(DeadLettered(n)) => dead_letters += n,
                        None => return Err(e.context(format!("dataset `{}`", config.name))),
                    },
                }
            }
            if dead_letters == 0 {
                Ok(())
            } else {
                Err(DeadLettered(dead_letters).into())
            }
        }
        Command::Roll { config, until, via } => {
            let config = DatasetConfig::load(&config)?;
            let until = match until {
                Some(t) => roller_proto::time::parse_instant(&t)
                    .with_context(|| format!("--until `{t}` is not an RFC 3339 time"))?,
                None => roller_scheduler::roll_event(&config, roller_proto::time::now()).until,
            };
            // Checked here too, so a roll sent over NATS is refused before it is published.
            if until > roller_proto::time::now() + roller_model::state::MAX_AHEAD_SECONDS {
                bail!(
                    "--until is more than 2 days in the future; rolling there would move every \
                     run out of the window"
                );
            }
            let via_nats = match via.as_deref() {
                Some(v) => v == "nats",
                None => std::env::var_os("NATS_URL").is_some(),
            };
            if via_nats {
                let subject = nats_cmd::roll_command(&config, until)?;
                println!(
                    "published a roll event to {} on {subject}",
                    roller_proto::time::format_instant(until)
                );
            } else {
                let backends = roller_s3::Backends::open(&config)?;
                let record =
                    roller_embedded::roll(&config, backends.store, backends.expiry, until)?;
                print!("{}", describe(&record));
            }
            Ok(())
        }
        Command::Setup { configs } => {
            for config in roller_model::catalog::load_all(&configs)? {
                let backends = roller_s3::Backends::open(&config)?;
                for line in roller_s3::setup::setup_storage(&config, &backends)? {
                    println!("{line}");
                }
                nats_cmd::setup_command(&config)?;
            }
            Ok(())
        }
        Command::Check { configs: paths } => {
            let mut configs = Vec::new();
            for path in &paths {
                let catalog = roller_model::catalog::load_file(path)?;
                for (i, template) in catalog.discovering.iter().enumerate() {
                    println!(
                        "ok: {} template {i} makes a dataset per parameter of the feed, at most {}, e.g. {}",
                        path.display(),
                        template.limit(),
                        describe_dataset(&template.dataset_for("PARAMETER")?)
                    );
                }
                let found = catalog.datasets;
                if found.is_empty() {
                    continue;
                }
                if let [config] = &found[..] {
                    println!("ok: config of dataset {} is valid", config.name);
                } else {
                    println!(
                        "ok: {} defines {} datasets, all valid:",
                        path.display(),
                        found.len()
                    );
                    for config in &found {
                        println!("  {}", describe_dataset(config));
                    }
                }
                configs.extend(found);
            }
            let mut names = std::collections::BTreeSet::new();
            if let Some(twice) = configs.iter().find(|c| !names.insert(c.name.as_str())) {
                bail!("dataset `{}` is configured twice", twice.name);
            }
            let subjects = roller_nats::NatsSettings::from_env()?.subjects;
            let names = roller_model::catalog::load_catalog(&paths)?.group_names();
            println!(
                "feed router: consumer {} on stream {} (for KEDA's fetch trigger)",
                roller_nats::route::consumer_name(&subjects, &names),
                subjects.stream(roller_proto::StreamKind::Ingest)
            );
            let mut problems = 0;
            for config in &configs {
                let backends = roller_s3::Backends::open(config)?;
                let findings = roller_s3::setup::check_storage(config, &backends);
                for finding in &findings {
                    let status = if finding.ok { "ok" } else { "problem" };
                    println!("{status}: {}: {}", config.name, finding.message);
                }
                problems += findings.iter().filter(|f| !f.ok).count();
            }
            if problems > 0 {
                bail!("{problems} problem(s) found");
            }
            Ok(())
        }
        Command::Replay { configs, file } => {
            let catalog = roller_model::catalog::load_catalog(&configs)?;
            let done = nats_cmd::replay_command(&catalog, &file)?;
            println!(
                "published {} notifications ({} dropped as duplicates, {} unparseable: they go to the dead-letter stream)",
                done.published, done.duplicates, done.unparsed
            );
            Ok(())
        }
        Command::Inspect { path } => {
            if !path.is_dir() {
                bail!("{} is not a directory", path.display());
            }
            let store = RollingStore::open(Arc::new(LocalStore::new(&path, false)?))
                .with_context(|| format!("opening the dataset at {}", path.display()))?;
            print!("{}", describe(&store.record()));
            Ok(())
        }
        Command::Serve(args) => roller_nats::serve::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchNats(args) => bench_nats::run(&args),
        Command::BenchBridge(args) => bench_bridge::run(&args),
        Command::BenchCatalog(args) => bench_catalog::run(&args),
        Command::BenchS3(args) => bench_s3::run(&args),
        Command::BenchServe(args) => bench_serve::run(&args),
        Command::Sample(args) => sample::run(&args),
    }
}

/// `roller run` for one dataset: ingests every notice of `notifications` it matches, prints the
/// summary (or the JSON line of `--stats-json`); [`DeadLettered`] when any notice was.
fn run_one(
    config: &DatasetConfig,
    notifications: &str,
    write_workers: Option<usize>,
    stats_json: bool,
) -> Result<()> {
    let mut options = RunOptions::default();
    if let Some(n) = write_workers {
        options.write_workers = n;
    }
    let started = std::time::Instant::now();
    let summary = ingest(config, notifications, options)?;
    if stats_json {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({
                "route": "rust",
                "dataset": config.name,
                "files": summary.files,
                "failed": summary.dead_letters.len(),
                "seconds": seconds,
                "files_per_s": summary.files as f64 / seconds,
                "decoded_mb_per_s": summary.decoded_bytes as f64 / 1e6 / seconds,
                "peak_rss_mb": bench::peak_rss_mb(),
            })
        );
    } else {
        print_summary(&summary);
    }
    if summary.dead_letters.is_empty() {
        Ok(())
    } else {
        Err(DeadLettered(summary.dead_letters.len()).into())
    }
}

/// One line about a dataset of a catalog: its name, what it takes, its window and its store.
fn describe_dataset(config: &DatasetConfig) -> String {
    format!(
        "{}: {} / {} ({}), {} runs of {}, {} lead times, in {}",
        config.name,
        config.matching.model,
        config.matching.name,
        config.variable,
        config.rolling.window,
        roller_model::duration::Seconds(config.rolling.step.0).render(),
        config.message_dims.iter().map(|m| m.size).product::<u32>(),
        config.store.path.display()
    )
}

fn synth_options(args: &SynthArgs) -> Result<SynthOptions> {
    let step = |name: &str, text: &str| {
        roller_model::duration::Seconds::parse(text)
            .map(|s| s.0)
            .map_err(|e| anyhow::anyhow!("--{name}: {e}"))
    };
    let heights = args
        .heights
        .as_deref()
        .map(|h| {
            h.split_whitespace()
                .map(|v| {
                    v.parse::<f64>()
                        .with_context(|| format!("--heights: `{v}` is not a number"))
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(SynthOptions {
        out: args.out.clone(),
        model: args.model.clone(),
        variable: args.variable.clone(),
        ny: args.ny,
        nx: args.nx,
        realizations: args.realizations,
        heights,
        runs: args.runs,
        leads: args.leads,
        first_run: roller_proto::time::parse_instant(&args.first_run)
            .with_context(|| format!("--first-run `{}` is not an RFC 3339 time", args.first_run))?,
        run_step: step("run-step", &args.run_step)?,
        lead_step: step("lead-step", &args.lead_step)?,
        deflate: 1,
    })
}

/// Runs the embedded pipeline over a notifications file (or stdin), with a progress bar on a
/// terminal and log lines otherwise.
pub(crate) fn ingest(
    config: &DatasetConfig,
    notifications: &str,
    mut options: RunOptions,
) -> Result<RunSummary> {
    let backends = roller_s3::Backends::open(config)?;
    options.objects = backends.objects();
    let store = backends.store;
    options.expiry = backends.expiry;
    // A file is read line by line (counted first for the progress bar); standard input is
    // streamed, so memory does not grow with the number of notifications.
    let (total, lines): (
        Option<u64>,
        Box<dyn Iterator<Item = std::io::Result<String>>>,
    ) = if notifications == "-" {
        (None, Box::new(std::io::stdin().lines()))
    } else {
        let open = || {
            std::fs::File::open(notifications)
                .with_context(|| format!("reading notifications from {notifications}"))
        };
        let count = std::io::BufReader::new(open()?)
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .count() as u64;
        (
            Some(count),
            Box::new(std::io::BufReader::new(open()?).lines()),
        )
    };
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        options.on_progress = Some(Box::new(move |p: Progress| {
            shown.set_position(p.files + p.failed);
            shown.set_message(format!("commit {}  failed {}", p.generation, p.failed));
        }));
        let summary = roller_embedded::run(config, store, lines, &options);
        bar.finish_and_clear();
        Ok(summary?)
    } else {
        options.on_progress = Some(Box::new(|p: Progress| {
            tracing::debug!(
                files = p.files,
                failed = p.failed,
                generation = p.generation,
                "committed"
            );
        }));
        Ok(roller_embedded::run(config, store, lines, &options)?)
    }
}

pub(crate) fn print_summary(s: &RunSummary) {
    println!(
        "{} notifications: {} files written, {} older than the window, {} for other datasets, {} events without a file, {} failed",
        s.notifications,
        s.files,
        s.below_window,
        s.unmatched,
        s.skipped,
        s.dead_letters.len()
    );
    println!(
        "{} chunks, {:.1} MB stored from {:.1} MB decoded ({} of {} files on the fast read path), {} commits",
        s.chunks,
        s.stored_bytes as f64 / 1e6,
        s.decoded_bytes as f64 / 1e6,
        s.direct_reads,
        s.files,
        s.commits
    );
    for letter in &s.dead_letters {
        println!("  dead letter {letter}");
    }
}
