//! An in-memory store for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::{Key, Storage, StorageError};

/// A store held in a map; every operation is atomic by construction.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<Key, Bytes>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Bytes>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Storage for MemoryStore {
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError> {
        Ok(self.objects().get(key).cloned())
    }

    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError> {
        Ok(self.objects().get(key).map(|b| b.len() as u64))
    }

    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError> {
        self.objects().insert(key.clone(), value);
        Ok(())
    }

    fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.objects().remove(key);
        Ok(())
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError> {
        Ok(self
            .objects()
            .keys()
            .filter(|k| k.as_str().starts_with(prefix))
            .cloned()
            .collect())
    }
}
