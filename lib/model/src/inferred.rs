//! Layouts fixed by the first file. A dataset whose config leaves `file_dims` out takes them
//! from its first file: the field's dims longer than 1, in the file's order, with chunks cut to
//! `encoding.chunk_bytes` ([`Layout::infer_file_dims`]). One whose `variable` is
//! [`crate::config::VARIABLE_FROM_FILE`] takes the variable from it too (decode finds the file's
//! one data variable).
//!
//! The stage that first decodes a file of the dataset works them out and stores them next to
//! the dataset (`roller-layout.json`, [`FIXED_DIMS_KEY`]) before it hands on a slab; write and
//! commit read them from there, and the first commit records them in the dataset's record,
//! which is the authority from then on. Every later file is checked against them like
//! configured dims, so a file of another shape is refused with what was expected.
//!
//! Two decoders can meet a dataset's very first files at once; both store the same dims when
//! the files have the same shape (the inference is a function of the shape). Each reads back
//! what is stored and uses that, so a stray file of another shape at that moment is refused
//! by the decoder whose dims lost, or by commit.

use roller_storage::{Key, Storage};
use serde::{Deserialize, Serialize};

use crate::config::FileDimConfig;
use crate::layout::Layout;
use crate::physical_key::FIXED_DIMS_KEY;
use crate::record::{load_record, RecordError};

/// What is stored at [`FIXED_DIMS_KEY`]: the dims and the file they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedDims {
    /// The file dims, outermost first.
    pub file_dims: Vec<FileDimConfig>,
    /// The variable, when the config left it to the first file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable: Option<String>,
    /// The notification of the file that fixed them.
    pub source: String,
}

/// Where a dataset's file dims come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixedBy {
    /// Its config lists them.
    Config,
    /// Its commit record holds them: final.
    Record,
    /// Its first file fixed them and no commit has recorded them yet (the notification of that
    /// file). Stages read them again until the record holds them.
    FirstFile(String),
}

impl FixedBy {
    /// Whether the dims can no longer change (configured or recorded), so they may be kept.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::FirstFile(_))
    }
}

fn key() -> Key {
    Key::new(FIXED_DIMS_KEY.to_owned()).unwrap_or_else(|_| unreachable!("a constant, valid key"))
}

/// The layout with its file dims and where they come from: `configured` itself when it lists
/// them, else the dims the dataset's record or its first file fixed; `None` while no file has
/// fixed them.
pub fn fixed_layout(
    storage: &dyn Storage,
    configured: &Layout,
) -> Result<Option<(Layout, FixedBy)>, RecordError> {
    if configured.is_fixed() {
        return Ok(Some((configured.clone(), FixedBy::Config)));
    }
    if let Some(record) = load_record(storage)? {
        if record.layout.is_fixed() {
            let layout = configured.clone().fixed_as(&record.layout);
            return Ok(Some((layout, FixedBy::Record)));
        }
    }
    let Some(bytes) = storage.get(&key())? else {
        return Ok(None);
    };
    let corrupt = |what: String| RecordError::Corrupt {
        dataset: configured.name.clone(),
        what,
    };
    let fixed: FixedDims = serde_json::from_slice(&bytes).map_err(|e| {
        corrupt(format!(
            "{FIXED_DIMS_KEY} does not parse ({e}); remove it to let the next file fix the dims again"
        ))
    })?;
    let mut layout = configured.clone().with_file_dims(fixed.file_dims);
    if layout.variable_from_file() {
        layout.variable = fixed.variable.ok_or_else(|| {
            corrupt(format!(
                "{FIXED_DIMS_KEY} names no variable, and the config leaves it to the first file; remove it"
            ))
        })?;
    }
    check(&layout).map_err(|reason| corrupt(format!("{FIXED_DIMS_KEY}: {reason}; remove it")))?;
    Ok(Some((layout, FixedBy::FirstFile(fixed.source))))
}

/// The layout a file whose field `variable` has dims `var_dims` (names and lengths, outermost
/// first) would give the dataset ([`Layout::infer_file_dims`]), checked like configured dims;
/// the error says why the file cannot fix them.
pub fn candidate(
    configured: &Layout,
    variable: &str,
    var_dims: &[(String, usize)],
) -> Result<Layout, String> {
    let mut layout = configured
        .clone()
        .with_file_dims(configured.infer_file_dims(var_dims));
    layout.variable = variable.to_owned();
    check(&layout)?;
    Ok(layout)
}

/// The checks a config's `file_dims` get: at least one, sizes and chunks in range, names
/// used once (and not by the rolling dim, a message dim or the variable).
fn check(layout: &Layout) -> Result<(), String> {
    if layout.file_dims.is_empty() {
        return Err("no dim longer than 1, so nothing to cut into chunks".to_owned());
    }
    let mut names = vec![layout.rolling_dim.as_str(), layout.variable.as_str()];
    names.extend(layout.message_dims.iter().map(|m| m.name.as_str()));
    let mut bytes = layout.dtype.size() as u64;
    for (i, dim) in layout.file_dims.iter().enumerate() {
        dim.validate(&|k| format!("file_dims[{i}].{k}"))
            .map_err(|e| e.to_string())?;
        if names.contains(&dim.name.as_str()) || dim.name.is_empty() || dim.name.contains('/') {
            return Err(format!(
                "the dim `{}` cannot be a file dim (its name is taken or not usable)",
                dim.name
            ));
        }
        names.push(&dim.name);
        bytes = bytes.saturating_mul(dim.chunk);
    }
    if bytes > crate::config::MAX_CHUNK_BYTES {
        return Err(format!("a chunk would be {bytes} bytes"));
    }
    Ok(())
}

