//! A decorator that counts operations and bytes, for benchmarks and for tests that pin the cost
//! of an operation (a commit must cost the same whatever the window).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::{Key, Storage, StorageError};

/// Operation counts seen by a [`MeteredStore`] since it was made (or last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Whole and ranged reads.
    pub gets: u64,
    /// Size probes.
    pub sizes: u64,
    /// Writes.
    pub puts: u64,
    /// Deletes.
    pub deletes: u64,
    /// Listings.
    pub lists: u64,
    /// Bytes written.
    pub bytes_put: u64,
    /// Bytes read.
    pub bytes_got: u64,
}

impl OpCounts {
    /// All requests of any kind.
    pub fn requests(&self) -> u64 {
        self.gets + self.sizes + self.puts + self.deletes + self.lists
    }
}

#[derive(Debug, Default)]
struct Counters {
    gets: AtomicU64,
    sizes: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    lists: AtomicU64,
    bytes_put: AtomicU64,
    bytes_got: AtomicU64,
}

/// Wraps a store and counts what passes through it.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Storage>,
    counters: Counters,
}

impl MeteredStore {
    /// Meters `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            counters: Counters::default(),
        }
    }

    /// Counts so far.
    pub fn counts(&self) -> OpCounts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OpCounts {
            gets: load(&c.gets),
            sizes: load(&c.sizes),
            puts: load(&c.puts),
            deletes: load(&c.deletes),
            lists: load(&c.lists),
            bytes_put: load(&c.bytes_put),
            bytes_got: load(&c.bytes_got),
        }
    }

    /// Counts so far, then starts again from zero.
    pub fn take(&self) -> OpCounts {
        let counts = self.counts();
        let c = &self.counters;
        for a in [
            &c.gets,
            &c.sizes,
            &c.puts,
            &c.deletes,
            &c.lists,
            &c.bytes_put,
            &c.bytes_got,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        counts
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Storage for MeteredStore {
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError> {
        bump(&self.counters.gets, 1);
        let got = self.inner.get(key)?;
        bump(
            &self.counters.bytes_got,
            got.as_ref().map_or(0, |b| b.len() as u64),
        );
        Ok(got)
    }

    fn get_range(
        &self,
        key: &Key,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        bump(&self.counters.gets, 1);
        let got = self.inner.get_range(key, start, len)?;
        bump(
            &self.counters.bytes_got,
            got.as_ref().map_or(0, |b| b.len() as u64),
        );
        Ok(got)
    }

    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError> {
        bump(&self.counters.sizes, 1);
        self.inner.size(key)
    }

    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError> {
        bump(&self.counters.puts, 1);
        bump(&self.counters.bytes_put, value.len() as u64);
        self.inner.put(key, value)
    }

    fn put_parts(&self, key: &Key, parts: &[&[u8]]) -> Result<(), StorageError> {
        bump(&self.counters.puts, 1);
        let bytes: usize = parts.iter().map(|p| p.len()).sum();
        bump(&self.counters.bytes_put, bytes as u64);
        self.inner.put_parts(key, parts)
    }

    fn delete(&self, key: &Key) -> Result<(), StorageError> {
        bump(&self.counters.deletes, 1);
        self.inner.delete(key)
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError> {
        bump(&self.counters.lists, 1);
        self.inner.list_prefix(prefix)
    }
}
