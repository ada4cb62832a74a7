//! Dataset configuration: one TOML file per rolling dataset, every setting overridable from the
//! environment (`ROLLER__ROLLING__WINDOW=48`, `ROLLER__FILE_DIMS__0__CHUNK=485`).
//!
//! Loading validates everything a stage relies on, so a bad config fails at start with the key
//! and the reason, never later in the middle of a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::Seconds;
use crate::schedule::{ScheduleConfig, ScheduleError};

/// Prefix of environment variables that override config keys; `__` separates key segments.
pub const ENV_PREFIX: &str = "ROLLER__";

/// Largest chunk accepted, in decoded bytes (keeps memory per chunk bounded).
const MAX_CHUNK_BYTES: u64 = 512 * 1024 * 1024;

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
    #[error("config {origin}: {message}")]
    Parse {
        /// The file (or `environment`).
        origin: String,
        /// The parser's message, which names the key and line.
        message: String,
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
    /// The NetCDF variable to take from each file.
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

/// The reference view: a kerchunk (fsspec reference, version 1) JSON document that maps the
/// logical view's keys to the physical objects, so readers open the dataset from storage with
/// `reference://` and no server. Off by default: it is rewritten after every commit and grows
/// with the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Write `reference.json` at the store's root after each commit (default false).
    #[serde(default)]
    pub enabled: bool,
    /// The store's root as readers reach it, e.g. `s3://bucket/prefix` or
    /// `https://bucket.s3.amazonaws.com/prefix`. Default: the store's own location
    /// (`file://` + its absolute path, or its `s3://` URL).
    #[serde(default)]
    pub url: Option<String>,
}

/// Where a store or scratch area lives: a local directory or an S3 bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local file system.
    Local(PathBuf),
    /// `s3://bucket/prefix`: objects are `prefix/key` in `bucket` (the prefix may be empty).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

/// Why an `s3://` location is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The bucket name breaks S3's rules.
    #[error("`{0}` is not an S3 bucket name (3 to 63 lowercase letters, digits, `-`, `.`)")]
    Bucket(String),
    /// The key prefix climbs out of itself.
    #[error("the key prefix `{0}` must not contain `.` or `..`")]
    Prefix(String),
}

impl Location {
    /// Reads a `path` setting: `s3://bucket/prefix` or a local path.
    pub fn parse(path: &Path) -> Result<Self, LocationError> {
        let Some(text) = path.to_str().and_then(|t| t.strip_prefix("s3://")) else {
            return Ok(Self::Local(path.to_path_buf()));
        };
        let (bucket, prefix) = text.split_once('/').unwrap_or((text, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err(LocationError::Bucket(bucket.to_owned()));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".") {
            return Err(LocationError::Prefix(prefix.to_owned()));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// How to reach S3. Credentials come from the standard AWS chain (environment, shared profile,
/// web identity on Kubernetes, instance metadata), never from this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store (e.g. `http://127.0.0.1:8333`); AWS when unset.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Region; from the AWS chain when unset (`us-east-1` if nothing says).
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Requests in flight at once per process.
    #[serde(default = "default_s3_concurrency")]
    pub max_concurrency: usize,
    /// Attempts per request (throttling, 5xx and network errors are retried with backoff;
    /// other 4xx are not).
    #[serde(default = "default_s3_attempts")]
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            region: None,
            force_path_style: false,
            max_concurrency: default_s3_concurrency(),
            max_attempts: default_s3_attempts(),
        }
    }
}

fn default_s3_concurrency() -> usize {
    32
}

fn default_s3_attempts() -> u32 {
    6
}

/// What happens to chunks that rolled out of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryConfig {
    /// `on_roll_off` (default): after a commit moves the offset, chunks below it are tagged
    /// (S3) or deleted (local disk). `at_write`: every per-index chunk is written with the tag
    /// and a lifecycle rule expires it by age; no tagging calls.
    #[serde(default)]
    pub policy: ExpiryPolicy,
    /// Object tag key marking a chunk for expiry.
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// Object tag value marking a chunk for expiry.
    #[serde(default = "default_tag_value")]
    pub tag_value: String,
    /// Days after which the bucket lifecycle rule (`roller setup`) deletes tagged objects.
    #[serde(default = "default_lifecycle_days")]
    pub lifecycle_days: u32,
    /// How long chunks stay readable after the commit that rolled them out of the window, and
    /// how long a replaced generation's snapshot stays readable (default `1h`): a reader that
    /// opened a snapshot before a roll can finish reading it.
    #[serde(default = "default_grace")]
    pub grace: Seconds,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            policy: ExpiryPolicy::default(),
            tag_key: default_tag_key(),
            tag_value: default_tag_value(),
            lifecycle_days: default_lifecycle_days(),
            grace: default_grace(),
        }
    }
}

