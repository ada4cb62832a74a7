//! Encoding and decoding single chunks with zarrs' codecs, exactly as the dataset's metadata
//! declares them.

use std::num::NonZeroU64;
use std::sync::Arc;

use bytes::Bytes;
use zarrs::array::{Array, ArrayBytes, ArrayMetadata};
use zarrs::array::{ArrayToBytesCodecTraits, CodecOptions};
use zarrs::storage::store::MemoryStore;

use crate::layout::Layout;
use crate::metadata::ArraySpec;

/// A codec problem: metadata zarrs refuses (a bug) or bytes that do not encode.
#[derive(Debug, thiserror::Error)]
#[error("chunk codec for `{array}`: {problem}")]
pub struct CodecError {
    /// The array.
    pub array: String,
    /// What failed.
    #[source]
    pub problem: CodecProblem,
}

/// What failed in a [`CodecError`].
#[derive(Debug, thiserror::Error)]
pub enum CodecProblem {
    /// The array's chunk metadata does not parse as Zarr metadata.
    #[error("metadata does not parse: {0}")]
    Metadata(#[source] serde_json::Error),
    /// zarrs refuses the metadata.
    #[error(transparent)]
    Array(Box<zarrs::array::ArrayCreateError>),
    /// A chunk length is zero.
    #[error("zero chunk length")]
    ZeroChunk,
    /// The codecs failed on a chunk.
    #[error(transparent)]
    Encode(Box<zarrs::array::CodecError>),
}

/// The codec chain of one array, ready to encode its chunks.
pub struct ChunkCodec {
    name: String,
    array: Array<MemoryStore>,
    shape: Vec<NonZeroU64>,
    options: CodecOptions,
}

impl std::fmt::Debug for ChunkCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCodec")
            .field("array", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChunkCodec {
    /// Builds the codec of `spec` as the dataset's Zarr format declares it.
    pub fn new(spec: &ArraySpec, layout: &Layout) -> Result<Self, CodecError> {
        let err = |problem| CodecError {
            array: spec.name.clone(),
            problem,
        };
        let metadata: ArrayMetadata = serde_json::from_value(spec.chunk_metadata(layout))
            .map_err(|e| err(CodecProblem::Metadata(e)))?;
        let array = Array::new_with_metadata(Arc::new(MemoryStore::new()), "/", metadata)
            .map_err(|e| err(CodecProblem::Array(Box::new(e))))?;
        let shape = spec
            .chunks
            .iter()
            .map(|&c| NonZeroU64::new(c).ok_or_else(|| err(CodecProblem::ZeroChunk)))
            .collect::<Result<_, _>>()?;
        // Single-threaded per chunk: parallelism comes from encoding many chunks at once.
        let options = CodecOptions::default().with_concurrent_target(1);
        Ok(Self {
            name: spec.name.clone(),
            array,
            shape,
            options,
        })
    }

    /// Encodes one chunk given as native-endian element bytes. Returns `None` when every
    /// element is the fill value: such chunks are not stored and read back as fill.
    pub fn encode(&self, elements: &[u8]) -> Result<Option<Bytes>, CodecError> {
        if ArrayBytes::new_flen(elements).is_fill_value(self.array.fill_value()) {
            return Ok(None);
        }
        self.encode_always(elements).map(Some)
    }

    /// Encodes one chunk even if it is all fill value (coordinates: a reader must never have
    /// to guess a coordinate from the fill value).
    pub fn encode_always(&self, elements: &[u8]) -> Result<Bytes, CodecError> {
        let bytes = ArrayBytes::new_flen(elements);
        let encoded = self
            .array
            .codecs()
            .encode(
                bytes,
                &self.shape,
                self.array.data_type(),
                self.array.fill_value(),
                &self.options,
            )
            .map_err(|e| CodecError {
                array: self.name.clone(),
                problem: CodecProblem::Encode(Box::new(e)),
            })?;
        Ok(Bytes::from(encoded.into_owned()))
    }
}
