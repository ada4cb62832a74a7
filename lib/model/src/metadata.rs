//! The logical Zarr metadata of a dataset: which arrays it has, their dims, shapes, chunks,
//! codecs and CF attributes, rendered as Zarr v3 (`zarr.json`) or v2 (`.zarray`, `.zattrs`,
//! `.zgroup`, `.zmetadata`).
//!
//! Nothing here is stored as Zarr metadata in the raw store: the commit record holds the
//! layout, schema and window, and readers ([`crate::rolling_store::RollingStore`]) render
//! these documents from it.

use roller_proto::{Attrs, FileSchema};
use serde_json::{json, Map, Value};

use crate::config::Codec;
use crate::layout::Layout;

/// Units of the rolling coordinate as stored.
pub const TIME_UNITS: &str = "seconds since 1970-01-01 00:00:00";

/// What an array is for, which decides where its chunks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The data variable: physical chunks, rolling index translated by the offset.
    Data,
    /// The rolling coordinate: derived from the commit (origin + abs * step).
    Rolling,
    /// A message-dim coordinate (index into `Layout::message_dims`): derived from the layout.
    Message(usize),
    /// The valid time over (rolling dim, `forecast_period`): run plus lead time, derived; the
    /// index is the `forecast_period` message dim's.
    ValidTime(usize),
    /// A file-dim coordinate (index into `Layout::file_dims`): stored once, untranslated.
    FileCoord(usize),
    /// The grid mapping variable: stored once, untranslated.
    GridMapping,
    /// A variable kept beside the coordinates (bounds, auxiliary coordinates on file dims):
    /// stored once, untranslated, checked against later files.
    Static,
    /// The per-file bounds of the valid time (`time_bnds`): one chunk per target, stored at
    /// the target's abs index and slot, translated and shown like the data.
    TargetBounds,
    /// The per-file bounds of a message-dim coordinate (index into `Layout::message_dims`,
    /// e.g. `forecast_period_bnds`): one chunk per index of that dim, the same in every run.
    SlotBounds(usize),
    /// A per-run coordinate of a file dim (index into `Layout::file_dims`), e.g. each run's
    /// ensemble members: one chunk per run, stored at the run's abs index and translated by
    /// the offset like the data.
    PerRun(usize),
}

/// The fill value of an array.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// A float fill value (may be NaN).
    Float(f64),
    /// An integer fill value.
    Int(i64),
}

impl Fill {
    fn to_json(self) -> Value {
        match self {
            Self::Float(v) => roller_proto::AttrValue::Floats(vec![v]).to_json(),
            Self::Int(v) => Value::from(v),
        }
    }
}

/// One array of the logical view.
#[derive(Debug, Clone, PartialEq)]
pub struct ArraySpec {
    /// Array name (its path inside the dataset group).
    pub name: String,
    /// Where its chunks come from.
    pub role: Role,
    /// Dim names.
    pub dims: Vec<String>,
    /// Logical shape.
    pub shape: Vec<u64>,
    /// Chunk shape.
    pub chunks: Vec<u64>,
    /// Zarr v3 data type name.
    pub dtype: String,
    /// Fill value.
    pub fill: Fill,
    /// Attributes (CF).
    pub attrs: Map<String, Value>,
}

/// Attributes that describe a file's encoding rather than the data; the dataset sets its own.
const DROPPED_ATTRS: [&str; 5] = [
    "_FillValue",
    "missing_value",
    "coordinates",
    "_ChunkSizes",
    "_Netcdf4Dimid",
];

fn attrs_json(attrs: &Attrs) -> Map<String, Value> {
    attrs
        .iter()
        .filter(|(k, _)| !DROPPED_ATTRS.contains(&k.as_str()) && !k.starts_with("_Netcdf4"))
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect()
}

fn coord_attrs(schema: Option<&FileSchema>, name: &str) -> Map<String, Value> {
    schema
        .and_then(|s| s.coords.iter().find(|c| c.name == name))
        .map(|c| attrs_json(&c.attrs))
        .unwrap_or_default()
}

fn fill_for(dtype: &str) -> Fill {
    if dtype.starts_with("float") {
        Fill::Float(f64::NAN)
    } else {
        Fill::Int(i64::from(i32::MIN))
    }
}

