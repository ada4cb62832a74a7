//! Files shaped as the Met Office publishes them today (written by netCDF4-python with the real
//! header: 128 x 128 zlib-1 chunks, `least_significant_digit`, bounds variables, scalar
//! coordinates, `mosg__*` global attributes), announced as S3 events and read from a mounted
//! bucket: xarray over roller-serve and through the reference file reads the values netCDF4
//! reads, the valid time as datetimes, the attributes, and no `bounds` pointing at nothing.

mod common;

use std::time::Duration;

use common::InProcessServer;
use roller_core::config::DatasetConfig;
use roller_core::embedded;
use roller_serve::catalog::Catalog;
use roller_test_support::feed::{match_today, mounts, ENSEMBLE_BUCKET, MODEL, PARAMETER};
use roller_test_support::{ingest, run_python};

#[test]
fn xarray_reads_todays_files_with_valid_time_attributes_and_consistent_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    let hours: Vec<i64> = (0..4).map(|h| h * 3600).collect();
    let spec = serde_json::json!({"ny": 200, "nx": 260, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": hours, "duration": "PT3H"},
        {"run": "2024-01-01T01:00:00Z", "leads": hours, "duration": "PT3H"},
    ]});
    run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let notifications = bucket.join("notifications.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&notifications)
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    for format in [3, 2] {
        let name = format!("ukv{format}");
        let text = format!(
            r#"name = "{name}"
variable = "air_temperature"
[match]
model = "{MODEL}"
name = "{PARAMETER}"
[rolling]
dim = "forecast_reference_time"
step = "1h"
window = 2
[[message_dims]]
name = "forecast_period"
step = "1h"
size = 4
[[file_dims]]
name = "projection_y_coordinate"
size = 200
chunk = 100
[[file_dims]]
name = "projection_x_coordinate"
size = 260
chunk = 130
[encoding]
format = {format}
[store]
path = "{}"
fsync = false
[reference]
enabled = true
{}"#,
            dir.path().join(&name).display(),
            match_today(&bucket)
        );
        let config = DatasetConfig::from_toml(&text).expect("config");
        let summary = ingest(&config, &lines);
        assert!(
            summary.dead_letters.is_empty(),
            "{:?}",
            summary.dead_letters
        );
        let store = embedded::open_store(&config).expect("store");
        let catalog =
            Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
        let server = InProcessServer::start(catalog);
        let reference = dir.path().join(&name).join("reference.json");
        for target in [
            server.url(&format!("/{name}")),
            reference.display().to_string(),
        ] {
            let out = run_python(
                "read_feed.py",
                &[
                    &target,
                    &bucket.display().to_string(),
                    &notifications.display().to_string(),
                ],
            );
            assert!(
                out.contains("\"checked\": 8") && out.contains("\"mosg\": \"uk_det\""),
                "{target}: {out}"
            );
        }
    }
}