/// When chunks are marked for expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryPolicy {
    /// Tag (or delete) chunks once they are below the committed offset.
    #[default]
    OnRollOff,
    /// Tag every per-index chunk when it is written; expiry is by age only.
    AtWrite,
}

fn default_tag_key() -> String {
    "zarr-roller-expired".into()
}

fn default_tag_value() -> String {
    "true".into()
}

fn default_lifecycle_days() -> u32 {
    1
}

fn default_grace() -> Seconds {
    Seconds(3600)
}

/// Which notifications a dataset takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The notification's `model`.
    pub model: String,
    /// The notification's `name`.
    pub name: String,
    /// If set, the notification's `cell_methods` must equal it.
    #[serde(default)]
    pub cell_methods: Option<String>,
    /// Whether the field must be on one level, several, or either.
    #[serde(default)]
    pub levels: Levels,
}

/// Level filter of [`MatchConfig`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Levels {
    /// Any number of heights/pressures.
    #[default]
    Any,
    /// At most one height/pressure.
    Single,
    /// Several heights or pressures.
    Multi,
}

/// The dim the window slides along.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingConfig {
    /// Name of the dim; a time coordinate of each file (scalar or length-1 dim).
    pub dim: String,
    /// Spacing of the rolling dim.
    pub step: Seconds,
    /// How many steps stay visible.
    pub window: u32,
    /// Time of abs index 0 (RFC 3339). Times must be `origin + k * step`.
    #[serde(default = "default_origin")]
    pub origin: String,
    /// When new data moves the head.
    #[serde(default)]
    pub visibility: Visibility,
    /// How far a run reaches (its last `forecast_period`) when its files do not say
    /// (`mosg__forecast_run_duration`); with `complete` visibility a run is complete once its
    /// lead times up to its own length are in. Unset: every lead time of the dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_length: Option<Seconds>,
}

fn default_origin() -> String {
    "1970-01-01T00:00:00Z".into()
}

/// When arriving data makes an abs index visible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// As soon as any of its parts is written; parts not yet written read as the fill value.
    #[default]
    Any,
    /// Only once every slot (every lead time) of the index is written; for a run shorter
    /// than the dataset (a nowcast run to T+12 among T+54 runs), every lead time up to the
    /// run's own length.
    Complete,
}

/// A dim whose index comes from a scalar coordinate of the file (e.g. `forecast_period`).
///
/// Its values are evenly spaced (`start`, `step`, `size`), or given by `segments` (e.g. hourly
/// to 54 h, then 3-hourly to 120 h, from `start`), or listed in `values`. Segments are turned
/// into `values` when the config is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageDimConfig {
    /// Coordinate name in the file and dim name in the dataset.
    pub name: String,
    /// Spacing (evenly spaced values only).
    #[serde(default = "zero_seconds")]
    pub step: Seconds,
    /// Number of indices (`index = (value - start) / step`, `0 <= index < size`); with
    /// `segments` or `values`, the number of values (may be left out).
    #[serde(default)]
    pub size: u32,
    /// Value of index 0.
    #[serde(default = "zero_seconds")]
    pub start: Seconds,
    /// Runs of evenly spaced values, each continuing from the last value of the one before
    /// (the first from `start`) by `step` up to and including `until`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<SegmentConfig>,
    /// Every value, increasing (`["0h", "15m", "30m"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Seconds>,
}

/// One evenly spaced run of a message dim's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    /// Spacing in this run.
    pub step: Seconds,
    /// Last value of this run.
    pub until: Seconds,
}

