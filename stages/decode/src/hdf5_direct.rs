//! Reading a NetCDF-4 variable's chunks straight from HDF5 and decompressing them ourselves.
//!
//! Debian's HDF5 is not thread-safe, so every HDF5 call is serialised behind one global lock
//! (shared with the `netcdf` crate). Through the normal read path that lock is held while HDF5
//! inflates each chunk, so decoding cannot use more than one core. Here the lock is held only to
//! copy a chunk's *compressed* bytes out of the file (`H5Dread_chunk`); inflating (libdeflate)
//! and un-shuffling happen outside it, on as many threads as decode runs.
//!
//! Only the common case is handled: a chunked, little-endian float variable whose filters are
//! shuffle and deflate. Anything else returns `None` from [`DirectReader::open`] and the caller
//! reads through the `netcdf` crate instead.
//!
//! Public so that `roller bench` can measure the floor (inflate + encode, no I/O) on exactly
//! the bytes decode inflates.

#![expect(
    unsafe_code,
    reason = "HDF5's C API has no safe binding for raw chunk reads"
)]

use std::ffi::CString;
use std::path::Path;

use hdf5_metno_sys::h5::{haddr_t, hsize_t};
use hdf5_metno_sys::h5d::{
    H5D_layout_t, H5Dclose, H5Dget_chunk_info_by_coord, H5Dget_create_plist, H5Dget_space,
    H5Dget_type, H5Dopen2, H5Dread_chunk,
};
use hdf5_metno_sys::h5f::{H5Fclose, H5Fopen, H5F_ACC_RDONLY};
use hdf5_metno_sys::h5i::hid_t;
use hdf5_metno_sys::h5p::{
    H5Pclose, H5Pget_chunk, H5Pget_filter2, H5Pget_layout, H5Pget_nfilters, H5P_DEFAULT,
};
use hdf5_metno_sys::h5s::{H5Sclose, H5Sget_simple_extent_dims, H5Sget_simple_extent_ndims};
use hdf5_metno_sys::h5t::{
    H5T_class_t, H5T_order_t, H5Tclose, H5Tget_class, H5Tget_order, H5Tget_size,
};
use hdf5_metno_sys::h5z::{H5Z_FILTER_DEFLATE, H5Z_FILTER_SHUFFLE};
use hdf5_metno_sys::LOCK;

/// Why a raw chunk could not be read or decoded. The file is at fault in every case (truncated,
/// corrupt or hostile), so none is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// HDF5 could not look the chunk up in the variable's chunk index.
    #[error("HDF5 has no chunk index entry at {offset:?}")]
    NoIndexEntry {
        /// The chunk's first element.
        offset: Vec<u64>,
    },
    /// The chunk claims more stored bytes than deflate could ever produce.
    #[error("the chunk at {offset:?} claims {stored} stored bytes for {decoded} decoded; the file is corrupt")]
    Oversized {
        /// The chunk's first element.
        offset: Vec<u64>,
        /// Stored bytes claimed.
        stored: u64,
        /// Bytes of one decoded chunk.
        decoded: u64,
    },
    /// HDF5 failed to copy the chunk's bytes out of the file.
    #[error("reading the chunk at {offset:?} failed (truncated file?)")]
    ReadFailed {
        /// The chunk's first element.
        offset: Vec<u64>,
    },
    /// The chunk's deflate stream is broken.
    #[error("inflating a chunk failed: {0}")]
    Inflate(#[source] libdeflater::DecompressionError),
    /// The chunk decoded to the wrong size.
    #[error("a chunk decoded to {got} bytes, expected {expected}")]
    WrongLength {
        /// Bytes decoded.
        got: usize,
        /// Bytes of one chunk.
        expected: u64,
    },
}

/// Largest chunk (decompressed) read this way; bigger ones go through the `netcdf` crate.
const MAX_CHUNK_BYTES: u64 = 256 << 20;

thread_local! {
    /// One inflater per decode thread, reused for every chunk.
    static INFLATER: std::cell::RefCell<libdeflater::Decompressor> =
        std::cell::RefCell::new(libdeflater::Decompressor::new());
}

/// A filter of the pipeline, in the order HDF5 applied them when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Shuffle,
    Deflate,
}

/// An open HDF5 dataset whose chunks can be read raw.
#[derive(Debug)]
pub struct DirectReader {
    file: hid_t,
    dataset: hid_t,
    /// Shape of the variable.
    pub shape: Vec<u64>,
    /// Chunk shape of the variable.
    pub chunk: Vec<u64>,
    element: usize,
    /// Decoded bytes of one chunk.
    chunk_bytes: u64,
    filters: Vec<Filter>,
}

