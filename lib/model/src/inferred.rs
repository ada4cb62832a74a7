//! Layouts fixed by the first file. A dataset whose config leaves `file_dims` out takes them
//! from its first file: the field's dims longer than 1, in the file's order, with chunks cut to
//! `encoding.chunk_bytes` ([`Layout::infer_file_dims`]).
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
    /// The notification of the file that fixed them.
    pub source: String,
}

fn key() -> Key {
    Key::new(FIXED_DIMS_KEY.to_owned()).unwrap_or_else(|_| unreachable!("a constant, valid key"))
}

/// The layout with its file dims: `configured` itself when it lists them, else the dims the
/// dataset's record or its first file fixed; `None` while no file has fixed them.
pub fn fixed_layout(
    storage: &dyn Storage,
    configured: &Layout,
) -> Result<Option<Layout>, RecordError> {
    if configured.is_fixed() {
        return Ok(Some(configured.clone()));
    }
    if let Some(record) = load_record(storage)? {
        if record.layout.is_fixed() {
            return Ok(Some(
                configured.clone().with_file_dims(record.layout.file_dims),
            ));
        }
    }
    let Some(bytes) = storage.get(&key())? else {
        return Ok(None);
    };
    let fixed: FixedDims =
        serde_json::from_slice(&bytes).map_err(|e| RecordError::Corrupt {
            dataset: configured.name.clone(),
            what: format!("{FIXED_DIMS_KEY} does not parse ({e}); remove it to let the next file fix the dims again"),
        })?;
    if fixed.file_dims.is_empty() {
        return Err(RecordError::Corrupt {
            dataset: configured.name.clone(),
            what: format!("{FIXED_DIMS_KEY} lists no dims; remove it"),
        });
    }
    Ok(Some(configured.clone().with_file_dims(fixed.file_dims)))
}

/// Fixes the file dims of `configured` to those `var_dims` (a field's dims and lengths) give,
/// unless a file fixed them already; returns the layout as stored (which may be another
/// file's, should two decoders get there at once).
pub fn fix_from_file(
    storage: &dyn Storage,
    configured: &Layout,
    var_dims: &[(String, usize)],
    source: &str,
) -> Result<Layout, RecordError> {
    if let Some(layout) = fixed_layout(storage, configured)? {
        return Ok(layout);
    }
    let fixed = FixedDims {
        file_dims: configured.infer_file_dims(var_dims),
        source: source.to_owned(),
    };
    if fixed.file_dims.is_empty() {
        // A field with no dim longer than 1: nothing to fix, nothing stored.
        return Ok(configured.clone().with_file_dims(fixed.file_dims));
    }
    let body = serde_json::to_vec_pretty(&fixed).map_err(|e| RecordError::Corrupt {
        dataset: configured.name.clone(),
        what: format!("cannot encode the fixed dims: {e}"),
    })?;
    storage.put(&key(), body.into())?;
    Ok(fixed_layout(storage, configured)?
        .unwrap_or_else(|| configured.clone().with_file_dims(fixed.file_dims)))
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

    fn ukv_dims() -> Vec<(String, usize)> {
        vec![
            ("projection_y_coordinate".to_owned(), 970),
            ("projection_x_coordinate".to_owned(), 1042),
        ]
    }

    #[test]
    fn chunks_halve_the_longest_dim_until_under_the_target() {
        let layout = unfixed();
        assert!(!layout.is_fixed());
        let dims = layout.infer_file_dims(&ukv_dims());
        let shape: Vec<(u64, u64)> = dims.iter().map(|d| (d.size, d.chunk)).collect();
        // 970 x 1042 float32 is 4 MB: halved twice to 485 x 521 (1 MB).
        assert_eq!(shape, [(970, 485), (1042, 521)]);
        let mut members = vec![("realization".to_owned(), 3), ("height".to_owned(), 1)];
        members.extend(ukv_dims());
        let dims = layout.infer_file_dims(&members);
        let names: Vec<&str> = dims.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "realization",
                "projection_y_coordinate",
                "projection_x_coordinate"
            ]
        );
        assert!(dims.iter().map(|d| d.chunk).product::<u64>() * 4 <= 1024 * 1024);
        assert_eq!(
            dims[0].chunk, 3,
            "short dims stay whole while longer ones are halved"
        );
    }

    #[test]
    fn the_first_file_fixes_the_dims_and_later_ones_read_them() {
        let store = MemoryStore::default();
        let layout = unfixed();
        assert_eq!(fixed_layout(&store, &layout).expect("read"), None);
        let fixed = fix_from_file(&store, &layout, &ukv_dims(), "first").expect("fixed");
        assert!(fixed.is_fixed());
        // Another shape later gets the stored dims, not its own.
        let other = vec![("latitude".to_owned(), 10), ("longitude".to_owned(), 20)];
        let again = fix_from_file(&store, &layout, &other, "second").expect("read");
        assert_eq!(again, fixed);
        assert_eq!(
            fixed_layout(&store, &layout).expect("read"),
            Some(fixed.clone())
        );
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