impl MessageDimConfig {
    /// The value (seconds) at `index`.
    pub fn value_at(&self, index: u32) -> i64 {
        match self.values.get(index as usize) {
            Some(v) => v.0,
            None if self.values.is_empty() => self.start.0 + i64::from(index) * self.step.0,
            None => i64::MAX,
        }
    }

    /// The index of `value`, if it is one of the dim's values.
    pub fn index_of(&self, value: i64) -> Option<u32> {
        if !self.values.is_empty() {
            return self
                .values
                .binary_search(&Seconds(value))
                .ok()
                .and_then(|i| u32::try_from(i).ok());
        }
        let since = value - self.start.0;
        let index = since.div_euclid(self.step.0.max(1));
        (since.rem_euclid(self.step.0.max(1)) == 0 && (0..i64::from(self.size)).contains(&index))
            .then(|| u32::try_from(index).ok())
            .flatten()
    }

    /// How many of the dim's values are at most `limit` (without listing them).
    pub fn count_at_most(&self, limit: i64) -> u32 {
        if !self.values.is_empty() {
            let n = self.values.partition_point(|v| v.0 <= limit);
            return u32::try_from(n).unwrap_or(u32::MAX);
        }
        if limit < self.start.0 || self.step.0 <= 0 {
            return 0;
        }
        let n = (limit - self.start.0) / self.step.0 + 1;
        u32::try_from(n).unwrap_or(u32::MAX).min(self.size)
    }

    /// Every value, in index order.
    pub fn all_values(&self) -> Vec<i64> {
        (0..self.size).map(|i| self.value_at(i)).collect()
    }

    /// The values accepted, for error messages (`0 + k * 3600 s for k in 0..55`, or the list
    /// shortened).
    pub fn describe(&self) -> String {
        if self.values.is_empty() {
            return format!(
                "{} + k * {} s for k in 0..{}",
                self.start.0, self.step.0, self.size
            );
        }
        let shown: Vec<String> = self
            .values
            .iter()
            .take(6)
            .map(|v| v.0.to_string())
            .collect();
        let more = if self.values.len() > 6 {
            format!(
                ", ... {} (s; {} values)",
                self.value_at(self.size - 1),
                self.size
            )
        } else {
            " (s)".to_owned()
        };
        format!("one of {}{more}", shown.join(", "))
    }

    /// Turns `segments` into `values` and sets `size`; checks the result.
    fn normalise(&mut self, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let forms = [
            self.step.0 != 0,
            !self.segments.is_empty(),
            !self.values.is_empty(),
        ];
        if forms.iter().filter(|&&f| f).count() != 1 {
            return Err(invalid(
                key("step"),
                "give exactly one of `step` (with `size`), `segments` or `values`",
            ));
        }
        if !self.segments.is_empty() {
            let mut values = vec![self.start];
            for (j, segment) in self.segments.iter().enumerate() {
                let last = values.last().map_or(self.start.0, |v| v.0);
                if segment.step.0 <= 0 || segment.until.0 < last {
                    return Err(invalid(
                        key(&format!("segments[{j}]")),
                        format!(
                            "needs a positive step and an `until` at or after {last} s, where the run before it ends"
                        ),
                    ));
                }
                if (segment.until.0 - last) % segment.step.0 != 0 {
                    return Err(invalid(
                        key(&format!("segments[{j}].until")),
                        format!(
                            "{} s is not {last} s plus a whole number of {} s steps",
                            segment.until.0, segment.step.0
                        ),
                    ));
                }
                let count = (segment.until.0 - last) / segment.step.0;
                if usize::try_from(count).map_or(true, |c| values.len() + c > 1_000_000) {
                    return Err(invalid(key("segments"), "more than 1000000 values"));
                }
                let mut next = last;
                for _ in 0..count {
                    next += segment.step.0;
                    values.push(Seconds(next));
                }
            }
            self.values = values;
            self.segments.clear();
        }
        if !self.values.is_empty() {
            if self.start.0 != 0 && self.start != self.values[0] {
                return Err(invalid(
                    key("start"),
                    "is the first of `values`; leave it out or make it equal",
                ));
            }
            if !self.values.windows(2).all(|w| w[0] < w[1]) {
                return Err(invalid(key("values"), "must be strictly increasing"));
            }
            let n = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
            if self.size != 0 && self.size != n {
                return Err(invalid(
                    key("size"),
                    format!("is {} but the dim has {n} values; leave it out", self.size),
                ));
            }
            self.size = n;
            self.start = self.values[0];
            self.step = Seconds(0);
        }
        Ok(())
    }
}

