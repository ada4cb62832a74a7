//! `RollingStore`: a read-only zarrs storage adapter that presents a dataset's *logical* view.
//!
//! Logical chunk keys are translated by the committed offset (`logical = abs - offset`), the
//! metadata documents are rendered from the commit record, and the rolling and message-dim
//! coordinates are derived from the layout. Only targets the commit made visible are served:
//! anything else reads as missing, which Zarr readers turn into the fill value (invariant 1).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError as ZarrsError, StoreKey,
};

use crate::chunk_codec::ChunkCodec;
use crate::commit::{load_record, CommitError};
use crate::metadata::{array_specs, consolidated_v2, group_attrs, group_v3_json, ArraySpec, Role};
use crate::physical_key::chunk_key;
use crate::state::CommitRecord;
use crate::storage::zarrs_adapter::{ranges_of, to_zarrs_error};
use crate::storage::Storage;

/// Why a dataset cannot be opened for reading.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store has no commit record.
    #[error("no dataset here: the store has no commit record (roller.json)")]
    NoDataset,
    /// Reading the record failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A codec could not be built from the record's layout.
    #[error(transparent)]
    Codec(#[from] crate::chunk_codec::CodecError),
}

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
        for spec in specs
            .iter()
            .filter(|s| matches!(s.role, Role::Rolling | Role::Message(_)))
        {
            codecs.insert(spec.name.clone(), ChunkCodec::new(spec, layout)?);
        }
        let attrs = group_attrs(record.schema.as_ref());
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
            documents.insert("zarr.json".into(), json(group_v3_json(&attrs)));
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
        if let Some(doc) = self.documents.get(key) {
            return Ok(Some(doc.clone()));
        }
        let Some((array, chunk)) = key.split_once('/') else {
            return Ok(None);
        };
        let Some(spec) = self.specs.iter().find(|s| s.name == array) else {
            return Ok(None);
        };
        let layout = &self.record.layout;
        let Some(indices) = spec.parse_chunk_key(layout.format, chunk) else {
            return Ok(None);
        };
        let grid: Vec<u64> = spec
            .shape
            .iter()
            .zip(&spec.chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect();
        if indices.iter().zip(&grid).any(|(i, n)| i >= n) {
            return Ok(None);
        }
        match spec.role {
            Role::Data => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                let Some(slot) = layout.slot_from_indices(&indices[1..=layout.message_dims.len()])
                else {
                    return Ok(None);
                };
                if !self.record.is_visible(abs, slot) {
                    return Ok(None);
                }
                let mut physical = indices.clone();
                physical[0] = u64::try_from(abs).unwrap_or_default();
                let key =
                    chunk_key(layout, spec, &physical).map_err(|e| to_zarrs_error(e.into()))?;
                storage.get(&key).map_err(to_zarrs_error)
            }
            Role::Rolling => {
                let abs = self.record.offset + i64::try_from(indices[0]).unwrap_or(i64::MAX);
                self.derived(spec, &[layout.time_of(abs)])
            }
            Role::Message(i) => {
                let m = &layout.message_dims[i];
                let values: Vec<i64> = (0..i64::from(m.size))
                    .map(|j| m.start.0 + j * m.step.0)
                    .collect();
                self.derived(spec, &values)
            }
            Role::FileCoord(_) | Role::GridMapping => {
                let key =
                    chunk_key(layout, spec, &indices).map_err(|e| to_zarrs_error(e.into()))?;
                storage.get(&key).map_err(to_zarrs_error)
            }
        }
    }

    fn derived(&self, spec: &ArraySpec, values: &[i64]) -> Result<Option<Bytes>, ZarrsError> {
        let codec = self
            .codecs
            .get(&spec.name)
            .ok_or_else(|| ZarrsError::Other(format!("no codec for `{}`", spec.name)))?;
        let elements: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
        codec
            .encode_always(&elements)
            .map(Some)
            .map_err(|e| ZarrsError::Other(e.to_string()))
    }
}

/// The logical view of one dataset, readable by any zarrs reader.
///
/// The view is a snapshot of one commit; call [`RollingStore::refresh`] to follow new commits.
#[derive(Debug)]
pub struct RollingStore {
    storage: Arc<dyn Storage>,
    view: RwLock<Arc<View>>,
}

impl RollingStore {
    /// Opens the dataset whose raw store is `storage`, at its latest commit.
    pub fn open(storage: Arc<dyn Storage>) -> Result<Self, OpenError> {
        let record = load_record(storage.as_ref())?.ok_or(OpenError::NoDataset)?;
        let view = RwLock::new(Arc::new(View::new(record)?));
        Ok(Self { storage, view })
    }

    /// Moves to the latest commit. Returns the generation now presented.
    pub fn refresh(&self) -> Result<u64, OpenError> {
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

    /// The arrays presented.
    pub fn arrays(&self) -> Vec<ArraySpec> {
        self.current().specs.clone()
    }

    /// Reads one logical object (metadata document or chunk).
    pub fn get_logical(&self, key: &str) -> Result<Option<Bytes>, ZarrsError> {
        self.current().get(self.storage.as_ref(), key)
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
