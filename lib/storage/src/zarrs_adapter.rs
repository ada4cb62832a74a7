//! Adapts a [`Storage`] to zarrs' synchronous read traits, so zarrs can read raw objects through
//! our backends and decorators (tests use it to show a plain Zarr reader cannot misread a raw
//! store).

use std::sync::Arc;

use bytes::Bytes;
use zarrs::storage::byte_range::{ByteRangeIterator, InvalidByteRangeError};
use zarrs::storage::{
    MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError as ZarrsError, StoreKey,
};

use super::{Key, Storage, StorageError};

/// A [`Storage`] seen through zarrs' storage traits.
#[derive(Debug, Clone)]
pub struct ZarrsStorage {
    inner: Arc<dyn Storage>,
}

impl ZarrsStorage {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

/// Converts our error into zarrs' error type, keeping the message.
pub fn to_zarrs_error(e: StorageError) -> ZarrsError {
    ZarrsError::Other(e.to_string())
}

fn key(k: &StoreKey) -> Result<Key, ZarrsError> {
    Key::new(k.as_str()).map_err(|e| to_zarrs_error(e.into()))
}

/// Serves byte ranges of one object already read into memory.
pub fn ranges_of<'a>(
    object: Option<Bytes>,
    byte_ranges: ByteRangeIterator<'a>,
) -> MaybeBytesIterator<'a> {
    let data = object?;
    let size = data.len() as u64;
    Some(Box::new(byte_ranges.map(move |range| {
        let (start, end) = (range.start(size), range.end(size));
        if end > size || start > end {
            Err(InvalidByteRangeError::new(range, size).into())
        } else {
            // Both bounds are within the object, whose length fits in usize.
            #[expect(
                clippy::cast_possible_truncation,
                reason = "both bounds are clamped to the object's length, a usize"
            )]
            Ok(data.slice(start as usize..end as usize))
        }
    })))
}

impl ReadableStorageTraits for ZarrsStorage {
    fn get(&self, k: &StoreKey) -> Result<MaybeBytes, ZarrsError> {
        self.inner.get(&key(k)?).map_err(to_zarrs_error)
    }

    fn get_partial_many<'a>(
        &'a self,
        k: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, ZarrsError> {
        Ok(ranges_of(self.get(k)?, byte_ranges))
    }

    fn size_key(&self, k: &StoreKey) -> Result<Option<u64>, ZarrsError> {
        self.inner.size(&key(k)?).map_err(to_zarrs_error)
    }

    fn supports_get_partial(&self) -> bool {
        false
    }
}
