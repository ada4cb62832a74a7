//! `roller bench`: embedded ingestion of UKV files shaped as published against the Python routes
//! a user would write (xarray reading, zarr-python writing the same chunks with the same codec,
//! straight into Zarr or into Icechunk with a commit per file) and the floor (inflate + encode,
//! no I/O), on the same files, in the same run, alternating the routes; plus one
//! MOGREPS-UK-sized file. Each route runs as its own process so that its peak memory is its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use roller_synth::{synth, write_config, SynthOptions};

use crate::bench_floor;
use serde_json::Value;

/// Arguments of `roller bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    files: crate::bench::BenchFiles,
    /// zstd levels, a table each (every route uses the same level).
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    levels: Vec<i32>,
    /// Skip the Icechunk route (it needs Python 3.12+: `./dev bench` makes .venv-icechunk).
    #[arg(long)]
    skip_icechunk: bool,
    /// Skip the MOGREPS-UK-sized file (12 x 33 x 970 x 1042).
    #[arg(long)]
    skip_mogreps: bool,
}

/// The synthetic UKV files every benchmark ingests, and how often.
#[derive(clap::Args)]
pub(crate) struct BenchFiles {
    /// Working directory (synthetic files are kept between runs and shared by the benchmarks).
    #[arg(long, default_value = "bench-data")]
    pub(crate) dir: PathBuf,
    /// Runs x lead times of full-size UKV files (8 x 6 = 48).
    #[arg(long, default_value_t = 8)]
    pub(crate) runs: usize,
    /// Lead times per run.
    #[arg(long, default_value_t = 6)]
    pub(crate) leads: usize,
    /// Repeats of each route (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub(crate) repeats: usize,
}

/// The benchmark files, synthesised if an earlier run did not leave them.
pub(crate) struct Prepared {
    /// The working directory, absolute.
    pub(crate) dir: PathBuf,
    /// How the files were made.
    pub(crate) synth: SynthOptions,
    /// Their notifications file.
    pub(crate) list: PathBuf,
    /// Their notifications.
    pub(crate) lines: Vec<String>,
}

impl BenchFiles {
    /// Makes the working directory and the files (unless present).
    pub(crate) fn prepare(&self) -> Result<Prepared> {
        std::fs::create_dir_all(&self.dir)?;
        let dir = self.dir.canonicalize()?;
        let synth = SynthOptions {
            out: dir.join("ukv"),
            runs: self.runs,
            leads: self.leads,
            ..SynthOptions::default()
        };
        let list = ensure_files(&synth)?;
        let lines = std::fs::read_to_string(&list)?
            .lines()
            .map(str::to_owned)
            .collect();
        Ok(Prepared {
            dir,
            synth,
            list,
            lines,
        })
    }
}

/// Peak resident memory of this process in MB (VmHWM), or 0 where /proc is unavailable.
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The source tree this binary was built from (where `bench/` and `.venv` live).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The test environment's Python (netCDF4-python, xarray, zarr-python).
fn python() -> Result<PathBuf> {
    python_at("ROLLER_PYTHON", ".venv", "./dev test")
}

/// The Icechunk route's Python (3.12+, icechunk 2.x).
fn icechunk_python() -> Result<PathBuf> {
    python_at("ROLLER_ICECHUNK_PYTHON", ".venv-icechunk", "./dev bench")
}

/// The Python named by `variable`, else the one in the workspace's `venv`.
fn python_at(variable: &str, venv: &str, maker: &str) -> Result<PathBuf> {
    let python = std::env::var_os(variable)
        .map_or_else(|| workspace().join(venv).join("bin/python"), PathBuf::from);
    if !python.exists() {
        bail!(
            "no Python environment at {}: run `{maker}` once (it creates {venv}) or set {variable}",
            python.display()
        );
    }
    Ok(python)
}

/// Runs a command that prints one JSON line last, and returns that line.
pub(crate) fn json_of(command: &mut Command) -> Result<Value> {
    let out = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{command:?} printed {stdout}"))
}

