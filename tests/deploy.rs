//! The deployment files, checked without a container engine: `docker-compose config` accepts
//! the compose file, every service built from our Dockerfile runs a binary this workspace
//! builds, and every environment variable it sets is one our binaries read (or a `ROLLER__*`
//! override that applies to the dataset config it mounts). Then the same topology runs as local
//! processes (nats-server, SeaweedFS for MinIO, each service's binary with the environment the
//! compose file gives it) and ingests the sample stream end to end.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use roller_core::config::{DatasetConfig, Location};
use roller_test_support::http::request;
use roller_test_support::nats::{free_port, spawn_isolated, NatsServer};
use roller_test_support::s3::S3Server;

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

/// A service's environment as name and value (numbers and booleans as their YAML text).
fn environment(service: &serde_yaml::Value) -> Vec<(String, String)> {
    service["environment"]
        .as_mapping()
        .expect("environment")
        .iter()
        .map(|(key, value)| {
            let value = value.as_str().map_or_else(
                || {
                    serde_yaml::to_string(value)
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                },
                str::to_owned,
            );
            (key.as_str().expect("variable name").to_owned(), value)
        })
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

        let mut overrides = Vec::new();
        for (key, value) in environment(service) {
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
        let config_path = environment(service)
            .into_iter()
            .find_map(|(k, v)| (k == "ROLLER_CONFIG").then_some(v))
            .expect("ROLLER_CONFIG");
        let volumes = strings(&service["volumes"]);
        let host = volumes
            .iter()
            .find_map(|v| {
                let mut parts = v.split(':');
                let host = parts.next()?;
                (parts.next()? == config_path.as_str()).then_some(host.to_owned())
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

/// A binary built next to this test (`target/<profile>/<name>`).
fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run the whole workspace's tests (cargo nextest run --workspace)",
        path.display()
    );
    path
}

/// Child processes, killed on drop.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A compose service as a local process: its command and environment, with the container's
/// hosts, ports, paths and credentials replaced by this machine's.
struct Local<'a> {
    nats: String,
    s3: &'a S3Server,
    config: std::path::PathBuf,
    sources: std::path::PathBuf,
    logs: std::path::PathBuf,
}

impl Local<'_> {
    fn command(
        &self,
        name: &str,
        service: &serde_yaml::Value,
        extra: &[(&str, String)],
    ) -> Command {
        let mut args = strings(&service["entrypoint"]);
        args.extend(strings(&service["command"]));
        let mut command = Command::new(built_binary(&args[0]));
        for arg in &args[1..] {
            command.arg(self.path(arg));
        }
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in environment(service) {
            let value = match key.as_str() {
                "NATS_URL" => self.nats.clone(),
                "ROLLER__S3__ENDPOINT_URL" => self.s3.endpoint(),
                // Several stages share this host: each gets its own port.
                "ROLLER_HEALTH_LISTEN" | "ROLLER_SERVE_LISTEN" => {
                    format!("127.0.0.1:{}", free_port())
                }
                _ => self.path(&value),
            };
            command.env(key, value);
        }
        command.envs(self.s3.env());
        command.envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).expect("log");
        command.stdout(log.try_clone().expect("log")).stderr(log);
        command
    }

    /// A container path as the local path it stands for.
    fn path(&self, text: &str) -> String {
        if text == "/etc/zarr-roller/ukv.toml" {
            self.config.display().to_string()
        } else if let Some(rest) = text.strip_prefix("/data/sources") {
            format!("{}{rest}", self.sources.display())
        } else {
            text.to_owned()
        }
    }
}

#[test]
fn the_compose_topology_as_local_processes_ingests_the_sample_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let compose = compose_config();
    let services = &compose["services"];
    let nats = NatsServer::start(&dir.path().join("nats"));
    let s3 = S3Server::start(&dir.path().join("s3"));
    let local = Local {
        nats: nats.url(),
        s3: &s3,
        config: workspace_root().join("examples/ukv-air-temperature.toml"),
        sources: dir.path().join("sources"),
        logs: dir.path().join("logs"),
    };
    std::fs::create_dir_all(&local.logs).expect("logs");
    std::fs::create_dir_all(&local.sources).expect("sources");
    let logs = || {
        std::fs::read_dir(&local.logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                format!(
                    "--- {}\n{}",
                    e.path().display(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                )
            })
            .collect::<String>()
    };

    // The one-shot setup, then every long-running service, then the sample stream.
    let status = spawn_isolated(&mut local.command("setup", &services["setup"], &[]))
        .and_then(|mut c| c.wait())
        .expect("setup");
    assert!(status.success(), "setup failed\n{}", logs());
    let mut processes = Processes(Vec::new());
    let serve_port = free_port();
    for name in [
        "roller-fetch",
        "roller-decode",
        "roller-write",
        "roller-commit",
        "roller-scheduler",
        "roller-serve",
    ] {
        let extra = if name == "roller-serve" {
            vec![("ROLLER_SERVE_LISTEN", format!("127.0.0.1:{serve_port}"))]
        } else {
            Vec::new()
        };
        let child = spawn_isolated(&mut local.command(name, &services[name], &extra))
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        processes.0.push(child);
    }
    let status = spawn_isolated(&mut local.command("sample-data", &services["sample-data"], &[]))
        .and_then(|mut c| c.wait())
        .expect("sample-data");
    assert!(status.success(), "sample-data failed\n{}", logs());

    // Two runs of three lead times become visible, as roller-serve's status page shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", serve_port)).is_ok() {
            let page = request(serve_port, "GET", "/", &[]);
            let html = String::from_utf8_lossy(&page.body);
            if html.matches("<td class=\"ok\"").count() == 6 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sample did not become visible\n{}",
            logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let meta = request(serve_port, "GET", "/ukv-air-temperature/zarr.json", &[]);
    assert_eq!(meta.status, 200);
    for (i, child) in processes.0.iter_mut().enumerate() {
        assert!(
            child.try_wait().expect("status").is_none(),
            "service {i} exited\n{}",
            logs()
        );
    }
}
