//! A test cluster: a real nats-server and each stage as a separate OS process (the stage
//! binaries of `roller-nats`, which cargo builds before that crate's tests), over a temporary
//! dataset of synthetic files, plus what the tests inspect (streams, the store, an embedded run
//! of the same files for comparison).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::nats::{spawn_isolated, NatsServer};
use crate::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use crate::sqs::SqsServer;
use crate::{ingest, small_files, snapshot, snapshot_store, TestDataset};
use async_nats::jetstream::{self, message::StreamMessage};
use roller_model::config::{DatasetConfig, S3Config};
use roller_nats::replay::{replay, Replayed};
use roller_nats::{NatsSettings, StageKind};
use roller_proto::{wire, CommitEvent, StreamKind, Subjects, WriteReport};
use roller_s3::{Backends, S3Client, S3Store};
use roller_storage::{Key, Storage};
use roller_synth::write_config;

/// The stage binary of `kind`, next to the running test's own directory (`target/<profile>/`),
/// where cargo puts a package's binaries before running its integration tests.
pub fn binary(kind: StageKind) -> PathBuf {
    binary_named(kind.binary())
}

/// The binary `name` of `roller-nats` (e.g. `roller-bridge`), as [`binary`] finds it.
pub fn binary_named(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests of roller-nats (cargo builds its binaries first)",
        path.display()
    );
    path
}

/// One stage process of a cluster.
pub struct Proc {
    /// Its binary's name (`roller-fetch`, `roller-bridge`, ...).
    pub name: &'static str,
    /// The process.
    pub child: Child,
    /// Its standard error, kept for failure messages.
    pub log: PathBuf,
}

/// The S3 side of a cluster whose dataset store, scratch and sources are all on S3.
pub struct OnS3 {
    /// The S3-compatible server (SeaweedFS).
    pub server: S3Server,
    /// A client of it.
    pub client: S3Client,
    /// The dataset store.
    pub store: S3Store,
    /// The scratch area.
    pub scratch: S3Store,
    /// The bucket the sources were uploaded to ([`SOURCE_BUCKET`]).
    pub sources: S3Store,
}

/// `source.max_object_bytes` of S3 clusters.
pub const MAX_SOURCE_BYTES: u64 = 1 << 20;

/// The bucket S3 clusters read their sources from.
pub const SOURCE_BUCKET: &str = "sources";

/// A nats-server, stage processes and one dataset of synthetic files (see the module docs).
pub struct Cluster {
    /// Everything on disk: sources, store, scratch, logs.
    pub dir: tempfile::TempDir,
    /// The NATS server (stop and restart it to test outages).
    pub nats: NatsServer,
    /// The dataset config the stages read.
    pub config_path: PathBuf,
    /// The same config, parsed.
    pub config: DatasetConfig,
    /// One notification per synthetic file (naming the object in S3 for an S3 cluster).
    pub lines: Vec<String>,
    /// The same notifications naming the local files (for the embedded reference run).
    pub local_lines: Vec<String>,
    /// Set for a cluster on S3.
    pub s3: Option<OnS3>,
    /// Stage processes started so far (by [`Cluster::spawn`]).
    pub procs: Vec<Proc>,
    /// The runtime the test's own NATS calls run on.
    pub rt: tokio::runtime::Runtime,
    /// JetStream, for inspecting streams.
    pub js: jetstream::Context,
    /// The test's NATS connection.
    pub client: async_nats::Client,
    /// Subject and stream names.
    pub subjects: Subjects,
    /// Environment given to stage processes spawned from now on.
    pub env: Vec<(String, String)>,
}

/// Where a cluster's source files are and how they are announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sources {
    /// Local files, aws-earth notices naming their paths.
    Local,
    /// Objects in a bucket on a real S3-compatible server.
    S3,
    /// A mounted bucket laid out as today's feed, notices in every form.
    TodaysFeed,
}

impl Cluster {
    /// `runs x leads` synthetic files on a 64 x 48 grid chunked 16 x 48 (4 parts per file),
    /// window = `runs` (nothing rolls off), streams set up; everything on local disk.
    pub fn new(name: &str, runs: usize, leads: usize) -> Self {
        Self::build(name, runs, leads, Sources::Local)
    }

    /// Like [`Cluster::new`], with the dataset store, scratch and sources on a real
    /// S3-compatible server (buckets and lifecycle rule made as `roller setup` makes them).
    pub fn on_s3(name: &str, runs: usize, leads: usize) -> Self {
        Self::build(name, runs, leads, Sources::S3)
    }

    /// Like [`Cluster::new`], with the files in a mounted bucket laid out as today's feed and
    /// announced in every form the publisher uses, in turn (the embedded reference run reads
    /// the same lines).
    pub fn todays_feed(name: &str, runs: usize, leads: usize) -> Self {
        Self::build(name, runs, leads, Sources::TodaysFeed)
    }