// The ids are plain integers; every use goes through the global HDF5 lock.
unsafe impl Send for DirectReader {}

/// Closes HDF5 ids on every exit path of `open`.
struct Ids(Vec<(hid_t, unsafe extern "C" fn(hid_t) -> i32)>);

impl Drop for Ids {
    fn drop(&mut self) {
        for (id, close) in self.0.drain(..).rev() {
            if id >= 0 {
                // SAFETY: each id was returned by the matching HDF5 open call and is closed once.
                unsafe { close(id) };
            }
        }
    }
}

impl DirectReader {
    /// Opens `variable` in `path` for raw chunk reads, or `None` if the variable is not a
    /// chunked little-endian float with only shuffle/deflate filters.
    pub fn open(path: &Path, variable: &str, element: usize) -> Option<Self> {
        let path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
        let name = CString::new(format!("/{variable}")).ok()?;
        let _lock = LOCK.lock();
        crate::hdf5_quiet::silence_this_thread();
        let mut ids = Ids(Vec::new());
        // SAFETY: plain HDF5 C calls with valid NUL-terminated strings and ids checked >= 0;
        // output buffers are sized to the rank HDF5 reports.
        unsafe {
            let file = H5Fopen(path.as_ptr(), H5F_ACC_RDONLY, H5P_DEFAULT);
            ids.0.push((file, H5Fclose));
            if file < 0 {
                return None;
            }
            let dataset = H5Dopen2(file, name.as_ptr(), H5P_DEFAULT);
            ids.0.push((dataset, H5Dclose));
            if dataset < 0 {
                return None;
            }
            let dtype = H5Dget_type(dataset);
            ids.0.push((dtype, H5Tclose));
            if dtype < 0
                || H5Tget_class(dtype) != H5T_class_t::H5T_FLOAT
                || H5Tget_order(dtype) != H5T_order_t::H5T_ORDER_LE
                || H5Tget_size(dtype) != element
                || cfg!(target_endian = "big")
            {
                return None;
            }
            let space = H5Dget_space(dataset);
            ids.0.push((space, H5Sclose));
            let rank = usize::try_from(H5Sget_simple_extent_ndims(space)).ok()?;
            let mut shape: Vec<hsize_t> = vec![0; rank];
            if rank == 0
                || H5Sget_simple_extent_dims(space, shape.as_mut_ptr(), std::ptr::null_mut()) < 0
            {
                return None;
            }
            let plist = H5Dget_create_plist(dataset);
            ids.0.push((plist, H5Pclose));
            if plist < 0 || H5Pget_layout(plist) != H5D_layout_t::H5D_CHUNKED {
                return None;
            }
            let mut chunk: Vec<hsize_t> = vec![0; rank];
            if H5Pget_chunk(plist, i32::try_from(rank).ok()?, chunk.as_mut_ptr())
                != i32::try_from(rank).ok()?
            {
                return None;
            }
            let chunk_bytes = chunk
                .iter()
                .try_fold(element as u64, |acc, &c| acc.checked_mul(c))
                .filter(|&b| b > 0 && b <= MAX_CHUNK_BYTES)?;
            let mut filters = Vec::new();
            for i in 0..u32::try_from(H5Pget_nfilters(plist)).ok()? {
                let (mut flags, mut n, mut config) = (0u32, 0usize, 0u32);
                let id = H5Pget_filter2(
                    plist,
                    i,
                    &mut flags,
                    &mut n,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    &mut config,
                );
                filters.push(match id {
                    H5Z_FILTER_SHUFFLE => Filter::Shuffle,
                    H5Z_FILTER_DEFLATE => Filter::Deflate,
                    _ => return None,
                });
            }
            // Keep the file and dataset open: forget them from the guard.
            ids.0.retain(|(id, _)| *id != file && *id != dataset);
            Some(Self {
                file,
                dataset,
                shape,
                chunk,
                element,
                chunk_bytes,
                filters,
            })
        }
    }

    /// Whether the variable's chunks are shuffled before deflate (decode undoes it).
    pub fn is_shuffled(&self) -> bool {
        self.filters.contains(&Filter::Shuffle)
    }

