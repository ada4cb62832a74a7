//! `roller bench-catalog`: one UKV T+54 run as today's feed announces it (3 445 files of 51
//! parameters: 39 hourly from T+0, 8 hourly from PT1H, 4 rate fields every 15 minutes), on a
//! reduced grid, published at once on the feed subject and taken by one set of NATS stage
//! processes serving the 51 datasets of `examples/ukv-all-parameters.toml`; against the same
//! number of files of the same grid into one dataset (16 runs of 217 lead times), in the same
//! run, alternating. Per route: files/s, how long after the last notice the whole run was
//! visible, each file's notification-to-visible time (p50, p99), the CPU of each process and
//! its peak memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{FutureExt as _, StreamExt};
use roller_model::config::{DatasetConfig, ScratchConfig, Visibility};
use roller_nats::replay::replay_feed;
use roller_nats::topology::{connect, setup_feed};
use roller_nats::NatsSettings;
use roller_proto::feed::{self, Notice};
use roller_proto::{wire, CommitEvent};
use roller_synth::{synth, SynthFile, SynthOptions};
use serde_json::json;

use crate::bench_nats::{percentile, start_cluster, Procs, SETTLE};

/// Arguments of `roller bench-catalog`.
#[derive(clap::Args)]
pub(crate) struct BenchCatalogArgs {
    /// Where the files, stores and nats-server's store go.
    #[arg(long, default_value = "bench-data/catalog")]
    dir: PathBuf,
    /// Where nats-server keeps its store instead (`<dir>/nats` when not given), to tell its
    /// file system's share of the cost from the stages'.
    #[arg(long)]
    nats_dir: Option<PathBuf>,
    /// Timed runs per route (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Grid rows of the reduced UKV grid (970 published).
    #[arg(long, default_value_t = 122)]
    ny: usize,
    /// Grid columns of the reduced UKV grid (1042 published).
    #[arg(long, default_value_t = 131)]
    nx: usize,
}

/// The catalog the benchmark serves: every parameter of a UKV run.
const CATALOG: &str = include_str!("../../../examples/ukv-all-parameters.toml");

/// Today's bucket and model, as in the keys.
const BUCKET: &str = "met-office-atmospheric-model-data";
const MODEL: &str = "uk-deterministic-2km";

/// The run the files belong to (2024-01-01T00:00Z).
const RUN: i64 = 1_704_067_200;

/// Notices published per batch; each file's publish time is its batch's.
const BATCH: usize = 100;

/// One route: its config file and the notices it is sent.
struct Route {
    name: &'static str,
    config: PathBuf,
    lines: Vec<String>,
}

