//! The bridge against a real SQS-compatible server (moto, its own process) and a real
//! nats-server: messages in every form the publisher sends go from the queue onto the feed and,
//! through the stage processes, into their dataset, each file once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use roller_nats::StageKind::{Commit, Decode, Fetch, Write};
use roller_proto::subjects::headers;
use roller_proto::StreamKind;
use roller_sqs::SqsQueue;
use roller_test_support::cluster::{header, Cluster, PARTS};
use roller_test_support::http::request;
use roller_test_support::nats::free_port;
use roller_test_support::sqs::SqsServer;

const CONVERGE: Duration = Duration::from_secs(180);

/// A body no form of the feed parses.
const POISON: &str = "this is not a notice";
/// An S3 test event: parses, announces no file.
const TEST_EVENT: &str = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-06-14T03:40:00.000Z","Bucket":"met-office-atmospheric-model-data"}"#;

fn start_stages(c: &mut Cluster) {
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
}

fn send(c: &Cluster, queue: &SqsQueue, bodies: &[String]) {
    c.rt.block_on(queue.send_all(bodies))
        .expect("send to the queue");
}

/// Waits until the queue holds no message, visible or in flight.
fn wait_until_empty(c: &Cluster, queue: &SqsQueue) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let depth = c.rt.block_on(queue.depth()).expect("queue depth");
        if depth == (0, 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue still holds {depth:?} (visible, in flight)\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The feed's messages, by deduplication id: each id once.
fn feed_ids(c: &Cluster) -> Vec<String> {
    c.messages(StreamKind::Ingest, &c.subjects.feed())
        .iter()
        .map(|m| header(m, "Nats-Msg-Id"))
        .collect()
}

fn bridge_dead_letters(c: &Cluster) -> Vec<async_nats::jetstream::message::StreamMessage> {
    c.messages(StreamKind::Dead, &c.subjects.dead("bridge", "feed"))
}

#[test]
fn every_form_reaches_the_dataset_once_though_sent_twice_and_bridges_are_killed_mid_run() {
    let mut c = Cluster::todays_feed("bridged", 3, 4);
    let expected = c.embedded_snapshot();
    let sqs = SqsServer::start(&c.path("moto"));
    let queue = sqs.queue(&c.rt, "met-office-feed");
    start_stages(&mut c);
    // Every file in one of the four forms, then the first three again, a test event and a
    // poison message.
    let mut bodies = c.lines.clone();
    bodies.extend(c.lines[..3].iter().cloned());
    bodies.push(TEST_EVENT.to_owned());
    bodies.push(POISON.to_owned());
    send(&c, &queue, &bodies);
    // Bridges with one poller are killed -9 one after another while the messages flow (the
    // first once the feed holds its first message): whatever one received and had not deleted,
    // published or not, comes back after the visibility timeout (4 s) to the next, and the
    // feed drops what it already stored.
    let mut bridge = c.spawn_bridge(&sqs, queue_url(&queue), 1);
    let deadline = Instant::now() + CONVERGE;
    while feed_ids(&c).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nothing reached the feed\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for pause in [0, 150, 400] {
        std::thread::sleep(Duration::from_millis(pause));
        c.kill9(bridge);
        bridge = c.spawn_bridge(&sqs, queue_url(&queue), 1);
    }
    c.wait_until_equal(&expected, CONVERGE);
    wait_until_empty(&c, &queue);

    let ids = feed_ids(&c);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        ids.len(),
        "a message reached the feed twice: {ids:?}"
    );
    // Twelve files and the test event.
    assert_eq!(ids.len(), 13, "{ids:?}");
    assert_eq!(
        ids.iter().filter(|id| id.starts_with("feed:")).count(),
        12,
        "{ids:?}"
    );
    // The poison message: dead-lettered once, with its queue attributes, and gone from the queue.
    let dead = bridge_dead_letters(&c);
    assert_eq!(dead.len(), 1, "{}", c.logs());
    assert_eq!(dead[0].payload.as_ref(), POISON.as_bytes());
    assert_eq!(header(&dead[0], headers::STAGE), "bridge");
    assert!(
        header(&dead[0], headers::REASON).contains("JSON"),
        "{}",
        header(&dead[0], headers::REASON)
    );
    assert!(
        header(&dead[0], headers::QUEUE_RECEIVE_COUNT)
            .parse::<u32>()
            .expect("a count")
            >= 1
    );
    assert!(
        header(&dead[0], headers::QUEUE_SENT_TIMESTAMP)
            .parse::<u64>()
            .expect("a time")
            > 0
    );
    assert_eq!(header(&dead[0], headers::QUEUE), queue_url(&queue));
    assert!(c.dead_letters("fetch").is_empty(), "{}", c.logs());
}

