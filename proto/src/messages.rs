//! Messages between stages: write reports, roll events, and the file schema a report carries.
//!
//! These are small by construction: a write report names the target it filled, never the
//! bytes. Attribute values use [`AttrValue`] rather than free-form JSON so that every message
//! also round-trips through compact binary encodings.

use serde::{Deserialize, Serialize};

/// One attribute value, as NetCDF and Zarr both understand it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    /// Text.
    Text(String),
    /// One or more integers.
    Ints(Vec<i64>),
    /// One or more floating-point numbers.
    Floats(Vec<f64>),
}

impl AttrValue {
    /// The value as JSON: a scalar for one-element lists, an array otherwise.
    ///
    /// Non-finite floats become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`, as the Zarr
    /// specification spells them.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        fn float(v: f64) -> Value {
            serde_json::Number::from_f64(v).map_or_else(
                || {
                    Value::String(
                        if v.is_nan() {
                            "NaN"
                        } else if v > 0.0 {
                            "Infinity"
                        } else {
                            "-Infinity"
                        }
                        .into(),
                    )
                },
                Value::Number,
            )
        }
        match self {
            Self::Text(s) => Value::String(s.clone()),
            Self::Ints(v) if v.len() == 1 => Value::from(v[0]),
            Self::Ints(v) => Value::from(v.clone()),
            Self::Floats(v) if v.len() == 1 => float(v[0]),
            Self::Floats(v) => Value::Array(v.iter().copied().map(float).collect()),
        }
    }
}

/// Named attributes in file order.
pub type Attrs = Vec<(String, AttrValue)>;

/// A coordinate variable found in a source file: its name, data type and attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordSchema {
    /// Variable name, e.g. `projection_x_coordinate`.
    pub name: String,
    /// Zarr data type name (`float32`, `float64`, `int32`, `int64`).
    pub dtype: String,
    /// CF attributes (units, standard_name, axis, ...).
    pub attrs: Attrs,
    /// For a variable kept beside the coordinates (a bounds variable, an auxiliary
    /// coordinate): its dims with their lengths, outermost first. Empty for the dataset's own
    /// coordinates (the rolling, message and file dims').
    #[serde(default)]
    pub dims: Vec<(String, u64)>,
    /// Whether it is an auxiliary coordinate of the data variable (named in its
    /// `coordinates` attribute) rather than a bounds variable.
    #[serde(default)]
    pub auxiliary: bool,
}

/// What a source file says about the dataset's metadata: attributes of the data variable and its
/// coordinates, and the grid mapping. The commit turns it into the logical Zarr metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSchema {
    /// Attributes of the data variable (without `_FillValue` and `coordinates`, which the
    /// dataset defines).
    pub variable_attrs: Attrs,
    /// Coordinate variables: those along the file's dims and the scalar time-like ones.
    pub coords: Vec<CoordSchema>,
    /// The grid mapping variable (name and attributes), when the variable names one.
    pub grid_mapping: Option<(String, Attrs)>,
    /// Global attributes of the file (institution, source, conventions...).
    pub global_attrs: Attrs,
}

/// Sent by the write stage when one part of one target is durable in storage.
///
/// A *target* is one abs index along the rolling dim and one *slot* (the flattened index along
/// the message dims, e.g. one lead time). A large file is written in several parts; the target is
/// complete when all `parts` have been reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReport {
    /// Dataset name.
    pub dataset: String,
    /// Identity of the notification the data came from.
    pub source: String,
    /// Abs index along the rolling dim.
    pub abs: i64,
    /// Flattened index along the message dims.
    pub slot: u32,
    /// Which part of the target this report covers (0-based).
    pub part: u32,
    /// How many parts the target has.
    pub parts: u32,
    /// Chunk objects put for this part.
    pub chunks: u32,
    /// Encoded bytes put for this part.
    pub bytes: u64,
    /// The file's schema; carried by part 0 only.
    pub schema: Option<FileSchema>,
}

/// Asks the commit stage to move the window so that `until` is visible, even without data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollEvent {
    /// Dataset name.
    pub dataset: String,
    /// A time along the rolling dim (seconds since the epoch); the head moves to at least its
    /// abs index (snapped down to the step).
    pub until: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_values_become_zarr_json() {
        assert_eq!(
            AttrValue::Text("K".into()).to_json(),
            serde_json::json!("K")
        );
        assert_eq!(AttrValue::Ints(vec![3]).to_json(), serde_json::json!(3));
        assert_eq!(
            AttrValue::Floats(vec![1.5, 2.0]).to_json(),
            serde_json::json!([1.5, 2.0])
        );
        assert_eq!(
            AttrValue::Floats(vec![f64::NAN]).to_json(),
            serde_json::json!("NaN")
        );
    }
}
