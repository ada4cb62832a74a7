//! `roller check --config CATALOG` lists the datasets a catalog defines; a command that takes
//! one dataset says when it is given a catalog.

use std::process::Command;

const CATALOG: &str = r#"
[defaults]
variable = "air_temperature"
rolling = { dim = "forecast_reference_time", step = "1h", window = 6 }
store = { path = "STORES/{name}" }

[[defaults.message_dims]]
name = "forecast_period"
step = "1h"
size = 3

[[defaults.file_dims]]
name = "projection_y_coordinate"
size = 20
chunk = 10

[[defaults.file_dims]]
name = "projection_x_coordinate"
size = 30
chunk = 30

[[dataset]]
name = "ukv-screen-temperature"
match = { model = "uk-deterministic-2km", name = "temperature_at_screen_level" }

[[dataset]]
name = "ukv-max-screen-temperature"
match = { model = "uk-deterministic-2km", name = "temperature_at_screen_level_max-PT01H" }
rolling = { window = 12 }
"#;

/// Runs `roller ARGS --config C1 --config C2 ...`.
fn roller(args: &[&str], configs: &[&std::path::Path]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roller"));
    command.args(args);
    for config in configs {
        command.arg("--config").arg(config);
    }
    command.output().expect("run roller")
}

#[test]
fn check_lists_a_catalogs_datasets_and_single_dataset_commands_refuse_a_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stores = dir.path().join("stores");
    let path = dir.path().join("catalog.toml");
    std::fs::write(
        &path,
        CATALOG.replace("STORES", &stores.display().to_string()),
    )
    .expect("write catalog");

    let check = roller(&["check"], &[&path]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(stdout.contains("defines 2 datasets, all valid"), "{stdout}");
    for line in [
        "ukv-screen-temperature: uk-deterministic-2km / temperature_at_screen_level (air_temperature), 6 runs of 1h, 3 lead times",
        "ukv-max-screen-temperature: uk-deterministic-2km / temperature_at_screen_level_max-PT01H (air_temperature), 12 runs of 1h",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in\n{stdout}");
    }
    assert!(
        stdout.contains(&format!(
            "in {}",
            stores.join("ukv-max-screen-temperature").display()
        )),
        "{stdout}"
    );

    // Several files: every dataset of each, each name once.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        CATALOG
            .replace("STORES", &stores.display().to_string())
            .replace("ukv-", "other-"),
    )
    .expect("write");
    let both = roller(&["check"], &[&path, &other]);
    let stdout = String::from_utf8_lossy(&both.stdout);
    assert!(both.status.success(), "{both:?}");
    assert!(
        stdout.contains("other-max-screen-temperature: "),
        "{stdout}"
    );
    let twice = roller(&["check"], &[&path, &path]);
    assert!(!twice.status.success(), "{twice:?}");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("configured twice"));

    let roll = roller(&["roll", "--via", "local"], &[&path]);
    let stderr = String::from_utf8_lossy(&roll.stderr);
    assert!(!roll.status.success(), "{roll:?}");
    assert!(stderr.contains("is a catalog of 2 datasets"), "{stderr}");

    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        CATALOG
            .replace("STORES", &stores.display().to_string())
            .replace("window = 12", "window = 0"),
    )
    .expect("write");
    let check = roller(&["check"], &[&broken]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success(), "{check:?}");
    assert!(
        stderr.contains("dataset 1 (`ukv-max-screen-temperature`)")
            && stderr.contains("rolling.window"),
        "{stderr}"
    );
}
