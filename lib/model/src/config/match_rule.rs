//! The `[match]` section: which notifications a dataset takes (applied by `crate::matching`).

use serde::{Deserialize, Serialize};

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
