//! End-to-end tests of the embedded pipeline (issue 2's acceptance): round trip, rolling,
//! replay, O(1) commit, no silent misread, bad input, and files written by netCDF4-python.

use std::sync::Arc;

use roller_bus::Stage;
use roller_commit::{Committer, Event};
use roller_embedded::RunOptions;
use roller_model::clock::ManualClock;
use roller_model::layout::Layout;
use roller_model::physical_key::snapshot_key;
use roller_model::record::load_record;
use roller_model::rolling_store::{OpenError, RollingStore, GENERATION_ATTR};
use roller_model::snapshot::SnapshotError;
use roller_proto::{Notification, WriteReport};
use roller_storage::expiry::DeleteExpired;
use roller_storage::{MemoryStore, MeteredStore, Storage, ZarrsStorage};
use roller_test_support::{
    ingest, netcdf_values, raw_store, read_array, rolling_store, run_python, small_files, snapshot,
    TestDataset,
};
use zarrs::array::Array;

#[test]
fn round_trip_values_and_coordinates_are_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 3, 2, 20, 30);
    let cfg = TestDataset::new("rt")
        .window(4)
        .leads(2)
        .config(&dir.path().join("store"), &dir.path().join("src"));
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let summary = ingest(&cfg, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!(summary.files, 6);

    let store = rolling_store(&cfg);
    let record = store.record();
    let (shape, data) = read_array::<f32>(&store, "air_temperature");
    assert_eq!(shape, vec![4, 2, 20, 30]);
    let (_, frt) = read_array::<i64>(&store, "forecast_reference_time");
    let (_, fp) = read_array::<i64>(&store, "forecast_period");
    assert_eq!(fp, vec![0, 3600]);
    let per_field = 20 * 30;
    for file in &files {
        let note = Notification::from_json(&file.notification).expect("notification");
        let logical = frt
            .iter()
            .position(|&t| t == note.forecast_reference_time)
            .expect("run visible");
        let slot = fp
            .iter()
            .position(|&p| Some(p) == note.forecast_period)
            .expect("lead");
        let at = (logical * 2 + slot) * per_field;
        let expected = netcdf_values(&file.path, "air_temperature");
        assert_eq!(
            &data[at..at + per_field],
            expected.as_slice(),
            "{}",
            file.path.display()
        );
        let layout = &record.layout;
        assert_eq!(
            layout.abs_index(note.forecast_reference_time),
            Ok(record.offset + i64::try_from(logical).expect("small index"))
        );
    }
    // The window ends at the newest run; the one step before the first run reads as fill.
    assert!(data[..2 * per_field].iter().all(|v| v.is_nan()));
    let (_, y) = read_array::<f32>(&store, "projection_y_coordinate");
    let (_, x) = read_array::<f32>(&store, "projection_x_coordinate");
    assert_eq!(y, netcdf_values(&files[0].path, "projection_y_coordinate"));
    assert_eq!(x, netcdf_values(&files[0].path, "projection_x_coordinate"));
    let (shape, _) = read_array::<i32>(&store, "lambert_azimuthal_equal_area");
    assert!(shape.is_empty());
}

#[test]
fn a_run_leaving_the_window_takes_its_per_run_members_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = roller_synth::synth(&roller_synth::SynthOptions {
        out: src.clone(),
        ny: 9,
        nx: 11,
        realizations: Some(2),
        runs: 3,
        leads: 1,
        run_step: 6 * 3600,
        ..Default::default()
    })
    .expect("synth");
    let cfg = TestDataset::new("members")
        .window(1)
        .file_dims(&[
            ("realization", 2, 1),
            ("projection_y_coordinate", 9, 9),
            ("projection_x_coordinate", 11, 11),
        ])
        .extra("[expiry]\ngrace = \"0s\"\n")
        .config(&dir.path().join("store"), &src);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    assert!(ingest(&cfg, &lines).dead_letters.is_empty());
    let per_run = raw_store(&cfg)
        .list_prefix("chunks/realization_per_run/")
        .expect("list");
    let record = rolling_store(&cfg).record();
    assert_eq!(
        per_run,
        vec![
            roller_storage::Key::new(format!("chunks/realization_per_run/c/{}/0", record.offset))
                .expect("key")
        ],
        "only the run in the window keeps its members"
    );
}

