//! The `[encoding]` section: data type, codec, level, fill value and Zarr format of the stored
//! arrays (read by write).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// How chunks are encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// Element type; source files must have it.
    #[serde(default)]
    pub dtype: DType,
    /// Compressor.
    #[serde(default)]
    pub codec: Codec,
    /// Compression level (codec default when absent).
    #[serde(default)]
    pub level: Option<i32>,
    /// Zarr format of the logical view: 3 (default) or 2.
    #[serde(default = "default_format")]
    pub format: u8,
    /// Fill value: a number or `"NaN"`.
    #[serde(default)]
    pub fill_value: FillValue,
    /// The size a chunk aims at, in bytes uncompressed, when the first file fixes the dims
    /// (`file_dims` left out); default [`DEFAULT_CHUNK_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
}

/// The chunk size aimed at when the first file fixes a dataset's dims: 1 MiB, a chunk of a
/// few hundred kilobytes compressed (a good object size to read over HTTP).
pub const DEFAULT_CHUNK_BYTES: u64 = 1024 * 1024;

impl Default for EncodingConfig {
    fn default() -> Self {
        Self {
            dtype: DType::default(),
            codec: Codec::default(),
            level: None,
            format: default_format(),
            fill_value: FillValue::default(),
            chunk_bytes: None,
        }
    }
}

fn default_format() -> u8 {
    3
}

/// Element types the pipeline carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit IEEE float.
    #[default]
    Float32,
    /// 64-bit IEEE float.
    Float64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Float32 => 4,
            Self::Float64 => 8,
        }
    }

    /// Zarr v3 data type name.
    pub fn zarr_name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Float64 => "float64",
        }
    }
}

/// Compressors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Zstandard (default level 1: on float fields nearly the ratio of level 3 at about twice
    /// the speed; numcodecs' default too).
    #[default]
    Zstd,
    /// Blosc with lz4 and byte shuffle (default level 5).
    Blosc,
    /// Gzip (default level 5).
    Gzip,
}

impl Codec {
    pub(super) fn level_range(self) -> (i32, i32, i32) {
        match self {
            Self::Zstd => (-7, 22, 1),
            Self::Blosc => (0, 9, 5),
            Self::Gzip => (0, 9, 5),
        }
    }
}

/// The fill value: what missing data reads as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FillValue {
    /// A number.
    Number(f64),
    /// `"NaN"`.
    Text(String),
}

impl Default for FillValue {
    fn default() -> Self {
        Self::Text("NaN".into())
    }
}

impl FillValue {
    /// The value as a float (`NaN` for the text form).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(v) => Some(*v),
            Self::Text(t) if t.eq_ignore_ascii_case("nan") => Some(f64::NAN),
            Self::Text(_) => None,
        }
    }
}

impl EncodingConfig {
    /// Checks the level against the codec, the Zarr format and the fill value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (lo, hi, _) = self.codec.level_range();
        if let Some(level) = self.level {
            if !(lo..=hi).contains(&level) {
                return Err(invalid(
                    "encoding.level",
                    format!("{level} is outside {lo}..={hi} for {:?}", self.codec),
                ));
            }
        }
        if !matches!(self.format, 2 | 3) {
            return Err(invalid("encoding.format", "must be 2 or 3"));
        }
        if let Some(bytes) = self.chunk_bytes {
            if !(1024..=super::MAX_CHUNK_BYTES).contains(&bytes) {
                return Err(invalid(
                    "encoding.chunk_bytes",
                    format!(
                        "{bytes} is outside 1024..={} (bytes of an uncompressed chunk)",
                        super::MAX_CHUNK_BYTES
                    ),
                ));
            }
        }
        if self.fill_value.as_f64().is_none() {
            return Err(invalid(
                "encoding.fill_value",
                "must be a number or \"NaN\"",
            ));
        }
        Ok(())
    }
}