    /// Reads the compressed bytes of the chunk starting at `offset` (element coordinates), with
    /// its filter mask, or `None` if the chunk was never written (it reads as fill).
    pub fn read_raw(&self, offset: &[u64]) -> Result<Option<(u32, Vec<u8>)>, ChunkError> {
        let _lock = LOCK.lock();
        let (mut mask, mut addr, mut size): (u32, haddr_t, hsize_t) = (0, 0, 0);
        // SAFETY: `offset` has the dataset's rank; outputs are plain integers.
        let found = unsafe {
            H5Dget_chunk_info_by_coord(
                self.dataset,
                offset.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            )
        };
        if found < 0 {
            return Err(ChunkError::NoIndexEntry {
                offset: offset.to_vec(),
            });
        }
        if addr == haddr_t::MAX || size == 0 {
            return Ok(None);
        }
        // Deflate never grows data by more than a small fraction; anything larger is a corrupt
        // or hostile file, refused before allocating for it.
        if size > self.chunk_bytes + self.chunk_bytes / 8 + 4096 {
            return Err(ChunkError::Oversized {
                offset: offset.to_vec(),
                stored: size,
                decoded: self.chunk_bytes,
            });
        }
        // `size` is bounded by the check above, which a chunk's decoded size (a usize) bounds.
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
        // SAFETY: `buf` holds exactly the chunk's stored size, as HDF5 reported it.
        let read = unsafe {
            H5Dread_chunk(
                self.dataset,
                H5P_DEFAULT,
                offset.as_ptr(),
                &mut mask,
                buf.as_mut_ptr().cast(),
            )
        };
        if read < 0 {
            return Err(ChunkError::ReadFailed {
                offset: offset.to_vec(),
            });
        }
        Ok(Some((mask, buf)))
    }

    /// Undoes the filters of a raw chunk (no lock needed), giving the chunk's element bytes.
    pub fn decode(&self, mask: u32, raw: Vec<u8>) -> Result<Vec<u8>, ChunkError> {
        let wrong = |got| ChunkError::WrongLength {
            got,
            expected: self.chunk_bytes,
        };
        let len = usize::try_from(self.chunk_bytes).map_err(|_| wrong(0))?;
        let mut data = raw;
        for (i, filter) in self.filters.iter().enumerate().rev() {
            if mask & (1 << i) != 0 {
                continue;
            }
            data = match filter {
                Filter::Deflate => {
                    let mut out = vec![0u8; len];
                    let n = INFLATER
                        .with_borrow_mut(|inflater| inflater.zlib_decompress(&data, &mut out))
                        .map_err(ChunkError::Inflate)?;
                    out.truncate(n);
                    out
                }
                Filter::Shuffle => unshuffle(&data, self.element),
            };
        }
        if data.len() != len {
            return Err(wrong(data.len()));
        }
        Ok(data)
    }
}

impl Drop for DirectReader {
    fn drop(&mut self) {
        let _lock = LOCK.lock();
        // SAFETY: both ids were opened in `open` and are closed exactly once, here.
        unsafe {
            H5Dclose(self.dataset);
            H5Fclose(self.file);
        }
    }
}

/// Reverses HDF5's shuffle filter: byte `b` of element `i` was stored at `b * n + i`.
fn unshuffle(data: &[u8], element: usize) -> Vec<u8> {
    let n = data.len() / element;
    let mut out = vec![0u8; data.len()];
    if element == 4 {
        // The common float32 case, written so the compiler can vectorise it.
        let (p0, rest) = data.split_at(n);
        let (p1, rest) = rest.split_at(n);
        let (p2, p3) = rest.split_at(n);
        for (i, o) in out.chunks_exact_mut(4).enumerate() {
            o.copy_from_slice(&[p0[i], p1[i], p2[i], p3[i]]);
        }
    } else {
        for b in 0..element {
            let plane = &data[b * n..(b + 1) * n];
            for (i, &byte) in plane.iter().enumerate() {
                out[i * element + b] = byte;
            }
        }
    }
    // Trailing bytes that do not fill an element are stored as they are.
    out[n * element..].copy_from_slice(&data[n * element..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshuffle_reverses_shuffle() {
        for element in [4, 8] {
            let mut elements: Vec<u8> = (0..u8::try_from(3 * element).unwrap_or(0)).collect();
            let mut shuffled: Vec<u8> = (0..element)
                .flat_map(|b| (0..3).map(move |i| u8::try_from(i * element + b).unwrap_or(0)))
                .collect();
            // Two trailing bytes that do not make an element are left in place.
            elements.extend([200, 201]);
            shuffled.extend([200, 201]);
            assert_eq!(unshuffle(&shuffled, element), elements);
        }
    }
}
