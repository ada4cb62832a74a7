//! Dataset configuration: one TOML file per rolling dataset, every setting overridable from the
//! environment (`ROLLER__ROLLING__WINDOW=48`, `ROLLER__FILE_DIMS__0__CHUNK=485`).
//!
//! Loading validates everything a stage relies on, so a bad config fails at start with the key
//! and the reason, never later in the middle of a file. Each section is a module of its own
//! and validates itself ([`RollingConfig::validate`], [`SourceConfig::validate`]...; the
//! schedule's is `crate::schedule`); [`DatasetConfig::validate`] runs them all and checks what
//! spans sections (dim names used once, the size of a chunk).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schedule::{ScheduleConfig, ScheduleError};

mod dims;
mod encoding;
mod expiry;
mod location;
mod match_rule;
mod reference;
mod rolling;
mod s3;
mod scratch;
mod source;
mod store;

pub use dims::{FileDimConfig, MessageDimConfig, SegmentConfig};
pub use encoding::{Codec, DType, EncodingConfig, FillValue, DEFAULT_CHUNK_BYTES};
pub use expiry::{ExpiryConfig, ExpiryPolicy};
pub use location::{Location, LocationError};
pub use match_rule::{Levels, MatchConfig};
pub use reference::ReferenceConfig;
pub use rolling::{RollingConfig, Visibility};
pub use s3::S3Config;
pub use scratch::ScratchConfig;
pub use source::SourceConfig;
pub use store::StoreConfig;

/// Prefix of environment variables that override config keys; `__` separates key segments.
pub const ENV_PREFIX: &str = "ROLLER__";

/// The `variable` that leaves the variable to the dataset's first file: its one data variable
/// (not a coordinate, bounds or grid mapping) is taken and fixed like inferred file dims (what
/// templates that make datasets from the feed default to).
pub const VARIABLE_FROM_FILE: &str = "*";

/// Largest chunk accepted, in decoded bytes (keeps memory per chunk bounded).
pub const MAX_CHUNK_BYTES: u64 = 512 * 1024 * 1024;

