//! The distributed stages with the dataset store, scratch and sources all on a real
//! S3-compatible server (SeaweedFS): the same dataset as the embedded run on local disk,
//! sources refused with reasons, and an S3 outage in the middle of a run.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use roller_bus::scratch::Scratch;
use roller_model::rolling_store::RollingStore;
use roller_nats::StageKind::{Commit, Decode, Fetch, Write};
use roller_proto::subjects::headers;
use roller_proto::Notification;
use roller_storage::{Key, Storage};
use roller_test_support::cluster::{header, Cluster, MAX_SOURCE_BYTES, PARTS, SOURCE_BUCKET};
use roller_test_support::{read_array, rolling_store};

const CONVERGE: Duration = Duration::from_secs(240);

#[test]
fn store_scratch_and_sources_on_s3_give_the_local_disk_dataset() {
    let mut c = Cluster::on_s3("e2e", 10, 4);
    let expected = c.embedded_snapshot();
    for kind in [Fetch, Fetch, Decode, Decode, Write, Write, Commit] {
        c.spawn(kind);
    }
    let sent = c.replay(&c.lines);
    assert_eq!((sent.published, sent.duplicates), (40, 0));
    c.wait_until_equal(&expected, CONVERGE);

    let reports = c.reports();
    assert_eq!(reports.len(), 40 * PARTS as usize);
    assert!(reports.values().all(|&n| n == 1), "{reports:?}");
    assert_eq!(c.scratch_objects(), Vec::<String>::new());

    // Read through the logical view on S3: the same values as on local disk.
    let s3 = c.s3.as_ref().expect("on S3");
    let on_s3 = Arc::new(RollingStore::open(Arc::new(s3.store.clone())).expect("open on S3"));
    let mut local = c.config.clone();
    local.store.path = c.path("embedded");
    let on_disk = rolling_store(&local);
    let (s3_shape, s3_values) = read_array::<f32>(&on_s3, "air_temperature");
    let (disk_shape, disk_values) = read_array::<f32>(&on_disk, "air_temperature");
    assert_eq!(s3_shape, disk_shape);
    assert_eq!(s3_shape[..2], [10, 4]);
    assert_eq!(
        s3_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        disk_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn sources_outside_the_allow_list_missing_or_too_large_are_dead_lettered_with_reasons() {
    let mut c = Cluster::on_s3("bad", 2, 1);
    let expected = c.embedded_snapshot();
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    let s3 = c.s3.as_ref().expect("on S3");
    let big = Key::new("bad/big.nc").expect("key");
    s3.sources
        .put(
            &big,
            Bytes::from(vec![
                0u8;
                usize::try_from(MAX_SOURCE_BYTES).expect("small") + 1
            ]),
        )
        .expect("upload a large object");
    s3.client
        .create_bucket("elsewhere")
        .expect("create another bucket");
    let template = Notification::from_json(&c.lines[0]).expect("notification");
    let note_for = |bucket: &str, key: &str| {
        serde_json::json!({"model": template.model, "name": template.name,
            "bucket": bucket, "key": key,
            "forecast_reference_time": "2024-01-03T00:00:00Z", "forecast_period": "0"})
        .to_string()
    };
    let bad = [
        note_for("elsewhere", &template.key),
        note_for(SOURCE_BUCKET, "bad/missing.nc"),
        note_for(SOURCE_BUCKET, big.as_str()),
    ];
    let mut lines = c.lines.clone();
    lines.extend(bad);
    c.replay(&lines);
    c.wait_until_equal(&expected, CONVERGE);

    let fetch = c.dead_letters("fetch");
    let reasons: Vec<String> = fetch.iter().map(|m| header(m, headers::REASON)).collect();
    assert_eq!(fetch.len(), 3, "{reasons:?}");
    for expected in [
        "bucket `elsewhere` is not in source.buckets",
        "does not exist",
        "more than source.max_object_bytes",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "no reason mentions `{expected}`: {reasons:?}"
        );
    }
    assert!(c.dead_letters("decode").is_empty());
    // Nothing of theirs was written: the store is the good files' dataset (checked above) and
    // scratch is empty.
    assert_eq!(c.scratch_objects(), Vec::<String>::new());
}

#[test]
fn stopping_s3_for_five_seconds_mid_run_loses_nothing() {
    let mut c = Cluster::on_s3("outage", 10, 4);
    let expected = c.embedded_snapshot();
    for kind in [Fetch, Decode, Write, Commit] {
        c.spawn(kind);
    }
    c.replay(&c.lines);
    c.wait_for_reports(20, CONVERGE);
    let s3 = c.s3.as_mut().expect("on S3");
    s3.server.stop();
    std::thread::sleep(Duration::from_secs(5));
    s3.server.restart();
    c.wait_until_equal(&expected, CONVERGE);
    assert!(
        c.logged("transient failure; will retry"),
        "the outage did not reach any stage's work\n{}",
        c.logs()
    );
    assert!(
        c.dead_letters("fetch").is_empty()
            && c.dead_letters("decode").is_empty()
            && c.dead_letters("write").is_empty(),
        "the outage dead-lettered work\n{}",
        c.logs()
    );
    // A claim-check whose delete failed during the outage is left for the sweep, which
    // removes it on S3 as on disk.
    let s3 = c.s3.as_ref().expect("on S3");
    let scratch = Scratch::new(Arc::new(s3.scratch.clone()), 0);
    std::thread::sleep(Duration::from_millis(5));
    scratch.sweep().expect("sweep scratch on S3");
    assert_eq!(c.scratch_objects(), Vec::<String>::new());
}