/// Writes the config of a bench dataset fitting `options`' files, storing in `dir/<name>-rust`.
fn config(
    dir: &Path,
    name: &str,
    options: &SynthOptions,
    window: usize,
    level: i32,
) -> Result<PathBuf> {
    let mut config = options.dataset_config(
        name,
        u32::try_from(window)?,
        (485, 521),
        &dir.join(format!("{name}-rust")),
    );
    config.encoding.level = Some(level);
    let path = dir.join(format!("{name}.toml"));
    write_config(&config, &path)?;
    Ok(path)
}

/// Synthesises the files unless an earlier run left them; returns their notifications.
pub(crate) fn ensure_files(options: &SynthOptions) -> Result<PathBuf> {
    let list = options.out.join("notifications.jsonl");
    if !list.exists() {
        eprintln!(
            "synthesising {} files in {} ...",
            options.runs * options.leads,
            options.out.display()
        );
        synth(options)?;
    }
    Ok(list)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn field(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The bucket, model and parameter of the benchmark's files (UKV screen temperature).
const FEED_BUCKET: &str = "met-office-atmospheric-model-data";
const FEED_MODEL: &str = "uk-deterministic-2km";
const FEED_PARAMETER: &str = "temperature_at_screen_level";
/// The store's chunk shape, the same for every route.
const STORE_CHUNK: [usize; 2] = [485, 521];

/// The benchmark's files as published, made by `tests/python/make_feed_files.py`.
struct FeedFiles {
    /// The bucket's directory (mounted as the bucket by the embedded route).
    root: PathBuf,
    /// Their S3 event notifications, as the feed sends them.
    events: PathBuf,
    /// The same notices with local paths, for the Python routes.
    routes: PathBuf,
    /// The files, in notification order.
    paths: Vec<PathBuf>,
}

impl BenchFiles {
    /// Writes `runs` x `leads` full-size UKV files with netCDF4-python unless an earlier run did,
    /// and the lists the routes read.
    fn prepare_feed(&self, python: &Path) -> Result<FeedFiles> {
        std::fs::create_dir_all(&self.dir)?;
        let root = self
            .dir
            .canonicalize()?
            .join(format!("feed-{}x{}", self.runs, self.leads));
        let events = root.join("notifications.jsonl");
        if !events.exists() {
            eprintln!(
                "writing {} UKV files shaped as published in {} ...",
                self.runs * self.leads,
                root.display()
            );
            let runs: Vec<Value> = (0..self.runs)
                .map(|run| {
                    serde_json::json!({
                        "run": format!("2026-12-03T{:02}:00:00Z", run % 24),
                        "leads": (0..self.leads).map(|l| l * 3600).collect::<Vec<_>>(),
                        "duration": "PT54H",
                    })
                })
                .collect();
            ensure!(
                self.runs <= 24,
                "--runs is at most 24 (one day of hourly runs)"
            );
            let spec = serde_json::json!({ "ny": 970, "nx": 1042, "runs": runs });
            let status = Command::new(python)
                .arg(workspace().join("tests/python/make_feed_files.py"))
                .arg(&root)
                .arg(spec.to_string())
                .status()?;
            ensure!(status.success(), "make_feed_files.py failed");
        }
        let (mut lines, mut paths) = (Vec::new(), Vec::new());
        for line in std::fs::read_to_string(&events)?.lines() {
            for notice in roller_proto::feed::parse(line)? {
                let roller_proto::feed::Notice::File(n) = notice else {
                    continue;
                };
                let path = root.join(&n.key);
                lines.push(
                    serde_json::json!({
                        "key": path,
                        "forecast_reference_time": n.forecast_reference_time,
                        "forecast_period": n.forecast_period.unwrap_or_default(),
                    })
                    .to_string(),
                );
                paths.push(path);
            }
        }
        let routes = root.join("routes.jsonl");
        std::fs::write(&routes, lines.join("\n") + "\n")?;
        Ok(FeedFiles {
            root,
            events,
            routes,
            paths,
        })
    }
}

/// Writes the embedded route's config: the bucket mounted from the files' directory, the store
/// in `dir/ukv-rust`.
fn feed_config(
    dir: &Path,
    files: &FeedFiles,
    runs: usize,
    leads: usize,
    level: i32,
) -> Result<PathBuf> {
    let toml = format!(
        r#"name = "ukv-bench"
variable = "air_temperature"

[match]
model = "{FEED_MODEL}"
name = "{FEED_PARAMETER}"

[rolling]
dim = "forecast_reference_time"
step = "1h"
window = {runs}

[[message_dims]]
name = "forecast_period"
step = "1h"
size = {leads}

[[file_dims]]
name = "projection_y_coordinate"
size = 970
chunk = {cy}

[[file_dims]]
name = "projection_x_coordinate"
size = 1042
chunk = {cx}

[encoding]
codec = "zstd"
level = {level}

[store]
path = {store:?}

[source.mounts]
"{FEED_BUCKET}" = {root:?}
"#,
        cy = STORE_CHUNK[0],
        cx = STORE_CHUNK[1],
        store = dir.join("ukv-rust").display().to_string(),
        root = files.root.display().to_string(),
    );
    let path = dir.join(format!("ukv-bench-{level}.toml"));
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// One route's runs at one level.
struct Route {
    name: &'static str,
    runs: Vec<Value>,
}

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    let python = python()?;
    let icechunk = if args.skip_icechunk {
        None
    } else {
        Some(icechunk_python()?)
    };
    let files = args.files.prepare_feed(&python)?;
    let dir = args.files.dir.canonicalize()?;
    let me = std::env::current_exe()?;
    let script = workspace().join("bench/python_route.py");
    let (runs, leads) = (args.files.runs, args.files.leads);
    let raw = bench_floor::read_all(&files.paths, "air_temperature")?;
    let decoded_mb = (files.paths.len() * 970 * 1042 * 4) as f64 / 1e6;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);

    for &level in &args.levels {
        let config = feed_config(&dir, &files, runs, leads, level)?;
        let python_route = |python: &Path, out: &str, extra: &[&str]| -> Result<Value> {
            let _ = std::fs::remove_dir_all(dir.join(out));
            json_of(
                Command::new(python)
                    .arg(&script)
                    .args(["--variable", "air_temperature", "--chunk-y", "485"])
                    .args(["--chunk-x", "521", "--fp-step", "3600", "--codec", "zstd"])
                    .args(extra)
                    .arg("--level")
                    .arg(level.to_string())
                    .arg("--notifications")
                    .arg(&files.routes)
                    .arg("--out")
                    .arg(dir.join(out))
                    .arg("--window")
                    .arg(runs.to_string())
                    .arg("--fp-size")
                    .arg(leads.to_string()),
            )
        };
        let mut routes = vec![
            Route {
                name: "zarr-roller embedded",
                runs: Vec::new(),
            },
            Route {
                name: "Python (xarray + zarr-python)",
                runs: Vec::new(),
            },
        ];
        if icechunk.is_some() {
            routes.push(Route {
                name: "xarray + Icechunk, a commit per file",
                runs: Vec::new(),
            });
        }
        let mut floor = Vec::new();
        for repeat in 0..args.files.repeats {
            let _ = std::fs::remove_dir_all(dir.join("ukv-rust"));
            routes[0].runs.push(json_of(
                Command::new(&me)
                    .args(["run", "--stats-json", "--config"])
                    .arg(&config)
                    .arg("--notifications")
                    .arg(&files.events),
            )?);
            routes[1]
                .runs
                .push(python_route(&python, "ukv-python", &[])?);
            if let Some(icechunk) = &icechunk {
                routes[2]
                    .runs
                    .push(python_route(icechunk, "ukv-icechunk", &["--icechunk"])?);
            }
            floor.push(bench_floor::run(&raw, STORE_CHUNK, level, threads)?);
            eprintln!(
                "level {level}, repeat {}: {}; floor {:.2} s",
                repeat + 1,
                routes
                    .iter()
                    .map(|r| format!(
                        "{} {:.2} s",
                        r.name,
                        r.runs.last().map_or(f64::NAN, |v| field(v, "seconds"))
                    ))
                    .collect::<Vec<_>>()
                    .join(", "),
                floor.last().copied().unwrap_or(f64::NAN),
            );
        }
        report(
            level,
            &files,
            &routes,
            median(floor),
            decoded_mb,
            args.files.repeats,
        );
    }

    if !args.skip_mogreps {
        mogreps(args, &dir, &me)?;
    }
    Ok(())
}

/// Prints one level's table: every route and the floor, and the ratios the targets are about.
fn report(
    level: i32,
    files: &FeedFiles,
    routes: &[Route],
    floor: f64,
    decoded_mb: f64,
    repeats: usize,
) {
    let med = |runs: &[Value], key: &str| median(runs.iter().map(|v| field(v, key)).collect());
    println!(
        "## {} UKV files as published (970 x 1042 float32, 128 x 128 zlib-1 chunks), stored in 485 x 521 chunks, zstd level {level}, medians of {repeats}\n",
        files.paths.len()
    );
    println!("| route | seconds | files/s | decoded MB/s | peak RSS MB |");
    println!("|---|---|---|---|---|");
    for route in routes {
        println!(
            "| {} | {:.2} | {:.1} | {:.0} | {:.0} |",
            route.name,
            med(&route.runs, "seconds"),
            med(&route.runs, "files_per_s"),
            med(&route.runs, "decoded_mb_per_s"),
            med(&route.runs, "peak_rss_mb")
        );
    }
    println!(
        "| floor: inflate + zstd encode, all cores, no I/O | {floor:.2} | {:.1} | {:.0} | |",
        files.paths.len() as f64 / floor,
        decoded_mb / floor
    );
    let ours = med(&routes[0].runs, "seconds");
    println!();
    for route in &routes[1..] {
        println!(
            "- zarr-roller is {:.2}x the {} route",
            med(&route.runs, "seconds") / ours,
            route.name
        );
    }
    println!(
        "- zarr-roller runs at {:.0}% of the floor",
        100.0 * floor / ours
    );
    // What a 3x target asks on this machine, in terms of the floor: the other routes are mostly
    // serial, so on few cores they take only a few floors, and 3x them leaves little for I/O.
    let fastest = routes[1..]
        .iter()
        .map(|route| med(&route.runs, "seconds"))
        .reduce(f64::min);
    if let Some(fastest) = fastest {
        println!(
            "- 3x the fastest other route would be {:.2} s: {:.0}% of the floor, which reads and writes nothing",
            fastest / 3.0,
            100.0 * floor / (fastest / 3.0)
        );
    }
    println!();
}

/// One MOGREPS-UK-sized file through the embedded route (peak memory whatever the file size).
fn mogreps(args: &BenchArgs, dir: &Path, me: &Path) -> Result<()> {
    let level = args.levels.first().copied().unwrap_or(1);
    let mog_files = SynthOptions {
        out: dir.join("mogreps"),
        realizations: Some(12),
        heights: Some((0..33).map(|i| 5.0 + 10.0 * f64::from(i)).collect()),
        runs: 1,
        leads: 1,
        ..SynthOptions::default()
    };
    let mog_list = ensure_files(&mog_files)?;
    let mog = config(dir, "mogreps", &mog_files, 1, level)?;
    let mut runs = Vec::new();
    for _ in 0..args.files.repeats {
        let _ = std::fs::remove_dir_all(dir.join("mogreps-rust"));
        runs.push(json_of(
            Command::new(me)
                .args(["run", "--stats-json", "--config"])
                .arg(&mog)
                .arg("--notifications")
                .arg(&mog_list),
        )?);
    }
    let med = |key: &str| median(runs.iter().map(|v| field(v, key)).collect());
    println!("## One MOGREPS-UK-sized file (12 x 33 x 970 x 1042 float32, 1.6 GB decoded), zstd level {level}, medians of {}\n", args.files.repeats);
    println!("| route | seconds | decoded MB/s | peak RSS MB |");
    println!("|---|---|---|---|");
    println!(
        "| zarr-roller embedded | {:.2} | {:.0} | {:.0} |",
        med("seconds"),
        med("decoded_mb_per_s"),
        med("peak_rss_mb")
    );
    Ok(())
}
