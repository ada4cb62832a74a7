//! The guided run: synthesise, ingest three runs, add two more, roll by the clock, and print the
//! visible window after each step, read back through the logical view.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use roller_embedded::RunOptions;
use roller_model::config::DatasetConfig;
use roller_model::rolling_store::RollingStore;
use roller_model::state::CommitRecord;
use roller_proto::time::format_instant;
use roller_storage::expiry::DeleteExpired;
use roller_storage::{LocalStore, Storage};
use roller_synth::{synth, write_config, SynthOptions};
use zarrs::array::Array;

/// Marks a directory the demo made, so it only ever replaces its own.
const MARKER: &str = ".roller-demo";
const RUNS: usize = 5;
const LEADS: usize = 3;
const FIRST_RUN: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const RUN_STEP: i64 = 6 * 3600;

pub(crate) fn run(dir: &Path) -> Result<()> {
    prepare(dir)?;
    let files_dir = dir.join("files");
    println!("1. Synthesising {RUNS} runs x {LEADS} lead times of a 97 x 104 air_temperature field in {}", files_dir.display());
    let options = SynthOptions {
        out: files_dir.clone(),
        ny: 97,
        nx: 104,
        runs: RUNS,
        leads: LEADS,
        first_run: FIRST_RUN,
        run_step: RUN_STEP,
        ..SynthOptions::default()
    };
    let files = synth(&options)?;
    let store_dir = dir.join("dataset");
    let config_path = dir.join("demo.toml");
    write_config(
        &options.dataset_config("demo-air-temperature", 3, (49, 52), &store_dir),
        &config_path,
    )?;
    let config = DatasetConfig::load(&config_path)?;
    println!(
        "   dataset config: {} (window 3 runs, 6-hourly)\n",
        config_path.display()
    );

    let per_run: Vec<Vec<String>> = files
        .chunks(LEADS)
        .map(|run| run.iter().map(|f| f.notification.clone()).collect())
        .collect();
    println!("2. Ingesting the first 3 runs");
    ingest(&config, per_run[..3].concat())?;
    show(&store_dir)?;
    for (i, run) in per_run.iter().enumerate().skip(3) {
        println!(
            "{}. Run {} arrives: the window rolls forward by one run",
            i,
            i + 1
        );
        ingest(&config, run.clone())?;
        show(&store_dir)?;
    }
    let until = FIRST_RUN + i64::try_from(RUNS).unwrap_or(0) * RUN_STEP;
    println!(
        "{}. The clock moves on to {} with no data yet: roll explicitly (roller roll)",
        RUNS,
        format_instant(until)
    );
    roller_embedded::roll(
        &config,
        roller_embedded::open_store(&config)?,
        Arc::new(DeleteExpired),
        until,
    )?;
    show(&store_dir)?;

    println!("How to look at it yourself:");
    println!("  roller inspect {}", store_dir.display());
    println!(
        "  roller run --config {} --notifications {}",
        config_path.display(),
        files_dir.join("notifications.jsonl").display()
    );
    println!("  (replaying every notification is harmless: the dataset stays byte-identical)");
    Ok(())
}

/// Creates `dir`, or empties it if an earlier demo made it; refuses anything else.
fn prepare(dir: &Path) -> Result<()> {
    if dir.exists() {
        let ours = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !ours && !empty {
            bail!(
                "{} exists and was not made by `roller-demo`; choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "made by roller-demo; safe to delete\n")?;
    Ok(())
}

fn ingest(config: &DatasetConfig, lines: Vec<String>) -> Result<()> {
    let summary = roller_embedded::run(
        config,
        roller_embedded::open_store(config)?,
        lines.into_iter().map(Ok),
        &RunOptions::default(),
    )?;
    for letter in &summary.dead_letters {
        println!("   dead letter: {letter}");
    }
    Ok(())
}

/// Prints the visible window, read back through the logical view with zarrs.
fn show(store_dir: &Path) -> Result<()> {
    let raw: Arc<dyn Storage> = Arc::new(LocalStore::new(store_dir, false)?);
    let chunk_files = raw.list_prefix("chunks/air_temperature/")?.len();
    let store = Arc::new(RollingStore::open(raw)?);
    let record: CommitRecord = store.record();
    let times = Array::open(store.clone(), "/forecast_reference_time")?;
    let times: Vec<i64> = times.retrieve_array_subset::<Vec<i64>>(&times.subset_all())?;
    let data = Array::open(store, "/air_temperature")?;
    let values: Vec<f32> = data.retrieve_array_subset::<Vec<f32>>(&data.subset_all())?;
    let per_run = values.len() / times.len().max(1);
    println!(
        "   offset {}  head {}  generation {}  shape {:?}  ({} data chunk files on disk)",
        record.offset,
        record.head.map_or("-".into(), |h| h.to_string()),
        record.generation,
        data.shape(),
        chunk_files
    );
    for (i, t) in times.iter().enumerate() {
        let run = &values[i * per_run..(i + 1) * per_run];
        let finite: Vec<f32> = run.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = finite.iter().map(|&v| f64::from(v)).sum::<f64>() / finite.len().max(1) as f64;
        let status = if finite.is_empty() {
            "no data yet (reads as fill value NaN)".to_string()
        } else {
            format!(
                "mean {mean:.2} K over {} of {} values",
                finite.len(),
                run.len()
            )
        };
        println!(
            "   [{i}] forecast_reference_time {}  {status}",
            format_instant(*t)
        );
    }
    println!();
    Ok(())
}
