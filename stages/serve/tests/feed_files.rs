//! Files shaped as the Met Office publishes them today (written by netCDF4-python with the real
//! header: 128 x 128 zlib-1 chunks, `least_significant_digit`, bounds variables, scalar
//! coordinates, `mosg__*` global attributes), announced as S3 events and read from a mounted
//! bucket: xarray over roller-serve and through the reference file reads the values netCDF4
//! reads, the valid time as datetimes, the attributes, and no `bounds` pointing at nothing;
//! members per run, auxiliary coordinates, per-file bounds, the global grid and pressure levels.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::InProcessServer;
use roller_embedded::RunSummary;
use roller_model::config::DatasetConfig;
use roller_serve::catalog::Catalog;
use roller_test_support::feed::{match_today, mounts, BUCKET, ENSEMBLE_BUCKET, MODEL, PARAMETER};
use roller_test_support::{ingest, run_python};

/// Files written by `make_feed_files.py` for a spec, with their notices (S3 events).
struct Files {
    bucket: PathBuf,
    notifications: PathBuf,
    lines: Vec<String>,
}

impl Files {
    /// Writes the files of `spec` under `dir/<bucket>`.
    fn write(dir: &Path, bucket: &str, spec: &serde_json::Value) -> Self {
        let bucket = dir.join(bucket);
        run_python(
            "make_feed_files.py",
            &[&bucket.display().to_string(), &spec.to_string()],
        );
        let notifications = bucket.join("notifications.jsonl");
        let lines = std::fs::read_to_string(&notifications)
            .expect("notices")
            .lines()
            .map(str::to_owned)
            .collect();
        Self {
            bucket,
            notifications,
            lines,
        }
    }
}

/// A dataset in `dir/<name>` of `air_temperature` taking `model`/`name` notices, with `dims`
/// (the `[rolling]` table and the dims' tables), `sources` (the mounts) and the reference file
/// on.
fn dataset(dir: &Path, name: &str, rule: (&str, &str), dims: &str, sources: &str) -> DatasetConfig {
    dataset_of(dir, name, "air_temperature", rule, dims, sources)
}

/// [`dataset`] of `variable` (`"*"`: the first file's data variable).
fn dataset_of(
    dir: &Path,
    name: &str,
    variable: &str,
    (model, parameter): (&str, &str),
    dims: &str,
    sources: &str,
) -> DatasetConfig {
    let text = format!(
        "name = \"{name}\"\nvariable = \"{variable}\"\n[match]\nmodel = \"{model}\"\n\
         name = \"{parameter}\"\n{dims}\n[store]\npath = \"{}\"\nfsync = false\n\
         [reference]\nenabled = true\n{sources}",
        dir.join(name).display()
    );
    DatasetConfig::from_toml(&text).expect("config")
}

/// Ingests `lines`; every one must go in.
fn ingest_all(config: &DatasetConfig, lines: &[String]) -> RunSummary {
    let summary = ingest(config, lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    summary
}

/// `read_feed.py` over roller-serve and through the reference file, against the files of
/// `notifications`; each output must contain every one of `expected`.
fn read_both(config: &DatasetConfig, files: &Files, notifications: &Path, expected: &[&str]) {
    let store = roller_embedded::open_store(config).expect("store");
    let catalog =
        Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
    let server = InProcessServer::start(catalog);
    let reference = config.store.path.join("reference.json");
    for target in [
        server.url(&format!("/{}", config.name)),
        reference.display().to_string(),
    ] {
        let out = run_python(
            "read_feed.py",
            &[
                &target,
                &files.bucket.display().to_string(),
                &notifications.display().to_string(),
            ],
        );
        for want in expected {
            assert!(out.contains(want), "{target}: expected {want} in {out}");
        }
    }
}

/// `[rolling]` with hourly runs and `leads` hourly lead times from `start`, on a UK grid of
/// 130 x 140 (one chunk), after the `leading` file dim's table if any.
fn uk_dims(window: u32, start: &str, leads: u32, leading: &str) -> String {
    format!(
        "[rolling]\ndim = \"forecast_reference_time\"\nstep = \"1h\"\nwindow = {window}\n\
         [[message_dims]]\nname = \"forecast_period\"\nstart = \"{start}\"\nstep = \"1h\"\n\
         size = {leads}\n{leading}\
         [[file_dims]]\nname = \"projection_y_coordinate\"\nsize = 130\nchunk = 130\n\
         [[file_dims]]\nname = \"projection_x_coordinate\"\nsize = 140\nchunk = 140\n"
    )
}

#[test]
fn xarray_reads_todays_files_with_valid_time_attributes_and_consistent_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hours: Vec<i64> = (0..4).map(|h| h * 3600).collect();
    let files = Files::write(
        dir.path(),
        "bucket",
        &serde_json::json!({"ny": 200, "nx": 260, "runs": [
            {"run": "2024-01-01T00:00:00Z", "leads": hours, "duration": "PT3H"},
            {"run": "2024-01-01T01:00:00Z", "leads": hours, "duration": "PT3H"},
        ]}),
    );
    for format in [3, 2] {
        let dims = format!(
            "[rolling]\ndim = \"forecast_reference_time\"\nstep = \"1h\"\nwindow = 2\n\
             [[message_dims]]\nname = \"forecast_period\"\nstep = \"1h\"\nsize = 4\n\
             [[file_dims]]\nname = \"projection_y_coordinate\"\nsize = 200\nchunk = 100\n\
             [[file_dims]]\nname = \"projection_x_coordinate\"\nsize = 260\nchunk = 130\n\
             [encoding]\nformat = {format}\n"
        );
        let config = dataset(
            dir.path(),
            &format!("ukv{format}"),
            (MODEL, PARAMETER),
            &dims,
            &match_today(&files.bucket),
        );
        ingest_all(&config, &files.lines);
        read_both(
            &config,
            &files,
            &files.notifications,
            &[
                "\"checked\": 8",
                "\"mosg\": \"uk_det\"",
                "\"projection_x_coordinate_bnds\"",
            ],
        );
    }
}

