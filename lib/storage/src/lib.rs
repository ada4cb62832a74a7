//! The storage layer beneath every box (roller-model, the boxes, serve, S3 in `roller-s3`): one
//! abstraction for every stage, a flat key/value space of immutable-once-written
//! objects, with atomic replacement of a whole object.
//!
//! Backends: [`LocalStore`] (a directory on disk) and [`MemoryStore`] (tests). Decorators wrap any
//! backend: [`MeteredStore`] counts operations and bytes (benchmarks, the O(1)-commit test);
//! [`FaultyStore`] fails chosen operations (failure tests).
//! [`ZarrsStorage`] adapts any of them to the zarrs storage traits, so zarrs encodes chunks
//! straight into our storage.

pub mod expiry;
mod faulty;
mod key;
mod local;
mod memory;
mod metered;
pub mod retry;
pub mod zarrs_adapter;

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub use faulty::{FaultyStore, Op};
pub use key::{Key, KeyError};
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use metered::{MeteredStore, OpCounts};
pub use zarrs_adapter::ZarrsStorage;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error from the backend, with the object it concerned.
    #[error("storage I/O on `{key}` failed: {source}")]
    Io {
        /// The key being accessed.
        key: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key is not acceptable (see [`Key`]).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A remote store (S3) refused or failed a request after its retries.
    #[error("{operation} of `{key}` failed: {reason}")]
    Backend {
        /// What was asked (`S3 GetObject`...).
        operation: String,
        /// The key (with bucket and prefix) it concerned.
        key: String,
        /// What the store said, with the error chain.
        reason: String,
    },
}

/// A flat key/value object store.
///
/// Contract: `put` replaces the whole object atomically (a reader sees the old bytes or the new
/// ones, never a mix) and is durable when it returns; `delete` of a missing key succeeds.
/// `list_prefix` is for inspection and maintenance only: no commit or write path lists.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Reads a whole object, or `None` if it does not exist.
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError>;

    /// Reads `len` bytes (or to the end) from `start`, or `None` if the object does not exist.
    /// By default reads the whole object and slices it; a backend that can read a range on its
    /// own (S3) says so.
    fn get_range(
        &self,
        key: &Key,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        Ok(self.get(key)?.map(|b| slice_range(&b, start, len)))
    }

    /// The size of an object in bytes, or `None` if it does not exist.
    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError>;

    /// Writes a whole object, atomically replacing any previous one.
    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError>;

    /// Removes an object; removing a missing object is not an error.
    fn delete(&self, key: &Key) -> Result<(), StorageError>;

    /// All keys under a prefix (`""` for everything), sorted.
    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError>;

    /// Writes a whole object made of `parts` laid end to end, like [`Storage::put`] of their
    /// concatenation. The default concatenates; backends override it to write the parts
    /// without the copy.
    fn put_parts(&self, key: &Key, parts: &[&[u8]]) -> Result<(), StorageError> {
        self.put(key, Bytes::from(parts.concat()))
    }

    /// Stores the contents of a local file as an object (atomically, like [`Storage::put`]).
    /// The file must not change afterwards: a backend may link it instead of copying it. The
    /// default reads the file into memory; backends override it to stream.
    fn put_file(&self, key: &Key, path: &Path) -> Result<(), StorageError> {
        let bytes = std::fs::read(path).map_err(|source| StorageError::Io {
            key: key.to_string(),
            source,
        })?;
        self.put(key, Bytes::from(bytes))
    }

    /// Where the object lives on the local file system, for backends that keep objects as
    /// files (so a reader like NetCDF can open it in place); `None` otherwise.
    fn local_path(&self, _key: &Key) -> Option<PathBuf> {
        None
    }
}

/// Slices `bytes` to the range `start..start+len` (or to the end), clamped to the object.
fn slice_range(bytes: &Bytes, start: u64, len: Option<u64>) -> Bytes {
    let total = bytes.len() as u64;
    let from = start.min(total);
    let to = len.map_or(total, |l| from.saturating_add(l).min(total));
    // Both bounds are clamped to the object's length, which fits in usize.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "both bounds are clamped to the object's length, a usize"
    )]
    bytes.slice(from as usize..to as usize)
}
