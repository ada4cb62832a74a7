//! `RollingStore`: a read-only zarrs storage adapter that presents a dataset's *logical* view.
//!
//! Logical chunk keys are translated by the committed offset (`logical = abs - offset`), the
//! metadata documents are rendered from the commit record, and the rolling and message-dim
//! coordinates are derived from the layout. Only targets the commit made visible are served:
//! anything else reads as missing, which Zarr readers turn into the fill value (invariant 1).
//!
//! A store opened at a generation ([`RollingStore::open_generation`]) is *pinned*: it never
//! moves, and once its snapshot has expired every read fails (a chunk it showed may be gone,
//! and reading it as fill would be a silent misread, invariant 7).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError as ZarrsError, StoreKey,
};

use crate::chunk_codec::ChunkCodec;
use crate::clock::Clock;
use crate::metadata::{array_specs, consolidated_v2, group_attrs, group_v3_json, ArraySpec, Role};
use crate::physical_key::chunk_key;
use crate::record::{load_record, RecordError};
use crate::snapshot::{self, Lifetime, SnapshotError};
use crate::state::CommitRecord;
use roller_storage::zarrs_adapter::{ranges_of, to_zarrs_error};
use roller_storage::{Key, Storage};

/// Why a dataset cannot be opened for reading.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store has no commit record.
    #[error("no dataset here: the store has no commit record (roller.json)")]
    NoDataset,
    /// Reading the record failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A codec could not be built from the record's layout.
    #[error(transparent)]
    Codec(#[from] crate::chunk_codec::CodecError),
    /// The generation asked for does not exist or has expired.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Group attribute naming the generation a view presents.
pub const GENERATION_ATTR: &str = "zarr_roller_generation";

/// How often a pinned store that is still the newest generation looks whether it was replaced.
const PIN_RECHECK: Duration = Duration::from_secs(1);

/// One committed state, with everything needed to answer reads.
#[derive(Debug)]
struct View {
    record: CommitRecord,
    specs: Vec<ArraySpec>,
    codecs: HashMap<String, ChunkCodec>,
    documents: HashMap<String, Bytes>,
}

impl View {
    fn new(record: CommitRecord) -> Result<Self, OpenError> {
        let layout = &record.layout;
        let specs = array_specs(layout, record.schema.as_ref(), record.visible_len());
        let mut codecs = HashMap::new();
        for spec in specs.iter().filter(|s| {
            matches!(
                s.role,
                Role::Rolling | Role::Message(_) | Role::ValidTime(_)
            )
        }) {
            codecs.insert(spec.name.clone(), ChunkCodec::new(spec, layout)?);
        }
        let mut attrs = group_attrs(record.schema.as_ref());
        attrs.insert(GENERATION_ATTR.into(), record.generation.into());
        let json =
            |v: serde_json::Value| Bytes::from(serde_json::to_vec_pretty(&v).unwrap_or_default());
        let mut documents = HashMap::new();
        if layout.format == 2 {
            documents.insert(
                ".zgroup".into(),
                json(serde_json::json!({"zarr_format": 2})),
            );
            documents.insert(
                ".zattrs".into(),
                json(serde_json::Value::Object(attrs.clone())),
            );
            documents.insert(
                ".zmetadata".into(),
                json(consolidated_v2(layout, &specs, &attrs)),
            );
            for s in &specs {
                documents.insert(format!("{}/.zarray", s.name), json(s.v2_zarray(layout)));
                documents.insert(format!("{}/.zattrs", s.name), json(s.v2_zattrs()));
            }
        } else {
            documents.insert(
                "zarr.json".into(),
                json(group_v3_json(layout, &specs, &attrs)),
            );
            for s in &specs {
                documents.insert(format!("{}/zarr.json", s.name), json(s.v3_json(layout)));
            }
        }
        Ok(Self {
            record,
            specs,
            codecs,
            documents,
        })
    }

    fn get(&self, storage: &dyn Storage, key: &str) -> Result<Option<Bytes>, ZarrsError> {
        match self.resolve(key)? {
            Resolved::Document(bytes) | Resolved::Derived(bytes) => Ok(Some(bytes)),
            Resolved::Stored(key) => storage.get(&key).map_err(to_zarrs_error),
            Resolved::Missing => Ok(None),
        }
    }

    fn resolve(&self, key: &str) -> Result<Resolved, ZarrsError> {
        if let Some(doc) = self.documents.get(key) {
            return Ok(Resolved::Document(doc.clone()));
        }
        let Some((array, chunk)) = key.split_once('/') else {
            return Ok(Resolved::Missing);
        };
        let Some(spec) = self.specs.iter().find(|s| s.name == array) else {
            return Ok(Resolved::Missing);
        };
        let layout = &self.record.layout;
        let Some(indices) = spec.parse_chunk_key(layout.format, chunk) else {
            return Ok(Resolved::Missing);
        };
        let grid = spec.chunk_grid();
        if indices.iter().zip(&grid).any(|(i, n)| i >= n) {
            return Ok(Resolved::Missing);
        }
        let stored = |indices: &[u64]| {
            chunk_key(layout, spec, indices)
                .map(Resolved::Stored)
                .map_err(|e| to_zarrs_error(e.into()))
        };
        match spec.role {
            // Per target: shown when the target is visible, at its physical (abs) key.
            Role::Data | Role::TargetBounds => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                let Some(slot) = layout.slot_from_indices(&indices[1..=layout.message_dims.len()])
                else {
                    return Ok(Resolved::Missing);
                };
                if !self.record.is_visible(abs, slot) {
                    return Ok(Resolved::Missing);
                }
                let mut physical = indices.clone();
                physical[0] = u64::try_from(abs).unwrap_or_default();
                stored(&physical)
            }
            Role::Rolling => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                self.derived(spec, &[layout.time_of(abs)])
            }
            Role::Message(i) => self.derived(spec, &layout.message_dims[i].all_values()),
            Role::ValidTime(i) => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                let run = layout.time_of(abs);
                let valid: Vec<i64> = layout.message_dims[i]
                    .all_values()
                    .iter()
                    .map(|lead| run + lead)
                    .collect();
                self.derived(spec, &valid)
            }
            Role::FileCoord(_) | Role::GridMapping | Role::Static | Role::SlotBounds(_) => {
                stored(&indices)
            }
            Role::PerRun(_) => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                let shown = self
                    .record
                    .present
                    .get(&abs)
                    .is_some_and(|slots| slots.iter().any(|&s| self.record.is_visible(abs, s)));
                if !shown {
                    return Ok(Resolved::Missing);
                }
                let mut physical = indices.clone();
                physical[0] = u64::try_from(abs).unwrap_or_default();
                stored(&physical)
            }
        }
    }

    /// Every key of the hierarchy that resolves to something: the metadata documents, then
    /// each array's chunks in grid order.
    fn keys(&self) -> Result<Vec<(String, Resolved)>, ZarrsError> {
        let mut documents: Vec<&String> = self.documents.keys().collect();
        documents.sort();
        let mut keys: Vec<(String, Resolved)> = documents
            .into_iter()
            .map(|k| (k.clone(), Resolved::Document(self.documents[k].clone())))
            .collect();
        let format = self.record.layout.format;
        for spec in &self.specs {
            let grid = spec.chunk_grid();
            for indices in grid_positions(&grid) {
                let key = format!("{}/{}", spec.name, spec.chunk_key(format, &indices));
                let resolved = self.resolve(&key)?;
                if resolved != Resolved::Missing {
                    keys.push((key, resolved));
                }
            }
        }
        Ok(keys)
    }

    fn derived(&self, spec: &ArraySpec, values: &[i64]) -> Result<Resolved, ZarrsError> {
        let codec = self
            .codecs
            .get(&spec.name)
            .ok_or_else(|| ZarrsError::Other(format!("no codec for `{}`", spec.name)))?;
        let elements: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        codec
            .encode_always(&elements)
            .map(Resolved::Derived)
            .map_err(|e| ZarrsError::Other(e.to_string()))
    }
}