#[test]
fn mogreps_uk_runs_with_rotating_members_all_go_in_and_show_their_own_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leads = [0, 3600];
    let files = Files::write(
        dir.path(),
        "ensemble",
        &serde_json::json!({"ny": 130, "nx": 140, "runs": [
            {"run": "2024-01-01T00:00:00Z", "leads": leads, "duration": "PT1H", "members": [26, 27, 28]},
            {"run": "2024-01-01T01:00:00Z", "leads": leads, "duration": "PT1H", "members": [29, 30, 31]},
            {"run": "2024-01-01T02:00:00Z", "leads": leads, "duration": "PT1H", "members": [32, 33, 34]},
        ]}),
    );
    let members = "[[file_dims]]\nname = \"realization\"\nsize = 3\nchunk = 1\n";
    let config = dataset(
        dir.path(),
        "mogreps",
        ("uk-ensemble", PARAMETER),
        &uk_dims(3, "0h", 2, members),
        &mounts(&[(ENSEMBLE_BUCKET, &files.bucket)]),
    );
    assert_eq!(ingest_all(&config, &files.lines).files, 6);
    read_both(
        &config,
        &files,
        &files.notifications,
        &[
            "\"checked\": 6",
            "\"mosg\": \"uk_ens\"",
            "[[26, 27, 28], [29, 30, 31], [32, 33, 34]]",
        ],
    );
}

#[test]
fn auxiliary_coordinates_of_an_iris_saved_file_are_kept_and_checked_against_later_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = Files::write(
        dir.path(),
        "bucket",
        &serde_json::json!({"ny": 130, "nx": 140, "runs": [
            {"run": "2024-01-01T00:00:00Z", "leads": [0, 3600], "duration": "PT1H", "model_levels": 3},
            {"run": "2024-01-01T01:00:00Z", "leads": [0], "duration": "PT1H", "model_levels": 3,
             "orography_offset": 1.0},
        ]}),
    );
    let levels = "[[file_dims]]\nname = \"model_level_number\"\nsize = 3\nchunk = 1\n";
    let config = dataset(
        dir.path(),
        "levels",
        (MODEL, PARAMETER),
        &uk_dims(2, "0h", 2, levels),
        &match_today(&files.bucket),
    );
    // The first files fix the dataset's static variables (decode runs files in parallel, so
    // the later file goes in a run of its own).
    assert_eq!(ingest_all(&config, &files.lines[..2]).files, 2);
    // The 01Z file's orography differs from the dataset's: refused, with the variable named.
    let summary = ingest(&config, &files.lines[2..]);
    assert_eq!(summary.files, 0);
    assert_eq!(summary.dead_letters.len(), 1, "{:?}", summary.dead_letters);
    assert!(
        summary.dead_letters[0]
            .reason
            .contains("`surface_altitude` values differ"),
        "{}",
        summary.dead_letters[0].reason
    );
    // Only the 00Z files went in: read against those.
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, files.lines[..2].join("\n")).expect("kept notices");
    read_both(
        &config,
        &files,
        &kept,
        &[
            "\"projection_y_coordinate_bnds\"",
            "\"level_height\"",
            "\"level_height_bnds\"",
            "\"sigma_bnds\"",
            "\"surface_altitude\"",
        ],
    );
}

#[test]
fn an_hourly_maximum_keeps_its_per_file_time_and_lead_time_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Hourly maxima start at PT1H.
    let leads = [3600, 7200, 10_800];
    let files = Files::write(
        dir.path(),
        "bucket",
        &serde_json::json!({"ny": 130, "nx": 140, "runs": [
            {"run": "2024-01-01T00:00:00Z", "leads": leads, "duration": "PT3H", "maximum": true},
            {"run": "2024-01-01T01:00:00Z", "leads": leads, "duration": "PT3H", "maximum": true},
        ]}),
    );
    let config = dataset(
        dir.path(),
        "tmax",
        (MODEL, &format!("{PARAMETER}_max-PT01H")),
        &uk_dims(2, "1h", 3, ""),
        &match_today(&files.bucket),
    );
    assert_eq!(ingest_all(&config, &files.lines).files, 6);
    read_both(&config, &files, &files.notifications, &["\"checked\": 6"]);
}

