//! Snapshot lifetimes as the commit stage leaves them: a replaced generation stays readable for
//! the grace recorded by its successor, then answers an error.

use std::sync::Arc;

use roller_proto::WriteReport;

use roller_commit::{Committer, Event};
use roller_model::clock::ManualClock;
use roller_model::layout::testing::layout;
use roller_model::physical_key::snapshot_key;
use roller_model::record::{load_record, RecordError};
use roller_model::snapshot::{lifetime, load, Lifetime, SnapshotError};
use roller_model::state::CommitRecord;
use roller_storage::expiry::DeleteExpired;
use roller_storage::{MemoryStore, Storage};

fn report(abs: i64) -> WriteReport {
    roller_model::layout::testing::single_part_report("t", abs)
}

/// Three generations committed at 1000, 1010 and 1020 with a grace of 100 s.
fn three_generations() -> (Arc<dyn Storage>, CommitRecord) {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStore::new());
    let clock = ManualClock::at(1000);
    let mut committer = Committer::open(
        storage.clone(),
        layout(2, 1, &[(4, 4)]),
        Arc::new(DeleteExpired),
    )
    .expect("open")
    .with_grace(100)
    .with_clock(Arc::new(clock.clone()));
    for abs in 0..3 {
        committer.fold(&Event::Report(report(abs))).expect("fold");
        committer.commit().expect("commit");
        clock.advance(10);
    }
    let newest = load_record(storage.as_ref())
        .expect("load")
        .expect("record");
    (storage, newest)
}

#[test]
fn a_replaced_generation_lives_until_its_successor_time_plus_grace() {
    let (storage, newest) = three_generations();
    assert_eq!(newest.generation, 3);
    let s = storage.as_ref();
    assert_eq!(lifetime(s, 3, &newest).expect("3"), Lifetime::Newest);
    assert_eq!(lifetime(s, 2, &newest).expect("2"), Lifetime::Until(1120));
    assert_eq!(lifetime(s, 1, &newest).expect("1"), Lifetime::Until(1110));
    assert!(!Lifetime::Until(1110).is_expired(1109));
    assert!(Lifetime::Until(1110).is_expired(1110));
    let (record, _) = load(s, 1, &newest, 1109).expect("readable");
    assert_eq!((record.generation, record.head), (1, Some(0)));
    assert!(matches!(
        load(s, 1, &newest, 1110),
        Err(SnapshotError::Expired {
            generation: 1,
            newest: 3
        })
    ));
    for unknown in [0, 4] {
        assert!(matches!(
            lifetime(s, unknown, &newest),
            Err(SnapshotError::Unknown { newest: 3, .. })
        ));
    }
}

#[test]
fn a_missing_successor_means_expired_and_a_mislabelled_record_is_corrupt() {
    let (storage, newest) = three_generations();
    storage.delete(&snapshot_key(2)).expect("delete");
    assert!(lifetime(storage.as_ref(), 1, &newest)
        .expect("lifetime")
        .is_expired(0));
    let two = storage.get(&snapshot_key(1)).expect("get").expect("one");
    storage.put(&snapshot_key(2), two).expect("put");
    assert!(matches!(
        load(storage.as_ref(), 2, &newest, 1000),
        Err(SnapshotError::Record(RecordError::Corrupt { .. }))
    ));
}
