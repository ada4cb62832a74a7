//! Each stage binary on its own: clear failures at start, graceful shutdown, health and
//! metrics endpoints, and the commit stage moving the window on roll events alone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use roller_nats::scheduler::publish_roll;
use roller_nats::shutdown::Shutdown;
use roller_nats::topology::Topology;
use roller_nats::StageKind::{self, Commit, Decode, Fetch, Scheduler, Write};
use roller_proto::RollEvent;
use roller_scheduler::roll_event;
use roller_test_support::cluster::{binary, Cluster};
use roller_test_support::http::request;
use roller_test_support::nats::{free_port, spawn_isolated};

const ALL: [StageKind; 5] = [Fetch, Decode, Write, Commit, Scheduler];

/// Runs a stage to completion with extra environment, capturing its output.
fn run(kind: StageKind, c: &Cluster, env: &[(&str, String)]) -> std::process::Output {
    spawn_isolated(
        Command::new(binary(kind))
            .arg("--config")
            .arg(&c.config_path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .and_then(std::process::Child::wait_with_output)
    .expect("run stage")
}

#[test]
fn stages_exit_non_zero_with_a_clear_message_when_nats_is_unreachable_or_the_config_is_bad() {
    let c = Cluster::new("start", 1, 1);
    let closed = format!(
        "nats://127.0.0.1:{}",
        roller_test_support::nats::free_port()
    );
    for kind in ALL {
        let out = run(kind, &c, &[("NATS_URL", closed.clone())]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", kind.binary());
        assert!(
            stderr.contains("cannot connect to NATS"),
            "{}: {stderr}",
            kind.binary()
        );
        let out = run(
            kind,
            &c,
            &[
                ("NATS_URL", c.nats.url()),
                ("ROLLER__ROLLING__WINDOW", "0".into()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", kind.binary());
        assert!(
            stderr.contains("rolling.window"),
            "{}: {stderr}",
            kind.binary()
        );
    }
}

#[test]
fn every_stage_shuts_down_cleanly_on_sigterm() {
    let mut c = Cluster::new("term", 2, 1);
    let expected = c.embedded_snapshot();
    let procs: Vec<usize> = ALL.iter().map(|&k| c.spawn(k)).collect();
    c.replay(&c.lines);
    c.wait_until_equal(&expected, Duration::from_secs(120));
    for i in procs {
        let started = Instant::now();
        let status = c.terminate(i);
        assert!(
            status.success(),
            "{} exited with {status}\n{}",
            c.procs[i].name,
            c.logs()
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{} took {:?}",
            c.procs[i].name,
            started.elapsed()
        );
    }
}

#[test]
fn roll_events_move_the_window_without_data() {
    let mut c = Cluster::new("roll", 3, 1);
    c.spawn(Commit);
    let topology = Topology {
        js: c.js.clone(),
        subjects: c.subjects.clone(),
        dataset: c.config.name.clone(),
    };
    // Runs are 6-hourly from 2024-01-01: rolling to 2024-01-03T00 makes abs index
    // 2024-01-03T00 / 6 h the head and drops everything older than the 3-run window.
    let until = roller_proto::time::parse_instant("2024-01-03T00:00:00Z").expect("time");
    let event = RollEvent {
        dataset: c.config.name.clone(),
        until,
    };
    c.rt.block_on(publish_roll(&topology, &event, &Shutdown::new()))
        .expect("publish roll");
    let head = until / (6 * 3600);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(last) = c.commits().last() {
            if last.head == Some(head) {
                assert_eq!(last.offset, head - 2);
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no commit with the new head\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A roll event far in the future is refused with a reason, not applied.
    let wild = RollEvent {
        dataset: c.config.name.clone(),
        until: roller_proto::time::now() + 30 * 86_400,
    };
    c.rt.block_on(publish_roll(&topology, &wild, &Shutdown::new()))
        .expect("publish roll");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.dead_letters("commit").is_empty() {
        assert!(Instant::now() < deadline, "no dead letter\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.commits().last().and_then(|e| e.head), Some(head));
    // The clock rule: the scheduler's event for a time is the newest expected run.
    let now = roller_proto::time::parse_instant("2024-01-03T08:30:00Z").expect("time");
    assert_eq!(
        roll_event(&c.config, now).until,
        roller_proto::time::parse_instant("2024-01-03T06:00:00Z").expect("time")
    );
}

/// Polls `path` on the health port until `check` accepts the reply.
fn wait_for(port: u16, path: &str, what: &str, check: impl Fn(u16, &str) -> bool, c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| request(port, "GET", path, &[]));
        if let Some(reply) = reply {
            if check(reply.status, &String::from_utf8_lossy(&reply.body)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stage_answers_health_probes_and_counts_its_messages_for_prometheus() {
    let mut c = Cluster::new("health", 1, 2);
    let port = free_port();
    c.env
        .push(("ROLLER_HEALTH_LISTEN".into(), format!("127.0.0.1:{port}")));
    c.spawn(Fetch);
    wait_for(port, "/readyz", "never ready", |s, _| s == 200, &c);
    assert_eq!(request(port, "GET", "/healthz", &[]).status, 200);

    // Two files fetched and acked, one message that is not JSON dead-lettered, and a notice
    // for a model this dataset does not take counted as unmatched and dropped (as embedded
    // mode does).
    c.replay(&c.lines);
    c.nats_pub("not JSON");
    let mut other: serde_json::Value = serde_json::from_str(&c.lines[0]).expect("notice JSON");
    other["model"] = "another-model".into();
    c.nats_pub(&other.to_string());
    let counted = |outcome: &'static str, n: u32| {
        move |status: u16, body: &str| {
            status == 200
                && body.contains(&format!(
                    "roller_messages_total{{stage=\"roller-fetch\",dataset=\"health\",outcome=\"{outcome}\"}} {n}"
                ))
        }
    };
    wait_for(port, "/metrics", "2 acked", counted("acked", 2), &c);
    wait_for(
        port,
        "/metrics",
        "1 dead letter",
        counted("dead_lettered", 1),
        &c,
    );
    wait_for(port, "/metrics", "1 unmatched", counted("unmatched", 1), &c);

    // NATS away: alive but not ready; back: ready again.
    c.nats.stop();
    wait_for(
        port,
        "/readyz",
        "still ready without NATS",
        |s, _| s == 503,
        &c,
    );
    assert_eq!(request(port, "GET", "/healthz", &[]).status, 200);
    let metrics = request(port, "GET", "/metrics", &[]);
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("roller_nats_connected{stage=\"roller-fetch\",dataset=\"health\"} 0"),
        "{}",
        String::from_utf8_lossy(&metrics.body)
    );
    c.nats.restart();
    wait_for(
        port,
        "/readyz",
        "not ready after NATS came back",
        |s, _| s == 200,
        &c,
    );
}

#[test]
fn the_commit_stage_counts_the_reports_it_commits_like_every_stage() {
    let mut c = Cluster::new("commit-metrics", 2, 1);
    for kind in [Fetch, Decode, Write] {
        c.spawn(kind);
    }
    // Only the commit process serves the health endpoints (one port per process).
    let port = free_port();
    c.env
        .push(("ROLLER_HEALTH_LISTEN".into(), format!("127.0.0.1:{port}")));
    c.spawn(Commit);
    wait_for(port, "/readyz", "never ready", |s, _| s == 200, &c);
    c.replay(&c.lines);
    // Every part of every file is reported once, and acked once it is committed.
    let reports =
        c.lines.len() * roller_model::layout::Layout::from_config(&c.config).parts() as usize;
    let expected = format!(
        "roller_messages_total{{stage=\"roller-commit\",dataset=\"commit-metrics\",outcome=\"acked\"}} {reports}"
    );
    wait_for(
        port,
        "/metrics",
        &format!("{reports} reports acked"),
        |status, body| status == 200 && body.contains(&expected),
        &c,
    );
}

#[test]
fn the_commit_stage_keeps_rolled_out_chunks_for_the_grace_then_removes_them_when_idle() {
    let mut c = Cluster::new("grace", 3, 1);
    c.env.push(("ROLLER__EXPIRY__GRACE".into(), "20s".into()));
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    c.replay(&c.lines);
    // Three 6-hourly runs from 2024-01-01T00: the newest is 2024-01-01T12.
    let newest =
        roller_proto::time::parse_instant("2024-01-01T12:00:00Z").expect("time") / (6 * 3600);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(c.drained() && c.commits().last().and_then(|e| e.head) == Some(newest)) {
        assert!(Instant::now() < deadline, "not ingested\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let store = roller_storage::LocalStore::new(&c.config.store.path, false).expect("store");
    let chunks = || {
        roller_storage::Storage::list_prefix(&store, "chunks/air_temperature/")
            .expect("list")
            .len()
    };
    let all = chunks();

    // Roll one run on: the first run leaves the window but stays for the grace.
    let first = newest;
    let topology = Topology {
        js: c.js.clone(),
        subjects: c.subjects.clone(),
        dataset: c.config.name.clone(),
    };
    let event = RollEvent {
        dataset: c.config.name.clone(),
        until: (first + 1) * 6 * 3600,
    };
    c.rt.block_on(publish_roll(&topology, &event, &Shutdown::new()))
        .expect("publish roll");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.commits().last().and_then(|e| e.head) != Some(first + 1) {
        assert!(Instant::now() < deadline, "no roll\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rolled = roller_model::record::load_record(&store)
        .expect("load")
        .expect("record");
    let committed = roller_proto::time::parse_instant(&rolled.committed_at).expect("time");
    assert!(
        !rolled.expiring.is_empty()
            && rolled
                .expiring
                .iter()
                .all(|e| e.release_at == Some(committed + 20)),
        "{:?}",
        rolled.expiring
    );
    assert_eq!(chunks(), all, "removed before the grace was over");

    // Idle, the stage removes them once released and records it at the same generation.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let record = roller_model::record::load_record(&store)
            .expect("load")
            .expect("record");
        if record.expiring.is_empty() {
            assert_eq!(record.generation, rolled.generation);
            assert!(chunks() < all);
            break;
        }
        assert!(Instant::now() < deadline, "never removed\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of `roller_<name>_total` in a `/metrics` body.
fn counter(body: &str, name: &str) -> u64 {
    let prefix = format!("roller_{name}_total{{");
    body.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{body}"))
}

/// The metric names a `/metrics` body declares.
fn metric_names(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_stage_reports_the_same_metrics_counted_as_embedded_mode_counts_them() {
    let mut c = Cluster::new("metrics", 2, 2);
    let mut ports = Vec::new();
    for kind in ALL {
        let port = free_port();
        c.env
            .push(("ROLLER_HEALTH_LISTEN".into(), format!("127.0.0.1:{port}")));
        c.spawn(kind);
        c.env.pop();
        ports.push((kind, port));
    }
    for &(_, port) in &ports {
        wait_for(port, "/readyz", "never ready", |s, _| s == 200, &c);
    }
    c.replay(&c.lines);
    let expected = c.embedded_snapshot();
    c.wait_until_equal(&expected, Duration::from_secs(120));

    let mut config = c.config.clone();
    config.store.path = c.path("embedded-again");
    let summary = roller_test_support::ingest(&config, &c.local_lines);
    let body = |kind: StageKind| {
        let port = ports.iter().find(|(k, _)| *k == kind).expect("port").1;
        String::from_utf8_lossy(&request(port, "GET", "/metrics", &[]).body).into_owned()
    };
    let names = metric_names(&body(Fetch));
    assert!(
        names.contains(&"roller_files_total".to_owned()),
        "{names:?}"
    );
    for kind in ALL {
        assert_eq!(metric_names(&body(kind)), names, "{}", kind.binary());
    }
    // Each box counts in its own stage what embedded mode counts for the same files.
    assert_eq!(counter(&body(Fetch), "notices"), summary.notifications);
    assert_eq!(counter(&body(Decode), "files"), summary.files);
    assert_eq!(
        counter(&body(Decode), "decoded_bytes"),
        summary.decoded_bytes
    );
    assert_eq!(counter(&body(Write), "chunks"), summary.chunks);
    assert_eq!(counter(&body(Write), "stored_bytes"), summary.stored_bytes);
    assert!(counter(&body(Commit), "commits") >= 1);
    assert_eq!(counter(&body(Scheduler), "files"), 0);
}

#[test]
fn a_catalog_changes_router_starts_where_the_old_one_got_to() {
    use async_nats::jetstream::consumer::DeliverPolicy;
    use async_nats::jetstream::AckKind;
    use futures::StreamExt;
    use roller_nats::route::setup_router;

    let c = Cluster::new("router", 1, 1);
    let settings = roller_nats::NatsSettings::from_vars(|name| {
        c.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("settings");
    let names = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    c.rt.block_on(async {
        let old = setup_router(&c.js, &settings, &names(&["a"]))
            .await
            .expect("the first router");
        assert_eq!(
            old.cached_info().config.deliver_policy,
            DeliverPolicy::All,
            "the stream's first router reads all it keeps"
        );
        for i in 0..5 {
            c.js.publish(c.subjects.feed(), format!("message {i}").into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
        // The old router takes the first three.
        let mut batch = old.fetch().max_messages(3).messages().await.expect("fetch");
        while let Some(message) = batch.next().await {
            message
                .expect("message")
                .double_ack_with(AckKind::Ack)
                .await
                .expect("ack");
        }
        let first_sequence =
            c.js.get_stream(c.subjects.stream(roller_proto::StreamKind::Ingest))
                .await
                .expect("stream")
                .info()
                .await
                .expect("stream info")
                .state
                .first_sequence;

        // The catalog gains a dataset: its router starts after what the old one acknowledged.
        let mut new = setup_router(&c.js, &settings, &names(&["b", "a"]))
            .await
            .expect("the new router");
        assert_eq!(
            new.cached_info().config.deliver_policy,
            DeliverPolicy::ByStartSequence {
                start_sequence: first_sequence + 3
            }
        );
        assert_eq!(new.info().await.expect("info").num_pending, 2);
        // Set up again (a restart, names in another order): the same consumer, where it was.
        let again = setup_router(&c.js, &settings, &names(&["a", "b"]))
            .await
            .expect("the new router again");
        assert_eq!(again.cached_info().name, new.cached_info().name);
        assert_eq!(
            again.cached_info().config.deliver_policy,
            new.cached_info().config.deliver_policy
        );
        let old_again = setup_router(&c.js, &settings, &names(&["a"]))
            .await
            .expect("the old router again");
        assert_eq!(
            old_again.cached_info().config.deliver_policy,
            DeliverPolicy::All
        );
    });
}