/// What a logical key stands for in one committed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A metadata document, rendered from the commit record.
    Document(Bytes),
    /// A chunk stored at this physical key (absent from storage if never written: fill value).
    Stored(Key),
    /// A coordinate chunk computed from the layout and offset.
    Derived(Bytes),
    /// Nothing: outside the hierarchy or the grid, or not visible in this commit.
    Missing,
}

/// Every position of a chunk grid, in row-major order (one empty position for a 0-d array).
fn grid_positions(grid: &[u64]) -> impl Iterator<Item = Vec<u64>> + '_ {
    let total: u64 = grid.iter().product();
    (0..total).map(move |mut n| {
        let mut indices = vec![0; grid.len()];
        for (index, size) in indices.iter_mut().zip(grid).rev() {
            *index = n % size;
            n /= size;
        }
        indices
    })
}

/// A store held at one generation: how long that snapshot lives.
#[derive(Debug)]
struct Pin {
    clock: Arc<dyn Clock>,
    state: Mutex<PinState>,
}

#[derive(Debug)]
struct PinState {
    lifetime: Lifetime,
    newest: u64,
    checked: Instant,
}

/// The logical view of one dataset, readable by any zarrs reader.
///
/// The view is a snapshot of one commit; call [`RollingStore::refresh`] to follow new commits,
/// or open one generation with [`RollingStore::open_generation`] to keep reading it.
#[derive(Debug)]
pub struct RollingStore {
    storage: Arc<dyn Storage>,
    view: RwLock<Arc<View>>,
    pin: Option<Pin>,
}

