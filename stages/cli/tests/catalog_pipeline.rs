//! A catalog end to end: a mixed feed (two parameters, shuffled, in today's S3-event form) fills
//! both datasets through `roller run --config CATALOG`, through one set of NATS stage processes
//! serving the whole catalog (the notices published on the feed subject by `roller replay`),
//! and one dataset at a time; all three give the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use roller_synth::{synth, SynthFile, SynthOptions};
use roller_test_support::feed::{mounts, todays_feed_of, BUCKET};
use roller_test_support::http::request;
use roller_test_support::nats::{free_port, spawn_isolated, NatsServer};
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

/// Two parameters' files published under today's keys in `root/bucket`: temperature (two runs
/// of three lead times, 64 x 48) and rain (the same a day later). Returns the temperature files
/// and every file's S3 event, the temperature ones first.
fn two_parameters(root: &Path) -> (Vec<SynthFile>, Vec<String>) {
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
    (temperature, lines)
}

/// `lines` shuffled by a fixed permutation, so the parameters interleave.
fn interleaved(lines: &[String]) -> Vec<String> {
    let n = lines.len();
    (0..n).map(|i| lines[(i * 7 + 3) % n].clone()).collect()
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

/// The pipeline's stage processes, one each.
const STAGES: [&str; 4] = [
    "roller-fetch",
    "roller-decode",
    "roller-write",
    "roller-commit",
];

/// Starts one process of each of [`STAGES`] serving `config`, each logging to
/// `root/logs/<name>.log`; they are killed when the result is dropped.
fn start_stages(root: &Path, config: &Path, env: &[(&str, String)]) -> Killed {
    let bin = root.join("bin");
    let logs = root.join("logs");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&logs).expect("logs");
    let mut procs = Killed(Vec::new());
    for name in STAGES {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("log");
        procs.0.push(
            spawn_isolated(
                Command::new(stage(&bin, name))
                    .arg("--config")
                    .arg(config)
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .stdout(Stdio::null())
                    .stderr(log),
            )
            .expect("start a stage"),
        );
    }
    procs
}

