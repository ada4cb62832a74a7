//! The decode stage: opens a NetCDF file, checks it against the dataset (variable, dims, grid,
//! dtype, time coordinates), and cuts the field into parts, reading one slab at a time so that
//! memory is bounded by a slab, not by the file.
//!
//! Every check happens before the first slab leaves: a file that does not fit the dataset is
//! rejected with a reason and nothing of it is written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use netcdf::types::NcVariableType;
use netcdf::{AttributeValue, Extent};
use roller_proto::{AttrValue, Attrs, CoordSchema, FileSchema, Notification};

use crate::cf_time::{parse_duration_units, parse_instant_units, to_whole_seconds};
use crate::chunk_codec::ChunkCodec;
use crate::config::DType;
use crate::layout::{Layout, PlacementError};
use crate::metadata::{array_specs, Role};
use crate::physical_key::chunk_key;
use crate::storage::{Key, Storage, StorageError};

/// Why a file was rejected. Every message says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened or read as NetCDF (truncated, not NetCDF, unreadable).
    #[error("cannot read {path} as NetCDF: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// The library's message.
        reason: String,
    },
    /// The file does not fit the dataset.
    #[error("{path} does not fit dataset `{dataset}`: {reason}")]
    Mismatch {
        /// The file.
        path: String,
        /// Dataset name.
        dataset: String,
        /// What differs.
        reason: String,
    },
    /// Storage failed while checking static coordinates (transient).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl DecodeError {
    /// Whether retrying cannot help (the file itself is wrong).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Storage(_))
    }
}

/// One part of one file, decoded, masked to the dataset's fill value, ready to be written.
#[derive(Debug, Clone)]
pub struct Slab {
    /// Identity of the notification.
    pub source: String,
    /// Abs index along the rolling dim.
    pub abs: i64,
    /// Slot along the message dims.
    pub slot: u32,
    /// Which part of the target.
    pub part: u32,
    /// How many parts the target has.
    pub parts: u32,
    /// Shape of the slab (per file dim).
    pub shape: Vec<u64>,
    /// Native-endian elements in C order.
    pub data: Vec<u8>,
    /// The file's schema (part 0 only).
    pub schema: Option<FileSchema>,
    /// Static coordinate chunks still to be stored (part 0 only).
    pub statics: Vec<(Key, Bytes)>,
}

/// What became of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// All parts were emitted.
    Emitted {
        /// Abs index.
        abs: i64,
        /// Slot.
        slot: u32,
        /// Parts emitted.
        parts: u32,
    },
    /// The file is older than the committed window; nothing to do.
    BelowWindow {
        /// Abs index.
        abs: i64,
        /// The committed offset.
        offset: i64,
    },
}

/// Decodes files for one dataset.
#[derive(Debug)]
pub struct Decoder {
    layout: Layout,
    storage: Arc<dyn Storage>,
    /// Static coordinate chunks known to be stored, to check each file's grid against.
    stored_statics: Mutex<HashMap<Key, Bytes>>,
}

/// A value of a variable's dims: its name and length.
type Dims = Vec<(String, usize)>;

impl Decoder {
    /// A decoder writing into (and checking against) the dataset in `storage`.
    pub fn new(layout: Layout, storage: Arc<dyn Storage>) -> Self {
        Self {
            layout,
            storage,
            stored_statics: Mutex::new(HashMap::new()),
        }
    }

