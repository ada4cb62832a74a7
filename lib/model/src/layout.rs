//! The shape of a dataset, derived once from its config: dims, chunk grid, how a time becomes an
//! abs index, how message-dim values become a slot, and how a file is cut into parts.
//!
//! The layout travels inside every commit record, so a reader needs no config to interpret a
//! dataset.

use serde::{Deserialize, Serialize};

use crate::config::{
    Codec, DType, DatasetConfig, FileDimConfig, FillValue, MessageDimConfig, Visibility,
    VARIABLE_FROM_FILE,
};

/// The configured layout differs from the stored dataset's in more than may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored dataset was made with a different layout; only `rolling.window`, `rolling.visibility` and `rolling.run_length` may change. Stored: {stored}; configured: {configured}")]
pub struct LayoutMismatch {
    /// The stored layout, as JSON.
    pub stored: String,
    /// The configured layout, as JSON.
    pub configured: String,
}

/// Why a value cannot be placed in the dataset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    /// A rolling-dim time is not `origin + k * step`.
    #[error("{dim} {time} is not on the dataset's {step}-second step from {origin}")]
    OffStep {
        /// Rolling dim name.
        dim: String,
        /// The time, RFC 3339.
        time: String,
        /// Step in seconds.
        step: i64,
        /// Origin, RFC 3339.
        origin: String,
    },
    /// A message-dim value is not one of the dim's values.
    #[error("{dim} = {value} s does not fit the dataset: expected {expected}")]
    OutOfRange {
        /// Message dim name.
        dim: String,
        /// The value in seconds.
        value: i64,
        /// The values accepted.
        expected: String,
    },
}

/// Everything about a dataset's shape and encoding that is fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// Dataset name.
    pub name: String,
    /// Data variable name (in the files and in the dataset).
    pub variable: String,
    /// Rolling dim name.
    pub rolling_dim: String,
    /// Rolling step in seconds.
    pub step: i64,
    /// Abs index 0, seconds since the epoch.
    pub origin: i64,
    /// Visible steps.
    pub window: u32,
    /// Message dims in order.
    pub message_dims: Vec<MessageDimConfig>,
    /// File dims in order.
    pub file_dims: Vec<FileDimConfig>,
    /// Element type.
    pub dtype: DType,
    /// Compressor.
    pub codec: Codec,
    /// Compression level.
    pub level: i32,
    /// Zarr format of the logical view (2 or 3).
    pub format: u8,
    /// Fill value.
    pub fill_value: FillValue,
    /// When an index counts as visible (readers enforce it too).
    pub visibility: Visibility,
    /// A run's length (seconds of `forecast_period`) when its files do not give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_length: Option<i64>,
    /// The chunk size (bytes) to aim at when the first file fixes the file dims; set when the
    /// config leaves `file_dims` out (see [`crate::inferred`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
}

impl Layout {
    /// Derives the layout from a validated config.
    pub fn from_config(config: &DatasetConfig) -> Self {
        Self {
            name: config.name.clone(),
            variable: config.variable.clone(),
            rolling_dim: config.rolling.dim.clone(),
            step: config.rolling.step.0,
            origin: config.origin_seconds(),
            window: config.rolling.window,
            message_dims: config.message_dims.clone(),
            file_dims: config.file_dims.clone(),
            dtype: config.encoding.dtype,
            codec: config.encoding.codec,
            level: config.level(),
            format: config.encoding.format,
            fill_value: config.encoding.fill_value.clone(),
            visibility: config.rolling.visibility,
            run_length: config.rolling.run_length.map(|s| s.0),
            chunk_bytes: config.file_dims.is_empty().then(|| {
                config
                    .encoding
                    .chunk_bytes
                    .unwrap_or(crate::config::DEFAULT_CHUNK_BYTES)
            }),
        }
    }

    /// Whether the file dims are known: configured, or fixed by the dataset's first file.
    /// Until they are, nothing can be cut, written or committed with this layout.
    pub fn is_fixed(&self) -> bool {
        !self.file_dims.is_empty() && !self.variable_from_file()
    }

    /// Whether the config leaves the variable to the first file ([`VARIABLE_FROM_FILE`]): the
    /// file's one data variable is taken, and fixed for the dataset like its file dims.
    pub fn variable_from_file(&self) -> bool {
        self.variable == VARIABLE_FROM_FILE
    }

    /// This layout with `file_dims` (what the first file fixed).
    #[must_use]
    pub fn with_file_dims(mut self, file_dims: Vec<FileDimConfig>) -> Self {
        self.file_dims = file_dims;
        self
    }