/// A config problem, naming the file and key so it can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema (unknown key, wrong type...).
    #[error("config {origin}: {source}")]
    Parse {
        /// The file (or `environment`).
        origin: String,
        /// The parser's error, which names the key and line.
        #[source]
        source: toml::de::Error,
    },
    /// A `path` is neither a local path nor a usable `s3://` location.
    #[error("config key `{key}`: {source}")]
    Location {
        /// `store.path` or `scratch.path`.
        key: &'static str,
        /// What is wrong with it.
        #[source]
        source: LocationError,
    },
    /// A catalog's structure is wrong (a stray top-level key, no dataset, a name or store
    /// path used twice).
    #[error("catalog {origin}: {reason}")]
    Catalog {
        /// The file.
        origin: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// One dataset of a catalog is not valid.
    #[error("catalog {origin}, dataset {index} (`{name}`): {source}")]
    InDataset {
        /// The file.
        origin: String,
        /// Its place in the catalog, from 0.
        index: usize,
        /// Its name, if it has one.
        name: String,
        /// What is wrong with it.
        #[source]
        source: Box<ConfigError>,
    },
    /// A command that takes one dataset was given a catalog.
    #[error("config {origin} is a catalog of {count} datasets; this command takes one dataset's config (a file without `[[dataset]]` or `[[template]]` tables)")]
    IsCatalog {
        /// The file.
        origin: String,
        /// How many datasets it holds.
        count: usize,
    },
    /// The `schedule` section is not acceptable.
    #[error("config key {0}")]
    Schedule(#[from] ScheduleError),
    /// A value parses but is not acceptable.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `rolling.window`.
        key: String,
        /// What is wrong and what would be right.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// One rolling dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Dataset name: the Zarr group name and the key readers use. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The NetCDF variable to take from each file ([`VARIABLE_FROM_FILE`]: its first file's
    /// one data variable).
    pub variable: String,
    /// Which notifications belong to this dataset.
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    /// The rolling dim, its step and the window.
    pub rolling: RollingConfig,
    /// Dims whose index comes from the notification/file scalars (e.g. `forecast_period`).
    #[serde(default)]
    pub message_dims: Vec<MessageDimConfig>,
    /// The dims of the field inside each file, outermost first, with sizes and chunk lengths.
    /// Left out, the dataset's first file fixes them (its field's dims and sizes, chunks from
    /// `encoding.chunk_bytes`); see [`crate::inferred`].
    #[serde(default)]
    pub file_dims: Vec<FileDimConfig>,
    /// Data type, codec, Zarr format, fill value.
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Where the dataset is stored.
    pub store: StoreConfig,
    /// Where source files may come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// Scratch storage between the distributed stages (required by them, unused embedded).
    #[serde(default)]
    pub scratch: Option<ScratchConfig>,
    /// When the window moves with the clock (the scheduler's roll events).
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// How to reach S3 (used when a location is an `s3://` URL or a source is in a bucket).
    #[serde(default)]
    pub s3: S3Config,
    /// What happens to chunks that rolled out of the window.
    #[serde(default)]
    pub expiry: ExpiryConfig,
    /// The optional reference view written next to the dataset after each commit.
    #[serde(default)]
    pub reference: ReferenceConfig,
}

impl DatasetConfig {
    /// Reads a config file, applies `ROLLER__*` environment overrides and validates it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Parses TOML text, applies overrides from `env` (pairs of name and value) and validates.
    pub fn from_toml_with_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let doc: toml::Value = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        if let Some(table) = doc.as_table().filter(|t| crate::catalog::is_catalog(t)) {
            return Err(ConfigError::IsCatalog {
                origin: origin.to_owned(),
                count: crate::catalog::dataset_count(table),
            });
        }
        Self::from_value_with_env(doc, origin, env)
    }

    /// Builds a config from parsed TOML (one dataset's table), applies overrides from `env`
    /// and validates.
    pub fn from_value_with_env(
        mut doc: toml::Value,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_err = |source: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            source,
        };
        // `{name}` in an override is the dataset's name, so one override gives every dataset
        // of a catalog its own place (`ROLLER__STORE__PATH=s3://bucket/{name}`).
        let dataset = doc
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut doc, path, &value.replace("{name}", &dataset))?;
            }
        }
        let mut config: Self = doc.try_into().map_err(parse_err)?;
        for (i, m) in config.message_dims.iter_mut().enumerate() {
            m.normalise(&|k| format!("message_dims[{i}].{k}"))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text without environment overrides.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, "text", std::iter::empty())
    }

    /// Checks every value a stage relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.name.starts_with('.')
        {
            return Err(invalid(
                "name",
                format!(
                    "`{}` must be non-empty letters, digits, `-`, `_` or `.`",
                    self.name
                ),
            ));
        }
        if self.variable.is_empty() || self.variable.contains('/') || self.variable.starts_with('.')
        {
            return Err(invalid(
                "variable",
                "must name the NetCDF variable to take (no `/`, not starting with `.`)",
            ));
        }
        if self.variable == VARIABLE_FROM_FILE && !self.file_dims.is_empty() {
            return Err(invalid(
                "variable",
                format!("`{VARIABLE_FROM_FILE}` leaves the variable to the first file, so it must leave `file_dims` to it too: name the variable, or drop `file_dims`"),
            ));
        }
        let slots = self
            .message_dims
            .iter()
            .try_fold(1u32, |acc, m| acc.checked_mul(m.size));
        if slots.is_none_or(|s| s > 1_000_000) {
            return Err(invalid(
                "message_dims",
                "the product of the sizes must be at most 1000000",
            ));
        }
        self.rolling.validate()?;
        let mut names = vec![("rolling.dim".to_string(), self.rolling.dim.as_str())];
        for (i, m) in self.message_dims.iter().enumerate() {
            let key = |k: &str| format!("message_dims[{i}].{k}");
            m.validate(&key)?;
            names.push((key("name"), &m.name));
        }
        let mut chunk_elements: u64 = 1;
        for (i, d) in self.file_dims.iter().enumerate() {
            let key = |k: &str| format!("file_dims[{i}].{k}");
            d.validate(&key)?;
            chunk_elements = chunk_elements.saturating_mul(d.chunk);
            names.push((key("name"), &d.name));
        }
        for (i, (key, name)) in names.iter().enumerate() {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(invalid(
                    key.clone(),
                    format!("`{name}` is not a usable dim name"),
                ));
            }
            if names[..i].iter().any(|(_, other)| other == name) || *name == self.variable {
                return Err(invalid(key.clone(), format!("`{name}` is used twice")));
            }
        }
        let chunk_bytes = chunk_elements.saturating_mul(self.encoding.dtype.size() as u64);
        if chunk_bytes > MAX_CHUNK_BYTES {
            return Err(invalid(
                "file_dims",
                format!("a chunk would be {chunk_bytes} bytes; keep it under {MAX_CHUNK_BYTES}"),
            ));
        }
        self.encoding.validate()?;
        self.store.validate()?;
        if let Some(scratch) = &self.scratch {
            scratch.validate()?;
        }
        self.s3.validate()?;
        self.expiry.validate()?;
        self.source.validate()?;
        self.schedule.validate()?;
        Ok(())
    }

    /// The compression level in effect.
    pub fn level(&self) -> i32 {
        self.encoding
            .level
            .unwrap_or(self.encoding.codec.level_range().2)
    }

    /// Abs index 0 of the rolling dim, in seconds since the epoch.
    pub fn origin_seconds(&self) -> i64 {
        // Validated in `validate`.
        roller_proto::time::parse_instant(&self.rolling.origin).unwrap_or(0)
    }
}

