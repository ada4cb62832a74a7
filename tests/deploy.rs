//! The deployment files, checked without a container engine: `docker-compose config` accepts
//! the compose file, every service built from our Dockerfile runs a binary this workspace
//! builds, and every environment variable it sets is one our binaries read (or a `ROLLER__*`
//! override that applies to the dataset config it mounts). Then the same topology runs as local
//! processes (nats-server, SeaweedFS for MinIO, each service's binary with the environment the
//! compose file gives it) and ingests the sample stream end to end.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use roller_model::config::{DatasetConfig, Location};
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

/// The compose services that run until stopped (the others are one-shots).
const LONG_RUNNING: [&str; 6] = [
    "roller-fetch",
    "roller-decode",
    "roller-write",
    "roller-commit",
    "roller-scheduler",
    "roller-serve",
];

/// The bridge's compose service (started only with `--profile bridge`: it needs a real queue).
const BRIDGE: &str = "roller-bridge";

/// Every variable our binaries read, and the AWS SDK's standard ones.
fn known_variables() -> BTreeSet<String> {
    roller_nats::run::environment_variables()
        .into_iter()
        .chain(roller_nats::serve::environment_variables())
        .chain(roller_nats::bridge::environment_variables())
        .chain(AWS_STANDARD.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// Runs `program args` in the workspace root (with `env` besides the test's); its standard
/// output, or a panic with its errors.
fn output_of(program: &str, args: &[&str], env: &[(&str, &str)], what: &str) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The compose file as `docker-compose config` resolves it, with `env` set (e.g.
/// `ROLLER_DATASETS`).
fn compose_config(env: &[(&str, &str)]) -> serde_yaml::Value {
    let out = output_of(
        "docker-compose",
        &["-f", "docker-compose.yml", "config"],
        env,
        "docker-compose config (Debian's docker-compose package; ./dev test installs it)",
    );
    serde_yaml::from_slice(&out).expect("docker-compose config prints YAML")
}

/// Names of every binary target in the workspace.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = output_of(
        &cargo,
        &[
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ],
        &[],
        "cargo metadata",
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out).expect("metadata JSON");
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
    for datasets in [None, Some("./examples/ukv-all-parameters.toml")] {
        let env: Vec<(&str, &str)> = datasets
            .map(|d| ("ROLLER_DATASETS", d))
            .into_iter()
            .collect();
        check_compose_services(&compose_config(&env), datasets.map_or(1, |_| 51));
    }
}

/// Checks every zarr-roller service of a resolved compose file: it runs a binary we build,
/// sets only variables our binaries read, and mounts a config (of `datasets` datasets) whose
/// stores are each its own place on the S3 service.
fn check_compose_services(compose: &serde_yaml::Value, datasets: usize) {
    let services = compose["services"].as_mapping().expect("services");
    let binaries = workspace_binaries();
    let known = known_variables();

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
            if key.starts_with(roller_model::config::ENV_PREFIX) {
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
        let configs = roller_model::catalog::from_toml_with_env(&text, &host, overrides)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(configs.len(), datasets, "{name}: {host}");
        let stores: BTreeSet<_> = configs.iter().map(|c| c.store.path.clone()).collect();
        assert_eq!(stores.len(), datasets, "{name}: a store per dataset");
        for config in &configs {
            assert!(
                matches!(Location::parse(&config.store.path), Ok(Location::S3 { .. })),
                "{name}: the store of {} is not on the S3 service",
                config.name
            );
        }
    }
    for expected in ["setup", "sample-data", BRIDGE].iter().chain(&LONG_RUNNING) {
        assert!(ours.contains(*expected), "no {expected} service: {ours:?}");
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
        if text == "/etc/zarr-roller/datasets.toml" {
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
    let compose = compose_config(&[]);
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
    for name in LONG_RUNNING {
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
            let page = request(serve_port, "GET", "/_status/ukv-air-temperature", &[]);
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

// ---- The Helm chart ----

/// `quote`, as Helm's (sprig): the value in double quotes, with `"` and `\` escaped.
fn quote(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let [value] = args else {
        return Err(gtmpl::FuncError::ExactlyXArgs("quote".into(), 1));
    };
    let text = value.to_string().replace('\\', "\\\\").replace('"', "\\\"");
    Ok(gtmpl::Value::String(format!("\"{text}\"")))
}

/// `indent N text`, as Helm's (sprig): every line of `text` indented by N spaces.
fn indent(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let [width, text] = args else {
        return Err(gtmpl::FuncError::ExactlyXArgs("indent".into(), 2));
    };
    let width: u64 = gtmpl::from_value(width).ok_or(gtmpl::FuncError::UnableToConvertFromValue)?;
    let pad = " ".repeat(usize::try_from(width).unwrap_or(0));
    let text = text.to_string();
    let lines: Vec<String> = text.lines().map(|l| format!("{pad}{l}")).collect();
    Ok(gtmpl::Value::String(lines.join("\n")))
}

/// `upper`, as Helm's (sprig).
fn upper(args: &[gtmpl::Value]) -> Result<gtmpl::Value, gtmpl::FuncError> {
    let [value] = args else {
        return Err(gtmpl::FuncError::ExactlyXArgs("upper".into(), 1));
    };
    Ok(gtmpl::Value::String(value.to_string().to_uppercase()))
}

fn to_gtmpl(value: &serde_yaml::Value) -> gtmpl::Value {
    match value {
        serde_yaml::Value::Null => gtmpl::Value::Nil,
        serde_yaml::Value::Bool(b) => gtmpl::Value::Bool(*b),
        serde_yaml::Value::Number(n) => n
            .as_u64()
            .map(gtmpl::Value::from)
            .or_else(|| n.as_i64().map(gtmpl::Value::from))
            .unwrap_or_else(|| gtmpl::Value::from(n.as_f64().unwrap_or(0.0))),
        serde_yaml::Value::String(s) => gtmpl::Value::String(s.clone()),
        serde_yaml::Value::Sequence(items) => {
            gtmpl::Value::Array(items.iter().map(to_gtmpl).collect())
        }
        serde_yaml::Value::Mapping(map) => gtmpl::Value::Map(
            map.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_gtmpl(v)))
                .collect(),
        ),
        serde_yaml::Value::Tagged(tagged) => to_gtmpl(&tagged.value),
    }
}

/// Merges `over` into `base` as Helm merges a values file into the defaults.
fn merge(base: &mut serde_yaml::Value, over: &serde_yaml::Value) {
    match (base, over) {
        (serde_yaml::Value::Mapping(base), serde_yaml::Value::Mapping(over)) => {
            for (key, value) in over {
                match base.get_mut(key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, over) => *base = over.clone(),
    }
}

/// The chart rendered as Helm would (release `zarr-roller`), with the default values merged
/// with `values_file` if given: its documents, and the values used.
///
/// The templates use Go's template language and three of Helm's functions (`quote`,
/// `indent`, `upper`), which this renderer implements as sprig does; no `include`, `toYaml`
/// or other sprig functions, so the chart renders the same here and under `helm template`.
fn render_chart(values_file: Option<&str>) -> (Vec<serde_yaml::Value>, serde_yaml::Value) {
    let chart = workspace_root().join("deploy/zarr-roller");
    let read_yaml = |path: &Path| -> serde_yaml::Value {
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("chart file"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let mut values = read_yaml(&chart.join("values.yaml"));
    if let Some(file) = values_file {
        merge(&mut values, &read_yaml(&chart.join(file)));
    }
    let meta = read_yaml(&chart.join("Chart.yaml"));
    let context = gtmpl::Value::Map(
        [
            ("Values".to_owned(), to_gtmpl(&values)),
            ("Chart".to_owned(), to_gtmpl(&meta)),
            (
                "Release".to_owned(),
                to_gtmpl(
                    &serde_yaml::from_str("{Name: zarr-roller, Namespace: zarr-roller}")
                        .expect("release"),
                ),
            ),
        ]
        .into_iter()
        .collect(),
    );
    let mut documents = Vec::new();
    let mut templates: Vec<_> = std::fs::read_dir(chart.join("templates"))
        .expect("templates")
        .flatten()
        .map(|e| e.path())
        .collect();
    templates.sort();
    for path in templates {
        let mut template = gtmpl::Template::default();
        template.add_funcs(&[
            ("quote", quote as gtmpl::Func),
            ("indent", indent),
            ("upper", upper),
        ]);
        template
            .parse(std::fs::read_to_string(&path).expect("template"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = template
            .render(&gtmpl::Context::from(context.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !text.contains("<no value>"),
            "{}: a value is missing:\n{text}",
            path.display()
        );
        for document in text.split("\n---") {
            if document.trim().is_empty() || document.trim() == "---" {
                continue;
            }
            let parsed: serde_yaml::Value = serde_yaml::from_str(document)
                .unwrap_or_else(|e| panic!("{}: {e}\n{document}", path.display()));
            documents.push(parsed);
        }
    }
    (documents, values)
}

/// The chart's `dataset.names`.
fn dataset_names(values: &serde_yaml::Value) -> Vec<&str> {
    values["dataset"]["names"]
        .as_sequence()
        .expect("dataset.names")
        .iter()
        .map(|n| n.as_str().expect("a dataset name"))
        .collect()
}

/// Deserialises `document` into the Kubernetes API type `T` and checks that nothing was lost
/// (a misspelt or misplaced field would be dropped by the typed form).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(document: &serde_yaml::Value) -> T {
    let json: serde_json::Value = serde_json::to_value(document).expect("as JSON");
    let typed: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{json:#}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).expect("serialise");
    assert_eq!(
        back,
        json,
        "fields were lost in {}",
        std::any::type_name::<T>()
    );
    typed
}

/// KEDA's ScaledObject (not a built-in Kubernetes type): the fields the chart uses.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObject {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: ScaledObjectSpec,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScaledObjectSpec {
    scale_target_ref: ScaleTarget,
    min_replica_count: u32,
    max_replica_count: u32,
    triggers: Vec<Trigger>,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ScaleTarget {
    name: String,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Trigger {
    #[serde(rename = "type")]
    kind: String,
    metadata: std::collections::BTreeMap<String, String>,
}

/// Every object of a rendering, checked against its API type; returns the Deployments by
/// name and the ScaledObjects.
fn check_objects(
    documents: &[serde_yaml::Value],
    values: &serde_yaml::Value,
) -> (
    std::collections::BTreeMap<String, k8s_openapi::api::apps::v1::Deployment>,
    Vec<ScaledObject>,
) {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};

    let binaries = workspace_binaries();
    let known = known_variables();
    let mut deployments = std::collections::BTreeMap::new();
    let mut scaled = Vec::new();
    let mut kinds = BTreeSet::new();
    for document in documents {
        let kind = document["kind"].as_str().expect("kind").to_owned();
        kinds.insert(kind.clone());
        let pod = match kind.as_str() {
            "Deployment" => {
                let d: Deployment = typed(document);
                let pod = d.spec.as_ref().expect("spec").template.spec.clone();
                deployments.insert(d.metadata.name.clone().expect("name"), d);
                pod
            }
            "Job" => {
                let job: Job = typed(document);
                let annotations = job.metadata.annotations.clone().unwrap_or_default();
                assert!(
                    annotations.contains_key("helm.sh/hook"),
                    "the setup Job is a hook"
                );
                job.spec.expect("spec").template.spec
            }
            "ConfigMap" => {
                let map: ConfigMap = typed(document);
                let toml = &map.data.expect("data")["dataset.toml"];
                let configs = roller_model::catalog::from_toml_with_env(
                    toml,
                    "dataset.config",
                    std::iter::empty(),
                )
                .expect("the chart's dataset config");
                let defined: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
                let listed: BTreeSet<&str> = dataset_names(values).into_iter().collect();
                assert_eq!(
                    defined.iter().copied().collect::<BTreeSet<_>>(),
                    listed,
                    "dataset.names must list the datasets the config defines"
                );
                None
            }
            "Service" => {
                typed::<Service>(document);
                None
            }
            "ServiceAccount" => {
                typed::<ServiceAccount>(document);
                None
            }
            "ScaledObject" => {
                scaled.push(typed::<ScaledObject>(document));
                None
            }
            other => panic!("unexpected kind {other}"),
        };
        // Every container runs a binary we build, with variables our binaries read.
        for container in pod.iter().flat_map(|p| &p.containers) {
            let program = &container.command.as_ref().expect("command")[0];
            assert!(
                binaries.contains(program),
                "{program} is not a workspace binary"
            );
            for var in container.env.iter().flatten() {
                assert!(
                    known.contains(&var.name)
                        || var.name.starts_with(roller_model::config::ENV_PREFIX),
                    "{} is set but no binary reads it",
                    var.name
                );
            }
        }
    }
    for kind in [
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "no {kind} rendered");
    }
    (deployments, scaled)
}

#[test]
fn the_helm_chart_renders_valid_kubernetes_objects_with_default_values() {
    let (documents, values) = render_chart(None);
    let (deployments, scaled) = check_objects(&documents, &values);
    assert!(scaled.is_empty(), "KEDA is off by default");
    assert!(
        !deployments.contains_key("zarr-roller-bridge"),
        "the bridge is off by default"
    );
    for stage in ["fetch", "decode", "write", "commit", "scheduler"] {
        let d = &deployments[&format!("zarr-roller-{stage}")];
        let spec = d.spec.as_ref().expect("spec");
        let pod = spec.template.spec.as_ref().expect("pod");
        let container = &pod.containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(&[format!("roller-{stage}")][..])
        );
        let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(
            probe(&container.liveness_probe).as_deref(),
            Some("/healthz")
        );
        assert_eq!(
            probe(&container.readiness_probe).as_deref(),
            Some("/readyz")
        );
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        assert_eq!(
            annotations.get("prometheus.io/scrape").map(String::as_str),
            Some("true")
        );
        assert!(container
            .resources
            .as_ref()
            .is_some_and(|r| r.limits.is_some()));
        let singleton = matches!(stage, "commit" | "scheduler");
        if singleton {
            // Never two commit writers: one pod, replaced only after the old one is gone.
            assert_eq!(spec.replicas, Some(1), "{stage}");
            assert_eq!(
                spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
                Some("Recreate"),
                "{stage}"
            );
        } else {
            let wanted = values["stages"][stage]["replicas"]
                .as_i64()
                .expect("replicas");
            assert_eq!(spec.replicas.map(i64::from), Some(wanted), "{stage}");
        }
    }
    assert!(deployments.contains_key("zarr-roller-serve"));
}

/// Checks that KEDA scales exactly fetch, decode and write, each on its consumer of every
/// dataset (a trigger each), and owns their replica counts.
fn check_scaling(
    deployments: &std::collections::BTreeMap<String, k8s_openapi::api::apps::v1::Deployment>,
    scaled: &[ScaledObject],
    values: &serde_yaml::Value,
) {
    let prefix = values["nats"]["streamPrefix"].as_str().expect("prefix");
    let datasets = dataset_names(values);
    let subjects = roller_proto::Subjects::new(prefix).expect("prefix");
    let mut targets = BTreeSet::new();
    for object in scaled {
        let target = object.spec.scale_target_ref.name.clone();
        let stage = target.trim_start_matches("zarr-roller-").to_owned();
        // The stream and consumers KEDA watches are the ones the stage pulls from.
        let stream = if stage == "fetch" {
            roller_proto::StreamKind::Ingest
        } else {
            roller_proto::StreamKind::Work
        };
        let watched: Vec<&str> = object
            .spec
            .triggers
            .iter()
            .map(|trigger| {
                assert_eq!(trigger.kind, "nats-jetstream");
                assert_eq!(
                    trigger.metadata["stream"],
                    subjects.stream(stream),
                    "{stage}"
                );
                trigger.metadata["consumer"].as_str()
            })
            .collect();
        let mut expected: Vec<String> = datasets
            .iter()
            .map(|d| subjects.consumer(&stage, d))
            .collect();
        let router = values["nats"]["routerConsumer"]
            .as_str()
            .unwrap_or_default();
        if stage == "fetch" && !router.is_empty() {
            // The feed's router, as the fetch processes serving the chart's catalog name it
            // (its datasets and its templates).
            let catalog = roller_model::catalog::parse(
                values["dataset"]["config"].as_str().expect("config"),
                "dataset.config",
                std::iter::empty(),
            )
            .expect("the chart's catalog");
            assert_eq!(
                router,
                roller_nats::route::consumer_name(&subjects, &catalog.group_names())
            );
            expected.push(router.to_owned());
        }
        assert_eq!(watched, expected, "{stage}: a trigger per dataset");
        // KEDA owns the replica count of a scaled Deployment.
        let spec = deployments[&target].spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, None, "{stage}");
        targets.insert(stage);
    }
    // Stages with nothing to watch get no ScaledObject (KEDA refuses one without triggers):
    // with only templates, decode and write keep their replicas.
    let expected: BTreeSet<String> = if datasets.is_empty() {
        ["fetch"].map(str::to_owned).into_iter().collect()
    } else {
        ["decode", "fetch", "write"]
            .map(str::to_owned)
            .into_iter()
            .collect()
    };
    assert_eq!(targets, expected);
}

#[test]
fn the_helm_chart_runs_a_whole_models_catalog_with_keda_on_every_datasets_lag() {
    let (documents, values) = render_chart(Some("ci/ukv-catalog-values.yaml"));
    let (deployments, scaled) = check_objects(&documents, &values);
    check_scaling(&deployments, &scaled, &values);
    assert_eq!(dataset_names(&values).len(), 51);
    // Two commit replicas share the leases.
    let commit = deployments["zarr-roller-commit"]
        .spec
        .as_ref()
        .expect("spec");
    assert_eq!(commit.replicas, Some(2));
    // The chart's catalog makes the example's datasets, but for where they are stored.
    let chart: Vec<DatasetConfig> = roller_model::catalog::from_toml_with_env(
        values["dataset"]["config"].as_str().expect("config"),
        "values",
        std::iter::empty(),
    )
    .expect("the chart's catalog");
    let example =
        roller_model::catalog::load(&workspace_root().join("examples/ukv-all-parameters.toml"))
            .expect("the example");
    assert_eq!(chart.len(), example.len());
    for (ours, theirs) in chart.iter().zip(&example) {
        assert_eq!(
            (
                &ours.name,
                &ours.variable,
                &ours.matching,
                &ours.message_dims,
                &ours.rolling
            ),
            (
                &theirs.name,
                &theirs.variable,
                &theirs.matching,
                &theirs.message_dims,
                &theirs.rolling
            )
        );
        assert!(
            ours.store.path.starts_with("s3://zarr-roller/ukv/"),
            "{}",
            ours.name
        );
    }
}

#[test]
fn the_helm_chart_runs_a_catalog_of_templates_with_keda_on_the_feed_router() {
    let (documents, values) = render_chart(Some("ci/ukv-every-parameter-values.yaml"));
    let (deployments, scaled) = check_objects(&documents, &values);
    check_scaling(&deployments, &scaled, &values);
    assert!(dataset_names(&values).is_empty());
    for stage in ["decode", "write"] {
        let spec = deployments[&format!("zarr-roller-{stage}")]
            .spec
            .as_ref()
            .expect("spec");
        assert_eq!(spec.replicas, Some(2), "{stage} keeps its replicas");
    }
    // The chart's catalog is the example's template, but for where datasets are stored.
    let chart = roller_model::catalog::parse(
        values["dataset"]["config"].as_str().expect("config"),
        "values",
        std::iter::empty(),
    )
    .expect("the chart's catalog");
    let example = roller_model::catalog::load_file(
        &workspace_root().join("examples/ukv-every-parameter.toml"),
    )
    .expect("the example");
    assert_eq!(chart.group_names(), example.group_names());
    let made = chart.discovering[0]
        .dataset_for("temperature_at_screen_level")
        .expect("a dataset");
    assert_eq!(
        made.store.path,
        std::path::Path::new("s3://zarr-roller/ukv/ukv-temperature_at_screen_level")
    );
}

#[test]
fn the_helm_chart_with_keda_scales_fetch_decode_and_write_on_their_consumer_lag() {
    let (documents, values) = render_chart(Some("ci/keda-values.yaml"));
    let (deployments, scaled) = check_objects(&documents, &values);
    check_scaling(&deployments, &scaled, &values);
    // The bridge polls the queue with its own credentials.
    let bridge = deployments["zarr-roller-bridge"]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the bridge's pod");
    let container = &bridge.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["roller-bridge".to_owned()][..])
    );
    let args = container.args.clone().unwrap_or_default();
    assert_eq!(
        args,
        [
            "--queue-url",
            values["bridge"]["queueUrls"][0].as_str().expect("a queue")
        ]
    );
    let bridge_env = container.env.clone().unwrap_or_default();
    let secret_of = |name: &str| {
        bridge_env
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value_from.as_ref())
            .and_then(|f| f.secret_key_ref.as_ref())
            .map(|r| r.name.clone())
    };
    assert_eq!(
        secret_of("AWS_ACCESS_KEY_ID").as_deref(),
        values["bridge"]["credentialsSecret"].as_str()
    );
    // Credentials from Secrets, and the IRSA role on the service account.
    let fetch = &deployments["zarr-roller-fetch"];
    let pod = fetch
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let env = pod.containers[0].env.clone().unwrap_or_default();
    assert!(env.iter().any(|v| v.name == "NATS_CREDS"));
    assert!(env
        .iter()
        .any(|v| v.name == "AWS_ACCESS_KEY_ID" && v.value_from.is_some()));
    let account = documents
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .expect("service account");
    assert!(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].is_string());
}

#[test]
fn the_image_links_every_stage_name_to_the_one_roller_binary() {
    let dockerfile =
        std::fs::read_to_string(roller_test_support::workspace_root().join("Dockerfile"))
            .expect("read the Dockerfile");
    assert!(
        dockerfile.contains("--bin roller")
            && dockerfile.contains("cp target/release/roller /out/"),
        "the image builds and ships the multi-call `roller`"
    );
    let links = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("&& for stage in"))
        .expect("the loop that links the stage names");
    for name in LONG_RUNNING.iter().chain(&[BRIDGE]) {
        assert!(
            links.contains(name),
            "{name} is not linked to roller: {links}"
        );
    }
    assert!(dockerfile.contains(r#"ln -s roller "/out/$stage""#));
}