/// The arrays of the logical view with `rolling_len` visible steps.
pub fn array_specs(
    layout: &Layout,
    schema: Option<&FileSchema>,
    rolling_len: u64,
) -> Vec<ArraySpec> {
    let mut specs = Vec::new();
    let data_dims = layout.data_dims();
    let mut shape = vec![rolling_len];
    shape.extend(layout.message_dims.iter().map(|m| u64::from(m.size)));
    shape.extend(layout.file_shape());
    let mut chunks = vec![1; 1 + layout.message_dims.len()];
    chunks.extend(layout.file_dims.iter().map(|d| d.chunk));
    let mut data_attrs = schema
        .map(|s| attrs_json(&s.variable_attrs))
        .unwrap_or_default();
    if let Some((gm, _)) = schema.and_then(|s| s.grid_mapping.as_ref()) {
        data_attrs.insert("grid_mapping".into(), Value::String(gm.clone()));
    }
    specs.push(ArraySpec {
        name: layout.variable.clone(),
        role: Role::Data,
        dims: data_dims,
        shape,
        chunks,
        dtype: layout.dtype.zarr_name().into(),
        fill: Fill::Float(layout.fill_value.as_f64().unwrap_or(f64::NAN)),
        attrs: data_attrs,
    });

    let mut rolling_attrs = coord_attrs(schema, &layout.rolling_dim);
    rolling_attrs.insert("units".into(), TIME_UNITS.into());
    rolling_attrs.insert("calendar".into(), "proleptic_gregorian".into());
    specs.push(ArraySpec {
        name: layout.rolling_dim.clone(),
        role: Role::Rolling,
        dims: vec![layout.rolling_dim.clone()],
        shape: vec![rolling_len],
        chunks: vec![1],
        dtype: "int64".into(),
        fill: Fill::Int(i64::MIN),
        attrs: rolling_attrs,
    });

    for (i, m) in layout.message_dims.iter().enumerate() {
        let mut attrs = coord_attrs(schema, &m.name);
        attrs.insert("units".into(), "seconds".into());
        specs.push(ArraySpec {
            name: m.name.clone(),
            role: Role::Message(i),
            dims: vec![m.name.clone()],
            shape: vec![u64::from(m.size)],
            chunks: vec![u64::from(m.size)],
            dtype: "int64".into(),
            fill: Fill::Int(i64::MIN),
            attrs,
        });
    }

    specs.extend(valid_time_spec(layout, schema, rolling_len));

    if let Some(schema) = schema {
        for (i, d) in layout.file_dims.iter().enumerate() {
            let Some(c) = schema.coords.iter().find(|c| c.name == d.name) else {
                continue;
            };
            if d.is_per_run() {
                specs.push(ArraySpec {
                    name: per_run_name(&d.name),
                    role: Role::PerRun(i),
                    dims: vec![layout.rolling_dim.clone(), d.name.clone()],
                    shape: vec![rolling_len, d.size],
                    chunks: vec![1, d.size],
                    dtype: c.dtype.clone(),
                    fill: fill_for(&c.dtype),
                    attrs: attrs_json(&c.attrs),
                });
            } else {
                specs.push(ArraySpec {
                    name: d.name.clone(),
                    role: Role::FileCoord(i),
                    dims: vec![d.name.clone()],
                    shape: vec![d.size],
                    chunks: vec![d.size],
                    dtype: c.dtype.clone(),
                    fill: fill_for(&c.dtype),
                    attrs: attrs_json(&c.attrs),
                });
            }
        }
        for c in schema.coords.iter().filter(|c| !c.dims.is_empty()) {
            if specs.iter().any(|s| s.name == c.name) {
                continue;
            }
            if let Some(spec) = per_file_bounds_spec(layout, schema, c, rolling_len) {
                specs.push(spec);
                continue;
            }
            // Kept beside the coordinates only on the dataset's (static) file dims.
            let on_file_dims = c
                .dims
                .iter()
                .any(|(d, _)| layout.file_dims.iter().any(|f| &f.name == d));
            if !on_file_dims {
                continue;
            }
            let shape: Vec<u64> = c.dims.iter().map(|(_, n)| *n).collect();
            specs.push(ArraySpec {
                name: c.name.clone(),
                role: Role::Static,
                dims: c.dims.iter().map(|(d, _)| d.clone()).collect(),
                chunks: shape.clone(),
                shape,
                dtype: c.dtype.clone(),
                fill: fill_for(&c.dtype),
                attrs: attrs_json(&c.attrs),
            });
        }
        if let Some((name, attrs)) = &schema.grid_mapping {
            specs.push(ArraySpec {
                name: name.clone(),
                role: Role::GridMapping,
                dims: vec![],
                shape: vec![],
                chunks: vec![],
                dtype: "int32".into(),
                fill: Fill::Int(i64::from(i32::MIN)),
                attrs: attrs_json(attrs),
            });
        }
    }
    // Non-dimension coordinates: how xarray knows they belong to the data variable.
    let auxiliary =
        |name: &str| schema.is_some_and(|s| s.coords.iter().any(|c| c.auxiliary && c.name == name));
    let coordinates: Vec<String> = specs
        .iter()
        .filter(|s| {
            matches!(s.role, Role::ValidTime(_) | Role::PerRun(_))
                || (s.role == Role::Static && auxiliary(&s.name))
        })
        .map(|s| s.name.clone())
        .collect();
    if !coordinates.is_empty() {
        specs[0]
            .attrs
            .insert("coordinates".into(), coordinates.join(" ").into());
    }
    // A `bounds` attribute must name an array of the view; the files' bounds variables that
    // the view does not carry are not referred to.
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    for spec in &mut specs {
        let dangling = spec
            .attrs
            .get("bounds")
            .is_some_and(|b| !b.as_str().is_some_and(|b| names.iter().any(|n| n == b)));
        if dangling {
            spec.attrs.remove("bounds");
        }
    }
    specs
}

