//! Scratch storage: the claim-check between distributed stages. Fetch copies a source object
//! here and decode leaves each slab here; the message that travels on NATS names the key. The
//! consumer deletes the object once it has acked the message, and a sweep removes orphans
//! (objects whose message was dead-lettered, or whose consumer crashed between ack and delete).
//!
//! Keys are `{kind}/{dataset}/{millis}-{pid}-{n}`: unique per put, so two deliveries of one
//! message never share an object, and the sweep can tell an object's age from its key alone,
//! on any backend.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use roller_proto::SlabTicket;

use roller_model::config::ScratchConfig;
use roller_model::slab::Slab;
use roller_storage::retry::Retryable;
use roller_storage::{Key, KeyError, LocalStore, Storage, StorageError};

/// Kind of scratch object: a copied source file.
pub const FETCHED: &str = "fetched";
/// Kind of scratch object: a decoded slab.
pub const SLABS: &str = "slabs";

/// Why a scratch object could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// Storage failed (transient).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The object is gone: an earlier delivery already consumed it, or the sweep removed it.
    #[error("scratch object `{key}` is missing: an earlier delivery of this message consumed it, it outlived scratch.max_age and was swept, or the scratch host lost power before syncing it (scratch.fsync = false); replay the notification to ingest the file again")]
    Missing {
        /// The key.
        key: String,
    },
    /// The object does not have the slab layout the ticket describes.
    #[error("scratch object `{key}` is not a valid slab: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A static chunk in the slab names a key the store refuses.
    #[error(
        "scratch object `{key}` is not a valid slab: a static chunk's key is refused: {source}"
    )]
    StaticKey {
        /// The key.
        key: String,
        /// Why the static chunk's key is refused.
        #[source]
        source: KeyError,
    },
}

/// A local copy of a scratch object, removed on drop when it was downloaded.
#[derive(Debug)]
pub struct LocalCopy {
    path: PathBuf,
    temporary: bool,
}

impl LocalCopy {
    /// Where to read it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The scratch area of one deployment.
#[derive(Debug, Clone)]
pub struct Scratch {
    storage: Arc<dyn Storage>,
    max_age_ms: i64,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> i64 {
    roller_proto::time::now().saturating_mul(1000)
        + i64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_millis()),
        )
}

impl Scratch {
    /// Scratch on `storage`; objects older than `max_age_seconds` are orphans.
    pub fn new(storage: Arc<dyn Storage>, max_age_seconds: i64) -> Self {
        Self {
            storage,
            max_age_ms: max_age_seconds.saturating_mul(1000),
        }
    }

    /// Opens the scratch area a config names.
    pub fn open(config: &ScratchConfig) -> Result<Self, StorageError> {
        Ok(Self::new(
            Arc::new(LocalStore::new(&config.path, config.fsync)?.keep_empty_dirs()),
            config.max_age.0,
        ))
    }

    /// A fresh key for an object of `kind` for `dataset`.
    pub fn new_key(kind: &str, dataset: &str) -> Result<Key, StorageError> {
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        Ok(Key::new(format!(
            "{kind}/{dataset}/{}-{}-{n}",
            now_ms(),
            std::process::id()
        ))?)
    }

    /// Puts a local file into scratch (linked rather than copied where the file system allows:
    /// the file must not change afterwards).
    pub fn put_file(&self, key: &Key, path: &Path) -> Result<(), StorageError> {
        self.storage.put_file(key, path)
    }

