//! `roller bench-bridge`: how fast `roller-bridge` moves a burst of notices from an SQS queue
//! onto the feed, with 1 and 4 pollers, in the same run. The queue is moto's standalone server
//! on loopback, the feed a fresh nats-server. The burst is one UKV T+54 run as today's feed
//! announces it: 3 445 S3 events in SNS envelopes, one per file, sent as fast as the queue takes
//! them while the bridge, already running, drains it (as when a topic delivers a run's files).
//!
//! moto is a Python model of SQS whose requests cost time in proportion to the messages the
//! queue holds (it recomputes the queue's attributes for every message it hands out): a burst
//! sent before the bridge starts takes minutes to drain whatever the bridge does. Sent while the
//! bridge runs, the queue stays short; moto still bounds the rate (it is one Python process),
//! so the benchmark also reports the CPU each process used: the bridge's own cost per message
//! is what carries over to SQS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use roller_nats::topology::{connect, setup_feed};
use roller_nats::NatsSettings;
use roller_sqs::{SqsQueue, SqsSettings};

use crate::bench_nats::{cpu_seconds, free_port, start_nats, tool, wait_listening, Procs};

/// Arguments of `roller bench-bridge`.
#[derive(clap::Args)]
pub(crate) struct BenchBridgeArgs {
    /// Where nats-server keeps its store.
    #[arg(long, default_value = "bench-data/bridge")]
    dir: PathBuf,
    /// Timed bursts per poller count (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// The poller counts compared.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pollers: Vec<u16>,
}

/// The parameters of a UKV run and their lead times, in minutes: 39 instantaneous fields
/// hourly from T+0, 8 hourly accumulations and extremes from T+1, and 4 rate fields every 15
/// minutes: 3 445 files to T+54, 51 parameters.
fn ukv_run() -> Vec<(String, u32)> {
    let hourly = |from: u32| (from..=54).map(|h| h * 60).collect::<Vec<_>>();
    let mut files = Vec::new();
    for i in 0..39 {
        for &lead in &hourly(0) {
            files.push((format!("instantaneous_field_{i:02}"), lead));
        }
    }
    for name in [
        "temperature_at_screen_level_max-PT01H",
        "temperature_at_screen_level_min-PT01H",
        "precipitation_accumulation-PT01H",
        "rainfall_accumulation-PT01H",
        "snowfall_accumulation-PT01H",
        "wind_gust_at_10m_max-PT01H",
        "radiation_flux_in_shortwave_total_downward_at_surface_mean-PT01H",
        "hail_fall_accumulation-PT01H",
    ] {
        for &lead in &hourly(1) {
            files.push((name.to_owned(), lead));
        }
    }
    for name in [
        "precipitation_rate",
        "rainfall_rate",
        "snowfall_rate",
        "hail_fall_rate",
    ] {
        for lead in (0..=54 * 4).map(|q| q * 15) {
            files.push((name.to_owned(), lead));
        }
    }
    files
}

/// The notice of one file as the publisher's SNS topic delivers it to a queue without raw
/// delivery: an S3 event in an SNS envelope.
fn notice(parameter: &str, lead_minutes: u32, etag: &str) -> String {
    let (run_hour, valid) = (0, lead_minutes);
    let stamp = |minutes: u32| {
        let day = 14 + minutes / (24 * 60);
        let rest = minutes % (24 * 60);
        format!("202506{day:02}T{:02}{:02}Z", rest / 60, rest % 60)
    };
    let key = format!(
        "uk-deterministic-2km/{}/{}-PT{:04}H{:02}M-{parameter}.nc",
        stamp(run_hour),
        stamp(valid),
        lead_minutes / 60,
        lead_minutes % 60
    );
    let event = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-2",
        "eventTime": "2025-06-14T03:40:00.123Z", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "met-office-atmospheric-model-data"},
               "object": {"key": key, "size": 1_048_576, "eTag": etag}},
    }]});
    serde_json::json!({
        "Type": "Notification", "MessageId": format!("{parameter}-{lead_minutes}-{etag}"),
        "TopicArn": "arn:aws:sns:eu-west-2:000000000000:met-office-atmospheric-model-data-object_created",
        "Message": event.to_string(), "Timestamp": "2025-06-14T03:40:01.000Z",
    })
    .to_string()
}

/// CPU seconds moto's server has used so far.
fn moto_cpu(servers: &Procs) -> f64 {
    servers
        .0
        .iter()
        .find(|(name, _)| *name == "moto_server")
        .and_then(|(_, child)| cpu_seconds(child.id()))
        .unwrap_or(f64::NAN)
}

/// Messages stored in the ingest stream (which holds the feed).
async fn stored(js: &async_nats::jetstream::Context, stream: &str) -> Result<u64> {
    let mut stream = js.get_stream(stream).await?;
    Ok(stream.info().await?.state.messages)
}

