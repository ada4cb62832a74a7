//! The write box, between decode and commit: cuts a slab into the dataset's chunks, encodes them with zarrs' codecs and
//! puts them at their physical keys; stores a file's static coordinates the first time; reports
//! what it wrote.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use roller_proto::WriteReport;

use roller_bus::metrics::{Counter, Metrics};
use roller_model::chunk_codec::{ChunkCodec, CodecError};
use roller_model::layout::Layout;
use roller_model::metadata::{data_spec, ArraySpec};
use roller_model::physical_key::chunk_key;
use roller_model::slab::Slab;
use roller_storage::retry::Retryable;
use roller_storage::{KeyError, Storage, StorageError};

/// Why a slab could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Storage failed (transient: retry).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The chunk codec failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The slab does not fit the layout (a bug upstream, or a message for another dataset).
    #[error("slab from {source_id} does not fit dataset `{dataset}`: {reason}")]
    Shape {
        /// Notification identity.
        source_id: String,
        /// Dataset name.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// A key could not be formed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The dataset's file dims are left to its first file, and none has fixed them yet: a
    /// slab arrived before the decode that fixes them stored them (transient: retry).
    #[error("dataset `{dataset}`: no file has fixed its file dims yet (decode fixes them before it hands on a slab); retry")]
    NotFixed {
        /// Dataset name.
        dataset: String,
    },
    /// The file dims the dataset's first file fixed cannot be read.
    #[error("the dataset's fixed file dims: {0}")]
    FixedDims(#[source] roller_model::record::RecordError),
}

/// Writes slabs of one dataset.
#[derive(Debug)]
pub struct Writer {
    /// The layout the config describes; its file dims may be left to the first file.
    configured: Layout,
    /// The layout with its file dims, its data array and codec, once known.
    fixed: OnceLock<Arc<Fixed>>,
    storage: Arc<dyn Storage>,
    fill: Vec<u8>,
    metrics: Arc<Metrics>,
}

/// What writing needs once the file dims are known.
#[derive(Debug)]
struct Fixed {
    layout: Layout,
    data: ArraySpec,
    codec: ChunkCodec,
}

impl Fixed {
    fn new(layout: Layout) -> Result<Self, WriteError> {
        let data = data_spec(&layout);
        let codec = ChunkCodec::new(&data, &layout)?;
        Ok(Self {
            layout,
            data,
            codec,
        })
    }
}

impl Writer {
    /// A writer for the dataset in `storage`. When `layout` leaves the file dims to the
    /// first file, they are read from the dataset when the first slab comes.
    pub fn new(layout: Layout, storage: Arc<dyn Storage>) -> Result<Self, WriteError> {
        let fixed = OnceLock::new();
        if layout.is_fixed() {
            let _ = fixed.set(Arc::new(Fixed::new(layout.clone())?));
        }
        Ok(Self {
            fill: layout.fill_bytes(),
            configured: layout,
            fixed,
            storage,
            metrics: Arc::default(),
        })
    }

    /// The layout, data array and codec; reads the file dims the first file fixed if need be
    /// (and again for each slab until a commit has recorded them: until then they may change).
    fn fixed(&self) -> Result<Arc<Fixed>, WriteError> {
        if let Some(fixed) = self.fixed.get() {
            return Ok(fixed.clone());
        }
        let (layout, by) =
            match roller_model::inferred::fixed_layout(self.storage.as_ref(), &self.configured) {
                Ok(Some(fixed)) => fixed,
                Ok(None) => {
                    return Err(WriteError::NotFixed {
                        dataset: self.configured.name.clone(),
                    })
                }
                Err(roller_model::record::RecordError::Storage(e)) => return Err(e.into()),
                Err(e) => return Err(WriteError::FixedDims(e)),
            };
        let fixed = Arc::new(Fixed::new(layout)?);
        if by.is_final() {
            let _ = self.fixed.set(fixed.clone());
        }
        Ok(fixed)
    }

    /// Counts stored chunks and bytes in `metrics` (the process's shared counters).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Writes one slab (and, for part 0, the file's static coordinates) and reports it.
    pub fn write(&self, slab: &Slab) -> Result<WriteReport, WriteError> {
        let fixed = self.fixed()?;
        let fixed = fixed.as_ref();
        let layout = &fixed.layout;
        let (_, expected_shape) = layout.part_region(slab.part);
        let element = self.fill.len();
        let expected_len: u64 = expected_shape.iter().product::<u64>() * element as u64;
        if slab.shape != expected_shape || slab.data.len() as u64 != expected_len || slab.abs < 0 {
            return Err(WriteError::Shape {
                source_id: slab.source.clone(),
                dataset: layout.name.clone(),
                reason: format!(
                    "part {} has shape {:?} and {} bytes; expected {:?} and {expected_len}",
                    slab.part,
                    slab.shape,
                    slab.data.len(),
                    expected_shape
                ),
            });
        }
        for (key, bytes) in &slab.statics {
            self.storage.put(key, bytes.clone())?;
        }
        // Checked non-negative above.
        let abs = slab.abs.unsigned_abs();
        let mut chunks = 0;
        let mut bytes = 0;
        for (file_chunk, elements) in self.cut(fixed, &slab.shape, &slab.data, slab.part) {
            let indices = layout.data_chunk_indices(abs, slab.slot, &file_chunk);
            let key = chunk_key(layout, &fixed.data, &indices)?;
            match fixed.codec.encode(&elements)? {
                Some(encoded) => {
                    bytes += encoded.len() as u64;
                    chunks += 1;
                    self.storage.put(&key, encoded)?;
                }
                // An all-fill chunk is not stored; remove any earlier version so it reads as fill.
                None => self.storage.delete(&key)?,
            }
        }
        self.metrics.add(Counter::Chunks, u64::from(chunks));
        self.metrics.add(Counter::StoredBytes, bytes);
        Ok(WriteReport {
            dataset: layout.name.clone(),
            source: slab.source.clone(),
            abs: slab.abs,
            slot: slab.slot,
            part: slab.part,
            parts: slab.parts,
            chunks,
            bytes,
            schema: slab.schema.clone(),
        })
    }

    /// Cuts a slab (one chunk along every file dim but the last, full along the last) into
    /// full-size chunks, padding edges with the fill value.
    fn cut(&self, fixed: &Fixed, shape: &[u64], data: &[u8], part: u32) -> Vec<(Vec<u64>, Bytes)> {
        let element = self.fill.len();
        let chunks = &fixed.data.chunks;
        let chunk_shape: Vec<usize> = chunks[chunks.len() - shape.len()..]
            .iter()
            .map(|&c| usize::try_from(c).unwrap_or(usize::MAX))
            .collect();
        let shape: Vec<usize> = shape
            .iter()
            .map(|&s| usize::try_from(s).unwrap_or(0))
            .collect();
        let last = shape.len() - 1;
        let (row_len, chunk_row) = (shape[last], chunk_shape[last]);
        let leading: usize = shape[..last].iter().product();
        let chunk_elements: usize = chunk_shape.iter().product();
        fixed
            .layout
            .part_chunks(part)
            .into_iter()
            .map(|file_chunk| {
                let from = usize::try_from(file_chunk[last]).unwrap_or(0) * chunk_row;
                let width = chunk_row.min(row_len - from);
                let mut out = self.fill.repeat(chunk_elements);
                for row in 0..leading {
                    // Row `row` of the slab is row `row` of the chunk: both start at the same
                    // chunk boundary along the leading dims; only their extents differ.
                    let mut rest = row;
                    let mut chunk_row_index = 0;
                    let mut stride = 1;
                    for d in (0..last).rev() {
                        chunk_row_index += (rest % shape[d]) * stride;
                        rest /= shape[d];
                        stride *= chunk_shape[d];
                    }
                    let src = (row * row_len + from) * element;
                    let dst = chunk_row_index * chunk_row * element;
                    out[dst..dst + width * element]
                        .copy_from_slice(&data[src..src + width * element]);
                }
                (file_chunk, Bytes::from(out))
            })
            .collect()
    }
}

impl Retryable for WriteError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            // The decode that fixes the dims may not have stored them yet.
            Self::NotFixed { .. } => true,
            _ => false,
        }
    }
}
