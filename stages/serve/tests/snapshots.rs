//! Snapshot URLs (`/<dataset>@<generation>`) with real xarray over HTTP: a dataset opened
//! lazily keeps reading its own runs after the window rolls, and reading it after the grace
//! period raises an error instead of returning fill values; Zarr v3 and v2. The committer and
//! the server share a clock the test moves, so the grace period passes without waiting.
//! Also: the HTTP answers for the newest snapshot's URL, unknown, malformed and expired
//! generations, and a reference file of an older generation read through fsspec within grace.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use roller_commit::Committer;
use roller_embedded::RunOptions;
use roller_model::clock::{Clock, ManualClock};
use roller_model::config::DatasetConfig;
use roller_serve::catalog::Catalog;
use roller_storage::expiry::DeleteExpired;
use roller_storage::Storage;
use roller_test_support::http::request;
use roller_test_support::{run_python, small_files, PythonSession, TestDataset};

mod common;

use common::InProcessServer;

const GRACE: i64 = 3600;

/// Three 6-hourly runs of two lead times: each run's notification lines, oldest first.
fn runs(src: &Path) -> Vec<Vec<String>> {
    let mut by_run: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in small_files(src, 3, 2, 20, 30) {
        let note: serde_json::Value =
            serde_json::from_str(&file.notification).expect("notification json");
        let run = note["forecast_reference_time"]
            .as_str()
            .expect("forecast_reference_time")
            .to_owned();
        by_run.entry(run).or_default().push(file.notification);
    }
    by_run.into_values().collect()
}

/// A window of two runs with a one-hour grace, in Zarr `format`.
fn config(dir: &Path, name: &str, format: u8, extra: &str) -> DatasetConfig {
    TestDataset::new(name)
        .window(2)
        .leads(2)
        .extra(&format!(
            "[encoding]\nformat = {format}\n[expiry]\ngrace = \"{GRACE}s\"\n{extra}"
        ))
        .config(&dir.join(name), &dir.join("src"))
}

fn ingest(
    config: &DatasetConfig,
    store: &Arc<dyn Storage>,
    lines: &[String],
    clock: &ManualClock,
) -> u64 {
    let options = RunOptions {
        clock: Arc::new(clock.clone()),
        ..RunOptions::default()
    };
    let summary = roller_embedded::run(
        config,
        store.clone(),
        lines.iter().cloned().map(Ok),
        &options,
    )
    .expect("embedded run");
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    summary.record.generation
}

fn data_chunks(store: &dyn Storage) -> usize {
    store
        .list_prefix("chunks/air_temperature/")
        .expect("list")
        .len()
}