/// Sets `doc[path]` from an environment override, parsing the value as TOML when it parses
/// (numbers, booleans, arrays) and as a string otherwise.
fn apply_override(doc: &mut toml::Value, path: &str, value: &str) -> Result<(), ConfigError> {
    let key = path.to_ascii_lowercase().replace("__", ".");
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let segments: Vec<&str> = key.split('.').collect();
    let mut node = doc;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        node = match node {
            toml::Value::Table(table) => {
                if last {
                    table.insert((*segment).to_string(), parsed);
                    return Ok(());
                }
                // A missing list is made by its first item (`..._LOCAL_ROOTS__0`).
                let next_is_index = segments[i + 1].parse::<usize>().is_ok();
                table.entry((*segment).to_string()).or_insert_with(|| {
                    if next_is_index {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(toml::Table::new())
                    }
                })
            }
            toml::Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    invalid(&key, format!("`{segment}` is not an index into a list"))
                })?;
                let len = items.len();
                // The item just past the end is appended.
                if index == len {
                    items.push(if last {
                        parsed.clone()
                    } else {
                        toml::Value::Table(toml::Table::new())
                    });
                }
                let item = items.get_mut(index).ok_or_else(|| {
                    invalid(
                        &key,
                        format!("index {index} is past the list's {len} items"),
                    )
                })?;
                if last {
                    *item = parsed;
                    return Ok(());
                }
                item
            }
            _ => {
                return Err(invalid(
                    &key,
                    "overrides a value that is not a table or list",
                ))
            }
        };
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::duration::Seconds;

    pub(crate) const UKV: &str = r#"
        name = "ukv-air-temperature"
        variable = "air_temperature"
        [match]
        model = "mo-atmospheric-ukv-prd"
        name = "air_temperature"
        [rolling]
        dim = "forecast_reference_time"
        step = "1h"
        window = 24
        [[message_dims]]
        name = "forecast_period"
        step = "1h"
        size = 13
        [[file_dims]]
        name = "projection_y_coordinate"
        size = 970
        chunk = 485
        [[file_dims]]
        name = "projection_x_coordinate"
        size = 1042
        chunk = 521
        [store]
        path = "data/ukv"
    "#;

    fn with_lead_times(lines: &str) -> Result<DatasetConfig, ConfigError> {
        let text = UKV.replace("step = \"1h\"\n        size = 13", lines);
        assert_ne!(text, UKV, "the lead-time lines were replaced");
        DatasetConfig::from_toml(&text)
    }

    #[test]
    fn lead_times_as_published_by_segments_lists_and_later_starts() {
        // UKV T+120 runs: hourly to T+54, then 3-hourly.
        let ukv = with_lead_times(
            r#"segments = [{ step = "1h", until = "54h" }, { step = "3h", until = "120h" }]"#,
        )
        .expect("segments");
        let fp = &ukv.message_dims[0];
        assert_eq!(fp.size, 55 + 22);
        assert_eq!(
            (fp.value_at(54), fp.value_at(55), fp.value_at(76)),
            (54 * 3600, 57 * 3600, 120 * 3600)
        );
        assert_eq!(fp.index_of(57 * 3600), Some(55));
        assert_eq!(fp.index_of(55 * 3600), None);
        // Rate fields every 15 minutes: 217 lead times to T+54.
        let rates =
            with_lead_times(r#"segments = [{ step = "15m", until = "54h" }]"#).expect("15 minutes");
        assert_eq!(rates.message_dims[0].size, 217);
        // Hourly maxima start at PT1H.
        let maxima = with_lead_times(
            r#"start = "1h"
        segments = [{ step = "1h", until = "54h" }]"#,
        )
        .expect("from PT1H");
        assert_eq!(maxima.message_dims[0].size, 54);
        assert_eq!(maxima.message_dims[0].index_of(0), None);
        assert_eq!(maxima.message_dims[0].index_of(3600), Some(0));
        // An explicit list.
        let list = with_lead_times(r#"values = ["0h", "1h", "3h", "6h"]"#).expect("list");
        assert_eq!(
            list.message_dims[0].all_values(),
            vec![0, 3600, 10_800, 21_600]
        );
        // Written back and read again, the config is the same.
        let text = toml::to_string(&ukv).expect("toml");
        assert_eq!(DatasetConfig::from_toml(&text).expect("again"), ukv);
        // Mistakes name the key.
        for (lines, key) in [
            (r#"values = ["1h", "0h"]"#, "message_dims[0].values"),
            (
                r#"step = "1h"
        segments = [{ step = "1h", until = "5h" }]"#,
                "message_dims[0].step",
            ),
            (
                r#"segments = [{ step = "1h", until = "5h" }, { step = "1h", until = "2h" }]"#,
                "message_dims[0].segments[1]",
            ),
        ] {
            let e = with_lead_times(lines).expect_err(lines);
            assert!(e.to_string().contains(key), "{lines}: {e}");
        }
    }

    #[test]
    fn parses_with_defaults() {
        let c = DatasetConfig::from_toml(UKV).expect("valid");
        assert_eq!(c.rolling.step, Seconds(3600));
        assert_eq!(c.encoding.codec, Codec::Zstd);
        assert_eq!(c.encoding.format, 3);
        assert!(c.encoding.fill_value.as_f64().is_some_and(f64::is_nan));
        assert_eq!(c.level(), 1);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = DatasetConfig::from_toml(&UKV.replace("window = 24", "window = 24\nwindw = 3"))
            .expect_err("typo");
        assert!(err.to_string().contains("windw"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            ("window = 24", "window = 0", "rolling.window"),
            ("chunk = 485", "chunk = 2000", "file_dims[0].chunk"),
            (
                "step = \"1h\"\n        window",
                "step = \"soon\"\n        window",
                "soon",
            ),
            (
                "path = \"data/ukv\"",
                "path = \"data/ukv\"\n[encoding]\nformat = 4",
                "encoding.format",
            ),
            (
                "name = \"forecast_period\"",
                "name = \"projection_x_coordinate\"",
                "used twice",
            ),
        ];
        for (from, to, expect) in cases {
            let err = DatasetConfig::from_toml(&UKV.replacen(from, to, 1)).expect_err(to);
            assert!(err.to_string().contains(expect), "{to}: {err}");
        }
    }

    #[test]
    fn environment_overrides_any_key() {
        let env = [
            ("ROLLER__ROLLING__WINDOW".to_string(), "48".to_string()),
            (
                "ROLLER__FILE_DIMS__1__CHUNK".to_string(),
                "1042".to_string(),
            ),
            (
                "ROLLER__STORE__PATH".to_string(),
                "/tmp/elsewhere".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = DatasetConfig::from_toml_with_env(UKV, "test", env).expect("valid");
        assert_eq!(c.rolling.window, 48);
        assert_eq!(c.file_dims[1].chunk, 1042);
        assert_eq!(c.store.path, PathBuf::from("/tmp/elsewhere"));
        // A list the file does not have is made by its first item.
        let roots = [(
            "ROLLER__SOURCE__LOCAL_ROOTS__0".to_string(),
            "/data/sources".to_string(),
        )];
        let c = DatasetConfig::from_toml_with_env(UKV, "test", roots).expect("valid");
        assert_eq!(c.source.local_roots, [PathBuf::from("/data/sources")]);
        let bad = [("ROLLER__FILE_DIMS__9__CHUNK".to_string(), "1".to_string())];
        let err = DatasetConfig::from_toml_with_env(UKV, "test", bad).expect_err("no such dim");
        assert!(err.to_string().contains("file_dims.9.chunk"), "{err}");
    }

    #[test]
    fn locations_are_local_paths_or_s3_urls() {
        assert_eq!(
            Location::parse(Path::new("data/store")),
            Ok(Location::Local(PathBuf::from("data/store")))
        );
        assert_eq!(
            Location::parse(Path::new("s3://roller-data/datasets/ukv/")),
            Ok(Location::S3 {
                bucket: "roller-data".into(),
                prefix: "datasets/ukv".into()
            })
        );
        assert_eq!(
            Location::parse(Path::new("s3://roller-data")),
            Ok(Location::S3 {
                bucket: "roller-data".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "s3://Bad_Bucket/x",
            "s3://ab/x",
            "s3://bucket/a/../b",
            "s3:///x",
        ] {
            assert!(Location::parse(Path::new(bad)).is_err(), "{bad} accepted");
        }
    }
}
