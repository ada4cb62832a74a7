//! A catalog end to end: a mixed feed (two parameters, shuffled, in today's S3-event form) fills
//! both datasets through `roller run --config CATALOG`, through one set of NATS stage processes
//! serving the whole catalog (the notices published on the feed subject by `roller replay`),
//! and one dataset at a time; all three give the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use roller_synth::{synth, SynthOptions};
use roller_test_support::feed::{mounts, todays_feed_of, BUCKET};
use roller_test_support::nats::{spawn_isolated, NatsServer};
use roller_test_support::{small_files, snapshot};

/// The two datasets: name and the parameter token they match.
const DATASETS: [(&str, &str); 2] = [
    ("ukv-temperature", "temperature_at_screen_level"),
    ("ukv-rain", "rainfall_rate"),
];

/// A catalog of `datasets` (all, or one for the one-at-a-time runs) storing under `stores`.
fn catalog(dir: &Path, stores: &Path, datasets: &[(&str, &str)]) -> PathBuf {
    let mut text = format!(
        r#"[defaults]
variable = "air_temperature"
store = {{ path = "{stores}/{{name}}", fsync = false }}
scratch = {{ path = "{scratch}", fsync = false }}
rolling = {{ dim = "forecast_reference_time", step = "6h", window = 2 }}

[[defaults.message_dims]]
name = "forecast_period"
step = "1h"
size = 3

[[defaults.file_dims]]
name = "projection_y_coordinate"
size = 64
chunk = 16

[[defaults.file_dims]]
name = "projection_x_coordinate"
size = 48
chunk = 48

[defaults.{mounts}
"#,
        stores = stores.display(),
        scratch = dir.join("scratch").display(),
        mounts = mounts(&[(BUCKET, &dir.join("bucket"))]).trim_start_matches('['),
    );
    for (name, parameter) in datasets {
        text.push_str(&format!(
            "\n[[dataset]]\nname = \"{name}\"\nmatch = {{ model = \"uk-deterministic-2km\", name = \"{parameter}\" }}\n"
        ));
    }
    let path = dir.join(format!(
        "catalog-{}-{}.toml",
        stores.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
        datasets.len()
    ));
    std::fs::write(&path, text).expect("write the catalog");
    path
}

fn roller(args: &[&str], configs: &[&Path], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roller"));
    command.args(args);
    for config in configs {
        command.arg("--config").arg(config);
    }
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run roller")
}

/// `roller` linked as the stage binary `name` (the image's multi-call binary).
fn stage(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_roller"), &link).expect("symlink");
    }
    link
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_mixed_feed_fills_every_dataset_of_a_catalog_alike_embedded_distributed_and_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Two parameters' files, runs a day apart, published under today's keys in one bucket.
    let temperature = small_files(&root.join("src-t"), 2, 3, 64, 48);
    let rain = synth(&SynthOptions {
        out: root.join("src-r"),
        ny: 64,
        nx: 48,
        runs: 2,
        leads: 3,
        run_step: 6 * 3600,
        first_run: SynthOptions::default().first_run + 24 * 3600,
        ..SynthOptions::default()
    })
    .expect("synthesise");
    let mut lines = Vec::new();
    for (files, (_, parameter)) in [(&temperature, DATASETS[0]), (&rain, DATASETS[1])] {
        let feed = todays_feed_of(files, &root.join("bucket"), parameter);
        lines.extend(feed.forms["s3-event"].iter().cloned());
    }
    // Shuffled (a fixed permutation), so the parameters interleave.
    let n = lines.len();
    let mut mixed: Vec<String> = (0..n).map(|i| lines[(i * 7 + 3) % n].clone()).collect();
    mixed.push("{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\",\"Bucket\":\"b\"}".into());
    let notices = root.join("mixed.jsonl");
    std::fs::write(&notices, mixed.join("\n")).expect("write the feed");
    let notices = notices.display().to_string();

    // Embedded, the whole catalog in one `roller run`.
    let embedded = root.join("embedded");
    let all = catalog(root, &embedded, &DATASETS);
    let run = roller(&["run", "--notifications", &notices], &[&all], &[]);
    assert!(run.status.success(), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    for (name, _) in DATASETS {
        assert!(stdout.contains(&format!("== {name}")), "{stdout}");
    }

    // One dataset at a time, each reading the whole mixed feed.
    let single = root.join("single");
    for dataset in DATASETS {
        let one = catalog(root, &single, &[dataset]);
        let run = roller(&["run", "--notifications", &notices], &[&one], &[]);
        assert!(run.status.success(), "{run:?}");
    }
    let expected: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = DATASETS
        .iter()
        .map(|(name, _)| (*name, snapshot(&embedded.join(name))))
        .collect();
    for (name, _) in DATASETS {
        assert!(
            expected[name]
                .keys()
                .filter(|k| k.starts_with("chunks/air_temperature/"))
                .count()
                == 6 * 4,
            "{name}: every file of its parameter, none of the other: {:?}",
            expected[name].keys().collect::<Vec<_>>()
        );
        assert_eq!(snapshot(&single.join(name)), expected[name], "{name}");
    }

    // Distributed: one process per stage for the whole catalog, the feed published once.
    let nats = NatsServer::start(&root.join("nats"));
    let distributed = root.join("distributed");
    let on_nats = catalog(root, &distributed, &DATASETS);
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", "cat".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(root.join("logs")).expect("logs");
    let mut procs = Killed(Vec::new());
    for name in [
        "roller-fetch",
        "roller-decode",
        "roller-write",
        "roller-commit",
    ] {
        let log =
            std::fs::File::create(root.join("logs").join(format!("{name}.log"))).expect("log");
        procs.0.push(
            spawn_isolated(
                Command::new(stage(&bin, name))
                    .arg("--config")
                    .arg(&on_nats)
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::null())
                    .stderr(log),
            )
            .expect("start a stage"),
        );
    }
    let replay = roller(&["replay", &notices], &[&on_nats], &env);
    assert!(replay.status.success(), "{replay:?}");
    let said = String::from_utf8_lossy(&replay.stdout);
    assert!(
        said.contains(&format!("published {} notifications", mixed.len())),
        "{said}"
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = DATASETS
            .iter()
            .map(|(name, _)| (*name, snapshot(&distributed.join(name))))
            .collect();
        if got == expected {
            break;
        }
        if Instant::now() > deadline {
            let logs: String = [
                "roller-fetch",
                "roller-decode",
                "roller-write",
                "roller-commit",
            ]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(root.join("logs").join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {name}\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect();
            panic!(
                "the stages did not fill both datasets as embedded mode did within 180 s: {:?}\n{logs}",
                DATASETS
                    .iter()
                    .map(|(name, _)| (name, got[name].len(), expected[name].len()))
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
