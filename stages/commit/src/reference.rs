//! The reference view: a kerchunk (fsspec reference, version 1) JSON document that maps every
//! key of a committed logical view to where its bytes are, so a reader opens the dataset
//! straight from storage with `reference://` and no server.
//!
//! Metadata documents are inlined as text and derived coordinate chunks as `base64:`; data,
//! file-dim coordinate and grid-mapping chunks point at their physical objects by URL. A
//! visible chunk with no object (the writer never stores an all-fill chunk) is left out, so
//! readers read the fill value: fsspec would fail on a URL that does not exist. Knowing which
//! objects exist takes one listing of the store's chunks per document, the only listing outside
//! maintenance commands. The document lists every visible stored chunk, so it grows with the
//! window; it is written after the commit by a background thread (a burst of commits writes
//! only the latest), never on the commit's critical path. It is one atomic put of
//! [`REFERENCE_KEY`] next to `roller.json`, so a reader sees a whole document, from one commit.
//!
//! A document describes one generation (named by the group attribute `zarr_roller_generation`)
//! and is a snapshot of it: its chunk URLs stay valid until the grace period (`expiry.grace`)
//! has passed after that generation was replaced, because rolled-out chunks are kept that long
//! (a file written late, after its generation was already replaced, has that much less).

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};

use roller_model::config::{DatasetConfig, Location, LocationError};
use roller_model::physical_key::CHUNKS_PREFIX;
use roller_model::record::load_record;
use roller_model::rolling_store::{OpenError, Resolved, RollingStore};
use roller_model::state::CommitRecord;
use roller_storage::{Key, Storage, StorageError};

/// Where the reference document lives in the raw store.
pub const REFERENCE_KEY: &str = "reference.json";

/// Why a reference document could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The commit record could not be turned into a view.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A key of the view could not be resolved.
    #[error("resolving the logical view failed: {0}")]
    Resolve(#[from] zarrs::storage::StorageError),
    /// The document could not be serialised.
    #[error("serialising the reference file failed: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the document failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The store's location does not parse.
    #[error("cannot work out the URL of the store `{path}` for the reference file: {source}; set `reference.url`")]
    Location {
        /// The store's configured path.
        path: String,
        /// What is wrong with it.
        #[source]
        source: LocationError,
    },
    /// The store's local directory has no absolute path.
    #[error("cannot work out the URL of the store `{path}` for the reference file: {source}; set `reference.url`")]
    LocalPath {
        /// The store's configured path.
        path: String,
        /// Why its absolute path could not be had.
        #[source]
        source: std::io::Error,
    },
    /// The store's absolute path is not UTF-8, so it has no `file://` URL.
    #[error("cannot work out the URL of the store `{path}` for the reference file: its path is not UTF-8; set `reference.url`")]
    NotUtf8 {
        /// The store's configured path.
        path: String,
    },
}

/// The store's root URL as readers reach it: `reference.url` if set, otherwise the store's
/// own location (`file://` and its absolute path, or `s3://bucket/prefix`).
pub fn base_url(config: &DatasetConfig) -> Result<String, ReferenceError> {
    if let Some(url) = &config.reference.url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let path = &config.store.path;
    let shown = || path.display().to_string();
    let location = Location::parse(path).map_err(|source| ReferenceError::Location {
        path: shown(),
        source,
    })?;
    match location {
        Location::S3 { bucket, prefix } if prefix.is_empty() => Ok(format!("s3://{bucket}")),
        Location::S3 { bucket, prefix } => Ok(format!("s3://{bucket}/{prefix}")),
        Location::Local(dir) => {
            let absolute =
                std::path::absolute(&dir).map_err(|source| ReferenceError::LocalPath {
                    path: shown(),
                    source,
                })?;
            let text = absolute
                .to_str()
                .ok_or_else(|| ReferenceError::NotUtf8 { path: shown() })?;
            Ok(format!("file://{}", text.trim_end_matches('/')))
        }
    }
}

/// Renders the reference document of `view`, with stored chunks under `base_url`; a chunk
/// whose physical key is not in `stored` (never written) is left out.
pub fn render(
    view: &RollingStore,
    base_url: &str,
    stored: &HashSet<Key>,
) -> Result<Bytes, ReferenceError> {
    let mut refs = Map::new();
    let keys = view.keys()?;
    for (key, resolved) in keys {
        let value = match resolved {
            Resolved::Document(bytes) => Value::String(String::from_utf8_lossy(&bytes).into()),
            Resolved::Derived(bytes) => Value::String(format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )),
            Resolved::Stored(physical) if stored.contains(&physical) => {
                Value::Array(vec![Value::String(format!(
                    "{base_url}/{}",
                    physical.as_str()
                ))])
            }
            Resolved::Stored(_) | Resolved::Missing => continue,
        };
        refs.insert(key, value);
    }
    let document = serde_json::json!({"version": 1, "refs": refs});
    Ok(Bytes::from(serde_json::to_vec(&document)?))
}