impl RollingStore {
    /// Opens the dataset whose raw store is `storage`, at its latest commit.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Self, OpenError> {
        let record = load_record(storage.as_ref())?.ok_or(OpenError::NoDataset)?;
        Self::at(storage, record)
    }

    /// Opens generation `generation` of the dataset and keeps presenting it (a snapshot): it
    /// must not have expired, and once it does every read fails. `clock` tells when.
    pub fn open_generation(
        storage: Arc<dyn Storage>,
        generation: u64,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        let newest = load_record(storage.as_ref())?.ok_or(OpenError::NoDataset)?;
        let (record, lifetime) =
            snapshot::load(storage.as_ref(), generation, &newest, clock.now())?;
        let mut store = Self::at(storage, record)?;
        store.pin = Some(Pin {
            clock,
            state: Mutex::new(PinState {
                lifetime,
                newest: newest.generation,
                checked: Instant::now(),
            }),
        });
        Ok(store)
    }

    /// The logical view of `record` over `storage`, without reading the store (for a writer
    /// that has just published the record).
    pub fn at(storage: Arc<dyn Storage>, record: CommitRecord) -> Result<Self, OpenError> {
        let view = RwLock::new(Arc::new(View::new(record)?));
        Ok(Self {
            storage,
            view,
            pin: None,
        })
    }

    /// For a store opened at a generation: fails once that snapshot has expired. While it is
    /// the newest generation, whether it was replaced is looked up at most once a second, or
    /// at once with `look_now` (the caller knows a newer generation exists, or a chunk it shows
    /// is missing: was it removed?). Always `Ok` for a store that follows the newest commit.
    pub fn check_snapshot(&self, look_now: bool) -> Result<(), SnapshotError> {
        let Some(pin) = &self.pin else {
            return Ok(());
        };
        let lock = || pin.state.lock().unwrap_or_else(PoisonError::into_inner);
        let look = {
            let mut state = lock();
            let look = state.lifetime == Lifetime::Newest
                && (look_now || state.checked.elapsed() >= PIN_RECHECK);
            if look {
                state.checked = Instant::now();
            }
            look
        };
        // Storage is read without the lock held, so other readers of this snapshot never wait
        // on it.
        if look {
            if let Some(newest) = load_record(self.storage.as_ref())? {
                let lifetime =
                    snapshot::lifetime(self.storage.as_ref(), self.generation(), &newest)?;
                let mut state = lock();
                state.lifetime = lifetime;
                state.newest = state.newest.max(newest.generation);
            }
        }
        let state = lock();
        if state.lifetime.is_expired(pin.clock.now()) {
            return Err(SnapshotError::Expired {
                generation: self.generation(),
                newest: state.newest,
            });
        }
        Ok(())
    }

    /// Moves to the latest commit. Returns the generation now presented. A store opened at a
    /// generation stays there.
    pub fn refresh(&self) -> Result<u64, OpenError> {
        if self.pin.is_some() {
            return Ok(self.generation());
        }
        let record = load_record(self.storage.as_ref())?.ok_or(OpenError::NoDataset)?;
        let generation = record.generation;
        let view = Arc::new(View::new(record)?);
        *self
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = view;
        Ok(generation)
    }

    /// The commit record presented.
    pub fn record(&self) -> CommitRecord {
        self.current().record.clone()
    }

    /// The generation of the commit presented (without copying its record).
    pub fn generation(&self) -> u64 {
        self.current().record.generation
    }

    /// The arrays presented.
    pub fn arrays(&self) -> Vec<ArraySpec> {
        self.current().specs.clone()
    }

    /// What one logical key stands for at the latest refresh, with that commit's generation
    /// (so a caller can read a metadata document and chunks from the same commit).
    pub fn resolve(&self, key: &str) -> Result<(u64, Resolved), ZarrsError> {
        let view = self.current();
        Ok((view.record.generation, view.resolve(key)?))
    }

    /// Every logical key that resolves to something at the latest refresh, with what it
    /// resolves to: metadata documents first, then each array's chunks in grid order. Data
    /// chunks are listed when visible, whether or not they were stored (an all-fill chunk is
    /// never stored, so a [`Resolved::Stored`] key may have no object).
    pub fn keys(&self) -> Result<Vec<(String, Resolved)>, ZarrsError> {
        self.current().keys()
    }

    /// The raw store (where [`Resolved::Stored`] keys are read).
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Reads one logical object (metadata document or chunk). A store opened at a generation
    /// fails once its snapshot has expired.
    pub fn get_logical(&self, key: &str) -> Result<Option<Bytes>, ZarrsError> {
        let expired = |e: SnapshotError| ZarrsError::Other(e.to_string());
        self.check_snapshot(false).map_err(expired)?;
        let view = self.current();
        let read = view.get(self.storage.as_ref(), key)?;
        if read.is_none() && self.pin.is_some() {
            self.check_snapshot(true).map_err(expired)?;
        }
        Ok(read)
    }

    fn current(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ReadableStorageTraits for RollingStore {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, ZarrsError> {
        self.get_logical(key.as_str())
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, ZarrsError> {
        Ok(ranges_of(self.get_logical(key.as_str())?, byte_ranges))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, ZarrsError> {
        Ok(self.get_logical(key.as_str())?.map(|b| b.len() as u64))
    }

    fn supports_get_partial(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::grid_positions;

    #[test]
    fn grid_positions_are_row_major_and_cover_the_grid() {
        let all: Vec<Vec<u64>> = grid_positions(&[2, 3]).collect();
        assert_eq!(
            all,
            vec![
                vec![0, 0],
                vec![0, 1],
                vec![0, 2],
                vec![1, 0],
                vec![1, 1],
                vec![1, 2]
            ]
        );
        assert_eq!(
            grid_positions(&[]).collect::<Vec<_>>(),
            vec![Vec::<u64>::new()]
        );
        assert_eq!(grid_positions(&[4, 0]).count(), 0);
    }
}
