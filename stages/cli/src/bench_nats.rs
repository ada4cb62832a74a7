//! `roller bench-nats`: the same full-size files through the NATS pipeline (one process per
//! stage on this machine, a fresh nats-server) against embedded mode, alternating, in the same
//! run; then the notification-to-visible latency of single files with a commit per file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use roller_nats::replay::replay;
use roller_nats::topology::{connect, setup};
use roller_nats::NatsSettings;
use roller_proto::{wire, CommitEvent};

/// Arguments of `roller bench-nats`.
#[derive(clap::Args)]
pub(crate) struct BenchNatsArgs {
    #[command(flatten)]
    files: crate::bench::BenchFiles,
    /// Files published one at a time for the latency measurement.
    #[arg(long, default_value_t = 24)]
    latency_files: usize,
}

/// Idle time before each route's timed run. The same for both routes, because on this kind of
/// virtual machine memory left free for about 2 s is handed back to the host and costs several
/// times more to touch again: a route started right after another one freed its memory would
/// start warm, the other cold.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);

/// Processes killed on drop, each with the name it is reported under.
pub(crate) struct Procs(pub(crate) Vec<(&'static str, Child)>);

impl Procs {
    /// CPU seconds (user + system) each process has used so far, from `/proc/PID/stat`.
    pub(crate) fn cpu_seconds(&self) -> Vec<(&'static str, f64)> {
        self.0
            .iter()
            .map(|(name, child)| (*name, cpu_seconds(child.id()).unwrap_or(f64::NAN)))
            .collect()
    }
}

impl Procs {
    /// Each process's peak resident memory so far in MB (`VmHWM` of `/proc/PID/status`).
    pub(crate) fn peak_memory_mb(&self) -> Vec<(&'static str, f64)> {
        self.0
            .iter()
            .map(|(name, child)| {
                let peak = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
                    .ok()
                    .and_then(|status| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix("VmHWM:"))
                            .and_then(|v| {
                                v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()
                            })
                    });
                (*name, peak.map_or(f64::NAN, |kb| kb / 1024.0))
            })
            .collect()
    }
}

/// User + system CPU seconds of process `pid` (Linux), `None` where `/proc` does not tell.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_ticks(&format!("/proc/{pid}/stat"), 11)
}

/// CPU seconds used by this process's waited-for children (the embedded runs).
fn children_cpu_seconds() -> Option<f64> {
    stat_ticks("/proc/self/stat", 13)
}