    /// This layout with the variable and file dims of `fixed` (what the first file fixed, or
    /// the dataset's record).
    #[must_use]
    pub fn fixed_as(mut self, fixed: &Layout) -> Self {
        self.variable.clone_from(&fixed.variable);
        self.file_dims.clone_from(&fixed.file_dims);
        self
    }

    /// The file dims a field with dims `var_dims` (name and length, outermost first) gives
    /// this dataset: every dim longer than 1, and the member and level dims (`realization`,
    /// `height`, `pressure`) whatever their length (a later file may have more). Chunks hold
    /// one member or level, and the two innermost dims (the grid) are halved, the longest
    /// first (the outer one on a tie), until a chunk is at most `chunk_bytes`.
    pub fn infer_file_dims(&self, var_dims: &[(String, usize)]) -> Vec<FileDimConfig> {
        const ALWAYS_KEPT: [&str; 3] = ["realization", "height", "pressure"];
        let target = self
            .chunk_bytes
            .unwrap_or(crate::config::DEFAULT_CHUNK_BYTES);
        let element = self.dtype.size() as u64;
        let mut dims: Vec<FileDimConfig> = var_dims
            .iter()
            .filter(|(name, len)| *len > 1 || ALWAYS_KEPT.contains(&name.as_str()))
            .map(|(name, len)| FileDimConfig {
                name: name.clone(),
                size: *len as u64,
                chunk: *len as u64,
                per_run: None,
            })
            .collect();
        let grid_from = dims.len().saturating_sub(2);
        for dim in &mut dims[..grid_from] {
            dim.chunk = 1;
        }
        let bytes = |dims: &[FileDimConfig]| {
            dims.iter()
                .fold(element, |acc, d| acc.saturating_mul(d.chunk))
        };
        while bytes(&dims) > target {
            let Some(longest) = dims[grid_from..]
                .iter_mut()
                .filter(|d| d.chunk > 1)
                .reduce(|a, b| if b.chunk > a.chunk { b } else { a })
            else {
                break;
            };
            longest.chunk = longest.chunk.div_ceil(2);
        }
        dims
    }

    /// How many slots a run of `run_length` seconds fills: those whose `forecast_period` is at
    /// most that long (all of them without a `forecast_period` dim or a known length).
    pub fn slots_within(&self, run_length: Option<i64>) -> u32 {
        let Some(length) = run_length.or(self.run_length) else {
            return self.slots();
        };
        self.message_dims
            .iter()
            .map(|m| {
                if m.name == "forecast_period" {
                    m.count_at_most(length)
                } else {
                    m.size
                }
            })
            .product()
    }

    /// Whether `slot` lies within a run of `run_length` seconds (its `forecast_period` is at
    /// most that long); every slot does without a known length or a `forecast_period` dim.
    pub fn slot_within(&self, slot: u32, run_length: Option<i64>) -> bool {
        let Some(length) = run_length.or(self.run_length) else {
            return true;
        };
        let mut rest = slot;
        for dim in self.message_dims.iter().rev() {
            let index = rest % dim.size.max(1);
            rest /= dim.size.max(1);
            if dim.name == "forecast_period" {
                return dim.value_at(index) <= length;
            }
        }
        true
    }

    /// The abs index of a rolling-dim time.
    pub fn abs_index(&self, time: i64) -> Result<i64, PlacementError> {
        let since = time - self.origin;
        if since.rem_euclid(self.step) != 0 {
            return Err(PlacementError::OffStep {
                dim: self.rolling_dim.clone(),
                time: roller_proto::time::format_instant(time),
                step: self.step,
                origin: roller_proto::time::format_instant(self.origin),
            });
        }
        Ok(since.div_euclid(self.step))
    }

    /// The abs index at or before a time (for rolls driven by the clock).
    pub fn abs_index_floor(&self, time: i64) -> i64 {
        (time - self.origin).div_euclid(self.step)
    }

    /// The rolling-dim time of an abs index, seconds since the epoch.
    pub fn time_of(&self, abs: i64) -> i64 {
        self.origin + abs * self.step
    }

    /// Number of slots: the product of the message dims' sizes (1 without message dims).
    pub fn slots(&self) -> u32 {
        self.message_dims.iter().map(|m| m.size).product()
    }

    /// The slot for one value (in seconds) per message dim.
    pub fn slot_of(&self, values: &[i64]) -> Result<u32, PlacementError> {
        let mut slot: u32 = 0;
        for (dim, &value) in self.message_dims.iter().zip(values) {
            let index = dim
                .index_of(value)
                .ok_or_else(|| PlacementError::OutOfRange {
                    dim: dim.name.clone(),
                    value,
                    expected: dim.describe(),
                })?;
            slot = slot * dim.size + index;
        }
        Ok(slot)
    }