fn zero_seconds() -> Seconds {
    Seconds(0)
}

/// A dim of the field inside each file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDimConfig {
    /// Dim name in the file.
    pub name: String,
    /// Length every file must have.
    pub size: u64,
    /// Chunk length in the dataset.
    pub chunk: u64,
    /// Whether the dim's coordinate belongs to each run rather than to the dataset (the
    /// members of a time-lagged ensemble, which change from run to run): stored per run as
    /// `<name>_per_run(<rolling dim>, <name>)`. Default: true for `realization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_run: Option<bool>,
}

impl FileDimConfig {
    /// Whether the dim's coordinate is stored per run (see [`FileDimConfig::per_run`]).
    pub fn is_per_run(&self) -> bool {
        self.per_run.unwrap_or(self.name == "realization")
    }
}

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
}

impl Default for EncodingConfig {
    fn default() -> Self {
        Self {
            dtype: DType::default(),
            codec: Codec::default(),
            level: None,
            format: default_format(),
            fill_value: FillValue::default(),
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
    fn level_range(self) -> (i32, i32, i32) {
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

/// Where the dataset lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the dataset (relative paths are relative to the working directory).
    pub path: PathBuf,
    /// Sync every object to disk before it becomes visible (default true).
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// Where source files may be read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Directories local source files must be inside (after resolving symlinks). Empty: no
    /// local file is accepted.
    #[serde(default)]
    pub local_roots: Vec<PathBuf>,
    /// Largest source object accepted, in bytes.
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// S3 buckets source objects may be read from (a notification's `bucket`). Empty: no
    /// bucket is accepted.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Buckets read from a local directory instead of S3 (a FUSE mount such as mountpoint-s3
    /// or s3fs, or a synced copy): a notice for bucket `b` with key `k` reads
    /// `<mounts[b]>/<k>`, which must resolve inside that directory.
    #[serde(default)]
    pub mounts: std::collections::BTreeMap<String, PathBuf>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            local_roots: Vec::new(),
            max_object_bytes: default_max_object_bytes(),
            buckets: Vec::new(),
            mounts: std::collections::BTreeMap::new(),
        }
    }
}

/// Scratch storage: where fetch and decode leave bulk bytes for the next stage (claim-check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchConfig {
    /// Directory of the scratch area (shared by every stage replica).
    pub path: PathBuf,
    /// Scratch objects older than this are orphans (their message was lost or dead-lettered)
    /// and are removed by the sweep. Keep it longer than the longest backlog you expect: the
    /// work stream drops messages older than this too, so a message never outlives its object.
    #[serde(default = "default_scratch_max_age")]
    pub max_age: Seconds,
    /// Sync every scratch object to disk before passing it on (default false). Scratch is as
    /// durable as the messages that point into it: JetStream itself syncs its file store only
    /// every `sync_interval` (2 minutes by default), so a power loss can lose acknowledged
    /// messages anyway. Set this to true together with `sync_interval: always` on the NATS
    /// server; on a process crash (not a power loss) nothing is lost either way.
    #[serde(default)]
    pub fsync: bool,
}

fn default_scratch_max_age() -> Seconds {
    Seconds(24 * 3600)
}