/// What one timed run of a route measured.
struct Measured {
    seconds: f64,
    after_last_notice: f64,
    latencies: Vec<f64>,
    cpu: Vec<(&'static str, f64)>,
    peak_mb: Vec<(&'static str, f64)>,
}

pub(crate) fn run(args: &BenchCatalogArgs) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let nats_dir = match &args.nats_dir {
        Some(nats_dir) => {
            std::fs::create_dir_all(nats_dir)?;
            nats_dir.canonicalize()?
        }
        None => dir.clone(),
    };
    let bucket = dir.join("bucket");
    let routes = [
        one_dataset(&dir, &bucket, args)?,
        whole_catalog(&dir, &bucket, args)?,
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut results: BTreeMap<&'static str, Vec<Measured>> = BTreeMap::new();
    for repeat in 0..args.repeats {
        // Alternate which route goes first.
        let order: Vec<&Route> = if repeat % 2 == 0 {
            routes.iter().collect()
        } else {
            routes.iter().rev().collect()
        };
        for route in order {
            for store in ["stores", "scratch"] {
                let _ = std::fs::remove_dir_all(dir.join(store));
            }
            std::thread::sleep(SETTLE);
            let (procs, url) = start_cluster(&nats_dir, &route.config)?;
            let measured = runtime.block_on(ingest(&url, &route.lines, &procs))?;
            eprintln!(
                "repeat {}: {}: {} files in {:.1} s, visible {:.1} s after the last notice",
                repeat + 1,
                route.name,
                route.lines.len(),
                measured.seconds,
                measured.after_last_notice
            );
            results.entry(route.name).or_default().push(measured);
        }
    }
    report(&routes, &results);
    Ok(())
}

/// The median of `values`.
fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    percentile(values.into_iter().collect(), 0.5)
}

/// Prints the medians of each route and the ratio of their throughputs.
fn report(routes: &[Route; 2], results: &BTreeMap<&'static str, Vec<Measured>>) {
    println!(
        "| route | files | seconds | files/s | visible after the last notice | notification-to-visible p50 | p99 | CPU seconds by process | peak memory by process (MB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rates = Vec::new();
    for route in routes {
        let runs = &results[route.name];
        let files = route.lines.len();
        let seconds = median(runs.iter().map(|m| m.seconds));
        let rate = files as f64 / seconds;
        rates.push(rate);
        let by_process = |pick: &dyn Fn(&Measured) -> &Vec<(&'static str, f64)>| {
            let names: Vec<&str> = pick(&runs[0]).iter().map(|(n, _)| *n).collect();
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let value = median(runs.iter().map(|m| pick(m)[i].1));
                    format!("{name} {value:.1}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cpu_total = median(
            runs.iter()
                .map(|m| m.cpu.iter().map(|(_, c)| c).sum::<f64>()),
        );
        let commit_share = median(runs.iter().map(|m| {
            let total: f64 = m.cpu.iter().map(|(_, c)| c).sum();
            m.cpu
                .iter()
                .find(|(n, _)| *n == "roller-commit")
                .map_or(f64::NAN, |(_, c)| c / total)
        }));
        println!(
            "| {} | {files} | {seconds:.1} | {rate:.0} | {:.1} s | {:.1} s | {:.1} s | {} (total {cpu_total:.1}; commit {:.0}%) | {} |",
            route.name,
            median(runs.iter().map(|m| m.after_last_notice)),
            median(runs.iter().map(|m| percentile(m.latencies.clone(), 0.5))),
            median(runs.iter().map(|m| percentile(m.latencies.clone(), 0.99))),
            by_process(&|m| &m.cpu),
            commit_share * 100.0,
            by_process(&|m| &m.peak_mb),
        );
    }
    println!(
        "\n51 datasets run at {:.0}% of one dataset's files/s (medians of {} runs each).",
        rates[1] / rates[0] * 100.0,
        results.values().next().map_or(0, Vec::len)
    );
}

/// Publishes `lines` on the feed in batches and waits until a commit has made every file
/// visible; measures the route's processes meanwhile.
async fn ingest(url: &str, lines: &[String], procs: &Procs) -> Result<Measured> {
    let settings = NatsSettings::from_vars(|name| (name == "NATS_URL").then(|| url.to_owned()))?;
    let client = connect(&settings, "bench").await?;
    let js = setup_feed(client.clone(), &settings).await?;
    let subjects = settings.subjects.clone();
    let mut commits = client.subscribe(subjects.committed("*")).await?;
    let sources: Vec<String> = lines.iter().map(|l| source_of(l)).collect::<Result<_>>()?;
    let cpu_before = procs.cpu_seconds();
    let started = Instant::now();
    let mut published: HashMap<&str, Instant> = HashMap::new();
    let mut visible: HashMap<String, Instant> = HashMap::new();
    let note = |event: CommitEvent, visible: &mut HashMap<String, Instant>| {
        let now = Instant::now();
        for source in event.sources {
            visible.entry(source).or_insert(now);
        }
    };
    for (batch, names) in lines.chunks(BATCH).zip(sources.chunks(BATCH)) {
        replay_feed(&js, &subjects, batch.iter().cloned()).await?;
        let now = Instant::now();
        for name in names {
            published.insert(name, now);
        }
        // Take the commit events that came meanwhile, without waiting.
        while let Some(Some(message)) = commits.next().now_or_never() {
            note(wire::decode(&message.payload)?, &mut visible);
        }
    }
    let last_notice = Instant::now();
    while !sources.iter().all(|s| visible.contains_key(s)) {
        let message = tokio::time::timeout(Duration::from_secs(300), commits.next())
            .await
            .with_context(|| {
                format!(
                    "no commit for 300 s with {} of {} files visible",
                    visible.len(),
                    sources.len()
                )
            })?
            .context("subscription ended")?;
        note(wire::decode(&message.payload)?, &mut visible);
    }
    let done = sources
        .iter()
        .filter_map(|s| visible.get(s))
        .max()
        .copied()
        .unwrap_or(last_notice);
    let cpu = procs
        .cpu_seconds()
        .into_iter()
        .zip(cpu_before)
        .map(|((name, after), (_, before))| (name, after - before))
        .collect();
    Ok(Measured {
        seconds: done.duration_since(started).as_secs_f64(),
        after_last_notice: done.saturating_duration_since(last_notice).as_secs_f64(),
        latencies: sources
            .iter()
            .map(|s| {
                visible[s]
                    .duration_since(published[s.as_str()])
                    .as_secs_f64()
            })
            .collect(),
        cpu,
        peak_mb: procs.peak_memory_mb(),
    })
}

/// The identity (`bucket/key`) of the file a notice announces.
fn source_of(line: &str) -> Result<String> {
    match feed::parse(line)?.into_iter().next() {
        Some(Notice::File(note)) => Ok(note.id()),
        _ => bail!("not a file notice: {line}"),
    }
}

/// Synthetic files of one run (or several), written once under `dir/src/<name>`.
fn files(dir: &Path, name: &str, options: SynthOptions) -> Result<Vec<SynthFile>> {
    let out = dir.join("src").join(name);
    let options = SynthOptions {
        out: out.clone(),
        ..options
    };
    // Written once per grid: the marker names it.
    let marker = out.join(format!("grid-{}x{}", options.ny, options.nx));
    if marker.exists() {
        let text = std::fs::read_to_string(out.join("files.json"))?;
        let list: Vec<(PathBuf, String)> = serde_json::from_str(&text)?;
        return Ok(list
            .into_iter()
            .map(|(path, notification)| SynthFile { path, notification })
            .collect());
    }
    let _ = std::fs::remove_dir_all(&out);
    let made = synth(&options)?;
    let list: Vec<(&PathBuf, &String)> = made.iter().map(|f| (&f.path, &f.notification)).collect();
    std::fs::write(out.join("files.json"), serde_json::to_string(&list)?)?;
    std::fs::write(marker, "")?;
    Ok(made)
}

/// Puts `file` into the bucket under today's key for `parameter` and returns its S3 event.
fn publish_into(bucket: &Path, file: &SynthFile, parameter: &str) -> Result<String> {
    let note = roller_proto::Notification::from_json(&file.notification)?;
    let run = note.forecast_reference_time;
    let lead = note.forecast_period.context("a lead time")?;
    let stamp = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y%m%dT%H%MZ").to_string())
            .unwrap_or_default()
    };
    let key = format!(
        "{MODEL}/{}/{}-PT{:04}H{:02}M-{parameter}.nc",
        stamp(run),
        stamp(run + lead),
        lead / 3600,
        lead % 3600 / 60
    );
    let path = bucket.join(&key);
    if !path.exists() {
        std::fs::create_dir_all(path.parent().context("a folder")?)?;
        std::fs::hard_link(&file.path, &path)
            .or_else(|_| std::fs::copy(&file.path, &path).map(|_| ()))?;
    }
    let size = std::fs::metadata(&path)?.len();
    Ok(json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-2",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": size}},
    }]})
    .to_string())
}