#[test]
fn round_trip_with_realization_and_height_dims() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = roller_synth::synth(&roller_synth::SynthOptions {
        out: src.clone(),
        ny: 9,
        nx: 11,
        realizations: Some(3),
        heights: Some(vec![5.0, 10.0]),
        runs: 2,
        leads: 1,
        run_step: 6 * 3600,
        ..Default::default()
    })
    .expect("synth");
    let dims = [
        ("realization", 3, 2),
        ("height", 2, 1),
        ("projection_y_coordinate", 9, 4),
        ("projection_x_coordinate", 11, 5),
    ];
    let extra = "[encoding]\ncodec = \"blosc\"\nformat = 2\n";
    let cfg = TestDataset::new("mogreps")
        .window(2)
        .file_dims(&dims)
        .extra(extra)
        .config(&dir.path().join("store"), &src);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let summary = ingest(&cfg, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    let store = rolling_store(&cfg);
    let (shape, data) = read_array::<f32>(&store, "air_temperature");
    assert_eq!(shape, vec![2, 1, 3, 2, 9, 11]);
    let per_file = 3 * 2 * 9 * 11;
    for (i, file) in files.iter().enumerate() {
        assert_eq!(
            &data[i * per_file..(i + 1) * per_file],
            netcdf_values(&file.path, "air_temperature").as_slice()
        );
    }
    let (_, height) = read_array::<f32>(&store, "height");
    assert_eq!(height, vec![5.0, 10.0]);
    // A coordinate whose only chunk is all zeros (the fill value of a v2 null) is still served.
    assert!(store
        .get_logical("forecast_period/0")
        .expect("get")
        .is_some());
    let (_, fp) = read_array::<i64>(&store, "forecast_period");
    assert_eq!(fp, vec![0]);
    // Members belong to their run: one row per run.
    let (shape, realization) = read_array::<i32>(&store, "realization_per_run");
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(realization, vec![0, 1, 2, 0, 1, 2]);
    assert!(
        store.get_logical(".zmetadata").expect("get").is_some(),
        "v2 has consolidated metadata"
    );
}

#[test]
fn rolling_keeps_the_last_three_runs_and_deletes_the_first_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 5, 1, 20, 30);
    // No grace: rolled-out chunks are removed by the commit that rolls them out.
    let cfg = TestDataset::new("roll")
        .extra("[expiry]\ngrace = \"0s\"\n")
        .config(&dir.path().join("store"), &dir.path().join("src"));
    for file in &files {
        // One run at a time, as they would arrive.
        let summary = ingest(&cfg, std::slice::from_ref(&file.notification));
        assert!(
            summary.dead_letters.is_empty(),
            "{:?}",
            summary.dead_letters
        );
    }
    let store = rolling_store(&cfg);
    let record = store.record();
    let runs: Vec<i64> = files
        .iter()
        .map(|f| {
            Notification::from_json(&f.notification)
                .expect("n")
                .forecast_reference_time
        })
        .collect();
    let (_, frt) = read_array::<i64>(&store, "forecast_reference_time");
    assert_eq!(
        frt,
        runs[2..].to_vec(),
        "only the last 3 runs, oldest at logical 0"
    );
    let (_, data) = read_array::<f32>(&store, "air_temperature");
    assert_eq!(
        &data[..600],
        netcdf_values(&files[2].path, "air_temperature").as_slice()
    );
    let raw = raw_store(&cfg);
    for run in &runs[..2] {
        let abs = record.layout.abs_index(*run).expect("abs");
        let left = raw
            .list_prefix(&format!("chunks/air_temperature/c/{abs}/"))
            .expect("list");
        assert!(
            left.is_empty(),
            "chunks of rolled-off run {abs} remain: {left:?}"
        );
    }
    for run in &runs[2..] {
        let abs = record.layout.abs_index(*run).expect("abs");
        assert_eq!(
            raw.list_prefix(&format!("chunks/air_temperature/c/{abs}/"))
                .expect("list")
                .len(),
            6
        );
    }
}