/// Renders the reference document of `record`, or of the store's record if that is newer (a
/// later commit, possibly by another commit instance after a lease handover), and puts it at
/// [`REFERENCE_KEY`].
pub fn write(
    storage: &Arc<dyn Storage>,
    record: CommitRecord,
    base_url: &str,
) -> Result<(), ReferenceError> {
    let record = match load_record(storage.as_ref()).map_err(OpenError::from)? {
        Some(stored) if stored.generation > record.generation => stored,
        _ => record,
    };
    let started = std::time::Instant::now();
    let generation = record.generation;
    let view = RollingStore::at(storage.clone(), record)?;
    let stored: HashSet<Key> = storage
        .list_prefix(&format!("{CHUNKS_PREFIX}/"))?
        .into_iter()
        .collect();
    let bytes = render(&view, base_url, &stored)?;
    let size = bytes.len();
    storage.put(&reference_key(), bytes)?;
    tracing::debug!(
        generation,
        bytes = size,
        seconds = started.elapsed().as_secs_f64(),
        "reference file written"
    );
    Ok(())
}

/// The key of the reference document.
pub fn reference_key() -> Key {
    Key::new(REFERENCE_KEY.to_owned()).unwrap_or_else(|_| unreachable!("a valid constant key"))
}

#[derive(Debug, Default)]
struct Slot {
    pending: Option<CommitRecord>,
    closing: bool,
}

/// Writes the reference document of the latest submitted commit on its own thread. Dropping
/// it writes what is pending, then stops the thread.
#[derive(Debug)]
pub struct ReferenceWriter {
    slot: Arc<(Mutex<Slot>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ReferenceWriter {
    /// The writer `config` asks for: `None` when `reference.enabled` is false.
    pub fn for_dataset(
        config: &DatasetConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Option<Self>, ReferenceError> {
        if !config.reference.enabled {
            return Ok(None);
        }
        Ok(Some(Self::start(storage, base_url(config)?)))
    }

    /// Starts a writer that puts documents into `storage`, pointing at `base_url`.
    pub fn start(storage: Arc<dyn Storage>, base_url: String) -> Self {
        let slot: Arc<(Mutex<Slot>, Condvar)> = Arc::default();
        let shared = slot.clone();
        let thread = std::thread::Builder::new()
            .name("reference".into())
            .spawn(move || loop {
                let (lock, wake) = &*shared;
                let mut guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while guard.pending.is_none() && !guard.closing {
                    guard = wake.wait(guard).unwrap_or_else(PoisonError::into_inner);
                }
                let Some(record) = guard.pending.take() else {
                    return;
                };
                drop(guard);
                let generation = record.generation;
                let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write(&storage, record, &base_url)
                }));
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(generation, error = %e, "writing the reference file failed; the next commit writes it again"),
                    Err(_) => tracing::error!(generation, "writing the reference file panicked; the next commit writes it again"),
                }
            })
            .ok();
        if thread.is_none() {
            tracing::warn!(
                "cannot start the reference writer thread; reference files will not be written"
            );
        }
        Self { slot, thread }
    }

    /// Asks for the document of `record`; replaces any not yet written.
    pub fn submit(&self, record: CommitRecord) {
        let (lock, wake) = &*self.slot;
        lock.lock().unwrap_or_else(PoisonError::into_inner).pending = Some(record);
        wake.notify_one();
    }
}

impl Drop for ReferenceWriter {
    fn drop(&mut self) {
        let (lock, wake) = &*self.slot;
        lock.lock().unwrap_or_else(PoisonError::into_inner).closing = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid dataset config whose store path is then set to `store` unchecked (so an invalid
    /// bucket reaches `base_url`).
    fn config(store: &str, url: Option<&str>) -> DatasetConfig {
        let mut config = roller_model::layout::testing::config(4, 1, &[(8, 8)]);
        config.store.path = store.into();
        config.reference.url = url.map(str::to_owned);
        config
    }

    #[test]
    fn the_base_url_comes_from_the_store_unless_set() {
        assert_eq!(
            base_url(&config("s3://bucket/a/b/", None)).expect("url"),
            "s3://bucket/a/b"
        );
        assert_eq!(
            base_url(&config("s3://bucket", None)).expect("url"),
            "s3://bucket"
        );
        assert_eq!(
            base_url(&config("/data/store/", None)).expect("url"),
            "file:///data/store"
        );
        let relative = base_url(&config("store", None)).expect("url");
        assert!(
            relative.starts_with("file:///") && relative.ends_with("/store"),
            "{relative}"
        );
        assert_eq!(
            base_url(&config("s3://bucket/p", Some("https://example.org/p/"))).expect("url"),
            "https://example.org/p"
        );
        assert!(matches!(
            base_url(&config("s3://B", None)),
            Err(ReferenceError::Location { .. })
        ));
    }
}
