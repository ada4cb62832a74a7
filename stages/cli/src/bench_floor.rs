//! The floor of `roller bench`: the least work any route must do to move the files' data into
//! the store, on this machine. The files' compressed chunks are read into memory first (not
//! timed); the timed part, on as many threads as there are cores, inflates every chunk
//! (libdeflate), places it in its field, and zstd-encodes the field's chunks of the store's
//! chunk shape. No HDF5 calls, no files, no metadata: what is left when all I/O is free.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use roller_decode::hdf5_direct::DirectReader;

/// One file's variable as its raw, compressed chunks.
pub(crate) struct RawField {
    /// Rows and columns of the field.
    shape: [usize; 2],
    /// Rows and columns of a chunk in the file.
    chunk: [usize; 2],
    /// Each stored chunk: its first row and column, and its zlib stream.
    chunks: Vec<([usize; 2], Vec<u8>)>,
}

impl RawField {
    /// Reads the compressed chunks of the 2-D float32 `variable` of `path`.
    pub(crate) fn read(path: &Path, variable: &str) -> Result<Self> {
        let reader = DirectReader::open(path, variable, 4).with_context(|| {
            format!(
                "{}: `{variable}` is not a chunked float32 compressed with deflate",
                path.display()
            )
        })?;
        ensure!(
            !reader.is_shuffled(),
            "{}: `{variable}` is shuffled; the floor inflates only (files as published are not shuffled)",
            path.display()
        );
        let two = |v: &[u64]| -> Result<[usize; 2]> {
            match v {
                [a, b] => Ok([usize::try_from(*a)?, usize::try_from(*b)?]),
                _ => bail!("{}: `{variable}` is not 2-D", path.display()),
            }
        };
        let (shape, chunk) = (two(&reader.shape)?, two(&reader.chunk)?);
        let mut chunks = Vec::new();
        for row in (0..shape[0]).step_by(chunk[0]) {
            for col in (0..shape[1]).step_by(chunk[1]) {
                let offset = [row as u64, col as u64];
                let raw = reader
                    .read_raw(&offset)
                    .with_context(|| path.display().to_string())?;
                if let Some((mask, bytes)) = raw {
                    ensure!(mask == 0, "{}: a chunk skips a filter", path.display());
                    chunks.push(([row, col], bytes));
                }
            }
        }
        Ok(Self {
            shape,
            chunk,
            chunks,
        })
    }
}

/// Reads every file's raw chunks (the untimed part of the floor).
pub(crate) fn read_all(paths: &[PathBuf], variable: &str) -> Result<Vec<RawField>> {
    paths.iter().map(|p| RawField::read(p, variable)).collect()
}

/// Inflates every field and encodes it in `store_chunk` tiles at zstd `level`, on `threads`
/// threads; returns the wall seconds taken.
pub(crate) fn run(
    fields: &[RawField],
    store_chunk: [usize; 2],
    level: i32,
    threads: usize,
) -> Result<f64> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let stored: Result<Vec<usize>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<usize> {
                    let mut inflater = libdeflater::Decompressor::new();
                    let mut encoder = zstd::bulk::Compressor::new(level)?;
                    let mut stored = 0;
                    while let Some(field) = fields.get(next.fetch_add(1, Ordering::Relaxed)) {
                        stored += encode_field(field, store_chunk, &mut inflater, &mut encoder)?;
                    }
                    Ok(stored)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a floor thread panicked"))?
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        stored?.iter().sum::<usize>() > 0,
        "the floor encoded nothing"
    );
    Ok(seconds)
}

/// Inflates one field's chunks into place and encodes its store chunks; returns the bytes
/// stored.
fn encode_field(
    field: &RawField,
    store_chunk: [usize; 2],
    inflater: &mut libdeflater::Decompressor,
    encoder: &mut zstd::bulk::Compressor<'_>,
) -> Result<usize> {
    let [ny, nx] = field.shape;
    let [cy, cx] = field.chunk;
    let mut values = vec![f32::NAN; ny * nx];
    let mut chunk = vec![0u8; cy * cx * 4];
    for ([row, col], raw) in &field.chunks {
        let n = inflater.zlib_decompress(raw, &mut chunk)?;
        ensure!(n == chunk.len(), "a chunk inflated to {n} bytes");
        for r in 0..cy.min(ny - row) {
            let width = cx.min(nx - col);
            let from = &chunk[r * cx * 4..(r * cx + width) * 4];
            let to = &mut values[(row + r) * nx + col..][..width];
            for (v, b) in to.iter_mut().zip(from.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
    }
    let [sy, sx] = store_chunk;
    let mut tile = vec![0u8; sy * sx * 4];
    let mut stored = 0;
    for row in (0..ny).step_by(sy) {
        for col in (0..nx).step_by(sx) {
            tile.fill(0);
            for r in 0..sy.min(ny - row) {
                let width = sx.min(nx - col);
                let from = &values[(row + r) * nx + col..][..width];
                for (b, v) in tile[r * sx * 4..].chunks_exact_mut(4).zip(from) {
                    b.copy_from_slice(&v.to_le_bytes());
                }
            }
            stored += encoder.compress(&tile)?.len();
        }
    }
    Ok(stored)
}