#[test]
fn replaying_everything_twice_shuffled_leaves_identical_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = small_files(&src, 5, 2, 20, 30);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let once = TestDataset::new("replay")
        .leads(2)
        .config(&dir.path().join("once"), &src);
    let summary = ingest(&once, &lines);
    assert!(summary.dead_letters.is_empty());

    let twice = TestDataset::new("replay")
        .leads(2)
        .config(&dir.path().join("twice"), &src);
    let mut doubled: Vec<String> = lines.iter().chain(lines.iter()).cloned().collect();
    // A fixed pseudo-random shuffle (reproducible failures).
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..doubled.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        doubled.swap(
            i,
            usize::try_from(state % (i as u64 + 1)).expect("below i + 1"),
        );
    }
    for pair in doubled.chunks(3) {
        let summary = ingest(&twice, pair);
        assert!(
            summary.dead_letters.is_empty(),
            "{:?}",
            summary.dead_letters
        );
    }
    // Rolled-out chunks wait for their grace: a run that rolled out before its late files
    // came was never written twice, one written in order was. Once the grace has passed both
    // stores hold the same bytes.
    let later = ManualClock::at(roller_proto::time::now() + 2 * 3600);
    for cfg in [&once, &twice] {
        Committer::for_dataset(cfg, raw_store(cfg), Arc::new(DeleteExpired))
            .map(|c| c.with_clock(Arc::new(later.clone())))
            .expect("committer")
            .tidy()
            .expect("tidy");
    }
    let (a, b) = (
        snapshot(&dir.path().join("once")),
        snapshot(&dir.path().join("twice")),
    );
    let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
    assert_eq!(
        ka,
        kb,
        "only once: {:?}; only twice: {:?}",
        ka.iter()
            .filter(|k| !b.contains_key(k.as_str()))
            .collect::<Vec<_>>(),
        kb.iter()
            .filter(|k| !a.contains_key(k.as_str()))
            .collect::<Vec<_>>()
    );
    for (key, bytes) in &a {
        assert!(bytes == &b[key], "{key} differs");
    }
    // The logical metadata documents are identical too, but for the generation they name.
    let (sa, sb) = (rolling_store(&once), rolling_store(&twice));
    let document = |store: &RollingStore, key: &str| {
        let bytes = store.get_logical(key).expect("get").expect("document");
        let mut doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        if let Some(attrs) = doc["attributes"].as_object_mut() {
            attrs.remove(GENERATION_ATTR);
        }
        doc
    };
    for key in [
        "zarr.json",
        "air_temperature/zarr.json",
        "forecast_reference_time/zarr.json",
    ] {
        assert_eq!(document(&sa, key), document(&sb, key), "{key}");
    }
}

/// Storage operations of one steady-state commit: one new run arrives, one rolls off.
fn ops_of_one_commit(window: u32, grace: i64) -> roller_storage::OpCounts {
    let dir = tempfile::tempdir().expect("tempdir");
    // One part per file (a whole chunk-row), two chunks per part.
    let cfg = TestDataset::new("o1")
        .window(window)
        .run_step("1h")
        .file_dims(&[
            ("projection_y_coordinate", 20, 20),
            ("projection_x_coordinate", 30, 16),
        ])
        .config(&dir.path().join("s"), dir.path());
    let metered = Arc::new(MeteredStore::new(Arc::new(MemoryStore::new())));
    let storage: Arc<dyn Storage> = metered.clone();
    let layout = Layout::from_config(&cfg);
    let clock = ManualClock::at(1_000_000);
    let mut committer = Committer::open(storage, layout, Arc::new(DeleteExpired))
        .expect("open")
        .with_grace(grace)
        .with_clock(Arc::new(clock.clone()));
    let report = |abs: i64| WriteReport {
        dataset: "o1".into(),
        source: format!("run {abs}"),
        abs,
        slot: 0,
        part: 0,
        parts: 1,
        chunks: 2,
        bytes: 1,
        schema: None,
    };
    // Fill the window and then some, one commit per run, a run a minute, as in steady
    // operation; long enough for a grace to have passed.
    let runs = i64::from(window) + 3 + grace / 60 + 1;
    for abs in 0..runs {
        committer.fold(&Event::Report(report(abs))).expect("fold");
        while committer.commit().expect("commit").is_some() {}
        clock.advance(60);
    }
    metered.take();
    committer.fold(&Event::Report(report(runs))).expect("fold");
    committer.commit().expect("commit");
    metered.take()
}

