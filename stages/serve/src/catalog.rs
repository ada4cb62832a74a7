//! The datasets a server presents: each one's logical view ([`RollingStore`]) over the store
//! its config names, opened on first use (a dataset may not have its first commit yet) and
//! refreshed at most once per interval, so the server follows new commits without a restart
//! and without reading the commit record on every request.
//!
//! Snapshots (`/<dataset>@<generation>/`) are views pinned at one generation, kept in a bounded
//! LRU cache: a request for a cached snapshot costs a map lookup and a clock comparison, as a
//! request for the newest view does. Once a snapshot's grace has passed every read of it
//! answers [`ReadError::Expired`] (410), never a missing chunk read as fill.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;
use roller_model::clock::{self, Clock};
use roller_model::config::DatasetConfig;
use roller_model::rolling_store::{OpenError, Resolved, RollingStore};
use roller_model::snapshot::SnapshotError;
use roller_storage::Storage;

/// Group attribute carrying the URL of the snapshot a view presents.
pub const SNAPSHOT_URL_ATTR: &str = "zarr_roller_snapshot_url";

/// Snapshots kept open by default.
pub const DEFAULT_SNAPSHOT_CACHE: usize = 256;

/// Why a catalog could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Two configs name the same dataset.
    #[error("dataset `{0}` is configured twice")]
    Duplicate(String),
    /// The name is reserved for the status pages (their images, the dataset pages).
    #[error(
        "a dataset cannot be named `{0}`: the server uses /{0}/ for the status pages; rename it"
    )]
    Reserved(String),
}

/// Why a read has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No configured dataset has this name (404).
    #[error("no dataset named `{0}`")]
    NoSuchDataset(String),
    /// The dataset has no commit yet (404).
    #[error("dataset `{0}` has no commit yet")]
    NotCommitted(String),
    /// The key is not part of the logical view, or the chunk was never written (404: Zarr
    /// readers read the fill value).
    #[error("no such key")]
    Missing,
    /// The generation asked for was never committed (404).
    #[error("{0}")]
    NoGeneration(String),
    /// The snapshot's grace has passed (410: Zarr readers raise an error).
    #[error("{0}")]
    Expired(String),
    /// Storage failed (503: worth retrying).
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
}

/// What a key of the logical view reads as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A metadata document (changes with commits).
    Metadata,
    /// A chunk stored at a physical key (its bytes never change).
    Stored,
    /// A coordinate chunk computed from the commit (changes with the offset).
    Derived,
}

/// One object of a logical view.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its bytes.
    pub bytes: Bytes,
    /// What it is.
    pub kind: Kind,
    /// Entity tag: the physical key for stored chunks, a hash of the bytes otherwise.
    pub etag: String,
}

/// One configured dataset.
#[derive(Debug)]
struct Entry {
    config: DatasetConfig,
    storage: Arc<dyn Storage>,
    view: Mutex<Option<(Arc<RollingStore>, Instant)>>,
}

/// Every configured dataset.
#[derive(Debug)]
pub struct Catalog {
    /// The datasets; those templates make from the feed are added while serving.
    datasets: std::sync::RwLock<BTreeMap<String, Arc<Entry>>>,
    refresh: Duration,
    snapshots: Mutex<LruCache<(String, u64), Cached>>,
    clock: Arc<dyn Clock>,
}

/// A snapshot the server has seen: open, or known to have expired.
#[derive(Debug, Clone)]
enum Cached {
    Open(Arc<RollingStore>),
    Expired,
}