    /// Decodes `path`, announced by `notification`, and hands each slab to `emit` in part order.
    /// `offset` is the committed offset, if any: files below it are skipped.
    pub fn decode<E>(
        &self,
        path: &Path,
        notification: &Notification,
        offset: Option<i64>,
        mut emit: impl FnMut(Slab) -> Result<(), E>,
    ) -> Result<Result<Decoded, E>, DecodeError> {
        crate::hdf5_quiet::silence_this_thread();
        let shown = path.display().to_string();
        let file = netcdf::open(path).map_err(|e| DecodeError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let plan = self.plan(&file, notification, &shown)?;
        if let Some(offset) = offset {
            if plan.abs < offset {
                return Ok(Ok(Decoded::BelowWindow {
                    abs: plan.abs,
                    offset,
                }));
            }
        }
        let var = file
            .variable(&self.layout.variable)
            .ok_or_else(|| self.mismatch(&shown, "variable vanished".into()))?;
        let parts = self.layout.parts();
        let mut schema = Some(plan.schema);
        let mut statics = plan.statics;
        for part in 0..parts {
            let (start, shape) = self.layout.part_region(part);
            let mut extents = Vec::with_capacity(plan.var_dims.len());
            let mut file_dim = 0;
            for (name, _) in &plan.var_dims {
                if self
                    .layout
                    .file_dims
                    .get(file_dim)
                    .is_some_and(|d| &d.name == name)
                {
                    extents.push(Extent::SliceCount {
                        start: usize_of(start[file_dim]),
                        count: usize_of(shape[file_dim]),
                        stride: 1,
                    });
                    file_dim += 1;
                } else {
                    extents.push(Extent::SliceCount {
                        start: 0,
                        count: 1,
                        stride: 1,
                    });
                }
            }
            let data = read_masked(&var, extents, self.layout.dtype, &plan.mask, self.fill())
                .map_err(|reason| DecodeError::Unreadable {
                    path: shown.clone(),
                    reason,
                })?;
            let slab = Slab {
                source: notification.id(),
                abs: plan.abs,
                slot: plan.slot,
                part,
                parts,
                shape,
                data,
                schema: schema.take(),
                statics: std::mem::take(&mut statics),
            };
            if let Err(e) = emit(slab) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(Decoded::Emitted {
            abs: plan.abs,
            slot: plan.slot,
            parts,
        }))
    }

    fn fill(&self) -> f64 {
        self.layout.fill_value.as_f64().unwrap_or(f64::NAN)
    }

    fn mismatch(&self, path: &str, reason: String) -> DecodeError {
        DecodeError::Mismatch {
            path: path.into(),
            dataset: self.layout.name.clone(),
            reason,
        }
    }

    /// Checks the file against the dataset and works out where it goes.
    fn plan(
        &self,
        file: &netcdf::File,
        notification: &Notification,
        path: &str,
    ) -> Result<Plan, DecodeError> {
        let layout = &self.layout;
        let bad = |reason: String| self.mismatch(path, reason);
        let var = file.variable(&layout.variable).ok_or_else(|| {
            let names: Vec<String> = file.variables().map(|v| v.name()).collect();
            bad(format!(
                "it has no variable `{}` (it has: {})",
                layout.variable,
                names.join(", ")
            ))
        })?;
        let dtype = match var.vartype() {
            NcVariableType::Float(netcdf::types::FloatType::F32) => Some(DType::Float32),
            NcVariableType::Float(netcdf::types::FloatType::F64) => Some(DType::Float64),
            _ => None,
        };
        if dtype != Some(layout.dtype) {
            return Err(bad(format!(
                "variable `{}` is {:?}; the dataset stores {}",
                layout.variable,
                var.vartype(),
                layout.dtype.zarr_name()
            )));
        }
        for packed in ["scale_factor", "add_offset"] {
            if var.attribute(packed).is_some() {
                return Err(bad(format!(
                    "variable `{}` is packed (`{packed}`); unpack it or store the packed type",
                    layout.variable
                )));
            }
        }
        let var_dims: Dims = var
            .dimensions()
            .iter()
            .map(|d| (d.name(), d.len()))
            .collect();
        let kept: Dims = var_dims
            .iter()
            .filter(|(n, len)| *len != 1 || layout.file_dims.iter().any(|d| &d.name == n))
            .cloned()
            .collect();
        let expected: Dims = layout
            .file_dims
            .iter()
            .map(|d| (d.name.clone(), usize_of(d.size)))
            .collect();
        if kept != expected {
            let show = |dims: &Dims| {
                dims.iter()
                    .map(|(n, l)| format!("{n}[{l}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(bad(format!(
                "variable `{}` has dims ({}); the dataset expects ({}) plus optional length-1 dims",
                layout.variable,
                show(&var_dims),
                show(&expected)
            )));
        }

        let frt = time_coordinate(file, &layout.rolling_dim).map_err(bad)?;
        let abs = layout
            .abs_index(frt)
            .map_err(|e: PlacementError| bad(e.to_string()))?;
        if abs < 0 {
            return Err(bad(format!(
                "{} {} is before the dataset's origin",
                layout.rolling_dim,
                roller_proto::time::format_instant(frt)
            )));
        }
        if layout.rolling_dim == "forecast_reference_time"
            && notification.forecast_reference_time != frt
        {
            return Err(bad(format!(
                "the notification says forecast_reference_time {}, the file says {}",
                roller_proto::time::format_instant(notification.forecast_reference_time),
                roller_proto::time::format_instant(frt)
            )));
        }
        let mut message_values = Vec::with_capacity(layout.message_dims.len());
        for m in &layout.message_dims {
            let value = duration_coordinate(file, &m.name).map_err(bad)?;
            if m.name == "forecast_period" {
                if let Some(announced) = notification.forecast_period.filter(|&fp| fp != value) {
                    return Err(bad(format!(
                        "the notification says forecast_period {announced} s, the file says {value} s"
                    )));
                }
            }
            message_values.push(value);
        }
        let slot = layout
            .slot_of(&message_values)
            .map_err(|e| bad(e.to_string()))?;

        let mut mask = Vec::new();
        for name in ["_FillValue", "missing_value"] {
            if let Some(value) = var.attribute_value(name) {
                let value = value.map_err(|e| bad(format!("attribute `{name}`: {e}")))?;
                mask.extend(numbers(&value));
            }
        }

        let schema = self.schema(file, &var).map_err(bad)?;
        let statics = self.statics(file, &schema, path)?;
        Ok(Plan {
            abs,
            slot,
            var_dims,
            mask,
            schema,
            statics,
        })
    }

    /// Reads the metadata the dataset keeps from a file.
    fn schema(
        &self,
        file: &netcdf::File,
        var: &netcdf::Variable<'_>,
    ) -> Result<FileSchema, String> {
        let layout = &self.layout;
        let mut coords = Vec::new();
        let mut names: Vec<&str> = vec![&layout.rolling_dim];
        names.extend(layout.message_dims.iter().map(|m| m.name.as_str()));
        names.extend(layout.file_dims.iter().map(|d| d.name.as_str()));
        for name in names {
            let Some(coord) = file.variable(name) else {
                continue;
            };
            let is_file_dim = layout.file_dims.iter().any(|d| d.name == name);
            if is_file_dim {
                let dims = coord.dimensions();
                if dims.len() != 1 || dims[0].name() != name {
                    return Err(format!(
                        "coordinate `{name}` is not one-dimensional along `{name}`"
                    ));
                }
            }
            coords.push(CoordSchema {
                name: name.to_string(),
                dtype: zarr_dtype(&coord.vartype())
                    .ok_or_else(|| {
                        format!(
                            "coordinate `{name}` has unsupported type {:?}",
                            coord.vartype()
                        )
                    })?
                    .into(),
                attrs: attrs(coord.attributes())?,
            });
        }
        let grid_mapping = match var.attribute_value("grid_mapping") {
            Some(Ok(AttributeValue::Str(gm))) => match file.variable(&gm) {
                Some(gm_var) => Some((gm.clone(), attrs(gm_var.attributes())?)),
                None => return Err(format!("grid_mapping variable `{gm}` is missing")),
            },
            _ => None,
        };
        Ok(FileSchema {
            variable_attrs: attrs(var.attributes())?,
            coords,
            grid_mapping,
            global_attrs: attrs(file.attributes())?,
        })
    }

    /// Encodes the file's static coordinates (file-dim coordinates and the grid mapping), checks
    /// them against what the dataset already stores, and returns those not stored yet.
    fn statics(
        &self,
        file: &netcdf::File,
        schema: &FileSchema,
        path: &str,
    ) -> Result<Vec<(Key, Bytes)>, DecodeError> {
        let layout = &self.layout;
        let bad = |reason: String| self.mismatch(path, reason);
        let mut out = Vec::new();
        for spec in array_specs(layout, Some(schema), 0) {
            let raw = match spec.role {
                Role::FileCoord(_) | Role::GridMapping => {
                    let var = file
                        .variable(&spec.name)
                        .ok_or_else(|| bad(format!("`{}` vanished", spec.name)))?;
                    read_raw(&var, &spec.dtype)
                        .map_err(|e| bad(format!("reading `{}`: {e}", spec.name)))?
                }
                _ => continue,
            };
            let codec = ChunkCodec::new(&spec, layout).map_err(|e| bad(e.to_string()))?;
            let Some(encoded) = codec.encode(&raw).map_err(|e| bad(e.to_string()))? else {
                continue;
            };
            let indices = vec![0; spec.dims.len()];
            let key = chunk_key(layout, &spec, &indices).map_err(|e| bad(e.to_string()))?;
            let mut known = self
                .stored_statics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let stored = match known.get(&key) {
                Some(b) => Some(b.clone()),
                None => self.storage.get(&key)?,
            };
            match stored {
                Some(stored) if stored == encoded => {
                    known.insert(key, stored);
                }
                Some(_) => {
                    return Err(bad(format!(
                        "its `{}` values differ from the dataset's; every file must share one grid",
                        spec.name
                    )))
                }
                None => out.push((key, encoded)),
            }
        }
        Ok(out)
    }
}

/// What [`Decoder::plan`] works out for a file.
struct Plan {
    abs: i64,
    slot: u32,
    var_dims: Dims,
    mask: Vec<f64>,
    schema: FileSchema,
    statics: Vec<(Key, Bytes)>,
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn zarr_dtype(t: &NcVariableType) -> Option<&'static str> {
    use netcdf::types::{FloatType, IntType};
    Some(match t {
        NcVariableType::Float(FloatType::F32) => "float32",
        NcVariableType::Float(FloatType::F64) => "float64",
        NcVariableType::Int(
            IntType::I8 | IntType::I16 | IntType::I32 | IntType::U8 | IntType::U16,
        ) => "int32",
        NcVariableType::Int(IntType::I64 | IntType::U32) => "int64",
        _ => return None,
    })
}

/// Reads a whole (small) variable as native-endian elements of a Zarr dtype.
fn read_raw(var: &netcdf::Variable<'_>, dtype: &str) -> Result<Vec<u8>, netcdf::Error> {
    Ok(match dtype {
        "float32" => var
            .get_values::<f32, _>(..)?
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect(),
        "float64" => var
            .get_values::<f64, _>(..)?
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect(),
        "int32" => var
            .get_values::<i32, _>(..)?
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect(),
        _ => var
            .get_values::<i64, _>(..)?
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect(),
    })
}

/// Reads a slab and replaces the file's fill/missing values with the dataset's fill value.
fn read_masked(
    var: &netcdf::Variable<'_>,
    extents: Vec<Extent>,
    dtype: DType,
    mask: &[f64],
    fill: f64,
) -> Result<Vec<u8>, String> {
    let extents: netcdf::Extents = extents.into();
    Ok(match dtype {
        DType::Float32 => {
            let mut values = var
                .get_values::<f32, _>(extents)
                .map_err(|e| e.to_string())?;
            #[allow(clippy::cast_possible_truncation)]
            let (mask, fill): (Vec<f32>, f32) =
                (mask.iter().map(|&m| m as f32).collect(), fill as f32);
            if !mask.is_empty() {
                values
                    .iter_mut()
                    .filter(|v| mask.contains(v))
                    .for_each(|v| *v = fill);
            }
            zarrs::array::transmute_to_bytes_vec(values)
        }
        DType::Float64 => {
            let mut values = var
                .get_values::<f64, _>(extents)
                .map_err(|e| e.to_string())?;
            if !mask.is_empty() {
                values
                    .iter_mut()
                    .filter(|v| mask.contains(v))
                    .for_each(|v| *v = fill);
            }
            zarrs::array::transmute_to_bytes_vec(values)
        }
    })
}

/// Numbers in an attribute value (for fill/missing values).
fn numbers(value: &AttributeValue) -> Vec<f64> {
    match convert(value) {
        AttrValue::Floats(v) => v,
        #[allow(clippy::cast_precision_loss)]
        AttrValue::Ints(v) => v.into_iter().map(|i| i as f64).collect(),
        AttrValue::Text(_) => Vec::new(),
    }
}

/// Converts a NetCDF attribute value to the wire form.
fn convert(value: &AttributeValue) -> AttrValue {
    use AttributeValue as A;
    let ints = |v: Vec<i64>| AttrValue::Ints(v);
    match value {
        A::Uchar(v) => ints(vec![i64::from(*v)]),
        A::Uchars(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Schar(v) => ints(vec![i64::from(*v)]),
        A::Schars(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Ushort(v) => ints(vec![i64::from(*v)]),
        A::Ushorts(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Short(v) => ints(vec![i64::from(*v)]),
        A::Shorts(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Uint(v) => ints(vec![i64::from(*v)]),
        A::Uints(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Int(v) => ints(vec![i64::from(*v)]),
        A::Ints(v) => ints(v.iter().map(|&x| i64::from(x)).collect()),
        A::Ulonglong(v) => ints(vec![i64::try_from(*v).unwrap_or(i64::MAX)]),
        A::Ulonglongs(v) => ints(
            v.iter()
                .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
                .collect(),
        ),
        A::Longlong(v) => ints(vec![*v]),
        A::Longlongs(v) => ints(v.clone()),
        A::Float(v) => AttrValue::Floats(vec![f64::from(*v)]),
        A::Floats(v) => AttrValue::Floats(v.iter().map(|&x| f64::from(x)).collect()),
        A::Double(v) => AttrValue::Floats(vec![*v]),
        A::Doubles(v) => AttrValue::Floats(v.clone()),
        A::Str(s) => AttrValue::Text(s.clone()),
        A::Strs(v) => AttrValue::Text(v.join("\n")),
    }
}

/// Reads every attribute of a variable or file.
fn attrs<'a>(list: impl Iterator<Item = netcdf::Attribute<'a>>) -> Result<Attrs, String> {
    list.map(|a| {
        let value = a
            .value()
            .map_err(|e| format!("attribute `{}`: {e}", a.name()))?;
        Ok((a.name().to_string(), convert(&value)))
    })
    .collect()
}

/// The single value of a scalar or length-1 coordinate variable, with its units.
fn scalar_value(file: &netcdf::File, name: &str) -> Result<(f64, String), String> {
    let var = file
        .variable(name)
        .ok_or_else(|| format!("it has no `{name}` coordinate (scalar or length-1)"))?;
    if var.len() != 1 {
        return Err(format!(
            "`{name}` has {} values; expected exactly one",
            var.len()
        ));
    }
    let values = var
        .get_values::<f64, _>(..)
        .map_err(|e| format!("reading `{name}`: {e}"))?;
    let units = match var.attribute_value("units") {
        Some(Ok(AttributeValue::Str(u))) => u,
        _ => return Err(format!("`{name}` has no text `units` attribute")),
    };
    if let Some(Ok(AttributeValue::Str(calendar))) = var.attribute_value("calendar") {
        if !matches!(
            calendar.as_str(),
            "gregorian" | "standard" | "proleptic_gregorian"
        ) {
            return Err(format!(
                "`{name}` uses calendar `{calendar}`; only the standard calendar is supported"
            ));
        }
    }
    Ok((values[0], units))
}

/// An instant coordinate in whole seconds since the epoch.
fn time_coordinate(file: &netcdf::File, name: &str) -> Result<i64, String> {
    let (value, units) = scalar_value(file, name)?;
    let u = parse_instant_units(&units).ok_or_else(|| {
        format!(
            "`{name}` has units `{units}`; expected `<seconds|minutes|hours|days> since <time>`"
        )
    })?;
    to_whole_seconds(value, u.scale)
        .and_then(|s| s.checked_add(u.reference))
        .ok_or_else(|| format!("`{name}` = {value} {units} is not a whole number of seconds"))
}

/// A duration coordinate in whole seconds.
fn duration_coordinate(file: &netcdf::File, name: &str) -> Result<i64, String> {
    let (value, units) = scalar_value(file, name)?;
    let scale = parse_duration_units(&units).ok_or_else(|| {
        format!("`{name}` has units `{units}`; expected seconds, minutes, hours or days")
    })?;
    to_whole_seconds(value, scale)
        .ok_or_else(|| format!("`{name}` = {value} {units} is not a whole number of seconds"))
}