#[test]
fn a_commit_costs_the_same_for_a_window_of_4_and_of_400_grace_or_not() {
    for grace in [0, 600] {
        let small = ops_of_one_commit(4, grace);
        let large = ops_of_one_commit(400, grace);
        assert_eq!(small.lists, 0, "a commit never lists");
        assert_eq!(small.gets, 0, "a commit reads nothing");
        assert_eq!(
            small.puts, 2,
            "the generation's snapshot record and roller.json"
        );
        assert_eq!(
            small.deletes, 3,
            "a released run's two chunks and a released snapshot record, by key (grace {grace})"
        );
        assert_eq!(
            (small.gets, small.puts, small.deletes, small.lists),
            (large.gets, large.puts, large.deletes, large.lists),
            "grace {grace}"
        );
    }
}

#[test]
fn rolled_out_chunks_and_snapshots_survive_until_the_grace_has_passed_and_restarts_keep_them_pending(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 3, 1, 20, 30);
    let cfg = TestDataset::new("grace")
        .window(2)
        .extra("[expiry]\ngrace = \"30m\"\n")
        .config(&dir.path().join("store"), &dir.path().join("src"));
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let storage = raw_store(&cfg);
    let clock = ManualClock::at(roller_proto::time::now());
    let options = RunOptions {
        clock: Arc::new(clock.clone()),
        ..RunOptions::default()
    };
    let run = |lines: &[String]| {
        roller_embedded::run(
            &cfg,
            storage.clone(),
            lines.iter().cloned().map(Ok),
            &options,
        )
        .expect("run")
        .record
    };
    let first = run(&lines[..2]);
    let first_values = read_array::<f32>(&rolling_store(&cfg), "air_temperature");
    let chunks = |storage: &Arc<dyn Storage>| {
        storage
            .list_prefix("chunks/air_temperature/")
            .expect("list")
            .len()
    };
    let two_runs = chunks(&storage);
    clock.advance(60);
    let rolled = run(&lines[2..]);
    assert_eq!(rolled.offset, first.offset + 1, "the first run rolled out");
    assert!(!rolled.expiring.is_empty());
    assert!(
        chunks(&storage) > two_runs,
        "the rolled-out run is kept for the grace period"
    );

    // A reader holding the first generation still reads it, within grace.
    let pinned = Arc::new(
        RollingStore::open_generation(storage.clone(), first.generation, Arc::new(clock.clone()))
            .expect("open the first generation"),
    );
    assert_eq!(read_array::<f32>(&pinned, "air_temperature"), first_values);

    // Restarts before the grace is over keep everything.
    clock.advance(29 * 60);
    let open = || {
        Committer::for_dataset(&cfg, storage.clone(), Arc::new(DeleteExpired))
            .map(|c| c.with_clock(Arc::new(clock.clone())))
            .expect("committer")
    };
    assert!(!open().tidy().expect("tidy"), "nothing is released yet");
    assert!(chunks(&storage) > two_runs);
    assert!(storage
        .get(&snapshot_key(first.generation))
        .expect("get")
        .is_some());

    // Once the grace has passed, a restarted committer removes them and records it.
    clock.advance(2 * 60);
    let mut committer = open();
    assert!(committer.needs_tidy());
    assert!(committer.tidy().expect("tidy"));
    assert_eq!(chunks(&storage), two_runs);
    let stored = load_record(storage.as_ref())
        .expect("load")
        .expect("record");
    assert!(stored.expiring.is_empty(), "{:?}", stored.expiring);
    assert!(stored.retired.is_empty(), "{:?}", stored.retired);
    assert_eq!(
        stored.generation, rolled.generation,
        "tidying keeps the generation"
    );
    assert!(storage
        .get(&snapshot_key(first.generation))
        .expect("get")
        .is_none());
    assert!(storage
        .get(&snapshot_key(rolled.generation))
        .expect("get")
        .is_some());
    // The pinned reader now fails instead of reading fill values.
    let error = pinned
        .get_logical("zarr.json")
        .expect_err("an expired snapshot must not read");
    assert!(error.to_string().contains("has expired"), "{error}");
    assert!(matches!(
        RollingStore::open_generation(storage.clone(), first.generation, Arc::new(clock.clone())),
        Err(OpenError::Snapshot(SnapshotError::Expired { .. }))
    ));
}