    fn build(name: &str, runs: usize, leads: usize, sources: Sources) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        let files = small_files(&src, runs, leads, 64, 48);
        let feed = (sources == Sources::TodaysFeed)
            .then(|| crate::feed::todays_feed(&files, &dir.path().join("bucket")));
        let (model, match_name, mount) = match &feed {
            Some(feed) => (
                crate::feed::MODEL,
                crate::feed::PARAMETER,
                crate::feed::match_today(&feed.mount),
            ),
            None => ("mo-atmospheric-ukv-prd", "air_temperature", String::new()),
        };
        let config = TestDataset::new(name)
            .model(model)
            .match_name(match_name)
            .window(u32::try_from(runs).expect("runs"))
            .leads(u32::try_from(leads).expect("leads"))
            .file_dims(&[
                ("projection_y_coordinate", 64, 16),
                ("projection_x_coordinate", 48, 48),
            ])
            .extra(&format!(
                "[scratch]\npath = \"{}\"\nfsync = false\n{mount}",
                dir.path().join("scratch").display()
            ))
            .config(&dir.path().join("store"), &src);
        let local_lines: Vec<String> = match &feed {
            Some(feed) => (0..files.len())
                .map(|i| {
                    let form = crate::feed::FORMS[i % 4];
                    feed.forms[form][i].clone()
                })
                .collect(),
            None => files.iter().map(|f| f.notification.clone()).collect(),
        };
        let (config, lines, s3) = if sources == Sources::S3 {
            let (config, lines, s3) = move_to_s3(dir.path(), name, config, &local_lines);
            (config, lines, Some(s3))
        } else {
            (config, local_lines.clone(), None)
        };
        let config_path = dir.path().join("dataset.toml");
        write_config(&config, &config_path).expect("write config");
        let nats = NatsServer::start(&dir.path().join("nats"));
        let s3_env = s3.iter().flat_map(|s3| s3.server.env());
        let env: Vec<(String, String)> = [
            ("NATS_URL", nats.url()),
            ("ROLLER_STREAM_PREFIX", "test".into()),
            ("ROLLER_ACK_WAIT", "3s".into()),
            ("ROLLER_LEASE_TTL", "3s".into()),
            ("ROLLER_SHUTDOWN_GRACE", "5s".into()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .chain(s3_env)
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
            lines,
            local_lines,
            s3,
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

    /// A path inside the cluster's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts a stage process; returns its index.
    pub fn spawn(&mut self, kind: StageKind) -> usize {
        let config = ["--config".into(), self.config_path.display().to_string()];
        self.spawn_binary(kind.binary(), &config, &[])
    }

    /// Starts `roller-bridge` polling `queue_url` with `pollers` pollers, with the SQS server's
    /// environment; returns its index.
    pub fn spawn_bridge(&mut self, sqs: &SqsServer, queue_url: &str, pollers: u16) -> usize {
        self.spawn_bridge_with(queue_url, pollers, &sqs.env())
    }

    /// Starts `roller-bridge` polling `queue_url` with `pollers` pollers and the environment
    /// `env` (the SQS server's, `ROLLER_HEALTH_LISTEN`...); returns its index.
    pub fn spawn_bridge_with(
        &mut self,
        queue_url: &str,
        pollers: u16,
        env: &[(String, String)],
    ) -> usize {
        let args = [
            "--queue-url".to_owned(),
            queue_url.to_owned(),
            "--pollers".to_owned(),
            pollers.to_string(),
            // Short, so messages a killed bridge held come back quickly.
            "--visibility-timeout".to_owned(),
            "4".to_owned(),
            "--wait".to_owned(),
            "1".to_owned(),
        ];
        self.spawn_binary("roller-bridge", &args, env)
    }

    /// Starts the binary `name` with `args` and the cluster's environment plus `env`; returns
    /// its index.
    pub fn spawn_binary(
        &mut self,
        name: &'static str,
        args: &[String],
        env: &[(String, String)],
    ) -> usize {
        let n = self.procs.len();
        let log = self.dir.path().join("logs").join(format!("{name}-{n}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = spawn_isolated(
            Command::new(binary_named(name))
                .args(args)
                .envs(self.env.iter().chain(env).map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(file),
        )
        .expect("start stage");
        self.procs.push(Proc { name, child, log });
        n
    }

    /// SIGKILL: a crash at an arbitrary instant.
    pub fn kill9(&mut self, i: usize) {
        let _ = self.procs[i].child.kill();
        let _ = self.procs[i].child.wait();
    }

    /// Sends `signal` to process `i`; false if it is gone.
    fn signal(&self, i: usize, signal: &str) -> bool {
        let pid = self.procs[i].child.id().to_string();
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub fn terminate(&mut self, i: usize) -> ExitStatus {
        // Gone already? Then the wait below gives its status.
        let _ = self.signal(i, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.procs[i].child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within 30 s of SIGTERM\n{}",
                self.procs[i].name,
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

    /// The dataset the embedded runner makes on local disk from the same files, as a snapshot.
    pub fn embedded_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut config = self.config.clone();
        config.store.path = self.path("embedded");
        let summary = ingest(&config, &self.local_lines);
        assert!(
            summary.dead_letters.is_empty(),
            "the embedded reference run failed: {:?}",
            summary.dead_letters
        );
        snapshot(&config.store.path)
    }

    /// Whether every stage's consumer, and the feed's router, has nothing pending or unacked.
    pub fn drained(&self) -> bool {
        let dataset = &self.config.name;
        let router =
            roller_nats::route::consumer_name(&self.subjects, std::slice::from_ref(dataset));
        self.rt.block_on(async {
            for (name, kind) in [
                (router, StreamKind::Ingest),
                (self.subjects.consumer("fetch", dataset), StreamKind::Ingest),
                (self.subjects.consumer("decode", dataset), StreamKind::Work),
                (self.subjects.consumer("write", dataset), StreamKind::Work),
                (
                    self.subjects.consumer("commit", dataset),
                    StreamKind::Events,
                ),
            ] {
                let Ok(stream) = self.js.get_stream(self.subjects.stream(kind)).await else {
                    return false;
                };
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
            let got = self.store_snapshot();
            if &got == expected && self.drained() {
                // Still equal once everything has settled.
                assert_eq!(&self.store_snapshot(), expected);
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

    /// The dataset store, as a snapshot.
    pub fn store_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        match &self.s3 {
            Some(s3) => snapshot_store(&s3.store),
            None => snapshot(&self.config.store.path),
        }
    }

    /// Objects left in scratch.
    pub fn scratch_objects(&self) -> Vec<String> {
        if let Some(s3) = &self.s3 {
            return s3
                .scratch
                .list_prefix("")
                .expect("list scratch")
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect();
        }
        let mut out = Vec::new();
        let mut pending = vec![self.path("scratch")];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    pending.push(p);
                } else {
                    out.push(p.display().to_string());
                }
            }
        }
        out
    }

    /// Whether any stage's log has a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.procs.iter().any(|p| {
            std::fs::read_to_string(&p.log).is_ok_and(|log| log.lines().any(|l| l.contains(text)))
        })
    }

    /// Every stage's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {} ({})\n", p.name, p.log.display()));
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

/// Starts an S3 server under `dir`, uploads the sources into [`SOURCE_BUCKET`] and points the
/// config's store, scratch and sources at S3; returns the config, the notifications naming
/// the uploaded objects, and the S3 side.
fn move_to_s3(
    dir: &std::path::Path,
    name: &str,
    mut config: DatasetConfig,
    local_lines: &[String],
) -> (DatasetConfig, Vec<String>, OnS3) {
    let server = S3Server::start(&dir.join("s3"));
    config.store.path = format!("s3://roller-data/datasets/{name}").into();
    if let Some(scratch) = config.scratch.as_mut() {
        scratch.path = "s3://roller-data/scratch".into();
    }
    config.source.buckets = vec![SOURCE_BUCKET.into()];
    // Far above the synthetic files, low enough for a test to upload a larger object.
    config.source.max_object_bytes = MAX_SOURCE_BYTES;
    config.s3 = S3Config {
        endpoint_url: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        force_path_style: true,
        ..S3Config::default()
    };
    let client =
        S3Client::with_static_credentials(&config.s3, ACCESS_KEY, SECRET_KEY).expect("S3 client");
    let backends = Backends::open_with(&config, Some(client.clone())).expect("backends");
    // SeaweedFS answers HTTP a moment before its filer takes buckets: retry for a while.
    let mut attempt = 0;
    while let Err(e) = roller_s3::setup::setup_storage(&config, &backends) {
        attempt += 1;
        assert!(attempt < 20, "set up the buckets: {e}");
        std::thread::sleep(Duration::from_millis(500));
    }
    client
        .create_bucket(SOURCE_BUCKET)
        .expect("create the source bucket");
    let sources = S3Store::new(client.clone(), SOURCE_BUCKET, "");
    let lines = local_lines
        .iter()
        .map(|line| {
            let mut note: serde_json::Value = serde_json::from_str(line).expect("notification");
            let path = PathBuf::from(note["key"].as_str().expect("key"));
            let file = path.file_name().expect("file name").to_string_lossy();
            let key = format!("{name}/{file}");
            sources
                .put_file(&Key::new(key.clone()).expect("key"), &path)
                .expect("upload a source");
            note["bucket"] = SOURCE_BUCKET.into();
            note["key"] = key.into();
            note.to_string()
        })
        .collect();
    let s3 = OnS3 {
        store: backends.s3_store.clone().expect("store on S3"),
        scratch: S3Store::new(client.clone(), "roller-data", "scratch"),
        sources,
        client,
        server,
    };
    (config, lines, s3)
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
