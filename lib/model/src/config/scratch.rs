//! The `[scratch]` section: where distributed stages leave claim-checked bytes (read by
//! `roller_bus::scratch`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, Location};
use crate::duration::Seconds;

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

impl ScratchConfig {
    /// Checks the path and the maximum age.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Location::parse(&self.path).map_err(|source| ConfigError::Location {
            key: "scratch.path",
            source,
        })?;

        if self.max_age.0 <= 0 {
            return Err(invalid("scratch.max_age", "must be positive"));
        }
        Ok(())
    }
}
