//! Snapshots: the view of one generation, at `http://HOST/<dataset>@<generation>`.
//!
//! A reader that opened a snapshot keeps reading that generation's data: its record (offset,
//! shapes, what is visible) is kept under `snapshots/<generation>.json` and the chunks it shows
//! are kept while it lives. The newest generation lives until it is replaced; a replaced one
//! lives for the grace recorded by the generation that replaced it, counted from that
//! generation's commit time. After that a snapshot is *expired*: readers must answer an error,
//! never fill values or another generation's data (the chunks it showed may be gone).

use crate::commit::{load_record_at, CommitError};
use crate::physical_key::snapshot_key;
use crate::state::CommitRecord;
use crate::storage::Storage;

/// How long a snapshot stays readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// It is the newest generation: readable until replaced (then its grace starts).
    Newest,
    /// Replaced: readable until this instant (seconds since the epoch), not at or after it.
    Until(i64),
}

impl Lifetime {
    /// Whether the snapshot can no longer be read at `now`.
    pub fn is_expired(self, now: i64) -> bool {
        matches!(self, Self::Until(until) if now >= until)
    }
}

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No such generation was ever committed.
    #[error("generation {generation} does not exist: the newest generation is {newest}")]
    Unknown {
        /// The generation asked for.
        generation: u64,
        /// The newest generation.
        newest: u64,
    },
    /// The generation was replaced longer than its grace ago.
    #[error("snapshot {generation} has expired (its grace period is over); the newest generation is {newest}: reopen the dataset")]
    Expired {
        /// The generation asked for.
        generation: u64,
        /// The newest generation.
        newest: u64,
    },
    /// Reading a record failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// The record of `generation` and how long it lives, given the dataset's `newest` record, at
/// `now`. Fails with [`SnapshotError::Expired`] once its grace has passed.
pub fn load(
    storage: &dyn Storage,
    generation: u64,
    newest: &CommitRecord,
    now: i64,
) -> Result<(CommitRecord, Lifetime), SnapshotError> {
    let lifetime = lifetime(storage, generation, newest)?;
    let expired = || SnapshotError::Expired {
        generation,
        newest: newest.generation,
    };
    if lifetime.is_expired(now) {
        return Err(expired());
    }
    if lifetime == Lifetime::Newest {
        return Ok((newest.clone(), lifetime));
    }
    let record = load_record_at(storage, &snapshot_key(generation))?.ok_or_else(expired)?;
    if record.generation != generation {
        return Err(CommitError::Corrupt {
            dataset: record.layout.name,
            reason: format!(
                "the snapshot record of generation {generation} holds generation {}",
                record.generation
            ),
        }
        .into());
    }
    Ok((record, lifetime))
}

/// How long `generation` lives, given the dataset's `newest` record.
pub fn lifetime(
    storage: &dyn Storage,
    generation: u64,
    newest: &CommitRecord,
) -> Result<Lifetime, SnapshotError> {
    if generation == 0 || generation > newest.generation {
        return Err(SnapshotError::Unknown {
            generation,
            newest: newest.generation,
        });
    }
    if generation == newest.generation {
        return Ok(Lifetime::Newest);
    }
    let successor = generation + 1;
    let replaced_by = if successor == newest.generation {
        Some(newest.clone())
    } else {
        load_record_at(storage, &snapshot_key(successor))?
    };
    // The successor's record is removed only after this one's grace: gone means expired.
    let until = replaced_by
        .and_then(|r| {
            roller_proto::time::parse_instant(&r.committed_at).map(|at| at.saturating_add(r.grace))
        })
        .unwrap_or(i64::MIN);
    Ok(Lifetime::Until(until))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use roller_proto::WriteReport;

    use super::*;
    use crate::clock::ManualClock;
    use crate::commit::{load_record, Committer};
    use crate::expiry::DeleteExpired;
    use crate::layout::tests::layout;
    use crate::physical_key::snapshot_key;
    use crate::storage::MemoryStore;

    fn report(abs: i64) -> WriteReport {
        WriteReport {
            dataset: "t".into(),
            source: abs.to_string(),
            abs,
            slot: 0,
            part: 0,
            parts: 1,
            chunks: 1,
            bytes: 1,
            schema: None,
        }
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
            committer.fold_report(&report(abs));
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
            Err(SnapshotError::Commit(CommitError::Corrupt { .. }))
        ));
    }
}