/// The spec of `c` if it is the per-file bounds of the valid time or of a message-dim
/// coordinate (one vertex dim, named by that coordinate's `bounds`), stored as seconds.
fn per_file_bounds_spec(
    layout: &Layout,
    schema: &FileSchema,
    c: &roller_proto::CoordSchema,
    rolling_len: u64,
) -> Option<ArraySpec> {
    let [(vertex, 2)] = c.dims.as_slice() else {
        return None;
    };
    if layout.data_dims().contains(vertex) {
        return None;
    }
    let bounded_by = |coord: &str| {
        schema.coords.iter().any(|k| {
            k.name == coord
                && k.dims.is_empty()
                && k.attrs.iter().any(|(a, v)| {
                    a == "bounds" && *v == roller_proto::AttrValue::Text(c.name.clone())
                })
        })
    };
    let mut attrs = attrs_json(&c.attrs);
    if bounded_by(VALID_TIME) && valid_time_spec(layout, Some(schema), 0).is_some() {
        attrs.insert("units".into(), TIME_UNITS.into());
        attrs.insert("calendar".into(), "proleptic_gregorian".into());
        let mut dims = layout.data_dims();
        dims.truncate(1 + layout.message_dims.len());
        dims.push(vertex.clone());
        let mut shape = vec![rolling_len];
        shape.extend(layout.message_dims.iter().map(|m| u64::from(m.size)));
        shape.push(2);
        let mut chunks = vec![1; 1 + layout.message_dims.len()];
        chunks.push(2);
        return Some(ArraySpec {
            name: c.name.clone(),
            role: Role::TargetBounds,
            dims,
            shape,
            chunks,
            dtype: "int64".into(),
            fill: Fill::Int(i64::MIN),
            attrs,
        });
    }
    let i = layout
        .message_dims
        .iter()
        .position(|m| bounded_by(&m.name))?;
    let m = &layout.message_dims[i];
    attrs.insert("units".into(), "seconds".into());
    Some(ArraySpec {
        name: c.name.clone(),
        role: Role::SlotBounds(i),
        dims: vec![m.name.clone(), vertex.clone()],
        shape: vec![u64::from(m.size), 2],
        chunks: vec![1, 2],
        dtype: "int64".into(),
        fill: Fill::Int(i64::MIN),
        attrs,
    })
}

/// The name of a per-run coordinate of file dim `dim`: xarray refuses a two-dimensional
/// coordinate named like one of its own dims, so `realization` becomes `realization_per_run`.
pub fn per_run_name(dim: &str) -> String {
    format!("{dim}_per_run")
}