fn default_max_object_bytes() -> u64 {
    4 << 30
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
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        let mut doc: toml::Value = toml::from_str(text).map_err(parse_err)?;
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut doc, path, &value)?;
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
        if self.rolling.step.0 <= 0 {
            return Err(invalid("rolling.step", "must be positive"));
        }
        if self.rolling.window == 0 || self.rolling.window > 1_000_000 {
            return Err(invalid(
                "rolling.window",
                "must be between 1 and 1000000 steps",
            ));
        }
        if roller_proto::time::parse_instant(&self.rolling.origin).is_none() {
            return Err(invalid(
                "rolling.origin",
                format!("`{}` is not an RFC 3339 time", self.rolling.origin),
            ));
        }
        let mut names = vec![("rolling.dim".to_string(), self.rolling.dim.as_str())];
        for (i, m) in self.message_dims.iter().enumerate() {
            let key = |k: &str| format!("message_dims[{i}].{k}");
            if m.values.is_empty() && m.step.0 <= 0 {
                return Err(invalid(key("step"), "must be positive"));
            }
            if !m.segments.is_empty() {
                return Err(invalid(
                    key("segments"),
                    "must be turned into values first (read the config with DatasetConfig::load)",
                ));
            }
            if m.size == 0 {
                return Err(invalid(key("size"), "must be at least 1"));
            }
            let listed = u32::try_from(m.values.len()).unwrap_or(u32::MAX);
            if !m.values.is_empty()
                && (listed != m.size || !m.values.windows(2).all(|w| w[0] < w[1]))
            {
                return Err(invalid(
                    key("values"),
                    "must be strictly increasing, as many as `size`",
                ));
            }
            names.push((key("name"), &m.name));
        }
        if self.file_dims.is_empty() {
            return Err(invalid(
                "file_dims",
                "list the field's dims in the file, outermost first",
            ));
        }
        let mut chunk_elements: u64 = 1;
        for (i, d) in self.file_dims.iter().enumerate() {
            let key = |k: &str| format!("file_dims[{i}].{k}");
            if d.size == 0 {
                return Err(invalid(key("size"), "must be at least 1"));
            }
            if d.chunk == 0 || d.chunk > d.size {
                return Err(invalid(
                    key("chunk"),
                    format!("must be between 1 and the dim's size {}", d.size),
                ));
            }
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
        let (lo, hi, _) = self.encoding.codec.level_range();
        if let Some(level) = self.encoding.level {
            if !(lo..=hi).contains(&level) {
                return Err(invalid(
                    "encoding.level",
                    format!(
                        "{level} is outside {lo}..={hi} for {:?}",
                        self.encoding.codec
                    ),
                ));
            }
        }
        if !matches!(self.encoding.format, 2 | 3) {
            return Err(invalid("encoding.format", "must be 2 or 3"));
        }
        if self.encoding.fill_value.as_f64().is_none() {
            return Err(invalid(
                "encoding.fill_value",
                "must be a number or \"NaN\"",
            ));
        }
        Location::parse(&self.store.path).map_err(|e| invalid("store.path", e.to_string()))?;
        if let Some(scratch) = &self.scratch {
            Location::parse(&scratch.path).map_err(|e| invalid("scratch.path", e.to_string()))?;
        }
        if self.s3.max_concurrency == 0 || self.s3.max_attempts == 0 {
            return Err(invalid(
                "s3",
                "max_concurrency and max_attempts must be positive",
            ));
        }
        let tag_ok = |t: &str| !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control);
        if !tag_ok(&self.expiry.tag_key) || !tag_ok(&self.expiry.tag_value) {
            return Err(invalid(
                "expiry.tag_key",
                "tag key and value must be 1 to 128 printable characters",
            ));
        }
        if self.expiry.lifecycle_days == 0 {
            return Err(invalid("expiry.lifecycle_days", "must be at least 1"));
        }
        if self.expiry.grace.0 < 0 {
            return Err(invalid(
                "expiry.grace",
                "must not be negative (`0s` removes rolled-out chunks at once)",
            ));
        }
        if self.source.max_object_bytes == 0 {
            return Err(invalid("source.max_object_bytes", "must be positive"));
        }
        if let Some(scratch) = &self.scratch {
            if scratch.max_age.0 <= 0 {
                return Err(invalid("scratch.max_age", "must be positive"));
            }
        }
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
                table
                    .entry((*segment).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            toml::Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    invalid(&key, format!("`{segment}` is not an index into a list"))
                })?;
                let len = items.len();
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
mod tests {
    use super::*;

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
