//! Where things live in the raw store of a dataset.
//!
//! ```text
//! roller.json                         the commit record of the newest generation
//! roller-layout.json                  the file dims the first file fixed (config without them)
//! snapshots/<generation>.json         the commit record of each generation, kept for its grace
//! chunks/<array>/<chunk key>          chunks, keyed by abs index along the rolling dim
//! ```
//!
//! The raw store deliberately holds no `zarr.json`/`.zarray`: a plain Zarr reader pointed at
//! it finds no array and fails, instead of reading physical (absolute) indices as logical ones
//! (invariant 7). Readers go through [`crate::rolling_store::RollingStore`].

use crate::layout::Layout;
use crate::metadata::ArraySpec;
use roller_storage::{Key, KeyError};

/// Key of the commit record.
pub const COMMIT_KEY: &str = "roller.json";

/// Key of the file dims a dataset's first file fixed, before its first commit records them
/// (see [`crate::inferred`]).
pub const FIXED_DIMS_KEY: &str = "roller-layout.json";

/// Prefix of the per-generation commit records.
pub const SNAPSHOTS_PREFIX: &str = "snapshots";

/// Prefix of all chunks.
pub const CHUNKS_PREFIX: &str = "chunks";

/// The physical key of a chunk of `spec` with the given (abs) chunk indices.
pub fn chunk_key(layout: &Layout, spec: &ArraySpec, indices: &[u64]) -> Result<Key, KeyError> {
    Key::new(format!(
        "{CHUNKS_PREFIX}/{}/{}",
        spec.name,
        spec.chunk_key(layout.format, indices)
    ))
}

/// The prefix of every chunk of the data variable: the per-index chunks, which leave the window
/// (the static coordinates' chunks, written once, live under other prefixes).
pub fn data_chunks_prefix(layout: &Layout) -> String {
    format!(
        "{CHUNKS_PREFIX}/{}/",
        crate::metadata::data_spec(layout).name
    )
}

/// The physical keys of every data chunk one part of one target can have written.
pub fn part_keys(
    layout: &Layout,
    data: &ArraySpec,
    abs: u64,
    slot: u32,
    part: u32,
) -> Result<Vec<Key>, KeyError> {
    layout
        .part_chunks(part)
        .iter()
        .map(|file_chunk| {
            chunk_key(
                layout,
                data,
                &layout.data_chunk_indices(abs, slot, file_chunk),
            )
        })
        .collect()
}

/// The physical key of the one chunk that the target (`abs`, `slot`) has in an array stored
/// beside the data in chunks of one index each: a run's per-run coordinate (at the run's abs
/// index), a file's valid-time bounds (at the target's abs index and slot) or a lead time's
/// bounds (at the slot's index of that dim). Static arrays have one chunk at index 0; the data
/// has [`part_keys`].
pub fn indexed_chunk_key(
    layout: &Layout,
    spec: &ArraySpec,
    abs: u64,
    slot: u32,
) -> Result<Key, KeyError> {
    use crate::metadata::Role;
    let slot_indices = layout.slot_indices(slot);
    let indices: Vec<u64> = match spec.role {
        Role::PerRun(_) => std::iter::once(abs)
            .chain(std::iter::repeat_n(0, spec.dims.len().saturating_sub(1)))
            .collect(),
        Role::TargetBounds => std::iter::once(abs)
            .chain(slot_indices)
            .chain([0])
            .collect(),
        Role::SlotBounds(i) => vec![slot_indices.get(i).copied().unwrap_or_default(), 0],
        _ => vec![0; spec.dims.len()],
    };
    chunk_key(layout, spec, &indices)
}

/// The key of generation `generation`'s commit record (what its snapshot presents).
pub fn snapshot_key(generation: u64) -> Key {
    // Digits under a fixed prefix satisfy every key rule.
    Key::new(format!("{SNAPSHOTS_PREFIX}/{generation}.json"))
        .unwrap_or_else(|_| unreachable!("a snapshot key is a valid key"))
}

/// The commit record's key.
pub fn commit_key() -> Key {
    // A constant that satisfies every key rule.
    Key::new(COMMIT_KEY).unwrap_or_else(|_| unreachable!("`{COMMIT_KEY}` is a valid key"))
}
