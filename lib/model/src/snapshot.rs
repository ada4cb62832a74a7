//! Snapshots: the view of one generation, at `http://HOST/<dataset>@<generation>`.
//!
//! A reader that opened a snapshot keeps reading that generation's data: its record (offset,
//! shapes, what is visible) is kept under `snapshots/<generation>.json` and the chunks it shows
//! are kept while it lives. The newest generation lives until it is replaced; a replaced one
//! lives for the grace recorded by the generation that replaced it, counted from that
//! generation's commit time. After that a snapshot is *expired*: readers must answer an error,
//! never fill values or another generation's data (the chunks it showed may be gone).

use crate::physical_key::snapshot_key;
use crate::record::{load_record_at, RecordError};
use crate::state::CommitRecord;
use roller_storage::Storage;

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
    Record(#[from] RecordError),
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
        return Err(RecordError::Corrupt {
            dataset: record.layout.name,
            what: format!(
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
