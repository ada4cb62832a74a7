//! A decorator that makes a store fail on purpose, for failure tests: the Nth operation of a
//! kind fails, or every operation on keys containing some text fails a number of times, and
//! every operation can be slowed down. It composes with any backend (local, memory, S3) and
//! with [`super::MeteredStore`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use super::{Key, Storage, StorageError};

/// A kind of storage operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get`, `get_range` and `size`.
    Get,
    /// `put`, `put_parts` and `put_file`.
    Put,
    /// `delete`.
    Delete,
    /// `list_prefix`.
    List,
}

/// One planned failure.
#[derive(Debug)]
struct Fault {
    op: Op,
    /// Fails the operation whose number (counted per kind from 1) is this, or, with `None`,
    /// any operation on a key containing `key_contains`.
    nth: Option<u64>,
    key_contains: String,
    /// How many more times it fails.
    remaining: u32,
}

/// Wraps a store and fails the operations it was told to (see the module docs).
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn Storage>,
    faults: Mutex<Vec<Fault>>,
    counts: [AtomicU64; 4],
    latency: Duration,
}

impl FaultyStore {
    /// Wraps `inner`; with no faults planned it behaves exactly like it.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            faults: Mutex::new(Vec::new()),
            counts: Default::default(),
            latency: Duration::ZERO,
        }
    }

    /// Adds `latency` before every operation.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Fails the `n`th operation of kind `op` from now on (1 is the next one), once.
    pub fn fail_nth(&self, op: Op, n: u64) {
        let seen = self.counts[op as usize].load(Ordering::SeqCst);
        self.plan(Fault {
            op,
            nth: Some(seen + n),
            key_contains: String::new(),
            remaining: 1,
        });
    }

    /// Fails the next `times` operations of kind `op` on keys (for a listing: prefixes)
    /// containing `text`; `times` = 0 plans nothing.
    pub fn fail_matching(&self, op: Op, text: &str, times: u32) {
        if times == 0 {
            return;
        }
        self.plan(Fault {
            op,
            nth: None,
            key_contains: text.to_owned(),
            remaining: times,
        });
    }

    /// Whether every planned failure has happened.
    pub fn all_fired(&self) -> bool {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    fn plan(&self, fault: Fault) {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fault);
    }

    /// Counts an operation on `key` and fails it if a fault says so.
    fn check(&self, op: Op, key: &str) -> Result<(), StorageError> {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        let number = self.counts[op as usize].fetch_add(1, Ordering::SeqCst) + 1;
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = faults.iter().position(|f| {
            f.op == op
                && match f.nth {
                    Some(n) => n == number,
                    None => key.contains(&f.key_contains),
                }
        });
        let Some(i) = hit else {
            return Ok(());
        };
        faults[i].remaining -= 1;
        if faults[i].remaining == 0 {
            faults.remove(i);
        }
        Err(StorageError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(format!("injected fault: {op:?} number {number}")),
        })
    }
}

impl Storage for FaultyStore {
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError> {
        self.check(Op::Get, key.as_str())?;
        self.inner.get(key)
    }

    fn get_range(
        &self,
        key: &Key,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        self.check(Op::Get, key.as_str())?;
        self.inner.get_range(key, start, len)
    }

    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError> {
        self.check(Op::Get, key.as_str())?;
        self.inner.size(key)
    }

    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError> {
        self.check(Op::Put, key.as_str())?;
        self.inner.put(key, value)
    }

    fn put_parts(&self, key: &Key, parts: &[&[u8]]) -> Result<(), StorageError> {
        self.check(Op::Put, key.as_str())?;
        self.inner.put_parts(key, parts)
    }

    fn put_file(&self, key: &Key, path: &std::path::Path) -> Result<(), StorageError> {
        self.check(Op::Put, key.as_str())?;
        self.inner.put_file(key, path)
    }

    fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.check(Op::Delete, key.as_str())?;
        self.inner.delete(key)
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError> {
        self.check(Op::List, prefix)?;
        self.inner.list_prefix(prefix)
    }

    /// Not faulted: a reader that opens the file in place bypasses the store (no fault can be
    /// injected into its reads).
    fn local_path(&self, key: &Key) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn key(s: &str) -> Key {
        Key::new(s).expect("key")
    }

    #[test]
    fn the_nth_put_fails_once_and_matching_keys_fail_as_often_as_asked() {
        let store = FaultyStore::new(Arc::new(MemoryStore::default()));
        store.fail_nth(Op::Put, 2);
        store.fail_matching(Op::Delete, "roller.json", 2);
        assert!(store.put(&key("a"), Bytes::from_static(b"1")).is_ok());
        let err = store
            .put(&key("b"), Bytes::from_static(b"2"))
            .expect_err("2nd put");
        assert!(err.to_string().contains("injected fault"), "{err}");
        assert!(store.put(&key("b"), Bytes::from_static(b"2")).is_ok());
        assert!(store.delete(&key("x/roller.json")).is_err());
        assert!(store.delete(&key("a")).is_ok());
        assert!(store.delete(&key("x/roller.json")).is_err());
        assert!(store.all_fired());
        assert!(store.delete(&key("x/roller.json")).is_ok());
        assert_eq!(
            store.get(&key("b")).expect("get"),
            Some(Bytes::from_static(b"2"))
        );
    }
}