/// Whether the view derives the valid time: the rolling dim is the run, a message dim the lead
/// time, and nothing else is called `time`.
pub fn derives_valid_time(layout: &Layout) -> bool {
    let taken = layout.data_dims().iter().any(|d| d == VALID_TIME) || layout.variable == VALID_TIME;
    layout.rolling_dim == "forecast_reference_time"
        && layout
            .message_dims
            .iter()
            .any(|m| m.name == "forecast_period")
        && !taken
}

/// Name of the valid-time coordinate.
pub const VALID_TIME: &str = "time";

/// The valid time `time(forecast_reference_time, forecast_period)` = run + lead time, when the
/// rolling dim is the run and a message dim is the lead time, and no other array is called
/// `time`.
fn valid_time_spec(
    layout: &Layout,
    schema: Option<&FileSchema>,
    rolling_len: u64,
) -> Option<ArraySpec> {
    if !derives_valid_time(layout) {
        return None;
    }
    let fp = layout
        .message_dims
        .iter()
        .position(|m| m.name == "forecast_period")?;
    let mut attrs = coord_attrs(schema, VALID_TIME);
    attrs.insert("standard_name".into(), "time".into());
    attrs.insert("units".into(), TIME_UNITS.into());
    attrs.insert("calendar".into(), "proleptic_gregorian".into());
    let size = u64::from(layout.message_dims[fp].size);
    Some(ArraySpec {
        name: VALID_TIME.into(),
        role: Role::ValidTime(fp),
        dims: vec![
            layout.rolling_dim.clone(),
            layout.message_dims[fp].name.clone(),
        ],
        shape: vec![rolling_len, size],
        chunks: vec![1, size],
        dtype: "int64".into(),
        fill: Fill::Int(i64::MIN),
        attrs,
    })
}

/// The data variable's spec (length 0 along the rolling dim: enough for keys and codecs).
pub fn data_spec(layout: &Layout) -> ArraySpec {
    array_specs(layout, None, 0).swap_remove(0)
}

/// Group attributes: the source files' global attributes.
pub fn group_attrs(schema: Option<&FileSchema>) -> Map<String, Value> {
    schema
        .map(|s| attrs_json(&s.global_attrs))
        .unwrap_or_default()
}

fn v2_dtype(dtype: &str) -> &'static str {
    match dtype {
        "float32" => "<f4",
        "float64" => "<f8",
        "int32" => "<i4",
        _ => "<i8",
    }
}

fn element_size(dtype: &str) -> u64 {
    if dtype.ends_with("32") {
        4
    } else {
        8
    }
}