    /// A local file with the object's bytes (the object itself on local disk).
    pub fn local_copy(&self, key: &Key) -> Result<LocalCopy, ScratchError> {
        if let Some(path) = self.storage.local_path(key) {
            if path.is_file() {
                return Ok(LocalCopy {
                    path,
                    temporary: false,
                });
            }
            return Err(ScratchError::Missing {
                key: key.to_string(),
            });
        }
        let bytes = self
            .storage
            .get(key)?
            .ok_or_else(|| ScratchError::Missing {
                key: key.to_string(),
            })?;
        let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("zarr-roller-{}-{n}.nc", std::process::id()));
        std::fs::write(&path, &bytes).map_err(|source| StorageError::Io {
            key: path.display().to_string(),
            source,
        })?;
        Ok(LocalCopy {
            path,
            temporary: true,
        })
    }

    /// Stores a slab's body (its elements and any static coordinate chunks) under a fresh key
    /// and returns the ticket that names it; [`Scratch::get_slab`] turns the ticket back into
    /// the slab.
    ///
    /// Layout: `u64 data length, data, u32 count, then per static chunk: u32 key length, key,
    /// u64 length, bytes` (little-endian).
    pub fn put_slab(&self, dataset: &str, slab: &Slab) -> Result<SlabTicket, StorageError> {
        let key = Self::new_key(SLABS, dataset)?;
        // The body is a small header, the elements, then the static chunks: written as parts,
        // so the elements are not copied.
        let mut head = BytesMut::with_capacity(12);
        head.put_u64_le(slab.data.len() as u64);
        let mut tail = BytesMut::new();
        tail.put_u32_le(u32::try_from(slab.statics.len()).unwrap_or(u32::MAX));
        for (k, v) in &slab.statics {
            tail.put_u32_le(u32::try_from(k.as_str().len()).unwrap_or(u32::MAX));
            tail.put_slice(k.as_str().as_bytes());
            tail.put_u64_le(v.len() as u64);
            tail.put_slice(v);
        }
        self.storage.put_parts(&key, &[&head, &slab.data, &tail])?;
        Ok(SlabTicket {
            dataset: dataset.to_owned(),
            source: slab.source.clone(),
            abs: slab.abs,
            slot: slab.slot,
            part: slab.part,
            parts: slab.parts,
            shape: slab.shape.clone(),
            schema: slab.schema.clone(),
            scratch_key: key.to_string(),
        })
    }

    /// Reads a slab back, as described by its ticket.
    pub fn get_slab(&self, ticket: &SlabTicket) -> Result<Slab, ScratchError> {
        let key = Key::new(ticket.scratch_key.clone()).map_err(StorageError::from)?;
        let body = self
            .storage
            .get(&key)?
            .ok_or_else(|| ScratchError::Missing {
                key: key.to_string(),
            })?;
        let corrupt = |reason: &'static str| ScratchError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let mut reader = Reader(body);
        let len = reader.u64().ok_or_else(|| corrupt("truncated header"))?;
        let data = reader.take(len).ok_or_else(|| corrupt("truncated data"))?;
        let count = reader.u32().ok_or_else(|| corrupt("truncated statics"))?;
        let mut statics = Vec::new();
        for _ in 0..count {
            let klen = reader
                .u32()
                .ok_or_else(|| corrupt("truncated static key"))?;
            let raw = reader
                .take(u64::from(klen))
                .ok_or_else(|| corrupt("truncated static key"))?;
            let name =
                String::from_utf8(raw.to_vec()).map_err(|_| corrupt("static key is not UTF-8"))?;
            let static_key = Key::new(name).map_err(|source| ScratchError::StaticKey {
                key: key.to_string(),
                source,
            })?;
            let vlen = reader
                .u64()
                .ok_or_else(|| corrupt("truncated static chunk"))?;
            let value = reader
                .take(vlen)
                .ok_or_else(|| corrupt("truncated static chunk"))?;
            statics.push((static_key, value));
        }
        Ok(Slab {
            source: ticket.source.clone(),
            abs: ticket.abs,
            slot: ticket.slot,
            part: ticket.part,
            parts: ticket.parts,
            shape: ticket.shape.clone(),
            data,
            schema: ticket.schema.clone(),
            statics,
        })
    }

    /// Removes an object (missing is fine).
    pub fn delete(&self, key: &Key) -> Result<(), StorageError> {
        self.storage.delete(key)
    }

    /// Removes every scratch object older than the configured age; returns how many.
    pub fn sweep(&self) -> Result<usize, StorageError> {
        let cutoff = now_ms() - self.max_age_ms;
        let mut removed = 0;
        for kind in [FETCHED, SLABS] {
            for key in self.storage.list_prefix(&format!("{kind}/"))? {
                let name = key.as_str().rsplit('/').next().unwrap_or_default();
                let born = name.split('-').next().and_then(|ms| ms.parse::<i64>().ok());
                // Objects whose key does not carry a time are not ours: leave them.
                if born.is_some_and(|born| born < cutoff) {
                    self.storage.delete(&key)?;
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "swept orphaned scratch objects");
        }
        Ok(removed)
    }
}

/// Cursor over a slab body.
struct Reader(Bytes);

impl Reader {
    fn take(&mut self, n: u64) -> Option<Bytes> {
        let n = usize::try_from(n).ok()?;
        (n <= self.0.len()).then(|| self.0.split_to(n))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.as_ref().try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes(b.as_ref().try_into().ok()?))
    }
}

impl Retryable for ScratchError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roller_storage::MemoryStore;

    #[test]
    fn slabs_round_trip_and_corruption_is_reported() {
        let storage = Arc::new(MemoryStore::default());
        let scratch = Scratch::new(storage.clone(), 3600);
        let slab = Slab {
            source: "a.nc".into(),
            abs: 3,
            slot: 1,
            part: 0,
            parts: 1,
            shape: vec![2, 2],
            data: Bytes::from(vec![1, 2, 3, 4, 5, 6, 7, 8]),
            schema: None,
            statics: vec![(
                Key::new("chunks/x/0").expect("key"),
                Bytes::from_static(b"xyz"),
            )],
        };
        let ticket = scratch.put_slab("d", &slab).expect("put");
        assert_eq!((ticket.abs, ticket.part), (slab.abs, slab.part));
        let key = Key::new(ticket.scratch_key.clone()).expect("key");
        let back = scratch.get_slab(&ticket).expect("get");
        assert_eq!(back.data, slab.data);
        assert_eq!(back.statics, slab.statics);
        storage
            .put(&key, Bytes::from_static(&[9, 0, 0, 0, 0, 0, 0, 0, 1]))
            .expect("put");
        assert!(matches!(
            scratch.get_slab(&ticket),
            Err(ScratchError::Corrupt { .. })
        ));
        scratch.delete(&key).expect("delete");
        assert!(matches!(
            scratch.get_slab(&ticket),
            Err(ScratchError::Missing { .. })
        ));
    }

    #[test]
    fn sweep_removes_only_old_objects() {
        let storage = Arc::new(MemoryStore::default());
        let scratch = Scratch::new(storage.clone(), 60);
        let old = Key::new(format!("{FETCHED}/d/{}-1-0", now_ms() - 120_000)).expect("key");
        let fresh = Scratch::new_key(FETCHED, "d").expect("key");
        let foreign = Key::new(format!("{FETCHED}/d/notes.txt")).expect("key");
        for key in [&old, &fresh, &foreign] {
            storage.put(key, Bytes::from_static(b"x")).expect("put");
        }
        assert_eq!(scratch.sweep().expect("sweep"), 1);
        assert_eq!(storage.get(&old).expect("get"), None);
        assert!(storage.get(&fresh).expect("get").is_some());
        assert!(storage.get(&foreign).expect("get").is_some());
    }
}