#[test]
fn xarray_keeps_reading_its_snapshot_across_a_roll_and_fails_after_the_grace_v3_and_v2() {
    for format in [3, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = runs(&dir.path().join("src"));
        let name = format!("snap{format}");
        let config = config(dir.path(), &name, format, "");
        let store = roller_embedded::open_store(&config).expect("store");
        let clock = ManualClock::at(roller_proto::time::now());
        let first_generation = ingest(&config, &store, &runs[..2].concat(), &clock);
        let before_roll = data_chunks(store.as_ref());

        let catalog = Catalog::with_stores(vec![(config.clone(), store.clone())], Duration::ZERO)
            .expect("catalog")
            .with_clock(Arc::new(clock.clone()));
        let server = InProcessServer::start(catalog);
        let notifications = dir.path().join("notifications.jsonl");
        std::fs::write(&notifications, runs.concat().join("\n")).expect("notifications");
        let mut reader = PythonSession::start(
            "read_snapshot.py",
            &[
                &server.url(&format!("/{name}")),
                &notifications.display().to_string(),
            ],
        );
        let opened = reader.line();
        let snapshot_url = server.url(&format!("/{name}@{first_generation}"));
        assert_eq!(opened, format!("opened {snapshot_url}"));

        // The third run arrives a minute later: the window rolls past the first run.
        clock.advance(60);
        let newest = ingest(&config, &store, &runs[2], &clock);
        assert!(newest > first_generation);
        assert!(
            data_chunks(store.as_ref()) > before_roll,
            "the first run's chunks are kept for the grace period"
        );
        reader.send("rolled");
        let checked = reader.line();
        assert!(checked.starts_with("checked "), "{checked}");

        // Scripts find the newest snapshot without custom code (the URL follows `Host`).
        let latest = request(server.port, "GET", &format!("/{name}/@latest"), &[]);
        assert_eq!(latest.status, 200);
        assert_eq!(
            latest.body_text().trim(),
            format!("http://127.0.0.1/{name}@{newest}")
        );
        let unknown = request(
            server.port,
            "GET",
            &format!("/{name}@{}/zarr.json", newest + 5),
            &[],
        );
        assert_eq!(unknown.status, 404);
        assert!(
            unknown
                .body_text()
                .contains(&format!("the newest generation is {newest}")),
            "{}",
            unknown.body_text()
        );
        for malformed in ["@0", "@x", "@01", "@-3", "@1@2"] {
            let reply = request(
                server.port,
                "GET",
                &format!("/{name}{malformed}/zarr.json"),
                &[],
            );
            assert_eq!(reply.status, 400, "{malformed}");
        }

        // The grace passes (and the margin after it); the committer removes the first run's
        // chunks.
        clock.advance(GRACE + 60);
        let mut committer = Committer::for_dataset(&config, store.clone(), Arc::new(DeleteExpired))
            .map(|c| c.with_clock(Arc::new(clock.clone())))
            .expect("committer");
        assert!(
            committer.tidy().expect("tidy"),
            "released chunks removed and recorded"
        );
        assert_eq!(data_chunks(store.as_ref()), before_roll);

        let gone = request(
            server.port,
            "GET",
            &format!("/{name}@{first_generation}/zarr.json"),
            &[],
        );
        assert_eq!(gone.status, 410);
        assert!(
            gone.body_text().contains("has expired")
                && gone
                    .body_text()
                    .contains(&format!("the newest generation is {newest}")),
            "{}",
            gone.body_text()
        );
        reader.send("expired");
        let outcome: serde_json::Value =
            serde_json::from_str(&reader.finish()).expect("the script's JSON line");
        assert_eq!(outcome["snapshot_url"], snapshot_url.as_str());
        assert!(
            outcome["error"].as_str().is_some_and(|e| e.contains("410")),
            "reading an expired snapshot must raise, got {outcome}"
        );
    }
}

#[test]
fn a_reference_file_of_an_older_generation_reads_correctly_within_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = runs(&dir.path().join("src"));
    let config = config(dir.path(), "refs", 3, "[reference]\nenabled = true\n");
    let store = roller_embedded::open_store(&config).expect("store");
    let clock = ManualClock::at(roller_proto::time::now());
    let generation = ingest(&config, &store, &runs[..2].concat(), &clock);
    let reference = dir.path().join("refs/reference.json");
    let kept = dir.path().join("kept-reference.json");
    std::fs::copy(&reference, &kept).expect("keep the reference file");
    let text = std::fs::read_to_string(&kept).expect("read");
    assert!(
        text.contains(&format!("\\\"zarr_roller_generation\\\": {generation}")),
        "the reference file names its generation"
    );

    clock.advance(60);
    ingest(&config, &store, &runs[2], &clock);
    assert_ne!(
        std::fs::read(&reference).expect("new reference"),
        std::fs::read(&kept).expect("kept reference"),
        "the roll rewrote the reference file"
    );
    // The kept document still describes the first two runs, and its chunk URLs still resolve.
    let notifications = dir.path().join("notifications.jsonl");
    std::fs::write(&notifications, runs[..2].concat().join("\n")).expect("notifications");
    let out = run_python(
        "read_served.py",
        &[
            &kept.display().to_string(),
            &notifications.display().to_string(),
            "2",
            "2",
        ],
    );
    assert!(out.contains("\"checked\": 4"), "{out}");
    assert!(clock.now() > 0);
}