pub(crate) fn run(args: &BenchBridgeArgs) -> Result<()> {
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("roller-bridge");
    if !bin.exists() {
        bail!(
            "{} is missing: build it too (cargo build --release --workspace)",
            bin.display()
        );
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut servers = Procs(Vec::new());
    let url = start_nats(&args.dir, &mut servers)?;
    let moto_port = free_port()?;
    servers.0.push((
        "moto_server",
        Command::new(tool("ROLLER_MOTO_SERVER", "moto_server"))
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto_server (./dev test installs moto[server] into .venv)")?,
    ));
    wait_listening(moto_port, "moto_server")?;
    let endpoint = format!("http://127.0.0.1:{moto_port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let settings = NatsSettings::from_vars(|name| (name == "NATS_URL").then(|| url.clone()))?;
    let js = runtime.block_on(async {
        let client = connect(&settings, "bench-bridge").await?;
        anyhow::Ok(setup_feed(client, &settings).await?)
    })?;
    let ingest = settings.subjects.stream(roller_proto::StreamKind::Ingest);
    let sqs = runtime.block_on(roller_sqs::client_with_static_credentials(
        &SqsSettings {
            endpoint_url: Some(endpoint.clone()),
            region: Some("eu-west-2".into()),
        },
        "testing",
        "testing",
    ));
    let files = ukv_run();
    let mut seconds: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    let mut moto_used: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    for repeat in 0..args.repeats {
        for &pollers in &args.pollers {
            // A fresh queue and ETags of its own, so no message is a duplicate of an earlier burst.
            let etag = format!("r{repeat}p{pollers}");
            let queue =
                runtime.block_on(SqsQueue::create(sqs.clone(), &format!("bench-{etag}")))?;
            let bodies: Vec<String> = files
                .iter()
                .map(|(parameter, lead)| notice(parameter, *lead, &etag))
                .collect();
            let before = runtime.block_on(stored(&js, &ingest))?;
            let health = free_port()?;
            let mut bridge = Command::new(&bin)
                .args(["--queue-url", roller_bridge::Queue::url(&queue)])
                .args(["--pollers", &pollers.to_string(), "--wait", "1"])
                .env("NATS_URL", &url)
                .env("ROLLER_HEALTH_LISTEN", format!("127.0.0.1:{health}"))
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "eu-west-2")
                .env("AWS_ENDPOINT_URL_SQS", &endpoint)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()?;
            wait_listening(health, "roller-bridge")?;
            // Lets the bridge connect and start polling before the clock starts.
            std::thread::sleep(Duration::from_secs(2));
            let cpu_before = (
                cpu_seconds(bridge.id()).unwrap_or(f64::NAN),
                moto_cpu(&servers),
            );
            let started = Instant::now();
            let sender = {
                let queue = queue.clone();
                runtime.spawn(async move {
                    let sent = queue.send_all(&bodies).await;
                    (sent, Instant::now())
                })
            };
            let target = before + files.len() as u64;
            let moved = loop {
                if runtime.block_on(stored(&js, &ingest))? >= target {
                    break started.elapsed().as_secs_f64();
                }
                if started.elapsed() > Duration::from_secs(600) {
                    let _ = bridge.kill();
                    bail!("the burst was not moved within 600 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let (sent, sent_at) = runtime.block_on(sender)?;
            sent?;
            let sending = sent_at.duration_since(started).as_secs_f64();
            let used = cpu_seconds(bridge.id()).unwrap_or(f64::NAN) - cpu_before.0;
            let moto = moto_cpu(&servers) - cpu_before.1;
            let _ = bridge.kill();
            let _ = bridge.wait();
            eprintln!(
                "repeat {}: {pollers} poller(s): {} messages in {moved:.2} s ({:.0}/s; sending took {sending:.2} s), CPU: bridge {used:.2} s, moto {moto:.2} s",
                repeat + 1,
                files.len(),
                files.len() as f64 / moved
            );
            seconds.entry(pollers).or_default().push(moved);
            cpu.entry(pollers).or_default().push(used);
            moto_used.entry(pollers).or_default().push(moto);
        }
    }
    println!(
        "## The bridge: a burst of {} notices (one UKV T+54 run) from an SQS queue onto the feed (medians of {})\n",
        files.len(),
        args.repeats
    );
    println!("| pollers | seconds | messages/s | bridge CPU seconds | bridge CPU per 1000 messages | moto CPU seconds | per repeat (s) |");
    println!("|---|---|---|---|---|---|---|");
    for (pollers, runs) in &seconds {
        let median = crate::bench::median(runs.clone());
        let bridge = crate::bench::median(cpu.get(pollers).cloned().unwrap_or_default());
        println!(
            "| {pollers} | {median:.2} | {:.0} | {bridge:.2} | {:.3} | {:.2} | {} |",
            files.len() as f64 / median,
            1000.0 * bridge / files.len() as f64,
            crate::bench::median(moto_used.get(pollers).cloned().unwrap_or_default()),
            runs.iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ukv_run_is_3445_files_of_51_parameters_that_the_feed_reads() {
        let files = ukv_run();
        assert_eq!(files.len(), 3445);
        let parameters: std::collections::BTreeSet<&String> =
            files.iter().map(|(p, _)| p).collect();
        assert_eq!(parameters.len(), 51);
        for (parameter, lead) in [&files[0], &files[3444]] {
            let body = notice(parameter, *lead, "e");
            let notices = roller_proto::feed::parse(&body).expect("the feed reads it");
            let [roller_proto::feed::Notice::File(note)] = notices.as_slice() else {
                panic!("one file: {notices:?}");
            };
            assert_eq!(note.name, *parameter);
            assert_eq!(note.forecast_period, Some(i64::from(*lead) * 60));
        }
    }
}