#[test]
fn a_global_pressure_level_field_ingests_with_its_grid_and_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = Files::write(
        dir.path(),
        "bucket",
        &serde_json::json!({"ny": 130, "nx": 140, "runs": [
            {"run": "2024-01-01T00:00:00Z", "leads": [0, 3600], "duration": "PT1H",
             "grid": "global", "pressures": [100_000, 85_000, 50_000]},
            {"run": "2024-01-01T06:00:00Z", "leads": [0, 3600], "duration": "PT1H",
             "grid": "global", "pressures": [100_000, 85_000, 50_000]},
        ]}),
    );
    let dims = "[rolling]\ndim = \"forecast_reference_time\"\nstep = \"6h\"\nwindow = 2\n\
                [[message_dims]]\nname = \"forecast_period\"\nstep = \"1h\"\nsize = 2\n\
                [[file_dims]]\nname = \"pressure\"\nsize = 3\nchunk = 1\n\
                [[file_dims]]\nname = \"latitude\"\nsize = 130\nchunk = 65\n\
                [[file_dims]]\nname = \"longitude\"\nsize = 140\nchunk = 70\n";
    let config = dataset(
        dir.path(),
        "global",
        (
            "global-deterministic-10km",
            "temperature_on_pressure_levels",
        ),
        dims,
        &match_today(&files.bucket),
    );
    let summary = ingest_all(&config, &files.lines);
    assert_eq!((summary.files, summary.direct_reads), (4, 4));
    read_both(
        &config,
        &files,
        &files.notifications,
        &[
            "\"checked\": 4",
            "\"mosg\": \"gl_det\"",
            "\"latitude_bnds\"",
        ],
    );
}

#[test]
fn the_first_file_of_every_shape_gives_its_data_variable_to_a_dataset_that_leaves_it_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leads = |start: &str, size: u32, step: &str| {
        format!(
            "[rolling]\ndim = \"forecast_reference_time\"\nstep = \"{step}\"\nwindow = 2\n\
             [[message_dims]]\nname = \"forecast_period\"\nstart = \"{start}\"\nstep = \"1h\"\n\
             size = {size}\n"
        )
    };
    let run = |extra: serde_json::Value, run: &str, leads: &[i64]| {
        let mut spec = serde_json::json!({"run": run, "leads": leads, "duration": "PT3H"});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        spec
    };
    // Every shape of FEED.md: bounds and a grid mapping beside the field, members, an iris
    // file's auxiliary coordinates, per-file time bounds, the global grid on pressure levels.
    let max_parameter = format!("{PARAMETER}_max-PT01H");
    let shapes = [
        (
            "single",
            BUCKET,
            serde_json::json!({}),
            (MODEL, PARAMETER),
            leads("0h", 2, "1h"),
        ),
        (
            "members",
            ENSEMBLE_BUCKET,
            serde_json::json!({"members": [26, 27, 28]}),
            ("uk-ensemble", PARAMETER),
            leads("0h", 2, "1h"),
        ),
        (
            "levels",
            BUCKET,
            serde_json::json!({"model_levels": 3}),
            (MODEL, PARAMETER),
            leads("0h", 2, "1h"),
        ),
        (
            "maximum",
            BUCKET,
            serde_json::json!({"maximum": true}),
            (MODEL, max_parameter.as_str()),
            leads("1h", 2, "1h"),
        ),
        (
            "global",
            BUCKET,
            serde_json::json!({"grid": "global", "pressures": [100_000, 85_000]}),
            (
                "global-deterministic-10km",
                "temperature_on_pressure_levels",
            ),
            leads("0h", 2, "6h"),
        ),
    ];
    for (shape, bucket, extra, rule, dims) in shapes {
        let first = if shape == "maximum" { 3600 } else { 0 };
        let files = Files::write(
            &dir.path().join(shape),
            bucket,
            &serde_json::json!({"ny": 130, "nx": 140, "runs": [
                run(extra.clone(), "2024-01-01T00:00:00Z", &[first, first + 3600]),
                run(extra, "2024-01-01T06:00:00Z", &[first]),
            ]}),
        );
        let sources = mounts(&[(bucket, &files.bucket)]);
        let stores = dir.path().join(shape);
        let named = dataset_of(&stores, "named", "air_temperature", rule, &dims, &sources);
        let taken = dataset_of(&stores, "taken", "*", rule, &dims, &sources);
        for config in [&named, &taken] {
            assert_eq!(ingest_all(config, &files.lines).files, 3, "{shape}");
        }
        let record = roller_test_support::rolling_store(&taken).record();
        assert_eq!(record.layout.variable, "air_temperature", "{shape}");
        // The same chunks and metadata; the record and the reference file name their store.
        let objects = |config: &DatasetConfig| {
            let mut objects = roller_test_support::snapshot(&config.store.path);
            objects.retain(|key, _| {
                !["roller.json", "roller-layout.json", "reference.json"].contains(&key.as_str())
            });
            objects
        };
        assert_eq!(objects(&taken), objects(&named), "{shape}");
    }
}
