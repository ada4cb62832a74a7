//! The `roller` commands that talk to NATS: `setup`, `replay` and `roll` (when NATS is used).
//! Connection settings come from the environment (`NATS_URL`, `NATS_CREDS`,
//! `ROLLER_STREAM_PREFIX`), as for the stage binaries.

use std::io::BufRead;

use anyhow::{Context, Result};
use roller_model::catalog::Catalog;
use roller_model::config::DatasetConfig;
use roller_nats::replay::{replay, replay_feed, Replayed};
use roller_nats::scheduler::publish_roll;
use roller_nats::shutdown::Shutdown;
use roller_nats::topology::{connect, setup, setup_feed, Topology};
use roller_nats::NatsSettings;
use roller_proto::{RollEvent, StreamKind};

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn topology(config: &DatasetConfig) -> Result<Topology> {
    topologies(std::slice::from_ref(config))
        .await?
        .pop()
        .context("no dataset")
}

/// Connects once and sets up every dataset's streams, consumers and buckets.
async fn topologies(configs: &[DatasetConfig]) -> Result<Vec<Topology>> {
    let settings = NatsSettings::from_env()?;
    let client = connect(&settings, "roller").await?;
    let mut all = Vec::with_capacity(configs.len());
    for config in configs {
        all.push(setup(client.clone(), &settings, config).await?);
    }
    Ok(all)
}

/// `roller setup`: creates (or updates) the streams, consumers and buckets; prints them.
pub(crate) fn setup_command(config: &DatasetConfig) -> Result<()> {
    runtime()?.block_on(async {
        let t = topology(config).await?;
        for kind in StreamKind::ALL {
            println!(
                "stream {} ({})",
                t.subjects.stream(kind),
                t.subjects.stream_subjects(kind).join(", ")
            );
        }
        for stage in ["fetch", "decode", "write", "commit"] {
            println!("consumer {}", t.subjects.consumer(stage, &config.name));
        }
        println!(
            "buckets {} {}",
            t.subjects.lease_bucket(),
            t.subjects.generation_bucket()
        );
        println!("ingest subject: {}", t.subjects.ingest(&config.name));
        println!("feed subject: {}", t.subjects.feed());
        Ok(())
    })
}

/// `roller replay`: publishes every line of `source` (a file or `-`) on the dataset's ingest
/// subject, or, given several datasets, on the feed subject (each dataset's streams and
/// consumers set up first).
pub(crate) fn replay_command(catalog: &Catalog, source: &str) -> Result<Replayed> {
    let lines: Vec<String> = if source == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .context("reading standard input")?
    } else {
        let file = std::fs::File::open(source).with_context(|| format!("opening {source}"))?;
        std::io::BufReader::new(file)
            .lines()
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("reading {source}"))?
    };
    match (&catalog.datasets[..], &catalog.discovering[..]) {
        ([config], []) => replay_lines(config, lines),
        (configs, _) => runtime()?.block_on(async {
            // The datasets' streams and consumers first, so nothing routed waits for a stage.
            topologies(configs).await?;
            let settings = NatsSettings::from_env()?;
            let client = connect(&settings, "roller").await?;
            let js = setup_feed(client, &settings).await?;
            Ok(replay_feed(&js, &settings.subjects, lines).await?)
        }),
    }
}

/// Publishes `lines` on the dataset's ingest subject (what `roller replay` does with a file).
pub(crate) fn replay_lines(config: &DatasetConfig, lines: Vec<String>) -> Result<Replayed> {
    runtime()?.block_on(async {
        let t = topology(config).await?;
        Ok(replay(&t.js, &t.subjects, &config.name, lines).await?)
    })
}

/// `roller roll` through NATS: publishes a roll event for the commit stage.
pub(crate) fn roll_command(config: &DatasetConfig, until: i64) -> Result<String> {
    runtime()?.block_on(async {
        let t = topology(config).await?;
        let event = RollEvent {
            dataset: config.name.clone(),
            until,
        };
        publish_roll(&t, &event, &Shutdown::new()).await?;
        Ok(t.subjects.roll(&config.name))
    })
}