/// Stores the file dims of `candidate` (from [`candidate`]) as the dataset's, unless a file
/// fixed them already; returns the layout as stored (another file's, should two decoders get
/// there at once: the caller refuses its file if the dims differ).
pub fn fix_from_file(
    storage: &dyn Storage,
    configured: &Layout,
    candidate: &Layout,
    source: &str,
) -> Result<(Layout, FixedBy), RecordError> {
    if let Some(fixed) = fixed_layout(storage, configured)? {
        return Ok(fixed);
    }
    let fixed = FixedDims {
        file_dims: candidate.file_dims.clone(),
        variable: configured
            .variable_from_file()
            .then(|| candidate.variable.clone()),
        source: source.to_owned(),
    };
    let body = serde_json::to_vec_pretty(&fixed).map_err(|e| RecordError::Corrupt {
        dataset: configured.name.clone(),
        what: format!("cannot encode the fixed dims: {e}"),
    })?;
    storage.put(&key(), body.into())?;
    Ok(fixed_layout(storage, configured)?
        .unwrap_or_else(|| (candidate.clone(), FixedBy::FirstFile(fixed.source.clone()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetConfig;
    use roller_storage::MemoryStore;

    fn unfixed() -> Layout {
        let text = crate::config::tests::UKV;
        let (start, end) = (
            text.find("[[file_dims]]")
                .expect("the example lists its dims"),
            text.find("[store]").expect("and then its store"),
        );
        let without = format!("{}{}", &text[..start], &text[end..]);
        let config = DatasetConfig::from_toml(&without).expect("valid without file_dims");
        Layout::from_config(&config)
    }

    fn dims(list: &[(&str, usize)]) -> Vec<(String, usize)> {
        list.iter().map(|(n, l)| ((*n).to_owned(), *l)).collect()
    }

    const UKV_GRID: [(&str, usize); 2] = [
        ("projection_y_coordinate", 970),
        ("projection_x_coordinate", 1042),
    ];

    fn shape(layout: &Layout) -> Vec<(&str, u64, u64)> {
        layout
            .file_dims
            .iter()
            .map(|d| (d.name.as_str(), d.size, d.chunk))
            .collect()
    }

    #[test]
    fn grids_are_halved_until_under_the_target_and_leading_dims_chunked_by_one() {
        let layout = unfixed();
        assert!(!layout.is_fixed());
        // 970 x 1042 float32 is 4 MB: halved twice to 485 x 521 (1 MB).
        let grid = candidate(&layout, "air_temperature", &dims(&UKV_GRID)).expect("a grid");
        assert_eq!(
            shape(&grid),
            [
                ("projection_y_coordinate", 970, 485),
                ("projection_x_coordinate", 1042, 521)
            ]
        );
        // Members and levels: one per chunk, the grid as above; a level dim of length 1 stays
        // (later files may have more), any other length-1 dim goes.
        let mut members = dims(&[("realization", 3), ("height", 1), ("time", 1)]);
        members.extend(dims(&UKV_GRID));
        let field = candidate(&layout, "air_temperature", &members).expect("members");
        assert_eq!(
            shape(&field),
            [
                ("realization", 3, 1),
                ("height", 1, 1),
                ("projection_y_coordinate", 970, 485),
                ("projection_x_coordinate", 1042, 521)
            ]
        );
        // What cannot be a dataset's dims is refused with the reason.
        let err = candidate(&layout, "air_temperature", &dims(&[("time", 1)]))
            .expect_err("a scalar field");
        assert!(err.contains("no dim longer than 1"), "{err}");
        let err = candidate(
            &layout,
            "air_temperature",
            &dims(&[("forecast_period", 4), ("x", 9)]),
        )
        .expect_err("a message dim");
        assert!(err.contains("`forecast_period`"), "{err}");
    }

    #[test]
    fn the_first_file_fixes_the_dims_and_later_ones_read_them() {
        let store = MemoryStore::default();
        let layout = unfixed();
        assert_eq!(fixed_layout(&store, &layout).expect("read"), None);
        let first = candidate(&layout, "air_temperature", &dims(&UKV_GRID)).expect("candidate");
        let (fixed, by) = fix_from_file(&store, &layout, &first, "first").expect("fixed");
        assert_eq!(
            (&fixed, by.clone()),
            (&first, FixedBy::FirstFile("first".into()))
        );
        assert!(!by.is_final(), "read again until a commit records them");
        // Another shape later gets the stored dims, not its own.
        let other = candidate(
            &layout,
            "air_temperature",
            &dims(&[("latitude", 10), ("longitude", 20)]),
        )
        .expect("candidate");
        let (again, _) = fix_from_file(&store, &layout, &other, "second").expect("read");
        assert_eq!(again, fixed);
        // The stored layout is compatible with the config that leaves the dims out.
        layout.compatible_with(&fixed).expect("compatible");
        store
            .put(&key(), bytes::Bytes::from_static(b"{"))
            .expect("put");
        let err = fixed_layout(&store, &layout)
            .expect_err("garbage")
            .to_string();
        assert!(
            err.contains("roller-layout.json") && err.contains("remove it"),
            "{err}"
        );
    }
}