impl ArraySpec {
    /// Chunks along each dim (the chunk grid's shape).
    pub fn chunk_grid(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunks)
            .map(|(s, c)| s.div_ceil(*c))
            .collect()
    }

    /// The chunk key of `indices` in the dataset's Zarr format (without the array prefix):
    /// v3 `c/1/0/2`, v2 `1.0.2`; a 0-d array's only chunk is `c` (v3) or `0` (v2).
    pub fn chunk_key(&self, format: u8, indices: &[u64]) -> String {
        let joined = |sep: &str| {
            indices
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(sep)
        };
        match (format, indices.is_empty()) {
            (2, true) => "0".into(),
            (2, false) => joined("."),
            (_, true) => "c".into(),
            (_, false) => format!("c/{}", joined("/")),
        }
    }

    /// Parses a chunk key of this array; `None` if it is not one.
    pub fn parse_chunk_key(&self, format: u8, key: &str) -> Option<Vec<u64>> {
        let parts: Option<Vec<u64>> = if format == 2 {
            if self.dims.is_empty() {
                return (key == "0").then(Vec::new);
            }
            key.split('.').map(|p| p.parse().ok()).collect()
        } else {
            if self.dims.is_empty() {
                return (key == "c").then(Vec::new);
            }
            key.strip_prefix("c/")?
                .split('/')
                .map(|p| p.parse().ok())
                .collect()
        };
        parts.filter(|p| p.len() == self.dims.len())
    }

    fn codecs_v3(&self, layout: &Layout) -> Value {
        let compressor = match layout.codec {
            Codec::Zstd => {
                json!({"name": "zstd", "configuration": {"level": layout.level, "checksum": false}})
            }
            Codec::Gzip => json!({"name": "gzip", "configuration": {"level": layout.level}}),
            Codec::Blosc => json!({"name": "blosc", "configuration": {
                "cname": "lz4", "clevel": layout.level, "shuffle": "shuffle",
                "typesize": element_size(&self.dtype), "blocksize": 0}}),
        };
        json!([{"name": "bytes", "configuration": {"endian": "little"}}, compressor])
    }

    fn compressor_v2(layout: &Layout) -> Value {
        match layout.codec {
            Codec::Zstd => json!({"id": "zstd", "level": layout.level}),
            Codec::Gzip => json!({"id": "gzip", "level": layout.level}),
            Codec::Blosc => {
                json!({"id": "blosc", "cname": "lz4", "clevel": layout.level, "shuffle": 1, "blocksize": 0})
            }
        }
    }

    /// Zarr v3 `zarr.json` of this array.
    pub fn v3_json(&self, layout: &Layout) -> Value {
        json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": self.shape,
            "data_type": self.dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": self.chunks}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": self.fill.to_json(),
            "codecs": self.codecs_v3(layout),
            "attributes": self.attrs,
            "dimension_names": self.dims,
        })
    }

    /// Zarr v2 `.zarray` of this array.
    pub fn v2_zarray(&self, layout: &Layout) -> Value {
        // Coordinates carry no fill value in v2: readers would mask a legitimate value with it.
        let fill = match (self.role, self.fill) {
            (Role::Data, fill) => fill.to_json(),
            _ => Value::Null,
        };
        json!({
            "zarr_format": 2,
            "shape": self.shape,
            "chunks": self.chunks,
            "dtype": v2_dtype(&self.dtype),
            "compressor": Self::compressor_v2(layout),
            "fill_value": fill,
            "order": "C",
            "filters": null,
            "dimension_separator": ".",
        })
    }

    /// Zarr v2 `.zattrs` of this array: its attributes plus `_ARRAY_DIMENSIONS`.
    pub fn v2_zattrs(&self) -> Value {
        let mut attrs = self.attrs.clone();
        attrs.insert("_ARRAY_DIMENSIONS".into(), json!(self.dims));
        Value::Object(attrs)
    }

    /// Metadata for a one-chunk array with this array's chunk shape, codecs and fill value,
    /// used to encode and decode single chunks with zarrs.
    pub fn chunk_metadata(&self, layout: &Layout) -> Value {
        let mut one = self.clone();
        one.shape.clone_from(&one.chunks);
        if layout.format == 2 {
            one.v2_zarray(layout)
        } else {
            one.v3_json(layout)
        }
    }
}

/// Zarr v3 `zarr.json` of the dataset group, with every array's metadata consolidated inline
/// (zarr-python's `consolidated_metadata` field, optional for other readers:
/// `must_understand: false`). Readers over HTTP cannot list a store, so this is how xarray
/// finds the arrays of a served v3 group.
pub fn group_v3_json(layout: &Layout, specs: &[ArraySpec], attrs: &Map<String, Value>) -> Value {
    let arrays: Map<String, Value> = specs
        .iter()
        .map(|s| (s.name.clone(), s.v3_json(layout)))
        .collect();
    json!({
        "zarr_format": 3,
        "node_type": "group",
        "attributes": attrs,
        "consolidated_metadata": {"kind": "inline", "must_understand": false, "metadata": arrays},
    })
}

/// Zarr v2 consolidated metadata (`.zmetadata`) of the whole group.
pub fn consolidated_v2(layout: &Layout, specs: &[ArraySpec], attrs: &Map<String, Value>) -> Value {
    let mut metadata = Map::new();
    metadata.insert(".zgroup".into(), json!({"zarr_format": 2}));
    metadata.insert(".zattrs".into(), Value::Object(attrs.clone()));
    for spec in specs {
        metadata.insert(format!("{}/.zarray", spec.name), spec.v2_zarray(layout));
        metadata.insert(format!("{}/.zattrs", spec.name), spec.v2_zattrs());
    }
    json!({"zarr_consolidated_format": 1, "metadata": metadata})
}