/// The last `lines` lines of each stage's log under `root/logs`.
fn log_tails(root: &Path, lines: usize) -> String {
    STAGES
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(root.join("logs").join(format!("{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            format!(
                "--- {name}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect()
}

#[test]
fn a_mixed_feed_fills_every_dataset_of_a_catalog_alike_embedded_distributed_and_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Two parameters' files, runs a day apart, published under today's keys in one bucket.
    let (_, lines) = two_parameters(root);
    let mut mixed = interleaved(&lines);
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
    let _procs = start_stages(root, &on_nats, &env);
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
            let logs = log_tails(root, 15);
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

/// Who holds each dataset's commit lease, and every commit event published, per dataset.
fn leases_and_commits(
    url: &str,
    prefix: &str,
    datasets: &[String],
) -> (
    BTreeMap<String, String>,
    BTreeMap<String, Vec<roller_proto::CommitEvent>>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let subjects = roller_proto::Subjects::new(prefix).expect("prefix");
        let mut holders = BTreeMap::new();
        if let Ok(leases) = js.get_key_value(subjects.lease_bucket()).await {
            for dataset in datasets {
                if let Ok(Some(holder)) = leases.get(dataset).await {
                    holders.insert(
                        dataset.clone(),
                        String::from_utf8_lossy(&holder).into_owned(),
                    );
                }
            }
        }
        let mut commits: BTreeMap<String, Vec<roller_proto::CommitEvent>> = BTreeMap::new();
        if let Ok(mut stream) = js
            .get_stream(subjects.stream(roller_proto::StreamKind::Events))
            .await
        {
            let state = stream.info().await.expect("stream info").state.clone();
            for seq in state.first_sequence..=state.last_sequence {
                let Ok(message) = stream.get_raw_message(seq).await else {
                    continue;
                };
                if let Some(dataset) = datasets
                    .iter()
                    .find(|d| message.subject.as_str() == subjects.committed(d))
                {
                    let event: roller_proto::CommitEvent =
                        roller_proto::wire::decode(&message.payload).expect("a commit event");
                    commits.entry(dataset.clone()).or_default().push(event);
                }
            }
        }
        (holders, commits)
    })
}

#[test]
fn two_commit_replicas_share_a_catalogs_leases_and_one_takes_the_others_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Four parameters, each announced with the same synthetic files under its own keys.
    let files = small_files(&root.join("src"), 2, 3, 64, 48);
    let parameters: Vec<String> = (0..4).map(|i| format!("parameter_{i}")).collect();
    let datasets: Vec<(String, String)> = parameters
        .iter()
        .map(|p| (format!("ukv-{}", p.replace('_', "-")), p.clone()))
        .collect();
    let named: Vec<(&str, &str)> = datasets
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_str()))
        .collect();
    let mut first_run = Vec::new();
    let mut second_run = Vec::new();
    for (_, parameter) in &named {
        let feed = todays_feed_of(&files, &root.join("bucket"), parameter);
        // The synthetic files are 2 runs x 3 lead times, in run order.
        let lines = &feed.forms["s3-event"];
        first_run.extend(lines[..3].iter().cloned());
        second_run.extend(lines[3..].iter().cloned());
    }
    let all: Vec<String> = first_run.iter().chain(&second_run).cloned().collect();
    let write_lines = |name: &str, lines: &[String]| {
        let path = root.join(name);
        std::fs::write(&path, lines.join("\n")).expect("write notices");
        path.display().to_string()
    };
    let (first, second, everything) = (
        write_lines("first.jsonl", &first_run),
        write_lines("second.jsonl", &second_run),
        write_lines("all.jsonl", &all),
    );
    let embedded = root.join("embedded");
    let run = roller(
        &["run", "--notifications", &everything],
        &[&catalog(root, &embedded, &named)],
        &[],
    );
    assert!(run.status.success(), "{run:?}");

    let nats = NatsServer::start(&root.join("nats"));
    let distributed = root.join("distributed");
    let on_nats = catalog(root, &distributed, &named);
    let prefix = "spread";
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", prefix.to_owned()),
        ("ROLLER_LEASE_TTL", "3s".to_owned()),
        ("ROLLER_ACK_WAIT", "3s".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let bin = root.join("bin");
    let logs = root.join("logs");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&logs).expect("logs");
    let spawn = |name: &str, n: usize| {
        let log = std::fs::File::create(logs.join(format!("{name}-{n}.log"))).expect("log");
        spawn_isolated(
            Command::new(stage(&bin, name))
                .arg("--config")
                .arg(&on_nats)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(log),
        )
        .expect("start a stage")
    };
    let all_logs = || -> String {
        std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(12).collect();
                format!(
                    "--- {}\n{}\n",
                    e.path().display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    };
    let mut procs = Killed(Vec::new());
    for (n, name) in ["roller-fetch", "roller-decode", "roller-write"]
        .iter()
        .enumerate()
    {
        procs.0.push(spawn(name, n));
    }
    // One commit replica, then a second: the first hands the second its share.
    procs.0.push(spawn("roller-commit", 3));
    std::thread::sleep(Duration::from_secs(2));
    procs.0.push(spawn("roller-commit", 4));
    let names: Vec<String> = datasets.iter().map(|(n, _)| n.clone()).collect();
    let holder_of = |child: &Child| format!("-{}", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    let spread = loop {
        let (holders, _) = leases_and_commits(&nats.url(), prefix, &names);
        let by: Vec<usize> = [&procs.0[3], &procs.0[4]]
            .iter()
            .map(|child| {
                holders
                    .values()
                    .filter(|h| h.ends_with(&holder_of(child)))
                    .count()
            })
            .collect();
        if holders.len() == 4 && by.iter().all(|&n| n >= 1) {
            break by;
        }
        assert!(
            Instant::now() < deadline,
            "the leases did not spread over both replicas: {holders:?}\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(spread.iter().sum::<usize>(), 4);

    // The first run flows through both leaders; then one replica dies and the other takes its
    // datasets over (within the lease TTL and a membership's expiry) for the second run.
    let replay = roller(&["replay", &first], &[&on_nats], &env);
    assert!(replay.status.success(), "{replay:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !names.iter().all(|name| {
        std::fs::read_to_string(distributed.join(name).join("roller.json"))
            .is_ok_and(|r| r.contains("\"head\""))
    }) {
        assert!(
            Instant::now() < deadline,
            "no first commits\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dead = procs.0.remove(4);
    let dead_holder = holder_of(&dead);
    drop(Killed(vec![dead]));
    let survivor = holder_of(&procs.0[3]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (holders, _) = leases_and_commits(&nats.url(), prefix, &names);
        if holders.len() == 4 && holders.values().all(|h| h.ends_with(&survivor)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor did not take every lease: {holders:?}\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let replay = roller(&["replay", &second], &[&on_nats], &env);
    assert!(replay.status.success(), "{replay:?}");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let same = names
            .iter()
            .all(|name| snapshot(&distributed.join(name)) == snapshot(&embedded.join(name)));
        if same {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the datasets did not converge to the embedded run\n{}",
            all_logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Never two writers: each dataset's generations go up by one, and its commits come from
    // one holder, then (for the datasets the dead replica led) the survivor.
    let (_, commits) = leases_and_commits(&nats.url(), prefix, &names);
    for name in &names {
        let events = &commits[name];
        let generations: Vec<u64> = events.iter().map(|e| e.generation).collect();
        assert_eq!(
            generations,
            (1..=generations.len() as u64).collect::<Vec<_>>(),
            "{name}: a gap or a repeat"
        );
        let mut holders: Vec<&str> = events.iter().map(|e| e.holder.as_str()).collect();
        holders.dedup();
        assert!(holders.len() <= 3, "{name}: {holders:?}");
        assert!(
            holders.last().is_some_and(|h| h.ends_with(&survivor)),
            "{name}: the survivor commits last: {holders:?}"
        );
    }
    assert!(
        names.iter().any(|name| commits[name]
            .iter()
            .any(|e| e.holder.ends_with(&dead_holder))),
        "the second replica led some dataset before it died"
    );
}

/// Runs the two datasets of [`DATASETS`] through one set of stage processes, the second made
/// to fail by `breaking` (keys appended to the catalog, which go into its last `[[dataset]]`
/// table), and waits until the healthy one equals its embedded run while the other fails;
/// checks every process stays up. Returns the directory (its `logs/`) for the caller's checks.
fn beside_a_failing_dataset(breaking: &str, prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let files = small_files(&root.join("src"), 2, 3, 64, 48);
    let mut lines = Vec::new();
    for (_, parameter) in DATASETS {
        let feed = todays_feed_of(&files, &root.join("bucket"), parameter);
        lines.extend(feed.forms["s3-event"].iter().cloned());
    }
    let notices = root.join("mixed.jsonl");
    std::fs::write(&notices, lines.join("\n")).expect("write the feed");
    let notices = notices.display().to_string();

    // The reference: the healthy dataset alone.
    let embedded = root.join("embedded");
    let alone = catalog(root, &embedded, &DATASETS[..1]);
    let run = roller(&["run", "--notifications", &notices], &[&alone], &[]);
    assert!(run.status.success(), "{run:?}");
    let expected = snapshot(&embedded.join(DATASETS[0].0));

    let distributed = root.join("distributed");
    let both = catalog(root, &distributed, &DATASETS);
    let mut text = std::fs::read_to_string(&both).expect("catalog");
    text.push_str(breaking);
    std::fs::write(&both, text).expect("write");
    let nats = NatsServer::start(&root.join("nats"));
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", prefix.to_owned()),
        ("ROLLER_ACK_WAIT", "3s".to_owned()),
        ("ROLLER_LEASE_TTL", "3s".to_owned()),
        ("AWS_ACCESS_KEY_ID", "roller-test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "roller-test-secret".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut procs = start_stages(root, &both, &env);
    let replay = roller(&["replay", &notices], &[&both], &env);
    assert!(replay.status.success(), "{replay:?}");
    let read_logs = || log_tails(root, 10);
    // The healthy dataset completes while the other one fails.
    let deadline = Instant::now() + Duration::from_secs(120);
    while snapshot(&distributed.join(DATASETS[0].0)) != expected {
        assert!(
            Instant::now() < deadline,
            "the healthy dataset did not complete beside the failing one\n{}",
            read_logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for child in &mut procs.0 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "a stage process exited\n{}",
            read_logs()
        );
    }
    dir
}

#[test]
fn a_dataset_whose_storage_is_down_holds_up_no_other_in_the_same_processes() {
    // The second dataset's store is on an S3 endpoint nobody answers.
    let closed = roller_test_support::nats::free_port();
    let dir = beside_a_failing_dataset(
        &format!(
            "store = {{ path = \"s3://unreachable/{}\" }}\ns3 = {{ endpoint_url = \"http://127.0.0.1:{closed}\", region = \"us-east-1\", force_path_style = true }}\n",
            DATASETS[1].0
        ),
        "down",
    );
    // Its work is retried (not dropped), its commit restarted with backoff.
    let commit_log =
        std::fs::read_to_string(dir.path().join("logs/roller-commit.log")).expect("commit log");
    assert!(
        commit_log.contains("this dataset's stage failed; the other datasets go on"),
        "{commit_log}"
    );
}

#[test]
fn a_dataset_whose_files_are_all_bad_holds_up_no_other_in_the_same_processes() {
    // The second dataset asks for a variable its files do not have.
    let dir = beside_a_failing_dataset("variable = \"not_in_these_files\"\n", "bad");
    // Its files are dead-lettered with the reason, and nothing of them is stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = dir.path().join("logs/roller-decode.log");
    let refused = |log: &str| log.matches("has no variable `not_in_these_files`").count();
    while refused(&std::fs::read_to_string(&log).unwrap_or_default()) < 6 {
        assert!(
            Instant::now() < deadline,
            "decode did not refuse the 6 bad files\n{}",
            log_tails(dir.path(), 20)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let bad = snapshot(&dir.path().join("distributed").join(DATASETS[1].0));
    assert!(
        !bad.keys().any(|k| k.starts_with("chunks/")),
        "nothing of a bad file is stored: {:?}",
        bad.keys().collect::<Vec<_>>()
    );
}

/// A small seeded random number generator (xorshift64*), so a chaos run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x >> 33).unwrap_or(0) % n.max(1)
    }
}

/// One chaos run: while a mixed feed for two datasets flows through one set of stage
/// processes (commit and scheduler included), random processes are killed -9 and started
/// again and nats-server is restarted once; then both datasets must equal the embedded run.
fn chaos(seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Two runs each, as the window holds: with more, which files of a run that rolls out are
    // still written would depend on the order files arrive in, in either mode.
    let (_, mut lines) = two_parameters(root);
    // Shuffled by the seed.
    for i in (1..lines.len()).rev() {
        let j = rng.below(i + 1);
        lines.swap(i, j);
    }
    let with_schedule = |path: PathBuf| {
        // A cadence that does not fire during the run: the scheduler runs, and is killed, but
        // moves no window the embedded run would not.
        let mut text = std::fs::read_to_string(&path).expect("catalog");
        text.push_str("\n[defaults.schedule]\ncron = \"0 0 1 1 *\"\n");
        std::fs::write(&path, text).expect("write");
        path
    };
    let write = |name: &str, lines: &[String]| {
        let path = root.join(name);
        std::fs::write(&path, lines.join("\n")).expect("write notices");
        path.display().to_string()
    };
    let everything = write("all.jsonl", &lines);
    let embedded = root.join("embedded");
    let all = with_schedule(catalog(root, &embedded, &DATASETS));
    let run = roller(&["run", "--notifications", &everything], &[&all], &[]);
    assert!(run.status.success(), "{run:?}");
    let expected: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = DATASETS
        .iter()
        .map(|(name, _)| (*name, snapshot(&embedded.join(name))))
        .collect();

    let mut nats = NatsServer::start(&root.join("nats"));
    let distributed = root.join("distributed");
    let on_nats = with_schedule(catalog(root, &distributed, &DATASETS));
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", "chaos".to_owned()),
        ("ROLLER_ACK_WAIT", "2s".to_owned()),
        ("ROLLER_LEASE_TTL", "2s".to_owned()),
        ("ROLLER_SHUTDOWN_GRACE", "2s".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let bin = root.join("bin");
    let logs = root.join("logs");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::create_dir_all(&logs).expect("logs");
    const STAGES: [&str; 5] = [
        "roller-fetch",
        "roller-decode",
        "roller-write",
        "roller-commit",
        "roller-scheduler",
    ];
    let mut started = 0;
    let mut spawn = |name: &str| {
        started += 1;
        let log = std::fs::File::create(logs.join(format!("{name}-{started}.log"))).expect("log");
        spawn_isolated(
            Command::new(stage(&bin, name))
                .arg("--config")
                .arg(&on_nats)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(log),
        )
        .expect("start a stage")
    };
    let mut procs = Killed(STAGES.iter().map(|name| spawn(name)).collect());
    let chunks: Vec<&[String]> = lines.chunks(lines.len().div_ceil(4)).collect();
    let restart_nats_after = rng.below(chunks.len());
    let mut actions = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let file = write(&format!("chunk-{i}.jsonl"), chunk);
        let replay = roller(&["replay", &file], &[&on_nats], &env);
        assert!(replay.status.success(), "seed {seed}: {replay:?}");
        std::thread::sleep(Duration::from_millis(100 + 100 * rng.below(5) as u64));
        let victim = rng.below(STAGES.len());
        actions.push(format!("kill -9 {}", STAGES[victim]));
        drop(Killed(vec![std::mem::replace(
            &mut procs.0[victim],
            spawn(STAGES[victim]),
        )]));
        if i == restart_nats_after {
            actions.push("restart nats-server".to_owned());
            nats.restart();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        // As a supervisor would: a process that exited (one started while nats-server was
        // down exits at once: NATS unreachable at start) is started again.
        for (i, child) in procs.0.iter_mut().enumerate() {
            if child.try_wait().expect("wait").is_some() {
                actions.push(format!("start exited {} again", STAGES[i]));
                *child = spawn(STAGES[i]);
            }
        }
        let got: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = DATASETS
            .iter()
            .map(|(name, _)| (*name, snapshot(&distributed.join(name))))
            .collect();
        if got == expected {
            break;
        }
        if Instant::now() > deadline {
            let tails: String = std::fs::read_dir(&logs)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(6).collect();
                    format!(
                        "--- {}\n{}\n",
                        e.path().display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            let missing: Vec<String> = DATASETS
                .iter()
                .flat_map(|(name, _)| {
                    let got = &got[name];
                    expected[name]
                        .iter()
                        .filter(move |(k, v)| got.get(*k) != Some(*v))
                        .map(move |(k, _)| format!("{name}/{k}"))
                })
                .take(12)
                .collect();
            // The whole logs, kept for a look after the test.
            let kept =
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-seed-{seed}"));
            let _ = std::fs::remove_dir_all(&kept);
            let _ = std::fs::create_dir_all(&kept);
            for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
            }
            panic!(
                "seed {seed} ({actions:?}): the datasets did not converge to the embedded run: {:?}, missing or different: {missing:?}; logs in {}\n{tails}",
                DATASETS
                    .iter()
                    .map(|(name, _)| (name, got[name].len(), expected[name].len()))
                    .collect::<Vec<_>>(),
                kept.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("seed {seed}: converged after {actions:?}");
}

/// The chaos harness: seeds from `ROLLER_CHAOS_SEEDS` (comma-separated, e.g. `1,2,3,4,5`),
/// two by default.
#[test]
fn chaos_kills_and_a_nats_restart_leave_every_dataset_as_the_embedded_run_makes_it() {
    let seeds: Vec<u64> = std::env::var("ROLLER_CHAOS_SEEDS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|s| s.trim().parse().expect("ROLLER_CHAOS_SEEDS: whole numbers"))
        .collect();
    for seed in seeds {
        chaos(seed);
    }
}

/// A catalog whose one template makes a dataset per parameter of [`DATASETS`] (named
/// `ukv-{parameter}`), leaving the file dims to the first file (chunks of at most 4 KiB) unless
/// `file_dims` (TOML `[[defaults.file_dims]]` tables) gives them.
fn template_catalog(dir: &Path, stores: &Path, file_dims: &str) -> PathBuf {
    let text = format!(
        r#"[defaults]
store = {{ path = "{stores}/{{name}}", fsync = false }}
scratch = {{ path = "{scratch}", fsync = false }}
rolling = {{ dim = "forecast_reference_time", step = "6h", window = 2 }}
encoding = {{ chunk_bytes = 4096 }}

[[defaults.message_dims]]
name = "forecast_period"
step = "1h"
size = 3
{file_dims}
[[template]]
name = "ukv-{{parameter}}"
match = {{ model = "uk-deterministic-2km", name = "{{parameter}}" }}
parameters = {{ {t} = "air_temperature", {r} = "air_temperature" }}

[template.{mounts}
"#,
        stores = stores.display(),
        scratch = dir.join("scratch").display(),
        t = DATASETS[0].1,
        r = DATASETS[1].1,
        mounts = mounts(&[(BUCKET, &dir.join("bucket"))]).trim_start_matches('['),
    );
    let path = dir.join(format!(
        "templates-{}.toml",
        stores.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&path, text).expect("write the catalog");
    path
}

/// A store's objects as [`snapshot`] compares them, without the record and the fixed dims
/// (which say how the layout was reached).
fn chunks_and_metadata(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut objects = snapshot(dir);
    objects.retain(|key, _| key != "roller.json" && key != "roller-layout.json");
    objects
}

/// The file dims a dataset's record holds: (name, size, chunk).
fn recorded_file_dims(dir: &Path) -> Vec<(String, u64, u64)> {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("roller.json")).expect("a record"))
            .expect("record json");
    record["layout"]["file_dims"]
        .as_array()
        .expect("file dims")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_owned(),
                d["size"].as_u64().unwrap_or_default(),
                d["chunk"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_template_makes_a_dataset_per_parameter_whose_first_file_fixes_its_layout_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (temperature, lines) = two_parameters(root);
    let mixed = interleaved(&lines);
    let notices = root.join("mixed.jsonl");
    std::fs::write(&notices, mixed.join("\n")).expect("write the feed");
    let notices = notices.display().to_string();
    let names: Vec<String> = DATASETS
        .iter()
        .map(|(_, parameter)| format!("ukv-{parameter}"))
        .collect();

    // The template, embedded: a dataset per parameter, its dims fixed by its first file.
    let embedded = root.join("embedded");
    let templated = template_catalog(root, &embedded, "");
    let check = roller(&["check"], &[&templated], &[]);
    let listed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    for name in &names {
        assert!(
            listed.contains(name.as_str()),
            "check lists {name}: {listed}"
        );
    }
    let run = roller(&["run", "--notifications", &notices], &[&templated], &[]);
    assert!(run.status.success(), "{run:?}");
    // 64 x 48 float32 is 12 KiB: halved along y, then x, to 32 x 24 (3 KiB).
    let inferred = vec![
        ("projection_y_coordinate".to_owned(), 64, 32),
        ("projection_x_coordinate".to_owned(), 48, 24),
    ];
    // A first file that fails a check (its run is 10 days ahead) fixes nothing, though its
    // grid (32 x 48) differs: the next good file fixes the dims.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let ahead = synth(&SynthOptions {
        out: root.join("src-ahead"),
        ny: 32,
        nx: 48,
        runs: 1,
        leads: 1,
        first_run: (i64::try_from(now).expect("now") / 21_600 + 40) * 21_600,
        ..SynthOptions::default()
    })
    .expect("synthesise");
    let mut bad_first =
        todays_feed_of(&ahead, &root.join("bucket"), DATASETS[0].1).forms["s3-event"].clone();
    // The temperature files' notices come first in `lines`.
    bad_first.extend(lines[..temperature.len()].iter().cloned());
    let bad_first_notices = root.join("bad-first.jsonl");
    std::fs::write(&bad_first_notices, bad_first.join("\n")).expect("write");
    let guarded = root.join("guarded");
    let run = roller(
        &[
            "run",
            "--notifications",
            &bad_first_notices.display().to_string(),
        ],
        &[&template_catalog(root, &guarded, "")],
        &[],
    );
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(3), "one dead letter: {run:?}");
    assert!(said.contains("in the future"), "{said}");
    assert_eq!(recorded_file_dims(&guarded.join(&names[0])), inferred);

    // The same dims given in the config make the same chunks and metadata.
    let explicit = root.join("explicit");
    let listed_dims = "[[defaults.file_dims]]\nname = \"projection_y_coordinate\"\nsize = 64\nchunk = 32\n\n[[defaults.file_dims]]\nname = \"projection_x_coordinate\"\nsize = 48\nchunk = 24\n";
    let configured = template_catalog(root, &explicit, listed_dims);
    let run = roller(&["run", "--notifications", &notices], &[&configured], &[]);
    assert!(run.status.success(), "{run:?}");
    for name in &names {
        assert_eq!(recorded_file_dims(&embedded.join(name)), inferred, "{name}");
        let objects = chunks_and_metadata(&embedded.join(name));
        assert_eq!(
            objects
                .keys()
                .filter(|k| k.starts_with("chunks/air_temperature/"))
                .count(),
            6 * 4,
            "{name}: 6 files of 2 x 2 chunks"
        );
        assert_eq!(objects, chunks_and_metadata(&explicit.join(name)), "{name}");
    }

    // The stage processes make the same datasets from the same template.
    let nats = NatsServer::start(&root.join("nats"));
    let distributed = root.join("distributed");
    let on_nats = template_catalog(root, &distributed, "");
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", "tpl".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let _procs = start_stages(root, &on_nats, &env);
    let replay = roller(&["replay", &notices], &[&on_nats], &env);
    assert!(replay.status.success(), "{replay:?}");
    let deadline = Instant::now() + Duration::from_secs(180);
    for name in &names {
        let expected = chunks_and_metadata(&embedded.join(name));
        while chunks_and_metadata(&distributed.join(name)) != expected
            || !distributed.join(name).join("roller.json").exists()
            || recorded_file_dims(&distributed.join(name)) != inferred
        {
            assert!(
                Instant::now() < deadline,
                "{name} did not fill as embedded within 180 s\n{}",
                log_tails(root, 15)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // A later file of another shape is refused with what the first file fixed; nothing of
    // the dataset changes.
    let odd = synth(&SynthOptions {
        out: root.join("src-odd"),
        ny: 32,
        nx: 48,
        runs: 1,
        leads: 1,
        first_run: SynthOptions::default().first_run + 36 * 3600,
        ..SynthOptions::default()
    })
    .expect("synthesise");
    let feed = todays_feed_of(&odd, &root.join("bucket"), DATASETS[0].1);
    let odd_notice = root.join("odd.jsonl");
    std::fs::write(&odd_notice, feed.forms["s3-event"].join("\n")).expect("write");
    let before = snapshot(&embedded.join(&names[0]));
    let run = roller(
        &["run", "--notifications", &odd_notice.display().to_string()],
        &[&templated],
        &[],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.status.code(), Some(3), "dead letters: {said}");
    assert!(
        said.contains("projection_y_coordinate[32]")
            && said.contains("projection_y_coordinate[64]"),
        "the refusal names the file's dims and the fixed ones: {said}"
    );
    assert_eq!(snapshot(&embedded.join(&names[0])), before);
}

/// A catalog whose one template makes a dataset for every parameter of the feed (named
/// `ukv-{parameter}`), leaving the variable and the file dims to each dataset's first file.
fn discovering_catalog(dir: &Path, stores: &Path) -> PathBuf {
    let text = format!(
        r#"[defaults]
store = {{ path = "{stores}/{{name}}", fsync = false }}
scratch = {{ path = "{scratch}", fsync = false }}
rolling = {{ dim = "forecast_reference_time", step = "6h", window = 2 }}
encoding = {{ chunk_bytes = 4096 }}

[[defaults.message_dims]]
name = "forecast_period"
step = "1h"
size = 3

[[template]]
name = "ukv-{{parameter}}"
match = {{ model = "uk-deterministic-2km", name = "{{parameter}}" }}
parameters = "*"

[template.{mounts}
"#,
        stores = stores.display(),
        scratch = dir.join("scratch").display(),
        mounts = mounts(&[(BUCKET, &dir.join("bucket"))]).trim_start_matches('['),
    );
    let path = dir.join(format!(
        "discovering-{}.toml",
        stores.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&path, text).expect("write the catalog");
    path
}

/// The reasons of the dead letters of the feed's router (stream prefix `prefix`).
fn feed_dead_letters(url: &str, prefix: &str) -> Vec<String> {
    let subjects = roller_proto::Subjects::new(prefix).expect("a prefix");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream(subjects.stream(roller_proto::StreamKind::Dead))
            .await
            .expect("the dead-letter stream");
        let state = stream.info().await.expect("stream info").state.clone();
        let subject = subjects.dead("fetch", "feed");
        let mut reasons = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(seq).await {
                if message.subject.as_str() == subject {
                    reasons.push(
                        message
                            .headers
                            .get(roller_proto::subjects::headers::REASON)
                            .map(|v| v.as_str().to_owned())
                            .unwrap_or_default(),
                    );
                }
            }
        }
        reasons
    })
}

/// The variable a dataset's record names.
fn recorded_variable(dir: &Path) -> String {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("roller.json")).expect("a record"))
            .expect("record json");
    record["layout"]["variable"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_template_for_every_parameter_makes_datasets_from_the_feed_embedded_and_on_nats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (temperature, lines) = two_parameters(root);
    let mut mixed = interleaved(&lines);
    // A parameter token too long to name a dataset, in one message with a notice found nowhere
    // else in the feed: that notice is refused, the rest of its message still taken.
    let long = "p".repeat(101);
    let refused = todays_feed_of(&temperature[..1], &root.join("bucket"), &long);
    let mut both: serde_json::Value = serde_json::from_str(&mixed.remove(0)).expect("an event");
    let other: serde_json::Value =
        serde_json::from_str(&refused.forms["s3-event"][0]).expect("an event");
    both["Records"].as_array_mut().expect("records").extend(
        other["Records"]
            .as_array()
            .expect("records")
            .iter()
            .cloned(),
    );
    mixed.push(both.to_string());
    let notices = root.join("mixed.jsonl");
    std::fs::write(&notices, mixed.join("\n")).expect("write the feed");
    let notices = notices.display().to_string();
    let names: Vec<String> = DATASETS
        .iter()
        .map(|(_, parameter)| format!("ukv-{parameter}"))
        .collect();

    // The same parameters listed, with their variable named: what the feed should make.
    let listed = root.join("listed");
    let run = roller(
        &["run", "--notifications", &notices],
        &[&template_catalog(root, &listed, "")],
        &[],
    );
    assert!(run.status.success(), "{run:?}");

    // Embedded: the datasets come from the feed, their variable from their first file.
    let embedded = root.join("embedded");
    let discovering = discovering_catalog(root, &embedded);
    let check = roller(&["check"], &[&discovering], &[]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    assert!(
        said.contains("makes a dataset per parameter of the feed, at most 200, e.g. ukv-PARAMETER"),
        "{said}"
    );
    let run = roller(&["run", "--notifications", &notices], &[&discovering], &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(run.status.code(), Some(3), "one notice refused: {said}");
    assert!(said.contains("templates made 2 datasets"), "{said}");
    assert!(said.contains("cannot name a dataset"), "{said}");
    for name in &names {
        let made = embedded.join(name);
        assert_eq!(recorded_variable(&made), "air_temperature", "{name}");
        let chunks = chunks_and_metadata(&made)
            .into_keys()
            .filter(|k| k.starts_with("chunks/air_temperature/"))
            .count();
        assert_eq!(chunks, 6 * 4, "{name}: 6 files of 2 x 2 chunks");
        assert_eq!(
            chunks_and_metadata(&made),
            chunks_and_metadata(&listed.join(name)),
            "{name}"
        );
    }
    assert!(!embedded.join(format!("ukv-{long}")).exists());

    // On NATS: one set of stage processes makes the same datasets from the feed.
    let nats = NatsServer::start(&root.join("nats"));
    let distributed = root.join("distributed");
    let on_nats = discovering_catalog(root, &distributed);
    let env = [
        ("NATS_URL", nats.url()),
        ("ROLLER_STREAM_PREFIX", "disc".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let mut procs = start_stages(root, &on_nats, &env);
    // The server, started before any dataset exists, serves each as it is made; another
    // model's catalog given first changes nothing (a registry entry is matched by the name
    // its template makes, not by the template's place).
    let other = root.join("other-model.toml");
    let text = std::fs::read_to_string(discovering_catalog(root, &root.join("other")))
        .expect("read")
        .replace("ukv-{parameter}", "mogreps-{parameter}")
        .replace("uk-deterministic-2km", "uk-ensemble-2km");
    std::fs::write(&other, text).expect("write");
    let port = free_port();
    procs.0.push(
        spawn_isolated(
            Command::new(stage(&root.join("bin"), "roller-serve"))
                .arg("--config")
                .arg(&other)
                .arg("--config")
                .arg(&on_nats)
                .args(["--listen", &format!("127.0.0.1:{port}"), "--refresh", "0s"])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(root.join("logs/serve.log")).expect("log")),
        )
        .expect("start roller-serve"),
    );
    let replay = roller(&["replay", &notices], &[&on_nats], &env);
    assert!(replay.status.success(), "{replay:?}");
    let deadline = Instant::now() + Duration::from_secs(180);
    for name in &names {
        let expected = chunks_and_metadata(&embedded.join(name));
        while chunks_and_metadata(&distributed.join(name)) != expected
            || !distributed.join(name).join("roller.json").exists()
        {
            assert!(
                Instant::now() < deadline,
                "{name} was not made and filled as embedded within 180 s\n{}",
                log_tails(root, 15)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(
            recorded_variable(&distributed.join(name)),
            "air_temperature"
        );
        let path = format!("/{name}/air_temperature/zarr.json");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || request(port, "GET", &path, &[]).status != 200
        {
            assert!(
                Instant::now() < deadline,
                "roller-serve did not serve {path} within 180 s\n{}",
                std::fs::read_to_string(root.join("logs/serve.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // The refused notice is one dead letter of the router's, a copy of the message whose other
    // notice was routed (its dataset is complete above), with the reason.
    let mut dead = feed_dead_letters(&nats.url(), "disc");
    while dead.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        dead = feed_dead_letters(&nats.url(), "disc");
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("cannot name a dataset"), "{dead:?}");
    let index = request(port, "GET", "/", &[]).body_text();
    for name in &names {
        assert!(
            index.contains(name.as_str()),
            "the status index lists {name}: {index}"
        );
    }
    assert!(!distributed.join(format!("ukv-{long}")).exists());
}