impl From<SnapshotError> for ReadError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Unknown { .. } => Self::NoGeneration(e.to_string()),
            SnapshotError::Expired { .. } => Self::Expired(e.to_string()),
            SnapshotError::Record(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl Catalog {
    /// A catalog of datasets and their opened stores, re-reading each commit record at most
    /// every `refresh`.
    pub fn with_stores(
        datasets: Vec<(DatasetConfig, Arc<dyn Storage>)>,
        refresh: Duration,
    ) -> Result<Self, CatalogError> {
        let catalog = Self {
            datasets: std::sync::RwLock::new(BTreeMap::new()),
            refresh,
            snapshots: Mutex::new(LruCache::new(
                NonZeroUsize::new(DEFAULT_SNAPSHOT_CACHE).unwrap_or(NonZeroUsize::MIN),
            )),
            clock: clock::system(),
        };
        for (config, storage) in datasets {
            catalog.add(config, storage)?;
        }
        Ok(catalog)
    }

    /// Adds a dataset (one a template made from the feed, while serving).
    pub fn add(
        &self,
        config: DatasetConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<(), CatalogError> {
        let name = config.name.clone();
        if name == crate::quicklook::QUICKLOOK_DIR || name == crate::status::STATUS_DIR {
            return Err(CatalogError::Reserved(name));
        }
        let entry = Arc::new(Entry {
            config,
            storage,
            view: Mutex::new(None),
        });
        let mut datasets = self
            .datasets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if datasets.contains_key(&name) {
            return Err(CatalogError::Duplicate(name));
        }
        datasets.insert(name, entry);
        Ok(())
    }

    /// The entry of `dataset`.
    fn entry(&self, dataset: &str) -> Option<Arc<Entry>> {
        self.datasets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(dataset)
            .cloned()
    }

    /// Keeps at most `snapshots` snapshot views open (least recently used are dropped).
    #[must_use]
    pub fn with_snapshot_cache(self, snapshots: NonZeroUsize) -> Self {
        Self {
            snapshots: Mutex::new(LruCache::new(snapshots)),
            ..self
        }
    }

    /// Tells when snapshots expire with `clock` (tests move it instead of waiting).
    #[must_use]
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The dataset names, in order.
    pub fn names(&self) -> Vec<String> {
        self.datasets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// A dataset's config.
    pub fn config(&self, dataset: &str) -> Option<DatasetConfig> {
        self.entry(dataset).map(|e| e.config.clone())
    }

    /// A dataset's logical view at its latest commit (as of at most `refresh` ago). When the
    /// commit record cannot be read, the last view read is kept.
    pub fn view(&self, dataset: &str) -> Result<Arc<RollingStore>, ReadError> {
        let entry = self
            .entry(dataset)
            .ok_or_else(|| ReadError::NoSuchDataset(dataset.to_owned()))?;
        let mut view = entry
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((store, checked)) = view.as_mut() {
            if checked.elapsed() >= self.refresh {
                *checked = Instant::now();
                if let Err(e) = store.refresh() {
                    tracing::warn!(dataset, error = %e, "cannot re-read the commit record; serving the last one");
                }
            }
            return Ok(store.clone());
        }
        match RollingStore::open(entry.storage.clone()) {
            Ok(store) => {
                let store = Arc::new(store);
                *view = Some((store.clone(), Instant::now()));
                Ok(store)
            }
            Err(OpenError::NoDataset) => Err(ReadError::NotCommitted(dataset.to_owned())),
            Err(e) => Err(ReadError::Unavailable(e.to_string())),
        }
    }

    /// The view pinned at `generation` of `dataset`, from the cache or opened; fails once the
    /// snapshot has expired.
    pub fn snapshot(&self, dataset: &str, generation: u64) -> Result<Arc<RollingStore>, ReadError> {
        let entry = self
            .entry(dataset)
            .ok_or_else(|| ReadError::NoSuchDataset(dataset.to_owned()))?;
        // The newest view (re-read at most every `refresh`) answers generations that do not
        // exist without reading storage, and tells when a cached one was replaced.
        let newest = self.view(dataset)?.generation();
        if generation == 0 || generation > newest {
            return Err(SnapshotError::Unknown { generation, newest }.into());
        }
        let expired = || SnapshotError::Expired { generation, newest }.into();
        let id = (dataset.to_owned(), generation);
        let cached = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        let store = match cached {
            Some(Cached::Open(store)) => store,
            Some(Cached::Expired) => return Err(expired()),
            None => {
                let opened = RollingStore::open_generation(
                    entry.storage.clone(),
                    generation,
                    self.clock.clone(),
                );
                let store = match opened {
                    Ok(store) => Arc::new(store),
                    Err(OpenError::NoDataset) => {
                        return Err(ReadError::NotCommitted(dataset.to_owned()))
                    }
                    Err(OpenError::Snapshot(e)) => {
                        self.remember_expired(id, &e);
                        return Err(e.into());
                    }
                    Err(e) => return Err(ReadError::Unavailable(e.to_string())),
                };
                self.snapshots
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .put(id.clone(), Cached::Open(store.clone()));
                store
            }
        };
        if let Err(e) = store.check_snapshot(newest > generation) {
            self.remember_expired(id, &e);
            return Err(e.into());
        }
        Ok(store)
    }

    /// An expired snapshot stays expired: remembered, so asking again reads no storage.
    fn remember_expired(&self, id: (String, u64), e: &SnapshotError) {
        if matches!(e, SnapshotError::Expired { .. }) {
            self.snapshots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(id, Cached::Expired);
        }
    }

    /// Reads one key of a dataset's newest view (`generation` `None`) or of one generation's
    /// snapshot. `url` is the dataset's URL as the client reaches it (`http://HOST/<dataset>`):
    /// the group attributes name the snapshot URL of the generation read.
    pub fn read(
        &self,
        dataset: &str,
        generation: Option<u64>,
        key: &str,
        url: &str,
    ) -> Result<Answer, ReadError> {
        let view = match generation {
            None => self.view(dataset)?,
            Some(generation) => self.snapshot(dataset, generation)?,
        };
        let (read_generation, resolved) = view
            .resolve(key)
            .map_err(|e| ReadError::Unavailable(e.to_string()))?;
        let resolved = match resolved {
            Resolved::Document(bytes) => Resolved::Document(with_snapshot_url(
                key,
                bytes,
                &format!("{url}@{read_generation}"),
            )),
            other => other,
        };
        let hashed = |bytes: Bytes, kind| Answer {
            etag: format!("{:016x}", fnv1a(&bytes)),
            bytes,
            kind,
        };
        match resolved {
            Resolved::Document(bytes) => Ok(hashed(bytes, Kind::Metadata)),
            Resolved::Derived(bytes) => Ok(hashed(bytes, Kind::Derived)),
            Resolved::Stored(physical) => match view.storage().get(&physical) {
                Ok(Some(bytes)) => Ok(Answer {
                    bytes,
                    kind: Kind::Stored,
                    etag: physical.to_string(),
                }),
                Ok(None) => {
                    // Never written (an all-fill chunk), or removed because the snapshot expired.
                    view.check_snapshot(true)?;
                    Err(ReadError::Missing)
                }
                Err(e) => Err(ReadError::Unavailable(e.to_string())),
            },
            Resolved::Missing => Err(ReadError::Missing),
        }
    }

    /// The newest generation of `dataset` (as of at most `refresh` ago).
    pub fn newest_generation(&self, dataset: &str) -> Result<u64, ReadError> {
        Ok(self.view(dataset)?.generation())
    }
}

/// `bytes` of the group's metadata document `key` with [`SNAPSHOT_URL_ATTR`] set to `url`
/// (Zarr v3 `zarr.json`, v2 `.zattrs` and `.zmetadata`); any other document unchanged.
fn with_snapshot_url(key: &str, bytes: Bytes, url: &str) -> Bytes {
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return bytes;
    };
    let attrs = match key {
        "zarr.json" => doc.get_mut("attributes"),
        ".zattrs" => Some(&mut doc),
        ".zmetadata" => doc.get_mut("metadata").and_then(|m| m.get_mut(".zattrs")),
        _ => None,
    };
    let Some(serde_json::Value::Object(attrs)) = attrs else {
        return bytes;
    };
    attrs.insert(SNAPSHOT_URL_ATTR.into(), url.into());
    serde_json::to_vec_pretty(&doc).map_or(bytes, Bytes::from)
}

/// FNV-1a, 64 bits: a stable hash for entity tags (the same bytes give the same tag in every
/// process, unlike std's randomised hasher).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
