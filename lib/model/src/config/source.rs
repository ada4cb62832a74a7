//! The `[source]` section: where fetch may read files from (read by `roller-fetch`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

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

fn default_max_object_bytes() -> u64 {
    4 << 30
}

impl SourceConfig {
    /// Checks the size limit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_object_bytes == 0 {
            return Err(invalid("source.max_object_bytes", "must be positive"));
        }
        Ok(())
    }
}
