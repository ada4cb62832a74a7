//! The commit stage: the only writer of a dataset's metadata.
//!
//! It folds write reports and roll events into the [`CommitRecord`], publishes the record with
//! one atomic put (O(1): no chunk is rewritten, no prefix listed), then expires the chunks that
//! fell out of the window. Expiry failures are logged and retried on the next commit.

use std::sync::Arc;

use bytes::Bytes;
use roller_proto::{RollEvent, WriteReport};

use crate::expiry::Expiry;
use crate::layout::Layout;
use crate::metadata::{data_spec, ArraySpec};
use crate::physical_key::{commit_key, part_keys};
use crate::reference::ReferenceWriter;
use crate::state::{CommitRecord, Folded, RECORD_FORMAT};
use crate::storage::{KeyError, Storage, StorageError};

/// Why a commit could not be made or a dataset not opened.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Storage failed; the commit can be retried.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored commit record does not parse.
    #[error("the commit record of dataset `{dataset}` is unreadable ({reason}); restore it from a backup or move the dataset away")]
    Corrupt {
        /// Dataset name.
        dataset: String,
        /// Parser message.
        reason: String,
    },
    /// The config no longer matches the stored dataset.
    #[error("dataset `{dataset}`: {reason}")]
    Incompatible {
        /// Dataset name.
        dataset: String,
        /// What differs.
        reason: String,
    },
    /// A key could not be formed (a dataset or array name the store refuses).
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Reads the commit record of a dataset, if it has one.
pub fn load_record(storage: &dyn Storage) -> Result<Option<CommitRecord>, CommitError> {
    let Some(bytes) = storage.get(&commit_key())? else {
        return Ok(None);
    };
    let record: CommitRecord =
        serde_json::from_slice(&bytes).map_err(|e| CommitError::Corrupt {
            dataset: "(unknown: the record does not parse)".into(),
            reason: e.to_string(),
        })?;
    if record.format != RECORD_FORMAT {
        return Err(CommitError::Corrupt {
            dataset: record.layout.name,
            reason: format!("record format {} is not {RECORD_FORMAT}", record.format),
        });
    }
    Ok(Some(record))
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

/// Holds a dataset's state in memory and publishes it.
#[derive(Debug)]
pub struct Committer {
    storage: Arc<dyn Storage>,
    expiry: Arc<dyn Expiry>,
    record: CommitRecord,
    data: ArraySpec,
    dirty: bool,
    references: Option<ReferenceWriter>,
}

impl Committer {
    /// Opens a dataset's state from storage (or starts an empty one). A changed window or
    /// visibility is accepted and published by the next commit; any other layout change is
    /// refused. Expiry left over from a crash is retried at the next commit.
    pub fn open(
        storage: Arc<dyn Storage>,
        layout: Layout,
        expiry: Arc<dyn Expiry>,
    ) -> Result<Self, CommitError> {
        let (record, dirty) = match load_record(storage.as_ref()) {
            Ok(Some(mut record)) => {
                layout.compatible_with(&record.layout).map_err(|reason| {
                    CommitError::Incompatible {
                        dataset: layout.name.clone(),
                        reason,
                    }
                })?;
                let mut dirty = record.layout.visibility != layout.visibility;
                record.layout.visibility = layout.visibility;
                dirty |= record.set_window(layout.window) != Folded::Unchanged;
                dirty |= !record.expiring.is_empty();
                (record, dirty)
            }
            Ok(None) => (CommitRecord::empty(layout), false),
            Err(CommitError::Corrupt { reason, .. }) => {
                return Err(CommitError::Corrupt {
                    dataset: layout.name,
                    reason,
                })
            }
            Err(e) => return Err(e),
        };
        let data = data_spec(&record.layout);
        Ok(Self {
            storage,
            expiry,
            record,
            data,
            dirty,
            references: None,
        })
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

    /// Folds a write report into the state.
    pub fn fold_report(&mut self, report: &WriteReport) -> Folded {
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

    /// Folds a roll event into the state.
    pub fn fold_roll(&mut self, roll: &RollEvent) -> Folded {
        let folded = self.record.fold_roll(roll);
        self.dirty |= folded != Folded::Unchanged;
        folded
    }

    /// Publishes the state if it changed, then expires what left the window.
    /// Returns the new generation, or `None` if there was nothing to commit.
    pub fn commit(&mut self) -> Result<Option<Committed>, CommitError> {
        if !self.dirty {
            return Ok(None);
        }
        let mut next = self.record.clone();
        next.generation += 1;
        next.committed_at = roller_proto::time::format_instant(roller_proto::time::now());
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| CommitError::Corrupt {
            dataset: next.layout.name.clone(),
            reason: e.to_string(),
        })?;
        self.storage.put(&commit_key(), Bytes::from(bytes))?;
        self.record = next;
        self.dirty = false;
        if let Some(references) = &self.references {
            references.submit(self.record.clone());
        }
        self.expire();
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

    /// Expires queued targets; what succeeds leaves the queue (published by the next commit),
    /// what fails stays for the next attempt.
    fn expire(&mut self) {
        let queued = std::mem::take(&mut self.record.expiring);
        let mut failed = Vec::new();
        for target in queued {
            let result = target
                .parts
                .iter()
                .map(|&part| {
                    let abs = u64::try_from(target.abs).unwrap_or(0);
                    part_keys(&self.record.layout, &self.data, abs, target.slot, part)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(StorageError::from)
                .and_then(|keys| {
                    let keys: Vec<_> = keys.into_iter().flatten().collect();
                    self.expiry.expire(self.storage.as_ref(), &keys)
                });
            match result {
                Ok(()) => self.dirty = true,
                Err(e) => {
                    tracing::warn!(
                        dataset = %self.record.layout.name,
                        abs = target.abs,
                        slot = target.slot,
                        error = %e,
                        "expiring rolled-off chunks failed; will retry at the next commit"
                    );
                    failed.push(target);
                }
            }
        }
        self.record.expiring = failed;
    }
}