    /// The slot of per-message-dim indices (the inverse of [`Layout::slot_indices`]).
    pub fn slot_from_indices(&self, indices: &[u64]) -> Option<u32> {
        let slot = self
            .message_dims
            .iter()
            .zip(indices)
            .try_fold(0u64, |acc, (m, &i)| {
                (i < u64::from(m.size)).then(|| acc * u64::from(m.size) + i)
            })?;
        u32::try_from(slot).ok()
    }

    /// The dataset's fill value as native-endian element bytes.
    pub fn fill_bytes(&self) -> Vec<u8> {
        let fill = self.fill_value.as_f64().unwrap_or(f64::NAN);
        match self.dtype {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "the fill value of a float32 array is a float32"
            )]
            DType::Float32 => (fill as f32).to_ne_bytes().to_vec(),
            DType::Float64 => fill.to_ne_bytes().to_vec(),
        }
    }

    /// The per-message-dim indices of a slot.
    pub fn slot_indices(&self, slot: u32) -> Vec<u64> {
        let mut rest = slot;
        let mut out = vec![0; self.message_dims.len()];
        for (i, dim) in self.message_dims.iter().enumerate().rev() {
            out[i] = u64::from(rest % dim.size);
            rest /= dim.size;
        }
        out
    }

    /// The message-dim coordinate values of a slot (seconds, e.g. a lead time): the inverse of
    /// [`Layout::slot_of`].
    pub fn slot_values(&self, slot: u32) -> Vec<i64> {
        self.message_dims
            .iter()
            .zip(self.slot_indices(slot))
            .map(|(m, i)| m.value_at(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect()
    }

    /// Shape of the field in one file.
    pub fn file_shape(&self) -> Vec<u64> {
        self.file_dims.iter().map(|d| d.size).collect()
    }

    /// Number of chunks along each file dim.
    pub fn file_chunk_grid(&self) -> Vec<u64> {
        self.file_dims
            .iter()
            .map(|d| d.size.div_ceil(d.chunk))
            .collect()
    }

    /// How many parts a file is cut into: one per chunk along every file dim but the last.
    pub fn parts(&self) -> u32 {
        let grid = self.file_chunk_grid();
        let n: u64 = grid
            .split_last()
            .map_or(1, |(_, leading)| leading.iter().product());
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The region of the file (start and shape per file dim) that part `part` covers.
    pub fn part_region(&self, part: u32) -> (Vec<u64>, Vec<u64>) {
        let leading = self.part_chunk_prefix(part);
        let mut start = Vec::with_capacity(self.file_dims.len());
        let mut shape = Vec::with_capacity(self.file_dims.len());
        for (dim, index) in self.file_dims.iter().zip(leading.iter()) {
            let s = index * dim.chunk;
            start.push(s);
            shape.push(dim.chunk.min(dim.size - s));
        }
        let last = &self.file_dims[self.file_dims.len() - 1];
        start.push(0);
        shape.push(last.size);
        (start, shape)
    }

    /// Chunk indices along every file dim but the last, for a part.
    fn part_chunk_prefix(&self, part: u32) -> Vec<u64> {
        let grid = self.file_chunk_grid();
        let leading = &grid[..grid.len() - 1];
        let mut rest = u64::from(part);
        let mut out = vec![0; leading.len()];
        for (i, n) in leading.iter().enumerate().rev() {
            out[i] = rest % n;
            rest /= n;
        }
        out
    }

    /// File-dim chunk indices of every chunk in a part.
    pub fn part_chunks(&self, part: u32) -> Vec<Vec<u64>> {
        let prefix = self.part_chunk_prefix(part);
        let along_last = self.file_chunk_grid()[self.file_dims.len() - 1];
        (0..along_last)
            .map(|c| {
                let mut indices = prefix.clone();
                indices.push(c);
                indices
            })
            .collect()
    }

    /// Full chunk indices of the data variable for a target and file chunk.
    pub fn data_chunk_indices(&self, abs: u64, slot: u32, file_chunk: &[u64]) -> Vec<u64> {
        let mut indices = Vec::with_capacity(1 + self.message_dims.len() + file_chunk.len());
        indices.push(abs);
        indices.extend(self.slot_indices(slot));
        indices.extend_from_slice(file_chunk);
        indices
    }

    /// Dim names of the data variable: rolling, message dims, file dims.
    pub fn data_dims(&self) -> Vec<String> {
        std::iter::once(self.rolling_dim.clone())
            .chain(self.message_dims.iter().map(|m| m.name.clone()))
            .chain(self.file_dims.iter().map(|d| d.name.clone()))
            .collect()
    }

    /// Whether two layouts can share stored data (same shapes, chunks, encoding and steps).
    /// Only the window, the visibility and the default run length may differ between runs of
    /// one dataset.
    pub fn compatible_with(&self, other: &Self) -> Result<(), LayoutMismatch> {
        let mut a = self.clone();
        if a.file_dims.is_empty() {
            // The configured layout leaves the file dims to the first file: the stored ones
            // are the dataset's.
            a.file_dims.clone_from(&other.file_dims);
        }
        if a.variable_from_file() {
            a.variable.clone_from(&other.variable);
        }
        // Only used to fix the file dims, which are compared.
        a.chunk_bytes = other.chunk_bytes;
        a.window = other.window;
        a.visibility = other.visibility;
        a.run_length = other.run_length;
        if &a == other {
            Ok(())
        } else {
            Err(LayoutMismatch {
                stored: serde_json::to_string(other).unwrap_or_default(),
                configured: serde_json::to_string(self).unwrap_or_default(),
            })
        }
    }
}

/// Small dataset configs and layouts for the unit tests of this crate and of the boxes
/// (enabled in other crates by the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::Layout;
    use crate::config::DatasetConfig;

    /// A write report of one whole target (one part) of run `abs`, slot 0, of `dataset`: what
    /// the commit tests fold.
    pub fn single_part_report(dataset: &str, abs: i64) -> roller_proto::WriteReport {
        roller_proto::WriteReport {
            dataset: dataset.into(),
            source: format!("run {abs}"),
            abs,
            slot: 0,
            part: 0,
            parts: 1,
            chunks: 1,
            bytes: 1,
            schema: None,
        }
    }

    /// The layout of [`config`].
    pub fn layout(window: u32, fp_size: u32, dims: &[(u64, u64)]) -> Layout {
        Layout::from_config(&config(window, fp_size, dims))
    }

    /// A valid test dataset config: hourly runs, `fp_size` hourly lead times, file dims
    /// `d0, d1, ...` of the given (size, chunk).
    pub fn config(window: u32, fp_size: u32, dims: &[(u64, u64)]) -> DatasetConfig {
        let mut text = format!(
            r#"name = "t"
            variable = "air_temperature"
            [match]
            model = "m"
            name = "air_temperature"
            [rolling]
            dim = "forecast_reference_time"
            step = "1h"
            window = {window}
            [[message_dims]]
            name = "forecast_period"
            step = "1h"
            size = {fp_size}
            [store]
            path = "unused"
            "#
        );
        for (i, (size, chunk)) in dims.iter().enumerate() {
            text.push_str(&format!(
                "[[file_dims]]\nname = \"d{i}\"\nsize = {size}\nchunk = {chunk}\n"
            ));
        }
        DatasetConfig::from_toml(&text).expect("valid config")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::layout;

    #[test]
    fn places_times_and_slots() {
        let l = layout(3, 5, &[(10, 4), (7, 7)]);
        assert_eq!(l.abs_index(7200), Ok(2));
        assert!(l.abs_index(7201).is_err());
        assert_eq!(l.time_of(2), 7200);
        assert_eq!(l.slot_of(&[3 * 3600]), Ok(3));
        assert!(l.slot_of(&[5 * 3600]).is_err());
        assert!(l.slot_of(&[-3600]).is_err());
        assert_eq!(l.slot_indices(3), vec![3]);
    }

    #[test]
    fn cuts_files_into_parts() {
        let l = layout(3, 1, &[(2, 1), (10, 4), (7, 3)]);
        assert_eq!(l.file_chunk_grid(), vec![2, 3, 3]);
        assert_eq!(l.parts(), 6);
        assert_eq!(l.part_region(0), (vec![0, 0, 0], vec![1, 4, 7]));
        assert_eq!(l.part_region(5), (vec![1, 8, 0], vec![1, 2, 7]));
        assert_eq!(
            l.part_chunks(5),
            vec![vec![1, 2, 0], vec![1, 2, 1], vec![1, 2, 2]]
        );
    }

    proptest::proptest! {
        /// Every element of the file belongs to exactly one part.
        #[test]
        fn parts_tile_the_file(a in 1u64..6, ca in 1u64..6, b in 1u64..9, cb in 1u64..9) {
            let (ca, cb) = (ca.min(a), cb.min(b));
            let l = layout(1, 1, &[(a, ca), (b, cb)]);
            let mut covered = 0;
            for p in 0..l.parts() {
                let (_, shape) = l.part_region(p);
                covered += shape.iter().product::<u64>();
            }
            proptest::prop_assert_eq!(covered, a * b);
        }
    }
}