/// A store, scratch and mount for `config` under `dir`; every file holds `air_temperature`,
/// and a run is visible as soon as any file of it is (the synthetic files carry no run length).
fn localise(config: &mut DatasetConfig, dir: &Path, bucket: &Path) {
    config.store.path = dir.join("stores").join(&config.name);
    config.store.fsync = false;
    config.scratch = Some(ScratchConfig {
        path: dir.join("scratch"),
        max_age: roller_model::duration::Seconds(3600),
        fsync: false,
    });
    config.source.mounts = [(BUCKET.to_owned(), bucket.to_path_buf())].into();
    config.source.local_roots = Vec::new();
    config.variable = "air_temperature".to_owned();
    config.rolling.visibility = Visibility::Any;
}

/// Writes `configs` as a catalog of explicit datasets.
fn write_catalog(configs: &[DatasetConfig], path: &Path) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Catalog<'a> {
        dataset: &'a [DatasetConfig],
    }
    std::fs::write(path, toml::to_string(&Catalog { dataset: configs })?)?;
    Ok(())
}

/// The grid and run of the benchmark's files, `leads` lead times `lead_step` apart.
fn options(args: &BenchCatalogArgs, runs: usize, leads: usize, lead_step: i64) -> SynthOptions {
    SynthOptions {
        ny: args.ny,
        nx: args.nx,
        runs,
        leads,
        first_run: RUN - i64::try_from(runs).unwrap_or(1).saturating_sub(1) * 3600,
        run_step: 3600,
        lead_step,
        ..SynthOptions::default()
    }
}

