//! A test cluster: a real nats-server and each stage as a separate OS process (the binaries of
//! this crate), over a temporary dataset of synthetic files, plus what the tests inspect
//! (streams, the store, an embedded run of the same files for comparison).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::StreamMessage};
use roller_core::config::DatasetConfig;
use roller_core::synth::write_config;
use roller_nats::replay::{replay, Replayed};
use roller_nats::{NatsSettings, StageKind};
use roller_proto::{wire, CommitEvent, StreamKind, Subjects, WriteReport};
use roller_test_support::nats::{spawn_isolated, NatsServer};
use roller_test_support::{ingest, small_files, snapshot, TestDataset};

pub fn binary(kind: StageKind) -> &'static str {
    match kind {
        StageKind::Fetch => env!("CARGO_BIN_EXE_roller-fetch"),
        StageKind::Decode => env!("CARGO_BIN_EXE_roller-decode"),
        StageKind::Write => env!("CARGO_BIN_EXE_roller-write"),
        StageKind::Commit => env!("CARGO_BIN_EXE_roller-commit"),
        StageKind::Scheduler => env!("CARGO_BIN_EXE_roller-scheduler"),
    }
}

pub struct Proc {
    pub kind: StageKind,
    pub child: Child,
    pub log: PathBuf,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nats: NatsServer,
    pub config_path: PathBuf,
    pub config: DatasetConfig,
    /// One notification per synthetic file.
    pub lines: Vec<String>,
    pub procs: Vec<Proc>,
    pub rt: tokio::runtime::Runtime,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// `runs x leads` synthetic files on a 64 x 48 grid chunked 16 x 48 (4 parts per file),
    /// window = `runs` (nothing rolls off), streams set up.
    pub fn new(name: &str, runs: usize, leads: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        let files = small_files(&src, runs, leads, 64, 48);
        let config = TestDataset::new(name)
            .window(u32::try_from(runs).expect("runs"))
            .leads(u32::try_from(leads).expect("leads"))
            .file_dims(&[
                ("projection_y_coordinate", 64, 16),
                ("projection_x_coordinate", 48, 48),
            ])
            .extra(&format!(
                "[scratch]\npath = \"{}\"\nfsync = false\n",
                dir.path().join("scratch").display()
            ))
            .config(&dir.path().join("store"), &src);
        let config_path = dir.path().join("dataset.toml");
        write_config(&config, &config_path).expect("write config");
        let nats = NatsServer::start(&dir.path().join("nats"));
        let env: Vec<(String, String)> = [
            ("NATS_URL", nats.url()),
            ("ROLLER_STREAM_PREFIX", "test".into()),
            ("ROLLER_ACK_WAIT", "3s".into()),
            ("ROLLER_LEASE_TTL", "3s".into()),
            ("ROLLER_SHUTDOWN_GRACE", "5s".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let settings = {
            let env = env.clone();
            NatsSettings::from_vars(move |name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .expect("settings")
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt
            .block_on(roller_nats::topology::connect(&settings, "test"))
            .expect("connect");
        let topology = rt
            .block_on(roller_nats::topology::setup(
                client.clone(),
                &settings,
                &config,
            ))
            .expect("setup");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        Self {
            lines: files.iter().map(|f| f.notification.clone()).collect(),
            dir,
            nats,
            config_path,
            config,
            procs: Vec::new(),
            rt,
            js: topology.js,
            client,
            subjects: settings.subjects,
            env,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts a stage process; returns its index.
    pub fn spawn(&mut self, kind: StageKind) -> usize {
        let n = self.procs.len();
        let log = self
            .dir
            .path()
            .join("logs")
            .join(format!("{}-{n}.log", kind.binary()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = spawn_isolated(
            Command::new(binary(kind))
                .arg("--config")
                .arg(&self.config_path)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(file),
        )
        .expect("start stage");
        self.procs.push(Proc { kind, child, log });
        n
    }

    /// SIGKILL: a crash at an arbitrary instant.
    pub fn kill9(&mut self, i: usize) {
        let _ = self.procs[i].child.kill();
        let _ = self.procs[i].child.wait();
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        let pid = self.procs[i].child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.procs[i].child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within 30 s of SIGTERM\n{}",
                self.procs[i].kind.binary(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Publishes notification lines as `roller replay` does (with `Nats-Msg-Id`).
    pub fn replay(&self, lines: &[String]) -> Replayed {
        self.rt
            .block_on(replay(
                &self.js,
                &self.subjects,
                &self.config.name,
                lines.iter().cloned(),
            ))
            .expect("replay")
    }

    /// Publishes one line as plain `nats pub` does (core NATS, no headers).
    pub fn nats_pub(&self, line: &str) {
        self.rt.block_on(async {
            self.client
                .publish(
                    self.subjects.ingest(&self.config.name),
                    line.to_owned().into(),
                )
                .await
                .expect("publish");
            self.client.flush().await.expect("flush");
        });
    }

    /// The dataset as the embedded runner makes it from `lines`, as a snapshot.
    pub fn embedded_snapshot(&self, lines: &[String]) -> BTreeMap<String, Vec<u8>> {
        let mut config = self.config.clone();
        config.store.path = self.path("embedded");
        let summary = ingest(&config, lines);
        assert!(
            summary.dead_letters.is_empty(),
            "the embedded reference run failed: {:?}",
            summary.dead_letters
        );
        snapshot(&config.store.path)
    }

    /// Whether every stage's consumer has nothing pending or unacked.
    pub fn drained(&self) -> bool {
        self.rt.block_on(async {
            for (stage, kind) in [
                ("fetch", StreamKind::Ingest),
                ("decode", StreamKind::Work),
                ("write", StreamKind::Work),
                ("commit", StreamKind::Events),
            ] {
                let Ok(stream) = self.js.get_stream(self.subjects.stream(kind)).await else {
                    return false;
                };
                let name = self.subjects.consumer(stage, &self.config.name);
                match stream.consumer_info(&name).await {
                    Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
                    _ => return false,
                }
            }
            true
        })
    }

    /// Waits until the store equals `expected` and all consumers are drained.
    pub fn wait_until_equal(&self, expected: &BTreeMap<String, Vec<u8>>, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = snapshot(&self.config.store.path);
            if &got == expected && self.drained() {
                // Still equal once everything has settled.
                assert_eq!(&snapshot(&self.config.store.path), expected);
                return;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = expected
                    .keys()
                    .filter(|k| !got.contains_key(*k))
                    .take(10)
                    .collect();
                let extra: Vec<_> = got
                    .keys()
                    .filter(|k| !expected.contains_key(*k))
                    .take(10)
                    .collect();
                let differ: Vec<_> = expected
                    .iter()
                    .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                    .map(|(k, _)| k)
                    .take(10)
                    .collect();
                panic!(
                    "the NATS run did not converge to the embedded run within {timeout:?}: {} of {} objects, missing {missing:?}, extra {extra:?}, differing {differ:?}, drained {}\n{}",
                    got.len(),
                    expected.len(),
                    self.drained(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every message of a stream whose subject is `subject`, in stream order.
    pub fn messages(&self, kind: StreamKind, subject: &str) -> Vec<StreamMessage> {
        self.rt.block_on(async {
            let mut stream = self
                .js
                .get_stream(self.subjects.stream(kind))
                .await
                .expect("stream");
            let state = stream.info().await.expect("stream info").state.clone();
            let mut out = Vec::new();
            for seq in state.first_sequence..=state.last_sequence {
                if let Ok(message) = stream.get_raw_message(seq).await {
                    if message.subject.as_str() == subject {
                        out.push(message);
                    }
                }
            }
            out
        })
    }

    /// How many write reports each (source, part) got.
    pub fn reports(&self) -> HashMap<(String, u32), usize> {
        let mut counts = HashMap::new();
        for m in self.messages(StreamKind::Events, &self.subjects.report(&self.config.name)) {
            let report: WriteReport = wire::decode(&m.payload).expect("report");
            *counts.entry((report.source, report.part)).or_default() += 1;
        }
        counts
    }

    /// Commit events in stream order.
    pub fn commits(&self) -> Vec<CommitEvent> {
        self.messages(
            StreamKind::Events,
            &self.subjects.committed(&self.config.name),
        )
        .iter()
        .map(|m| wire::decode(&m.payload).expect("commit event"))
        .collect()
    }

    /// Dead letters of a stage.
    pub fn dead_letters(&self, stage: &str) -> Vec<StreamMessage> {
        self.messages(
            StreamKind::Dead,
            &self.subjects.dead(stage, &self.config.name),
        )
    }

    /// Objects left in scratch.
    pub fn scratch_objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut pending = vec![self.path("scratch")];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    pending.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Every stage's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {} ({})\n", p.kind.binary(), p.log.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Waits until at least `n` write reports are in the events stream.
    pub fn wait_for_reports(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.reports().values().sum::<usize>() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} reports after {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// The header of a stream message, as text.
pub fn header(message: &StreamMessage, name: &str) -> String {
    message
        .headers
        .get(name)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// Parts per file in these clusters (64 rows chunked by 16).
pub const PARTS: u32 = 4;