#[test]
fn mogreps_uk_runs_with_rotating_members_all_go_in_and_show_their_own_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("ensemble");
    let leads = [0, 3600];
    let spec = serde_json::json!({"ny": 130, "nx": 140, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": leads, "duration": "PT1H", "members": [26, 27, 28]},
        {"run": "2024-01-01T01:00:00Z", "leads": leads, "duration": "PT1H", "members": [29, 30, 31]},
        {"run": "2024-01-01T02:00:00Z", "leads": leads, "duration": "PT1H", "members": [32, 33, 34]},
    ]});
    run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let notifications = bucket.join("notifications.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&notifications)
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    let text = format!(
        r#"name = "mogreps"
variable = "air_temperature"
[match]
model = "uk-ensemble"
name = "{PARAMETER}"
[rolling]
dim = "forecast_reference_time"
step = "1h"
window = 3
[[message_dims]]
name = "forecast_period"
step = "1h"
size = 2
[[file_dims]]
name = "realization"
size = 3
chunk = 1
[[file_dims]]
name = "projection_y_coordinate"
size = 130
chunk = 130
[[file_dims]]
name = "projection_x_coordinate"
size = 140
chunk = 140
[store]
path = "{}"
fsync = false
[reference]
enabled = true
{}"#,
        dir.path().join("mogreps").display(),
        mounts(&[(ENSEMBLE_BUCKET, &bucket)])
    );
    let config = DatasetConfig::from_toml(&text).expect("config");
    let summary = ingest(&config, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!(summary.files, 6);
    let store = embedded::open_store(&config).expect("store");
    let catalog =
        Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
    let server = InProcessServer::start(catalog);
    let reference = dir.path().join("mogreps").join("reference.json");
    for target in [server.url("/mogreps"), reference.display().to_string()] {
        let out = run_python(
            "read_feed.py",
            &[
                &target,
                &bucket.display().to_string(),
                &notifications.display().to_string(),
            ],
        );
        assert!(
            out.contains("\"checked\": 6")
                && out.contains("\"mosg\": \"uk_ens\"")
                && out.contains("[[26, 27, 28], [29, 30, 31], [32, 33, 34]]"),
            "{target}: {out}"
        );
    }
}

#[test]
fn auxiliary_coordinates_of_an_iris_saved_file_are_kept_and_checked_against_later_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    let spec = serde_json::json!({"ny": 130, "nx": 140, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": [0, 3600], "duration": "PT1H", "model_levels": 3},
        {"run": "2024-01-01T01:00:00Z", "leads": [0], "duration": "PT1H", "model_levels": 3,
         "orography_offset": 1.0},
    ]});
    run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let notifications = bucket.join("notifications.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&notifications)
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    let text = format!(
        r#"name = "levels"
variable = "air_temperature"
[match]
model = "{MODEL}"
name = "{PARAMETER}"
[rolling]
dim = "forecast_reference_time"
step = "1h"
window = 2
[[message_dims]]
name = "forecast_period"
step = "1h"
size = 2
[[file_dims]]
name = "model_level_number"
size = 3
chunk = 1
[[file_dims]]
name = "projection_y_coordinate"
size = 130
chunk = 130
[[file_dims]]
name = "projection_x_coordinate"
size = 140
chunk = 140
[store]
path = "{}"
fsync = false
[reference]
enabled = true
{}"#,
        dir.path().join("levels").display(),
        match_today(&bucket)
    );
    let config = DatasetConfig::from_toml(&text).expect("config");
    // The first files fix the dataset's static variables (decode runs files in parallel, so
    // the later file goes in a run of its own).
    let first = ingest(&config, &lines[..2]);
    assert!(first.dead_letters.is_empty(), "{:?}", first.dead_letters);
    assert_eq!(first.files, 2);
    // The 01Z file's orography differs from the dataset's: refused, with the variable named.
    let summary = ingest(&config, &lines[2..]);
    assert_eq!(summary.files, 0);
    assert_eq!(summary.dead_letters.len(), 1, "{:?}", summary.dead_letters);
    assert!(
        summary.dead_letters[0]
            .reason
            .contains("`surface_altitude` values differ"),
        "{}",
        summary.dead_letters[0].reason
    );
    let store = embedded::open_store(&config).expect("store");
    let catalog =
        Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
    let server = InProcessServer::start(catalog);
    let reference = dir.path().join("levels").join("reference.json");
    // Only the 00Z files went in: read against those.
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, lines[..2].join("\n")).expect("kept notices");
    for target in [server.url("/levels"), reference.display().to_string()] {
        let out = run_python(
            "read_feed.py",
            &[
                &target,
                &bucket.display().to_string(),
                &kept.display().to_string(),
            ],
        );
        for name in [
            "projection_y_coordinate_bnds",
            "level_height",
            "level_height_bnds",
            "sigma_bnds",
            "surface_altitude",
        ] {
            assert!(
                out.contains(&format!("\"{name}\"")),
                "{target}: {name}: {out}"
            );
        }
    }
}

