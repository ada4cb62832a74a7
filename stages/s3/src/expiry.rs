//! Expiry on S3 by object tags: chunks below the committed offset get a tag, and a bucket
//! lifecycle rule (see [`crate::lifecycle`]) deletes tagged objects after some days. Tagging
//! replaces the object's tag set with the same one tag, so it is idempotent; the committer
//! retries what failed at its next commit and never waits for it before publishing.
//!
//! With `expiry.policy = "at_write"` the chunks were tagged when they were put
//! ([`S3Store::tagging_puts_under`]) and the lifecycle rule deletes them by age:
//! [`TaggedAtWrite`] makes no calls at all.

use roller_storage::expiry::Expiry;
use roller_storage::{Key, Storage, StorageError};

use crate::store::S3Store;

/// Tags expired chunks `key=value` in the dataset's bucket.
#[derive(Debug, Clone)]
pub struct TagExpired {
    store: S3Store,
    key: String,
    value: String,
}

impl TagExpired {
    /// Tags chunks of `store` (the dataset's store) with `key=value`.
    pub fn new(store: S3Store, key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            store,
            key: key.into(),
            value: value.into(),
        }
    }
}

impl Expiry for TagExpired {
    fn expire(&self, _storage: &dyn Storage, keys: &[Key]) -> Result<(), StorageError> {
        keys.iter()
            .try_for_each(|k| self.store.tag(k, &self.key, &self.value))
    }
}

/// Expiry when every data chunk was tagged as it was written: nothing to do when a chunk
/// leaves the window (the lifecycle rule deletes it by age).
#[derive(Debug, Clone, Copy, Default)]
pub struct TaggedAtWrite;

impl Expiry for TaggedAtWrite {
    fn expire(&self, _storage: &dyn Storage, _keys: &[Key]) -> Result<(), StorageError> {
        Ok(())
    }
}
