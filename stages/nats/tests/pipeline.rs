//! The distributed stages end to end: a real nats-server, every stage a separate OS process.
//! Each test compares the dataset with what the embedded runner makes of the same files.

use std::time::Duration;

use roller_nats::StageKind::{Commit, Decode, Fetch, Write};
use roller_proto::subjects::headers;
use roller_proto::Notification;
use roller_test_support::cluster::{header, Cluster, PARTS};

const CONVERGE: Duration = Duration::from_secs(180);

#[test]
fn two_replicas_per_stage_give_the_embedded_dataset_byte_for_byte_and_process_each_file_once() {
    let mut c = Cluster::new("e2e", 10, 4);
    let expected = c.embedded_snapshot();
    assert_eq!(c.lines.len(), 40);
    for kind in [Fetch, Fetch, Decode, Decode, Write, Write, Commit] {
        c.spawn(kind);
    }
    let sent = c.replay(&c.lines);
    assert_eq!((sent.published, sent.duplicates), (40, 0));
    // The same notification again, inside the dedup window: dropped by JetStream.
    let again = c.replay(&c.lines[..1]);
    assert_eq!(
        again.duplicates, 1,
        "a duplicate notification must be dropped"
    );
    c.wait_until_equal(&expected, CONVERGE);

    let reports = c.reports();
    assert_eq!(
        reports.len(),
        40 * PARTS as usize,
        "one report per file part"
    );
    assert!(
        reports.values().all(|&n| n == 1),
        "some part was reported more than once: {:?}",
        reports.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    // Every claim-check was removed once consumed.
    assert_eq!(c.scratch_objects(), Vec::<String>::new());
    assert!(c.dead_letters("fetch").is_empty() && c.dead_letters("decode").is_empty());
    // Commit generations are consecutive.
    let generations: Vec<u64> = c.commits().iter().map(|e| e.generation).collect();
    assert_eq!(
        generations,
        (1..=generations.len() as u64).collect::<Vec<_>>()
    );
}

#[test]
fn killing_decode_and_write_mid_run_still_converges_to_the_embedded_dataset() {
    let mut c = Cluster::new("crash", 10, 4);
    let expected = c.embedded_snapshot();
    let decode = c.spawn(Decode);
    let write = c.spawn(Write);
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    c.replay(&c.lines);
    c.wait_for_reports(20, CONVERGE);
    c.kill9(decode);
    c.kill9(write);
    c.spawn(Decode);
    c.spawn(Write);
    c.wait_until_equal(&expected, CONVERGE);
}

#[test]
fn bad_notifications_end_in_the_dead_letter_stream_with_reasons() {
    let mut c = Cluster::new("bad", 2, 1);
    let expected = c.embedded_snapshot();
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    let template = Notification::from_json(&c.lines[0]).expect("notification");
    let note_for = |key: &str| {
        serde_json::json!({"model": template.model, "name": template.name, "key": key,
            "forecast_reference_time": "2024-01-03T00:00:00Z", "forecast_period": "0"})
        .to_string()
    };
    let src = c.path("src");
    let bytes = std::fs::read(&template.key).expect("read a source");
    std::fs::write(src.join("truncated.nc"), &bytes[..bytes.len() / 2]).expect("write");
    let missing = note_for(&src.join("missing.nc").display().to_string());
    let truncated = note_for(&src.join("truncated.nc").display().to_string());
    // The good files go in as plain `nats pub` would send them; the bad ones as a replay.
    for line in &c.lines {
        c.nats_pub(line);
    }
    c.replay(&[missing, "this is not JSON".into(), truncated]);
    c.wait_until_equal(&expected, CONVERGE);

    let fetch = c.dead_letters("fetch");
    let decode = c.dead_letters("decode");
    let reasons: Vec<String> = fetch
        .iter()
        .chain(&decode)
        .map(|m| header(m, headers::REASON))
        .collect();
    assert_eq!(fetch.len(), 2, "{reasons:?}");
    assert_eq!(decode.len(), 1, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("does not exist")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a valid notification")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("cannot read")),
        "{reasons:?}"
    );
    for m in fetch.iter().chain(&decode) {
        assert_eq!(
            header(m, headers::ORIGINAL_SUBJECT).split('.').nth(1),
            Some(if header(m, headers::STAGE) == "fetch" {
                "ingest"
            } else {
                "work"
            })
        );
    }
    assert!(fetch.iter().any(|m| &m.payload[..] == b"this is not JSON"));
}

#[test]
fn two_commit_instances_never_interleave_and_the_standby_takes_over() {
    let mut c = Cluster::new("lease", 10, 2);
    let expected = c.embedded_snapshot();
    let first = c.spawn(Commit);
    c.spawn(Commit);
    for kind in [Fetch, Decode, Write] {
        c.spawn(kind);
    }
    c.replay(&c.lines[..10]);
    c.wait_for_reports(10 * PARTS as usize, CONVERGE);
    // Wait for a commit, then stop whichever instance leads: the other one takes over.
    let deadline = std::time::Instant::now() + CONVERGE;
    while c.commits().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no commit\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let leader = c.commits()[0].holder.clone();
    let leader_index = if leader.ends_with(&format!("-{}", c.procs[first].child.id())) {
        first
    } else {
        first + 1
    };
    assert!(
        c.terminate(leader_index).success(),
        "graceful exit\n{}",
        c.logs()
    );
    c.replay(&c.lines[10..]);
    c.wait_until_equal(&expected, CONVERGE);

    let commits = c.commits();
    let generations: Vec<u64> = commits.iter().map(|e| e.generation).collect();
    assert_eq!(
        generations,
        (1..=generations.len() as u64).collect::<Vec<_>>(),
        "committed generations have a gap or repeat"
    );
    // One leader, then the other: no interleaving.
    let mut holders: Vec<&str> = commits.iter().map(|e| e.holder.as_str()).collect();
    holders.dedup();
    assert_eq!(holders.len(), 2, "{holders:?}");
    assert_eq!(holders[0], leader);
}

#[test]
fn restarting_nats_server_mid_run_loses_nothing() {
    let mut c = Cluster::new("restart", 10, 4);
    let expected = c.embedded_snapshot();
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    c.replay(&c.lines);
    c.wait_for_reports(20, CONVERGE);
    c.nats.restart();
    c.wait_until_equal(&expected, CONVERGE);
}

#[test]
fn a_feed_mixing_every_notice_form_gives_the_embedded_dataset_through_a_mounted_bucket() {
    let mut c = Cluster::todays_feed("today", 3, 4);
    let expected = c.embedded_snapshot();
    assert_eq!(
        expected
            .keys()
            .filter(|k| k.starts_with("chunks/air_temperature/"))
            .count(),
        12 * PARTS as usize,
        "the embedded run wrote every file"
    );
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    let sent = c.replay(&c.lines);
    assert_eq!((sent.published, sent.duplicates), (12, 0));
    // The same notice again: the same message id, dropped.
    let again = c.replay(&c.lines[1..2]);
    assert_eq!(again.duplicates, 1);
    // An S3 test event is acked and skipped, not dead-lettered.
    c.nats_pub(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#);
    c.wait_until_equal(&expected, CONVERGE);
    assert!(c.dead_letters("fetch").is_empty(), "{}", c.logs());
}