/// The sum of two adjacent clock-tick fields of a `/proc/.../stat` file, in seconds. `first`
/// counts from the field after the parenthesised command name (utime is 11, cutime 13).
fn stat_ticks(path: &str, first: usize) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let a: f64 = fields.get(first)?.parse().ok()?;
    let b: f64 = fields.get(first + 1)?.parse().ok()?;
    Some((a + b) / 100.0)
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tool the benchmarks start: `$env`, the test venv's (`./dev test` installs it), or `name`
/// on `PATH`.
pub(crate) fn tool(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env).map_or_else(
        || {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.venv/bin")
                .join(name);
            if venv.exists() {
                venv
            } else {
                PathBuf::from(name)
            }
        },
        PathBuf::from,
    )
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh nats-server storing under `dir/nats`, added to `procs`; returns its URL once it
/// listens.
pub(crate) fn start_nats(dir: &Path, procs: &mut Procs) -> Result<String> {
    let port = free_port()?;
    let _ = std::fs::remove_dir_all(dir.join("nats"));
    procs.0.push((
        "nats-server",
        Command::new(tool("ROLLER_NATS_SERVER", "nats-server"))
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("nats"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server (./dev test installs it into .venv)")?,
    ));
    wait_listening(port, "nats-server")?;
    Ok(format!("nats://127.0.0.1:{port}"))
}

/// Waits up to 20 s until something listens on `port`.
pub(crate) fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A fresh nats-server (storing under `dir/nats`) and one process per stage over `config` (a
/// dataset or a catalog); returns the processes and the server URL once every stage reports
/// ready (its consumers bound, for every dataset).
pub(crate) fn start_cluster(dir: &Path, config: &Path) -> Result<(Procs, String)> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    let mut procs = Procs(Vec::new());
    let url = start_nats(dir, &mut procs)?;
    let mut health = Vec::new();
    for stage in [
        "roller-fetch",
        "roller-decode",
        "roller-write",
        "roller-commit",
    ] {
        let bin = bin_dir.join(stage);
        if !bin.exists() {
            bail!(
                "{} is missing: build the stages too (cargo build --release --workspace)",
                bin.display()
            );
        }
        let port = free_port()?;
        health.push((stage, port));
        procs.0.push((
            stage,
            Command::new(bin)
                .arg("--config")
                .arg(config)
                .env("NATS_URL", &url)
                .env("RUST_LOG", "warn")
                .env("ROLLER_HEALTH_LISTEN", format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .spawn()?,
        ));
    }
    for (i, (stage, port)) in health.into_iter().enumerate() {
        // The stages follow nats-server in `procs`.
        wait_ready(port, stage, &mut procs.0[i + 1].1)?;
    }
    Ok((procs, url))
}

/// Waits up to 120 s until the health endpoint on `port` answers `/readyz` with 200; fails at
/// once if `child` exits.
fn wait_ready(port: u16, what: &str, child: &mut Child) -> Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut stream| {
            let mut reply = String::new();
            // (a stage that accepts but never answers must not hang the benchmark)
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .is_ok()
                && stream
                    .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    .is_ok()
                && stream.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/1.1 200") | reply.starts_with("HTTP/1.0 200")
        });
        if ready {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before it was ready");
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Publishes `lines` and waits until every file's `parts` are committed; returns the seconds
/// from the first publish, and per file the seconds from its publish to its last part visible.
async fn ingest(
    url: &str,
    config: &roller_model::config::DatasetConfig,
    lines: &[String],
    parts: usize,
    one_at_a_time: bool,
) -> Result<(f64, Vec<f64>)> {
    let settings = NatsSettings::from_vars(|name| (name == "NATS_URL").then(|| url.to_owned()))?;
    let client = connect(&settings, "bench").await?;
    let topology = setup(client.clone(), &settings, config).await?;
    let mut commits = client
        .subscribe(topology.subjects.committed(&config.name))
        .await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let batches: Vec<&[String]> = if one_at_a_time {
        lines.chunks(1).collect()
    } else {
        vec![lines]
    };
    for batch in batches {
        let sent = Instant::now();
        replay(
            &topology.js,
            &topology.subjects,
            &config.name,
            batch.iter().cloned(),
        )
        .await?;
        let wanted: Vec<String> = batch
            .iter()
            .filter_map(|l| roller_proto::Notification::from_json(l).ok())
            .map(|n| n.id())
            .collect();
        while !wanted
            .iter()
            .all(|s| seen.get(s).copied().unwrap_or(0) >= parts)
        {
            let message = tokio::time::timeout(Duration::from_secs(120), commits.next())
                .await
                .context("no commit for 120 s")?
                .context("subscription ended")?;
            let event: CommitEvent = wire::decode(&message.payload)?;
            for source in event.sources {
                *seen.entry(source).or_default() += 1;
            }
        }
        latencies.push(sent.elapsed().as_secs_f64());
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

pub(crate) fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank of a list in memory: clamped to be non-negative, far below usize::MAX"
    )]
    let rank = rank.clamp(0.0, f64::MAX) as usize;
    values.get(rank).copied().unwrap_or(f64::NAN)
}

pub(crate) fn run(args: &BenchNatsArgs) -> Result<()> {
    let crate::bench::Prepared {
        dir,
        synth: files,
        list,
        lines,
    } = args.files.prepare()?;
    let me = std::env::current_exe()?;
    let window = u32::try_from(args.files.runs)?;
    let mut config =
        files.dataset_config("ukv-nats", window, (485, 521), &dir.join("ukv-nats-store"));
    config.scratch = Some(roller_model::config::ScratchConfig {
        path: dir.join("ukv-nats-scratch"),
        max_age: roller_model::duration::Seconds(3600),
        fsync: false,
    });
    let config_path = dir.join("ukv-nats.toml");
    roller_synth::write_config(&config, &config_path)?;
    let mut embedded_config = config.clone();
    embedded_config.store.path = dir.join("ukv-embedded-store");
    let embedded_path = dir.join("ukv-embedded.toml");
    roller_synth::write_config(&embedded_config, &embedded_path)?;
    let parts = 970_usize.div_ceil(485);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let (mut embedded, mut nats) = (Vec::new(), Vec::new());
    let mut cpu: HashMap<&'static str, Vec<f64>> = HashMap::new();
    for repeat in 0..args.files.repeats {
        let _ = std::fs::remove_dir_all(&embedded_config.store.path);
        std::thread::sleep(SETTLE);
        let children_before = children_cpu_seconds().unwrap_or(f64::NAN);
        let e = crate::bench::json_of(
            Command::new(&me)
                .args(["run", "--stats-json", "--config"])
                .arg(&embedded_path)
                .arg("--notifications")
                .arg(&list),
        )?;
        let e_seconds = e["seconds"].as_f64().unwrap_or(f64::NAN);
        cpu.entry("embedded (whole process)")
            .or_default()
            .push(children_cpu_seconds().unwrap_or(f64::NAN) - children_before);
        let _ = std::fs::remove_dir_all(&config.store.path);
        let (procs, url) = start_cluster(&dir, &config_path)?;
        // Lets the stages connect and bind their consumers before the clock starts.
        std::thread::sleep(SETTLE);
        let before = procs.cpu_seconds();
        let (n_seconds, _) = runtime.block_on(ingest(&url, &config, &lines, parts, false))?;
        for ((name, after), (_, before)) in procs.cpu_seconds().into_iter().zip(before) {
            cpu.entry(name).or_default().push(after - before);
        }
        drop(procs);
        eprintln!(
            "repeat {}: embedded {e_seconds:.2} s, nats {n_seconds:.2} s ({:.0}%)",
            repeat + 1,
            100.0 * e_seconds / n_seconds
        );
        embedded.push(e_seconds);
        nats.push(n_seconds);
    }
    let n = lines.len() as f64;
    let ratios: Vec<f64> = embedded
        .iter()
        .zip(&nats)
        .map(|(e, n)| 100.0 * e / n)
        .collect();
    let (e, s) = (crate::bench::median(embedded), crate::bench::median(nats));
    println!("## NATS pipeline vs embedded ({} files of 970 x 1042 float32, one process per stage, medians of {})\n", lines.len(), args.files.repeats);
    println!("| route | seconds | files/s |");
    println!("|---|---|---|");
    println!("| embedded | {e:.2} | {:.1} |", n / e);
    println!(
        "| NATS (fetch, decode, write, commit processes) | {s:.2} | {:.1} |",
        n / s
    );
    println!(
        "\nNATS throughput / embedded: {:.0}% (ratio of the medians); per repeat {} (median {:.0}%)",
        100.0 * e / s,
        ratios
            .iter()
            .map(|r| format!("{r:.0}%"))
            .collect::<Vec<_>>()
            .join(", "),
        crate::bench::median(ratios.clone())
    );
    println!("\nCPU seconds per process during the ingest (medians):\n");
    println!("| process | CPU seconds |");
    println!("|---|---|");
    let mut names: Vec<_> = cpu.keys().copied().collect();
    names.sort_unstable();
    for name in names {
        let seconds = crate::bench::median(cpu.remove(name).unwrap_or_default());
        println!("| {name} | {seconds:.2} |");
    }

    let _ = std::fs::remove_dir_all(&config.store.path);
    let (procs, url) = start_cluster(&dir, &config_path)?;
    std::thread::sleep(SETTLE);
    let sample: Vec<String> = lines.iter().take(args.latency_files).cloned().collect();
    let (_, latencies) = runtime.block_on(ingest(&url, &config, &sample, parts, true))?;
    drop(procs);
    println!(
        "\n## Notification-to-visible latency ({} files published one at a time, a commit per file)\n",
        latencies.len()
    );
    println!("| p50 | p99 | max |");
    println!("|---|---|---|");
    println!(
        "| {:.2} s | {:.2} s | {:.2} s |",
        percentile(latencies.clone(), 0.5),
        percentile(latencies.clone(), 0.99),
        percentile(latencies, 1.0)
    );
    Ok(())
}
