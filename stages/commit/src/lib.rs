//! The commit box, the last stage: the only writer of a dataset's metadata.
//!
//! It folds write reports and roll events into the [`CommitRecord`] and publishes each new
//! generation with two puts: its snapshot record (`snapshots/<generation>.json`, what the
//! snapshot URL presents) and then `roller.json` (the newest view). That is O(1): no chunk is
//! rewritten, no prefix listed.
//!
//! What falls out of the window is not removed at once: readers that opened an older snapshot
//! may still read it. The commit that rolls chunks out stamps them with a release time (its own
//! time plus the grace) and retires the replaced generation's snapshot record the same way;
//! both wait in the record, so they survive restarts. After each commit, and on
//! [`Committer::tidy`] when idle, whatever has been released is deleted (local disk) or tagged
//! (S3). Failures stay queued and are retried at the next attempt.

pub mod reference;

use std::sync::Arc;

use bytes::Bytes;
use roller_proto::{RollEvent, WriteReport};

use crate::reference::{ReferenceError, ReferenceWriter};
use roller_bus::metrics::{Counter, Metrics};
use roller_model::clock::{self, Clock};
use roller_model::config::DatasetConfig;
use roller_model::layout::{Layout, LayoutMismatch};
use roller_model::metadata::{data_spec, ArraySpec, Role};
use roller_model::physical_key::{commit_key, indexed_chunk_key, part_keys, snapshot_key};
use roller_model::record::{load_record, RecordError};
use roller_model::state::{CommitRecord, Folded, MAX_AHEAD_SECONDS};
use roller_storage::expiry::Expiry;
use roller_storage::retry::Retryable;
use roller_storage::{KeyError, Storage, StorageError};

/// Most write reports and roll events folded into one commit, in every mode (embedded and the
/// NATS commit stage).
pub const MAX_BATCH: usize = 512;

/// Why a commit could not be made or a dataset not opened.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Storage failed; the commit can be retried.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored commit record could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The commit record could not be serialised.
    #[error("the commit record of dataset `{dataset}` could not be serialised ({source})")]
    Unserialisable {
        /// Dataset name.
        dataset: String,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The config no longer matches the stored dataset.
    #[error("dataset `{dataset}`: {mismatch}")]
    Incompatible {
        /// Dataset name.
        dataset: String,
        /// What differs.
        #[source]
        mismatch: LayoutMismatch,
    },
    /// A key could not be formed (a dataset or array name the store refuses).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The reference view is enabled but cannot be set up.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// An event names another dataset than the committer's.
    #[error("an event for dataset `{event_dataset}` reached the commit stage of `{dataset}`; check the stream prefix and subjects")]
    OtherDataset {
        /// The committer's dataset.
        dataset: String,
        /// The dataset the event names.
        event_dataset: String,
    },
    /// A write report came before the file dims it was cut for were stored (transient).
    #[error("dataset `{dataset}`: a write report came before any file fixed the dataset's file dims (decode fixes them before it hands on a slab); retry")]
    NotFixed {
        /// Dataset name.
        dataset: String,
    },
    /// A roll event is further ahead of the clock than [`MAX_AHEAD_SECONDS`].
    #[error("a roll to {until} is more than 2 days ahead of the clock ({now}); it would move every run out of the window: roll to a nearer time, or check the clock")]
    RollTooFarAhead {
        /// Where the roll would move the window to.
        until: String,
        /// The committer's clock.
        now: String,
    },
}

/// Summary of one published commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Generation of the new record.
    pub generation: u64,
    /// Offset after the commit.
    pub offset: i64,
    /// Head after the commit.
    pub head: Option<i64>,
}

/// Most snapshot records one commit removes: each commit adds one, so the queue still drains,
/// and no commit pays for a long backlog (a tidy, off the commit path, removes them all).
const MAX_SNAPSHOT_REMOVALS: u64 = 16;

/// Holds a dataset's state in memory and publishes it.
#[derive(Debug)]
pub struct Committer {
    storage: Arc<dyn Storage>,
    expiry: Arc<dyn Expiry>,
    record: CommitRecord,
    data: ArraySpec,
    /// The view changed: the next commit publishes a new generation.
    dirty: bool,
    /// Released chunks or snapshot records were removed since `roller.json` was last written.
    untidy: bool,
    grace: i64,
    clock: Arc<dyn Clock>,
    references: Option<ReferenceWriter>,
    metrics: Arc<Metrics>,
}