#[test]
fn an_hourly_maximum_keeps_its_per_file_time_and_lead_time_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    // Hourly maxima start at PT1H.
    let leads = [3600, 7200, 10_800];
    let spec = serde_json::json!({"ny": 130, "nx": 140, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": leads, "duration": "PT3H", "maximum": true},
        {"run": "2024-01-01T01:00:00Z", "leads": leads, "duration": "PT3H", "maximum": true},
    ]});
    run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let notifications = bucket.join("notifications.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&notifications)
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    let text = format!(
        r#"name = "tmax"
variable = "air_temperature"
[match]
model = "{MODEL}"
name = "{PARAMETER}_max-PT01H"
[rolling]
dim = "forecast_reference_time"
step = "1h"
window = 2
[[message_dims]]
name = "forecast_period"
start = "1h"
step = "1h"
size = 3
[[file_dims]]
name = "projection_y_coordinate"
size = 130
chunk = 130
[[file_dims]]
name = "projection_x_coordinate"
size = 140
chunk = 140
[store]
path = "{}"
fsync = false
[reference]
enabled = true
{}"#,
        dir.path().join("tmax").display(),
        match_today(&bucket)
    );
    let config = DatasetConfig::from_toml(&text).expect("config");
    let summary = ingest(&config, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!(summary.files, 6);
    let store = embedded::open_store(&config).expect("store");
    let catalog =
        Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
    let server = InProcessServer::start(catalog);
    let reference = dir.path().join("tmax").join("reference.json");
    for target in [server.url("/tmax"), reference.display().to_string()] {
        let out = run_python(
            "read_feed.py",
            &[
                &target,
                &bucket.display().to_string(),
                &notifications.display().to_string(),
            ],
        );
        assert!(out.contains("\"checked\": 6"), "{target}: {out}");
    }
}

#[test]
fn a_global_pressure_level_field_ingests_with_its_grid_and_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = dir.path().join("bucket");
    let spec = serde_json::json!({"ny": 130, "nx": 140, "runs": [
        {"run": "2024-01-01T00:00:00Z", "leads": [0, 3600], "duration": "PT1H",
         "grid": "global", "pressures": [100_000, 85_000, 50_000]},
        {"run": "2024-01-01T06:00:00Z", "leads": [0, 3600], "duration": "PT1H",
         "grid": "global", "pressures": [100_000, 85_000, 50_000]},
    ]});
    run_python(
        "make_feed_files.py",
        &[&bucket.display().to_string(), &spec.to_string()],
    );
    let notifications = bucket.join("notifications.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&notifications)
        .expect("notices")
        .lines()
        .map(str::to_owned)
        .collect();
    let text = format!(
        r#"name = "global"
variable = "air_temperature"
[match]
model = "global-deterministic-10km"
name = "temperature_on_pressure_levels"
[rolling]
dim = "forecast_reference_time"
step = "6h"
window = 2
[[message_dims]]
name = "forecast_period"
step = "1h"
size = 2
[[file_dims]]
name = "pressure"
size = 3
chunk = 1
[[file_dims]]
name = "latitude"
size = 130
chunk = 65
[[file_dims]]
name = "longitude"
size = 140
chunk = 70
[store]
path = "{}"
fsync = false
[reference]
enabled = true
{}"#,
        dir.path().join("global").display(),
        match_today(&bucket)
    );
    let config = DatasetConfig::from_toml(&text).expect("config");
    let summary = ingest(&config, &lines);
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!((summary.files, summary.direct_reads), (4, 4));
    let store = embedded::open_store(&config).expect("store");
    let catalog =
        Catalog::with_stores(vec![(config.clone(), store)], Duration::ZERO).expect("catalog");
    let server = InProcessServer::start(catalog);
    let reference = dir.path().join("global").join("reference.json");
    for target in [server.url("/global"), reference.display().to_string()] {
        let out = run_python(
            "read_feed.py",
            &[
                &target,
                &bucket.display().to_string(),
                &notifications.display().to_string(),
            ],
        );
        assert!(
            out.contains("\"checked\": 4")
                && out.contains("\"mosg\": \"gl_det\"")
                && out.contains("\"latitude_bnds\""),
            "{target}: {out}"
        );
    }
}
