//! Reading a dataset's commit record from storage: `roller.json` (the newest generation) or a
//! snapshot record. Only the commit stage writes records; everyone reads them through here.

use roller_storage::{Key, Storage, StorageError};

use crate::physical_key::commit_key;
use crate::state::{CommitRecord, RECORD_FORMAT};

/// Why a commit record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Storage failed; reading again may work.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored commit record does not parse.
    #[error("the commit record of dataset `{dataset}` is unreadable ({source}); restore it from a backup or move the dataset away")]
    Unparseable {
        /// Dataset name (unknown when read without a config).
        dataset: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The record parses but is not what was asked for: another format version, or a snapshot
    /// record holding another generation.
    #[error("the commit record of dataset `{dataset}` is unreadable ({what}); restore it from a backup or move the dataset away")]
    Corrupt {
        /// Dataset name.
        dataset: String,
        /// What is wrong with it.
        what: String,
    },
}

impl roller_storage::retry::Retryable for RecordError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_transient())
    }
}

/// Reads the commit record of a dataset (its newest generation), if it has one.
pub fn load_record(storage: &dyn Storage) -> Result<Option<CommitRecord>, RecordError> {
    load_record_at(storage, &commit_key())
}

/// Reads the commit record stored at `key` (`roller.json` or a snapshot record), if any.
pub fn load_record_at(
    storage: &dyn Storage,
    key: &Key,
) -> Result<Option<CommitRecord>, RecordError> {
    let Some(bytes) = storage.get(key)? else {
        return Ok(None);
    };
    let record: CommitRecord =
        serde_json::from_slice(&bytes).map_err(|source| RecordError::Unparseable {
            dataset: "(unknown: the record does not parse)".into(),
            source,
        })?;
    if record.format != RECORD_FORMAT {
        return Err(RecordError::Corrupt {
            dataset: record.layout.name,
            what: format!("record format {} is not {RECORD_FORMAT}", record.format),
        });
    }
    Ok(Some(record))
}
