//! The `[rolling]` section: the rolling dim, its step, window and origin, and what is visible.

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::duration::Seconds;

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

impl RollingConfig {
    /// Checks the step, the window and the origin.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.step.0 <= 0 {
            return Err(invalid("rolling.step", "must be positive"));
        }
        if self.window == 0 || self.window > 1_000_000 {
            return Err(invalid(
                "rolling.window",
                "must be between 1 and 1000000 steps",
            ));
        }
        if roller_proto::time::parse_instant(&self.origin).is_none() {
            return Err(invalid(
                "rolling.origin",
                format!("`{}` is not an RFC 3339 time", self.origin),
            ));
        }
        Ok(())
    }
}