/// The 51 datasets of the example catalog, each sent its parameter's files of one T+54 run.
fn whole_catalog(dir: &Path, bucket: &Path, args: &BenchCatalogArgs) -> Result<Route> {
    let hourly = files(dir, "hourly", options(args, 1, 55, 3600))?;
    let quarter = files(dir, "quarter", options(args, 1, 217, 900))?;
    let mut configs = roller_model::catalog::from_toml_with_env(
        CATALOG,
        "examples/ukv-all-parameters.toml",
        std::iter::empty(),
    )?;
    let mut lines = Vec::new();
    for config in &mut configs {
        localise(config, dir, bucket);
        let leads = &config.message_dims[0];
        let series: &[SynthFile] =
            if leads.step.0 == 900 || leads.values.get(1).is_some_and(|v| v.0 == 900) {
                &quarter
            } else if leads.value_at(0) == 3600 {
                &hourly[1..]
            } else {
                &hourly
            };
        for file in series {
            lines.push(publish_into(bucket, file, &config.matching.name)?);
        }
    }
    if lines.len() != 3445 {
        bail!(
            "the catalog's T+54 run has {} files, not 3 445",
            lines.len()
        );
    }
    // Interleaved as a run arrives: every parameter's first lead time, then the next...
    let config = dir.join("catalog.toml");
    write_catalog(&configs, &config)?;
    Ok(Route {
        name: "51 datasets (catalog)",
        config,
        lines: interleave(lines, &configs),
    })
}

/// The notices in lead-time order across parameters (`lines` holds each dataset's in turn).
fn interleave(lines: Vec<String>, configs: &[DatasetConfig]) -> Vec<String> {
    let mut per_dataset: Vec<std::collections::VecDeque<String>> = Vec::new();
    let mut rest = lines.into_iter();
    for config in configs {
        let n = config.message_dims[0].count_at_most(54 * 3600) as usize;
        per_dataset.push(rest.by_ref().take(n).collect());
    }
    let mut out = Vec::new();
    while per_dataset.iter().any(|q| !q.is_empty()) {
        for queue in &mut per_dataset {
            out.extend(queue.pop_front());
        }
    }
    out
}

/// One dataset taking as many files of the same grid: 16 runs of 217 lead times (3 472).
fn one_dataset(dir: &Path, bucket: &Path, args: &BenchCatalogArgs) -> Result<Route> {
    let made = files(dir, "one", options(args, 16, 217, 900))?;
    let options = options(args, 16, 217, 900);
    let mut config = options.dataset_config("ukv-one", 16, (4096, 4096), &dir.join("stores"));
    config.matching.model = MODEL.to_owned();
    config.matching.name = "benchmark_field".to_owned();
    localise(&mut config, dir, bucket);
    let lines = made
        .iter()
        .map(|file| publish_into(bucket, file, "benchmark_field"))
        .collect::<Result<Vec<_>>>()?;
    let path = dir.join("one.toml");
    write_catalog(std::slice::from_ref(&config), &path)?;
    Ok(Route {
        name: "1 dataset",
        config: path,
        lines,
    })
}