#[test]
fn with_nats_stopped_nothing_is_deleted_early_and_nothing_is_lost() {
    let mut c = Cluster::todays_feed("outage", 2, 3);
    let expected = c.embedded_snapshot();
    let sqs = SqsServer::start(&c.path("moto"));
    let queue = sqs.queue(&c.rt, "met-office-feed");
    start_stages(&mut c);
    c.spawn_bridge(&sqs, queue_url(&queue), 2);
    // The first file through, so that every process is connected before the outage.
    send(&c, &queue, &c.lines[..1]);
    c.wait_for_reports(PARTS as usize, CONVERGE);
    wait_until_empty(&c, &queue);
    c.nats.stop();
    let rest = &c.lines[1..];
    send(&c, &queue, rest);
    // The bridge takes the messages and cannot store them: for the whole outage every one
    // stays in the queue (visible or in flight).
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(8) {
        let (visible, in_flight) = c.rt.block_on(queue.depth()).expect("queue depth");
        assert_eq!(
            visible + in_flight,
            rest.len() as u64,
            "a message left the queue while NATS was down\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Publishes waiting on the outage kept their messages hidden from other pollers.
    assert!(
        c.logged("message kept hidden longer"),
        "no visibility was extended\n{}",
        c.logs()
    );
    c.nats.restart();
    c.wait_until_equal(&expected, CONVERGE);
    wait_until_empty(&c, &queue);
    assert_eq!(feed_ids(&c).len(), c.lines.len());
}

#[test]
fn two_bridges_on_one_queue_split_the_work_without_duplicates() {
    let mut c = Cluster::todays_feed("shared", 3, 4);
    let expected = c.embedded_snapshot();
    let sqs = SqsServer::start(&c.path("moto"));
    let queue = sqs.queue(&c.rt, "met-office-feed");
    start_stages(&mut c);
    let ports = [free_port(), free_port()];
    let bridges = ports.map(|port| {
        let mut env = sqs.env();
        env.push((
            "ROLLER_HEALTH_LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ));
        c.spawn_bridge_with(queue_url(&queue), 1, &env)
    });
    let metric = |port: u16, name: &str| -> u64 {
        let text = request(port, "GET", "/metrics", &[]).body_text();
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    // Both poll before anything is sent, so neither starts late and finds the queue drained.
    for &i in &bridges {
        wait_logged_by(&c, i, "bridging the queue onto the feed");
    }
    // Each file twice, in batches, while both bridges poll. Which poller a message goes to is
    // the queue's choice: should one bridge take every message, the files are sent again (more
    // copies, still each file once on the feed), a few times at most.
    let mut sent = 0;
    for round in 1..=5 {
        for batch in c.lines.chunks(4).chain(c.lines.chunks(4)) {
            send(&c, &queue, batch);
            sent += batch.len();
            std::thread::sleep(Duration::from_millis(300));
        }
        wait_until_empty(&c, &queue);
        let took: Vec<u64> = ports
            .iter()
            .map(|&port| metric(port, "roller_queue_received_total"))
            .collect();
        if took.iter().all(|&n| n > 0) {
            break;
        }
        eprintln!("round {round}: one bridge took every message {took:?}; sending again");
    }
    c.wait_until_equal(&expected, CONVERGE);
    wait_until_empty(&c, &queue);
    let ids = feed_ids(&c);
    assert_eq!(
        ids.len(),
        c.lines.len(),
        "each file once on the feed: {ids:?}"
    );
    // Each bridge's metrics say what it moved.
    let received: Vec<u64> = ports
        .iter()
        .map(|&port| metric(port, "roller_queue_received_total"))
        .collect();
    let stored: u64 = ports
        .iter()
        .map(|&port| metric(port, "roller_feed_published_total"))
        .sum();
    let deleted: u64 = ports
        .iter()
        .map(|&port| metric(port, "roller_queue_deleted_total"))
        .sum();
    assert_eq!((stored, deleted), (c.lines.len() as u64, sent as u64));
    assert!(ports.iter().all(|&port| metric(port, "roller_ready") == 1));
    // SIGTERM: each bridge stops polling, finishes and exits 0, logging what it moved.
    for (&i, &n) in bridges.iter().zip(&received) {
        let status = c.terminate(i);
        assert!(status.success(), "bridge {i}: {status}\n{}", c.logs());
        assert_eq!(received_by(&c, i), n);
    }
    assert!(
        received.iter().all(|&n| n > 0),
        "both bridges should take messages from the queue: {received:?}\n{}",
        c.logs()
    );
    assert_eq!(received.iter().sum::<u64>(), sent as u64);
}

fn queue_url(queue: &SqsQueue) -> &str {
    use roller_bridge::Queue as _;
    queue.url()
}

/// Waits until process `i` has logged `text`.
fn wait_logged_by(c: &Cluster, i: usize, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&c.procs[i].log).is_ok_and(|log| log.contains(text)) {
        assert!(
            Instant::now() < deadline,
            "{} logged no `{text}`\n{}",
            c.procs[i].name,
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many messages bridge process `i` received, from the summary it logs when it stops.
fn received_by(c: &Cluster, i: usize) -> u64 {
    let log = std::fs::read_to_string(&c.procs[i].log).expect("bridge log");
    let summary = log
        .lines()
        .find(|l| l.contains("bridge stopped"))
        .unwrap_or_else(|| panic!("bridge {i} logged no summary\n{log}"));
    summary
        .split_whitespace()
        .find_map(|word| word.strip_prefix("received="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in `{summary}`"))
}

#[test]
fn an_unreachable_queue_is_retried_with_backoff_until_it_answers() {
    let mut c = Cluster::todays_feed("late-queue", 2, 2);
    let expected = c.embedded_snapshot();
    start_stages(&mut c);
    // The bridge starts before the queue service exists.
    let port = free_port();
    let health = free_port();
    let mut env = roller_test_support::sqs::env_for(port);
    env.push((
        "ROLLER_HEALTH_LISTEN".to_owned(),
        format!("127.0.0.1:{health}"),
    ));
    let url = roller_test_support::sqs::queue_url(port, "late");
    let bridge = c.spawn_bridge_with(&url, 1, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.logged("receiving from the queue failed; backing off") {
        assert!(Instant::now() < deadline, "no backoff logged\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        c.procs[bridge].child.try_wait().expect("wait").is_none(),
        "the bridge exited\n{}",
        c.logs()
    );
    let metrics = request(health, "GET", "/metrics", &[]).body_text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("roller_queue_errors_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The service comes up: the bridge takes the queue's messages on its next try.
    let sqs = SqsServer::start_on(&c.path("moto"), port);
    let queue = sqs.queue(&c.rt, "late");
    assert_eq!(queue_url(&queue), url);
    send(&c, &queue, &c.lines);
    c.wait_until_equal(&expected, CONVERGE);
    wait_until_empty(&c, &queue);
}