#[test]
fn a_plain_zarr_reader_cannot_misread_the_raw_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 4, 1, 20, 30);
    let cfg = TestDataset::new("raw")
        .window(2)
        .config(&dir.path().join("store"), &dir.path().join("src"));
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    ingest(&cfg, &lines);
    let plain = Arc::new(ZarrsStorage::new(raw_store(&cfg)));
    for path in [
        "/air_temperature",
        "/chunks/air_temperature",
        "/forecast_reference_time",
        "/",
    ] {
        assert!(
            Array::open(plain.clone(), path).is_err(),
            "a plain reader opened {path} in the raw store"
        );
    }
    assert!(zarrs::group::Group::open(plain, "/").is_err() || true_group_is_empty(&cfg));
}

/// A group opened on the raw store (zarrs may treat a missing v3 group as implicit) must hold
/// no arrays a reader could misread.
fn true_group_is_empty(cfg: &roller_model::config::DatasetConfig) -> bool {
    raw_store(cfg)
        .list_prefix("")
        .expect("list")
        .iter()
        .all(|k| {
            let name = k.as_str().rsplit('/').next().unwrap_or_default();
            !matches!(name, "zarr.json" | ".zarray" | ".zgroup")
        })
}

#[test]
fn bad_input_is_rejected_with_a_reason_and_the_rest_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = small_files(&src, 2, 2, 20, 30);
    let cfg = TestDataset::new("bad")
        .leads(2)
        .config(&dir.path().join("store"), &src);
    let template = Notification::from_json(&files[0].notification).expect("n");
    let note_for = |path: &std::path::Path, frt: &str| {
        serde_json::json!({"model": template.model, "name": template.name, "key": path.display().to_string(),
            "forecast_reference_time": frt, "forecast_period": "0"}).to_string()
    };
    let frt = "2024-01-03T00:00:00Z";
    // A truncated NetCDF file.
    let truncated = src.join("truncated.nc");
    let bytes = std::fs::read(&files[0].path).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    // A file with the wrong variable, and one with the wrong grid shape.
    let one_file = |dir: &str, variable: &str, ny: usize| {
        roller_synth::synth(&roller_synth::SynthOptions {
            out: src.join(dir),
            variable: variable.into(),
            ny,
            nx: 30,
            runs: 1,
            leads: 1,
            first_run: 1_704_240_000,
            ..Default::default()
        })
        .expect("synth")[0]
            .path
            .clone()
    };
    let wrong_var = one_file("wrongvar", "relative_humidity", 20);
    let wrong_grid = one_file("wronggrid", "air_temperature", 21);
    let mut lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    lines.insert(1, note_for(&truncated, frt));
    lines.insert(2, note_for(&wrong_var, frt));
    lines.insert(3, note_for(&wrong_grid, frt));
    lines.insert(4, r#"{"model":"mo-atmospheric-ukv-prd","name":"air_temperature","forecast_reference_time":"2024-01-01T00:00:00Z"}"#.into());
    lines.insert(5, r#"{"model":"mo-atmospheric-ukv-prd","name":"air_temperature","key":"x.nc","forecast_reference_time":"not a time"}"#.into());

    let summary = ingest(&cfg, &lines);
    let reason_for = |needle: &str| {
        summary
            .dead_letters
            .iter()
            .find(|d| d.source.contains(needle) || d.reason.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no dead letter about {needle}: {:?}", summary.dead_letters))
    };
    let t = reason_for("truncated.nc");
    assert_eq!(t.stage, Stage::Decode);
    assert!(t.reason.contains("cannot read"), "{t}");
    let v = reason_for(&wrong_var.display().to_string());
    assert!(v.reason.contains("no variable `air_temperature`"), "{v}");
    let g = reason_for(&wrong_grid.display().to_string());
    assert!(g.reason.contains("projection_y_coordinate[21]"), "{g}");
    let k = reason_for("no `key` field");
    assert_eq!((k.stage, k.source.as_str()), (Stage::Ingest, "line 5"));
    let f = reason_for("`not a time` is not a time");
    assert!(f.reason.contains("forecast_reference_time"), "{f}");
    assert_eq!(summary.dead_letters.len(), 5, "{:?}", summary.dead_letters);

    // The good files are complete and nothing of the bad ones was written.
    assert_eq!(summary.files, 4);
    let store = rolling_store(&cfg);
    let record = store.record();
    let total: usize = record.present.values().map(Vec::len).sum();
    assert_eq!(total, 4);
    let (_, frts) = read_array::<i64>(&store, "forecast_reference_time");
    assert!(!frts.contains(&1_704_240_000));
}

#[test]
fn files_written_by_netcdf4_python_round_trip_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixtures = dir.path().join("fixtures");
    run_python(
        "make_fixtures.py",
        &[fixtures.to_str().expect("utf-8 path")],
    );
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(fixtures.join("manifest.json")).expect("manifest"))
            .expect("json");
    let notes: Vec<String> = std::fs::read_to_string(fixtures.join("notifications.jsonl"))
        .expect("notifications")
        .lines()
        .map(str::to_string)
        .collect();
    let grid = [
        ("projection_y_coordinate", 6, 4),
        ("projection_x_coordinate", 5, 3),
    ];
    let height_grid = [
        ("height", 3, 1),
        ("projection_y_coordinate", 6, 4),
        ("projection_x_coordinate", 5, 3),
    ];
    for (dataset, dims, model) in [
        ("2d", &grid[..], "fixture-2d"),
        ("height", &height_grid[..], "fixture-height"),
    ] {
        let cfg = TestDataset::new(dataset)
            .model(model)
            .window(4)
            .run_step("1h")
            .leads(3)
            .file_dims(dims)
            .config(&dir.path().join(dataset), &fixtures);
        let summary = ingest(&cfg, &notes);
        assert!(
            summary.dead_letters.is_empty(),
            "{dataset}: {:?}",
            summary.dead_letters
        );
        let store = rolling_store(&cfg);
        let (shape, data) = read_array::<f32>(&store, "air_temperature");
        let (_, frt) = read_array::<i64>(&store, "forecast_reference_time");
        let (_, fp) = read_array::<i64>(&store, "forecast_period");
        let field = usize::try_from(shape[2..].iter().product::<u64>()).expect("field size");
        for entry in manifest.iter().filter(|e| e["dataset"] == dataset) {
            let expected_bytes =
                std::fs::read(fixtures.join(entry["expected"].as_str().expect("name")))
                    .expect("expected");
            let expected: Vec<f32> = expected_bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let run = frt
                .iter()
                .position(|&t| Some(t) == entry["forecast_reference_time"].as_i64())
                .expect("run visible");
            let lead = fp
                .iter()
                .position(|&p| Some(p) == entry["forecast_period"].as_i64())
                .expect("lead");
            let at = (run * fp.len() + lead) * field;
            let got = &data[at..at + field];
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    g == e || (g.is_nan() && e.is_nan()),
                    "{}: {g} != {e}",
                    entry["file"]
                );
            }
            let (_, y) = read_array::<f32>(&store, "projection_y_coordinate");
            let (_, x) = read_array::<f32>(&store, "projection_x_coordinate");
            let as_f32 = |v: &serde_json::Value| -> Vec<f32> {
                v.as_array()
                    .expect("list")
                    .iter()
                    .map(|n| {
                        #[expect(
                            clippy::cast_possible_truncation,
                            reason = "the manifest holds float32 values written as JSON numbers"
                        )]
                        let value = n.as_f64().expect("num") as f32;
                        value
                    })
                    .collect()
            };
            assert_eq!(y, as_f32(&entry["y"]));
            assert_eq!(x, as_f32(&entry["x"]));
            if dataset == "height" {
                let (_, h) = read_array::<f32>(&store, "height");
                assert_eq!(h, as_f32(&entry["height"]));
            }
        }
    }
}

#[test]
fn a_roll_more_than_two_days_ahead_of_the_clock_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 2, 1, 20, 30);
    let cfg = TestDataset::new("ahead").config(&dir.path().join("store"), &dir.path().join("src"));
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let before = ingest(&cfg, &lines).record;
    let far = roller_proto::time::now() + roller_model::state::MAX_AHEAD_SECONDS + 3600;
    let refused = roller_embedded::roll(&cfg, raw_store(&cfg), Arc::new(DeleteExpired), far)
        .expect_err("a roll three days ahead");
    assert!(
        refused
            .to_string()
            .contains("more than 2 days ahead of the clock"),
        "{refused}"
    );
    let after = load_record(raw_store(&cfg).as_ref())
        .expect("load")
        .expect("record");
    assert_eq!((after.offset, after.head), (before.offset, before.head));
    assert_eq!(after.generation, before.generation, "nothing was committed");
}
