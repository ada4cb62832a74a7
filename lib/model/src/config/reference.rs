//! The `[reference]` section: the kerchunk reference file written after each commit.

use serde::{Deserialize, Serialize};

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
