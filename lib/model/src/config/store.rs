//! The `[store]` section: where the dataset lives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Location};

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

impl StoreConfig {
    /// Checks that the path is a local path or a usable `s3://` location.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Location::parse(&self.path).map_err(|source| ConfigError::Location {
            key: "store.path",
            source,
        })?;
        Ok(())
    }
}
