//! The deployment files, checked without a container engine: `docker-compose config` accepts
//! the compose file, every service built from our Dockerfile runs a binary this workspace
//! builds, and every environment variable it sets is one our binaries read (or a `ROLLER__*`
//! override that applies to the dataset config it mounts).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use roller_core::config::{DatasetConfig, Location};

/// The workspace root (this crate is `tests/`).
fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The AWS SDK's standard variables (credentials chain, region, endpoint).
const AWS_STANDARD: [&str; 9] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
];

/// The compose file as `docker-compose config` resolves it.
fn compose_config() -> serde_yaml::Value {
    let out = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(workspace_root())
        .output()
        .expect("run docker-compose (Debian's docker-compose package; ./dev test installs it)");
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).expect("docker-compose config prints YAML")
}

/// Names of every binary target in the workspace.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_compose_file_is_valid_and_runs_our_binaries_with_variables_they_read() {
    let compose = compose_config();
    let services = compose["services"].as_mapping().expect("services");
    let binaries = workspace_binaries();
    let mut known: BTreeSet<String> = roller_nats::run::environment_variables()
        .into_iter()
        .chain(roller_serve::run::environment_variables())
        .collect();
    known.extend(AWS_STANDARD.iter().map(|s| (*s).to_owned()));

    let mut ours = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name").to_owned();
        if !service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("zarr-roller"))
        {
            continue;
        }
        assert!(
            service["build"].is_mapping(),
            "{name} is not built from the Dockerfile"
        );
        let entrypoint = strings(&service["entrypoint"]);
        let command = strings(&service["command"]);
        let program = entrypoint.first().or(command.first()).expect("a command");
        assert!(
            binaries.contains(program),
            "{name} runs `{program}`, which the workspace does not build ({binaries:?})"
        );
        ours.insert(name.clone());

        // Scaling with --scale needs no fixed name, and no host port (but on roller-serve).
        assert!(service["container_name"].is_null(), "{name}");
        if name != "roller-serve" {
            assert!(service["ports"].is_null(), "{name} publishes a port");
        }

        let environment = service["environment"].as_mapping().expect("environment");
        let mut overrides = Vec::new();
        for (key, value) in environment {
            let key = key.as_str().expect("variable name").to_owned();
            let value = value.as_str().map_or_else(
                || {
                    serde_yaml::to_string(value)
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                },
                str::to_owned,
            );
            if key.starts_with(roller_core::config::ENV_PREFIX) {
                overrides.push((key, value));
            } else {
                assert!(
                    known.contains(&key),
                    "{name} sets {key}, which no binary reads"
                );
            }
        }

        // The mounted dataset config, with the service's overrides, is a valid config.
        let config_path = environment
            .get("ROLLER_CONFIG")
            .and_then(|v| v.as_str())
            .expect("ROLLER_CONFIG");
        let volumes = strings(&service["volumes"]);
        let host = volumes
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                let host = parts.next()?;
                (parts.next()? == config_path).then_some(host.to_owned())
            })
            .unwrap_or_else(|| panic!("{name} does not mount {config_path}: {volumes:?}"));
        let text = std::fs::read_to_string(Path::new(&host)).expect("mounted config");
        let config = DatasetConfig::from_toml_with_env(&text, &host, overrides)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(Location::parse(&config.store.path), Ok(Location::S3 { .. })),
            "{name}: the store is not on the S3 service"
        );
    }
    for expected in [
        "setup",
        "roller-fetch",
        "roller-decode",
        "roller-write",
        "roller-commit",
        "roller-scheduler",
        "roller-serve",
        "sample-data",
    ] {
        assert!(ours.contains(expected), "no {expected} service: {ours:?}");
    }
}
