//! `roller bench`: embedded ingestion against the usual Python route (xarray reading,
//! zarr-python writing the same chunks with the same codec), on the same files, in the same run,
//! alternating the two routes; plus one MOGREPS-UK-sized file. Each route runs as its own
//! process so that its peak memory is its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use roller_core::synth::{synth, write_config, SynthOptions};
use serde_json::Value;

/// Arguments of `roller bench`.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    files: crate::bench::BenchFiles,
    /// zstd level for both routes.
    #[arg(long, default_value_t = 1)]
    level: i32,
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

fn python() -> Result<PathBuf> {
    let python = std::env::var_os("ROLLER_PYTHON")
        .map_or_else(|| workspace().join(".venv/bin/python"), PathBuf::from);
    if !python.exists() {
        bail!(
            "no Python environment at {}: run `./dev test` once (it creates .venv) or set ROLLER_PYTHON",
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

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    let python = python()?;
    let Prepared {
        dir,
        synth: ukv_files,
        list,
        ..
    } = args.files.prepare()?;
    let me = std::env::current_exe()?;
    let ukv = config(&dir, "ukv", &ukv_files, args.files.runs, args.level)?;
    let script = workspace().join("bench/python_route.py");

    let (mut rust, mut py) = (Vec::new(), Vec::new());
    for repeat in 0..args.files.repeats {
        let _ = std::fs::remove_dir_all(dir.join("ukv-rust"));
        let r = json_of(
            Command::new(&me)
                .args(["run", "--stats-json", "--config"])
                .arg(&ukv)
                .arg("--notifications")
                .arg(&list),
        )?;
        let _ = std::fs::remove_dir_all(dir.join("ukv-python"));
        let p = json_of(
            Command::new(&python)
                .arg(&script)
                .args([
                    "--variable",
                    "air_temperature",
                    "--chunk-y",
                    "485",
                    "--chunk-x",
                    "521",
                    "--fp-step",
                    "3600",
                    "--codec",
                    "zstd",
                ])
                .arg("--level")
                .arg(args.level.to_string())
                .arg("--notifications")
                .arg(&list)
                .arg("--out")
                .arg(dir.join("ukv-python"))
                .arg("--window")
                .arg(args.files.runs.to_string())
                .arg("--fp-size")
                .arg(args.files.leads.to_string()),
        )?;
        eprintln!(
            "repeat {}: rust {:.2} s, python {:.2} s",
            repeat + 1,
            field(&r, "seconds"),
            field(&p, "seconds")
        );
        rust.push(r);
        py.push(p);
    }
    let med = |runs: &[Value], key: &str| median(runs.iter().map(|v| field(v, key)).collect());
    let files = args.files.runs * args.files.leads;
    println!("## Embedded ingestion vs the Python route ({files} files of 970 x 1042 float32, zstd level {}, medians of {})\n", args.level, args.files.repeats);
    println!("| route | seconds | files/s | decoded MB/s | peak RSS MB |");
    println!("|---|---|---|---|---|");
    for (name, runs) in [
        ("zarr-roller embedded", &rust),
        ("python (xarray + zarr-python)", &py),
    ] {
        println!(
            "| {name} | {:.2} | {:.1} | {:.0} | {:.0} |",
            med(runs, "seconds"),
            med(runs, "files_per_s"),
            med(runs, "decoded_mb_per_s"),
            med(runs, "peak_rss_mb")
        );
    }
    println!(
        "\nthroughput ratio (rust / python, median): {:.2}x",
        med(&rust, "files_per_s") / med(&py, "files_per_s")
    );

    if !args.skip_mogreps {
        let mog_files = SynthOptions {
            out: dir.join("mogreps"),
            realizations: Some(12),
            heights: Some((0..33).map(|i| 5.0 + 10.0 * f64::from(i)).collect()),
            runs: 1,
            leads: 1,
            ..SynthOptions::default()
        };
        let mog_list = ensure_files(&mog_files)?;
        let mog = config(&dir, "mogreps", &mog_files, 1, args.level)?;
        let mut runs = Vec::new();
        for _ in 0..args.files.repeats {
            let _ = std::fs::remove_dir_all(dir.join("mogreps-rust"));
            runs.push(json_of(
                Command::new(&me)
                    .args(["run", "--stats-json", "--config"])
                    .arg(&mog)
                    .arg("--notifications")
                    .arg(&mog_list),
            )?);
        }
        println!("\n## One MOGREPS-UK-sized file (12 x 33 x 970 x 1042 float32, 1.6 GB decoded), medians of {}\n", args.files.repeats);
        println!("| route | seconds | decoded MB/s | peak RSS MB |");
        println!("|---|---|---|---|");
        println!(
            "| zarr-roller embedded | {:.2} | {:.0} | {:.0} |",
            med(&runs, "seconds"),
            med(&runs, "decoded_mb_per_s"),
            med(&runs, "peak_rss_mb")
        );
    }
    Ok(())
}