/// What the commit stage takes in, in every mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A part was written.
    Report(WriteReport),
    /// The window is to move (the scheduler, `roller roll`).
    Roll(RollEvent),
}

impl Committer {
    /// Opens a dataset's state from storage (or starts an empty one). A changed window or
    /// visibility is accepted and published by the next commit; any other layout change is
    /// refused. Pending expiries (left over from a crash, or waiting for their grace) are
    /// carried out once released, at the next commit or [`Committer::tidy`]. The grace is 0
    /// and the clock the system's until set with [`Committer::with_grace`] and
    /// [`Committer::with_clock`].
    pub fn open(
        storage: Arc<dyn Storage>,
        layout: Layout,
        expiry: Arc<dyn Expiry>,
    ) -> Result<Self, CommitError> {
        let (record, dirty) = match load_record(storage.as_ref()) {
            Ok(Some(mut record)) => {
                layout.compatible_with(&record.layout).map_err(|mismatch| {
                    CommitError::Incompatible {
                        dataset: layout.name.clone(),
                        mismatch,
                    }
                })?;
                let mut dirty = record.layout.visibility != layout.visibility
                    || record.layout.run_length != layout.run_length;
                record.layout.visibility = layout.visibility;
                record.layout.run_length = layout.run_length;
                dirty |= record.set_window(layout.window) != Folded::Unchanged;
                (record, dirty)
            }
            Ok(None) => (CommitRecord::empty(layout), false),
            Err(RecordError::Unparseable { source, .. }) => {
                return Err(RecordError::Unparseable {
                    dataset: layout.name,
                    source,
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        };
        let data = data_spec(&record.layout);
        Ok(Self {
            storage,
            expiry,
            record,
            data,
            dirty,
            untidy: false,
            grace: 0,
            clock: clock::system(),
            references: None,
            metrics: Arc::default(),
        })
    }

    /// Keeps rolled-out chunks and replaced snapshots readable for `seconds` after the commit
    /// that replaced them (`expiry.grace`).
    #[must_use]
    pub fn with_grace(mut self, seconds: i64) -> Self {
        self.grace = seconds.max(0);
        self
    }

    /// Tells the time with `clock` (tests move it instead of waiting for a grace period).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Has `writer` write the reference view of every published commit (off this thread).
    #[must_use]
    pub fn with_references(mut self, writer: Option<ReferenceWriter>) -> Self {
        self.references = writer;
        self
    }

    /// The state as it will be published by the next commit.
    pub fn record(&self) -> &CommitRecord {
        &self.record
    }

    /// Whether there is something to commit.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The committer `config` describes, in every mode: its layout, its grace (`expiry.grace`)
    /// and its reference file (`reference`); the system clock and fresh counters until set.
    pub fn for_dataset(
        config: &DatasetConfig,
        storage: Arc<dyn Storage>,
        expiry: Arc<dyn Expiry>,
    ) -> Result<Self, CommitError> {
        let references = ReferenceWriter::for_dataset(config, storage.clone())?;
        Ok(Self::open(storage, Layout::from_config(config), expiry)?
            .with_grace(config.expiry.grace.0)
            .with_references(references))
    }

    /// Counts commits and roll events in `metrics` (the process's shared counters).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Folds one event after checking that it belongs here, in both modes: an event for
    /// another dataset, or a roll further ahead of the clock than [`MAX_AHEAD_SECONDS`], is
    /// refused (the caller dead-letters it) and changes nothing.
    pub fn fold(&mut self, event: &Event) -> Result<Folded, CommitError> {
        let dataset = match event {
            Event::Report(report) => &report.dataset,
            Event::Roll(roll) => &roll.dataset,
        };
        if dataset != &self.record.layout.name {
            return Err(CommitError::OtherDataset {
                dataset: self.record.layout.name.clone(),
                event_dataset: dataset.clone(),
            });
        }
        match event {
            Event::Report(report) => {
                self.fix_layout()?;
                Ok(self.fold_report(report))
            }
            Event::Roll(roll) => {
                self.check_roll(roll)?;
                Ok(self.fold_roll(roll))
            }
        }
    }

    /// Reads the file dims the dataset's first file fixed into the record, when its config left
    /// them out and no commit has recorded them yet.
    fn fix_layout(&mut self) -> Result<(), CommitError> {
        if self.record.layout.is_fixed() {
            return Ok(());
        }
        let Some((layout, _)) =
            roller_model::inferred::fixed_layout(self.storage.as_ref(), &self.record.layout)?
        else {
            return Err(CommitError::NotFixed {
                dataset: self.record.layout.name.clone(),
            });
        };
        self.record.layout = layout;
        self.data = data_spec(&self.record.layout);
        self.dirty = true;
        Ok(())
    }

    /// Folds a write report into the state (checked by [`Committer::fold`]).
    fn fold_report(&mut self, report: &WriteReport) -> Folded {
        let folded = self.record.fold_report(report);
        if folded == Folded::Refused {
            tracing::warn!(
                dataset = %self.record.layout.name,
                source = %report.source,
                abs = report.abs,
                slot = report.slot,
                part = report.part,
                parts = report.parts,
                "write report does not fit the dataset's layout; ignored"
            );
        }
        self.dirty |= matches!(folded, Folded::Changed | Folded::OutOfWindow);
        folded
    }

    /// Refuses a roll event further ahead of the clock than [`MAX_AHEAD_SECONDS`].
    fn check_roll(&self, roll: &RollEvent) -> Result<(), CommitError> {
        let now = self.clock.now();
        if roll.until > now.saturating_add(MAX_AHEAD_SECONDS) {
            return Err(CommitError::RollTooFarAhead {
                until: roller_proto::time::format_instant(roll.until),
                now: roller_proto::time::format_instant(now),
            });
        }
        Ok(())
    }

    /// Folds a roll event into the state (checked by [`Committer::fold`]).
    fn fold_roll(&mut self, roll: &RollEvent) -> Folded {
        let folded = self.record.fold_roll(roll);
        self.metrics.incr(Counter::RollEvents);
        self.dirty |= folded != Folded::Unchanged;
        folded
    }

    /// Publishes the state as a new generation if it changed, then removes what has been
    /// released. Returns the new generation, or `None` if there was nothing to commit.
    pub fn commit(&mut self) -> Result<Option<Committed>, CommitError> {
        // Nothing is published before a file fixes the file dims (a config that leaves them
        // out): rolls folded until then are published with that file.
        if !self.dirty || !self.record.layout.is_fixed() {
            return Ok(None);
        }
        let now = self.clock.now();
        let mut next = self.record.clone();
        next.advance_generation(now, self.grace);
        let bytes = self.serialise(&next)?;
        // The snapshot first: whenever `roller.json` names a generation, its snapshot exists.
        self.storage
            .put(&snapshot_key(next.generation), bytes.clone())?;
        self.storage.put(&commit_key(), bytes)?;
        self.record = next;
        self.dirty = false;
        self.untidy = false;
        if let Some(references) = &self.references {
            references.submit(self.record.clone());
        }
        self.metrics.incr(Counter::Commits);
        self.remove_released(now, MAX_SNAPSHOT_REMOVALS);
        tracing::debug!(
            dataset = %self.record.layout.name,
            generation = self.record.generation,
            offset = self.record.offset,
            head = ?self.record.head,
            "committed"
        );
        Ok(Some(Committed {
            generation: self.record.generation,
            offset: self.record.offset,
            head: self.record.head,
        }))
    }

    /// Whether [`Committer::tidy`] has work: something is released, or removals are not yet
    /// recorded in `roller.json`.
    pub fn needs_tidy(&self) -> bool {
        self.untidy || self.record.has_released(self.clock.now())
    }

    /// Between commits: removes what has been released and records the shorter queues in
    /// `roller.json` ([`Committer::remove_released_now`], then
    /// [`Committer::record_removals`]). Returns whether `roller.json` was written.
    pub fn tidy(&mut self) -> Result<bool, CommitError> {
        self.remove_released_now();
        self.record_removals()
    }

    /// Removes everything released by now (no metadata write). Queued chunks of a record
    /// written before grace existed get their release time first.
    pub fn remove_released_now(&mut self) {
        let now = self.clock.now();
        let release = now.saturating_add(self.grace);
        for e in self
            .record
            .expiring
            .iter_mut()
            .filter(|e| e.release_at.is_none())
        {
            e.release_at = Some(release);
            self.untidy = true;
        }
        self.remove_released(now, u64::MAX);
    }

    /// Whether removals are not yet recorded in `roller.json`.
    pub fn has_unrecorded_removals(&self) -> bool {
        self.untidy && !self.dirty && self.record.generation > 0
    }

    /// Records removals in `roller.json`, keeping the generation (the view does not change,
    /// so no new snapshot). Returns whether it wrote. A writer that shares the dataset fences
    /// its lease just before this call, not before the removals (they can take long).
    pub fn record_removals(&mut self) -> Result<bool, CommitError> {
        if !self.has_unrecorded_removals() {
            return Ok(false);
        }
        let bytes = self.serialise(&self.record)?;
        self.storage.put(&commit_key(), bytes)?;
        self.untidy = false;
        Ok(true)
    }

    fn serialise(&self, record: &CommitRecord) -> Result<Bytes, CommitError> {
        serde_json::to_vec_pretty(record)
            .map(Bytes::from)
            .map_err(|source| CommitError::Unserialisable {
                dataset: record.layout.name.clone(),
                source,
            })
    }

    /// Removes released chunks and snapshot records; what succeeds leaves the queue (recorded
    /// by the next write of `roller.json`), what fails stays for the next attempt.
    fn remove_released(&mut self, now: i64, snapshot_budget: u64) {
        let (released, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.record.expiring)
            .into_iter()
            .partition(|e| {
                e.release_at
                    .is_some_and(|at| self.record.is_released(at, now))
            });
        self.record.expiring = waiting;
        // The arrays whose chunks leave with a target besides the data (worked out once).
        let beside: Vec<ArraySpec> = if released.is_empty() {
            Vec::new()
        } else {
            roller_model::metadata::array_specs(&self.record.layout, self.record.schema.as_ref(), 0)
                .into_iter()
                .filter(|s| matches!(s.role, Role::PerRun(_) | Role::TargetBounds))
                .collect()
        };
        for target in released {
            match self.expire_target(&target, &beside) {
                Ok(()) => self.untidy = true,
                Err(e) => {
                    tracing::warn!(
                        dataset = %self.record.layout.name,
                        abs = target.abs,
                        slot = target.slot,
                        error = %e,
                        "expiring rolled-off chunks failed; will retry"
                    );
                    self.record.requeue(target);
                }
            }
        }
        self.remove_released_snapshots(now, snapshot_budget);
    }

    /// Expires a target's data chunks and its chunks in the `beside` arrays (a run's per-run
    /// coordinates, a file's valid-time bounds; removing them twice is harmless).
    fn expire_target(
        &self,
        target: &roller_model::state::Expiring,
        beside: &[ArraySpec],
    ) -> Result<(), StorageError> {
        let abs = u64::try_from(target.abs).unwrap_or(0);
        let keys = target
            .parts
            .iter()
            .map(|&part| part_keys(&self.record.layout, &self.data, abs, target.slot, part))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys: Vec<_> = keys.into_iter().flatten().collect();
        for spec in beside {
            keys.push(indexed_chunk_key(
                &self.record.layout,
                spec,
                abs,
                target.slot,
            )?);
        }
        self.expiry.expire(self.storage.as_ref(), &keys)
    }

    fn remove_released_snapshots(&mut self, now: i64, mut budget: u64) {
        while budget > 0 {
            let Some(&first) = self.record.retired.first() else {
                break;
            };
            if !self.record.is_released(first.release_at, now) {
                break;
            }
            let Some(range) = self.record.retired.first_mut() else {
                break;
            };
            if let Err(e) = self.storage.delete(&snapshot_key(range.first)) {
                tracing::warn!(
                    dataset = %self.record.layout.name,
                    generation = range.first,
                    error = %e,
                    "removing a retired snapshot record failed; will retry"
                );
                break;
            }
            budget -= 1;
            self.untidy = true;
            if range.first >= range.last {
                self.record.retired.remove(0);
            } else {
                range.first += 1;
            }
        }
    }
}

impl Retryable for CommitError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Record(e) => e.is_transient(),
            Self::NotFixed { .. } => true,
            _ => false,
        }
    }
}
