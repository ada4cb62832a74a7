//! Storage proves itself: every local backend and decorator passes the conformance suite, and
//! failures injected by the faulty layer (a put failing mid-file, a record write failing, an
//! expiry failing) are retried and leave the same dataset as a run without them.

use std::sync::Arc;

use bytes::Bytes;
use roller_commit::{Committer, Event};
use roller_embedded::RunOptions;
use roller_model::layout::Layout;
use roller_model::metadata::data_spec;
use roller_model::physical_key::part_keys;
use roller_proto::WriteReport;
use roller_storage::expiry::DeleteExpired;
use roller_storage::{FaultyStore, LocalStore, MemoryStore, MeteredStore, Op, Storage};
use roller_test_support::conformance::check_storage;
use roller_test_support::{ingest, raw_store, small_files, snapshot, TestDataset};

#[test]
fn every_local_backend_and_decorator_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    check_storage(&MemoryStore::new());
    for (name, fsync) in [("synced", true), ("unsynced", false)] {
        check_storage(&LocalStore::new(dir.path().join(name), fsync).expect("local store"));
    }
    let inner: Arc<dyn Storage> = Arc::new(MemoryStore::new());
    check_storage(&MeteredStore::new(Arc::new(FaultyStore::new(inner))));
}

/// Compares two dataset directories object by object (see `snapshot` for what is left out).
fn assert_same_dataset(a: &std::path::Path, b: &std::path::Path) {
    let (a, b) = (snapshot(a), snapshot(b));
    let (ka, kb): (Vec<&String>, Vec<&String>) = (a.keys().collect(), b.keys().collect());
    assert_eq!(ka, kb, "the two datasets hold different objects");
    for (key, bytes) in &a {
        assert!(bytes == &b[key], "{key} differs");
    }
}

#[test]
fn a_put_failing_mid_file_and_a_record_write_failing_are_retried_to_the_same_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = small_files(&src, 3, 2, 20, 30);
    let lines: Vec<String> = files.iter().map(|f| f.notification.clone()).collect();
    let dataset = TestDataset::new("faults").leads(2);
    let clean = dataset.config(&dir.path().join("clean"), &src);
    assert!(ingest(&clean, &lines).dead_letters.is_empty());

    let faulty_cfg = dataset.config(&dir.path().join("faulty"), &src);
    let faulty = Arc::new(FaultyStore::new(raw_store(&faulty_cfg)));
    // A file's field spans several chunks: the third chunk put fails, after two have landed.
    faulty.fail_nth(Op::Put, 3);
    // The first write of the commit record fails.
    faulty.fail_matching(Op::Put, "roller.json", 1);
    let summary = roller_embedded::run(
        &faulty_cfg,
        faulty.clone(),
        lines.iter().cloned().map(Ok),
        &RunOptions::default(),
    )
    .expect("the run completes");
    assert!(faulty.all_fired(), "both faults were met");
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    assert_eq!(summary.files, 6);
    assert_same_dataset(&dir.path().join("clean"), &dir.path().join("faulty"));
}

fn report(abs: i64) -> WriteReport {
    roller_model::layout::testing::single_part_report("expiry", abs)
}

#[test]
fn an_expiry_that_fails_is_retried_at_the_next_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One chunk per target, a window of one run, no grace: each new run rolls the last out.
    let cfg = TestDataset::new("expiry")
        .window(1)
        .leads(1)
        .file_dims(&[
            ("projection_y_coordinate", 4, 4),
            ("projection_x_coordinate", 4, 4),
        ])
        .extra("[expiry]\ngrace = \"0s\"\n")
        .config(&dir.path().join("store"), &dir.path().join("src"));
    let faulty = Arc::new(FaultyStore::new(raw_store(&cfg)));
    let layout = Layout::from_config(&cfg);
    let data = data_spec(&layout);
    // Writes the one chunk of run `abs` as the write stage would.
    let chunk = |abs: u64| {
        let keys = part_keys(&layout, &data, abs, 0, 0).expect("keys");
        let [key] = &keys[..] else {
            panic!("one chunk per target, not {keys:?}")
        };
        faulty.put(key, Bytes::from_static(b"chunk")).expect("put");
        key.clone()
    };
    let mut committer = Committer::for_dataset(&cfg, faulty.clone(), Arc::new(DeleteExpired))
        .map(|c| c.with_clock(roller_model::clock::system()))
        .expect("committer");
    let first = chunk(0);
    committer.fold(&Event::Report(report(0))).expect("fold");
    committer.commit().expect("first commit");

    // The run rolls out, and removing its chunk fails.
    let second = chunk(1);
    faulty.fail_matching(Op::Delete, "chunks/", 1);
    committer.fold(&Event::Report(report(1))).expect("fold");
    committer
        .commit()
        .expect("a failed removal does not fail the commit");
    assert!(faulty.all_fired());
    assert!(
        faulty.get(&first).expect("get").is_some(),
        "the chunk whose removal failed is still there"
    );
    assert!(
        committer.record().expiring.iter().any(|e| e.abs == 0),
        "and still queued for removal"
    );

    // The next commit retries it.
    let _third = chunk(2);
    committer.fold(&Event::Report(report(2))).expect("fold");
    committer.commit().expect("third commit");
    assert_eq!(
        faulty.get(&first).expect("get"),
        None,
        "retried and removed"
    );
    assert_eq!(
        faulty.get(&second).expect("get"),
        None,
        "and the next one too"
    );
    assert!(committer.record().expiring.is_empty());
}
