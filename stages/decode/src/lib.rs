//! The decode box, between fetch and write, and the only crate linking NetCDF/HDF5: opens a
//! NetCDF file, checks it against the dataset (variable, dims, grid, dtype, time coordinates),
//! and cuts the field into parts, reading one slab at a time so that memory is bounded by a
//! slab, not by the file.
//!
//! Every check happens before the first slab leaves: a file that does not fit the dataset is
//! rejected with a reason and nothing of it is written.

pub mod hdf5_direct;
pub mod hdf5_quiet;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use netcdf::types::NcVariableType;
use netcdf::{AttributeValue, Extent};
use roller_proto::{AttrValue, Attrs, CoordSchema, FileSchema, Notification};

use crate::hdf5_direct::{ChunkError, DirectReader};
use roller_bus::metrics::{Counter, Metrics};
use roller_model::cf_time::{parse_duration_units, parse_instant_units, to_whole_seconds};
use roller_model::chunk_codec::ChunkCodec;
use roller_model::config::{DType, VARIABLE_FROM_FILE};
use roller_model::layout::{Layout, PlacementError};
use roller_model::metadata::{array_specs, ArraySpec, Role};
use roller_model::physical_key::indexed_chunk_key;
use roller_model::slab::Slab;
use roller_storage::retry::Retryable;
use roller_storage::{Key, Storage, StorageError};

/// Why a file was rejected. Every message says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened or read as NetCDF (truncated, not NetCDF, unreadable).
    #[error("cannot read {path} as NetCDF: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: ReadError,
    },
    /// The file does not fit the dataset.
    #[error("{path} does not fit dataset `{dataset}`: {problem}")]
    Mismatch {
        /// The file.
        path: String,
        /// Dataset name.
        dataset: String,
        /// What differs (boxed: some causes are large).
        #[source]
        problem: Box<Problem>,
    },
    /// Storage failed while checking static coordinates (transient).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file dims the dataset's first file fixed cannot be read (see
    /// [`roller_model::inferred`]).
    #[error("the dataset's fixed file dims: {0}")]
    FixedDims(#[source] roller_model::record::RecordError),
}

/// A storage failure stays a (transient) storage error; anything else about the fixed dims is
/// reported as such.
fn fixing_failed(error: roller_model::record::RecordError) -> DecodeError {
    match error {
        roller_model::record::RecordError::Storage(e) => DecodeError::Storage(e),
        other => DecodeError::FixedDims(other),
    }
}

/// Why a file's values could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The NetCDF library failed (not NetCDF, truncated, unreadable).
    #[error(transparent)]
    Netcdf(#[from] netcdf::Error),
    /// A raw HDF5 chunk could not be read or inflated.
    #[error(transparent)]
    Chunk(#[from] crate::hdf5_direct::ChunkError),
    /// The variable was found when the file was checked, then not when it was read.
    #[error("the variable `{0}` vanished while the file was read")]
    Vanished(String),
}

/// What is wrong with a file that does not fit its dataset.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Its contents differ from what the dataset expects (a variable, dim, coordinate,
    /// attribute or unit), as the message says.
    #[error("{0}")]
    Content(String),
    /// A variable or attribute of it could not be read.
    #[error("reading `{name}`: {source}")]
    Read {
        /// The variable or attribute.
        name: String,
        /// The library's error.
        #[source]
        source: netcdf::Error,
    },
    /// Its run or lead time has no place in the dataset.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// One of its coordinates cannot be encoded with the dataset's codec.
    #[error(transparent)]
    Codec(#[from] roller_model::chunk_codec::CodecError),
    /// A key for one of its coordinates cannot be formed.
    #[error(transparent)]
    Key(#[from] roller_storage::KeyError),
}

impl From<String> for Problem {
    fn from(message: String) -> Self {
        Self::Content(message)
    }
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
    /// The layout the config describes; its file dims may be left to the first file.
    configured: Layout,
    /// The layout with its file dims, once known (see [`roller_model::inferred`]).
    fixed: OnceLock<Layout>,
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    /// Static coordinate chunks known to be stored, to check each file's grid against.
    stored_statics: Mutex<HashMap<Key, Bytes>>,
}

/// The layout a file is checked against.
enum Checked {
    /// The dataset's (its file dims known).
    Dataset(Layout),
    /// The one the file would give a dataset whose first file this is.
    Candidate(Layout),
}

impl Checked {
    fn layout(&self) -> &Layout {
        match self {
            Self::Dataset(layout) | Self::Candidate(layout) => layout,
        }
    }
}

/// The one data variable of `file`, for a dataset that leaves its variable to the first file:
/// a variable of two or more dims that no other variable names as its bounds, coordinates,
/// grid mapping or ancillary variables. The error lists what was found, so the config can name
/// the variable instead.
fn data_variable(file: &netcdf::File) -> Result<String, String> {
    const REFERRING: [&str; 4] = [
        "bounds",
        "coordinates",
        "grid_mapping",
        "ancillary_variables",
    ];
    let mut referred = std::collections::HashSet::new();
    for var in file.variables() {
        for attribute in REFERRING {
            if let Some(Ok(AttributeValue::Str(names))) = var.attribute_value(attribute) {
                // `grid_mapping` may be `name: coords ...` in CF 1.7; every word counts.
                referred.extend(
                    names
                        .split_whitespace()
                        .map(|w| w.trim_end_matches(':').to_owned()),
                );
            }
        }
    }
    let found: Vec<String> = file
        .variables()
        .filter(|v| v.dimensions().len() >= 2 && !referred.contains(&v.name()))
        .map(|v| v.name())
        .collect();
    match &found[..] {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "the dataset takes the file's one data variable (`variable = \"{VARIABLE_FROM_FILE}\"`) and this file has none (no variable of two or more dims that is not a coordinate or bounds); name the variable in the config"
        )),
        several => Err(format!(
            "the dataset takes the file's one data variable (`variable = \"{VARIABLE_FROM_FILE}\"`) and this file has {} ({}); name the variable in the config",
            several.len(),
            several.join(", ")
        )),
    }
}

/// A value of a variable's dims: its name and length.
type Dims = Vec<(String, usize)>;

impl Decoder {
    /// A decoder writing into (and checking against) the dataset in `storage`.
    pub fn new(layout: Layout, storage: Arc<dyn Storage>) -> Self {
        let fixed = OnceLock::new();
        if layout.is_fixed() {
            let _ = fixed.set(layout.clone());
        }
        Self {
            configured: layout,
            fixed,
            storage,
            metrics: Arc::default(),
            stored_statics: Mutex::new(HashMap::new()),
        }
    }

    /// The layout to check `file` against: the dataset's once its file dims are known
    /// (configured, recorded, or stored by its first file), else the one `file` would give it,
    /// stored by [`Decoder::keep_layout`] only once the file has passed every check.
    fn layout_for(&self, file: &netcdf::File, path: &str) -> Result<Checked, DecodeError> {
        if let Some(layout) = self.fixed.get() {
            return Ok(Checked::Dataset(layout.clone()));
        }
        if let Some((layout, by)) =
            roller_model::inferred::fixed_layout(self.storage.as_ref(), &self.configured)
                .map_err(fixing_failed)?
        {
            if by.is_final() {
                let _ = self.fixed.set(layout.clone());
            }
            return Ok(Checked::Dataset(layout));
        }
        let name = if self.configured.variable_from_file() {
            data_variable(file).map_err(|reason| self.mismatch(path, reason))?
        } else {
            self.configured.variable.clone()
        };
        let Some(var) = file.variable(&name) else {
            // The check that follows says what the file has instead.
            return Ok(Checked::Dataset(self.configured.clone()));
        };
        let var_dims: Dims = var
            .dimensions()
            .iter()
            .map(|d| (d.name(), d.len()))
            .collect();
        roller_model::inferred::candidate(&self.configured, &name, &var_dims)
            .map(Checked::Candidate)
            .map_err(|reason| {
                self.mismatch(
                    path,
                    format!(
                        "variable `{name}` cannot fix the dataset's file dims ({reason}); list `file_dims` in the config"
                    ),
                )
            })
    }

    /// The layout to cut a file that passed its checks with: the dataset's, or, for the first
    /// file, the dims it gives, now stored as the dataset's. Should another file have fixed
    /// other dims meanwhile, this file is refused.
    fn keep_layout(
        &self,
        checked: Checked,
        notification: &Notification,
        path: &str,
    ) -> Result<Layout, DecodeError> {
        let candidate = match checked {
            Checked::Dataset(layout) => return Ok(layout),
            Checked::Candidate(layout) => layout,
        };
        let source = notification.id();
        let (stored, by) = roller_model::inferred::fix_from_file(
            self.storage.as_ref(),
            &self.configured,
            &candidate,
            &source,
        )
        .map_err(fixing_failed)?;
        let show = |layout: &Layout| {
            let dims = layout
                .file_dims
                .iter()
                .map(|d| format!("{}[{}]", d.name, d.size))
                .collect::<Vec<_>>()
                .join(", ");
            format!("`{}` over {dims}", layout.variable)
        };
        if stored.file_dims != candidate.file_dims || stored.variable != candidate.variable {
            return Err(self.mismatch(
                path,
                format!(
                    "another file fixed the dataset's field to ({}) while this one, with ({}), was checked",
                    show(&stored),
                    show(&candidate)
                ),
            ));
        }
        if by == roller_model::inferred::FixedBy::FirstFile(source) {
            tracing::info!(
                dataset = %stored.name,
                source = %notification.id(),
                dims = ?stored.file_dims.iter().map(|d| format!("{}[{}] chunk {}", d.name, d.size, d.chunk)).collect::<Vec<_>>(),
                "this file fixed the dataset's file dims (its config leaves them to the first file)"
            );
        }
        Ok(stored)
    }

    /// Counts files, bytes and skipped files in `metrics` (the process's shared counters).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
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
        let (layout, plan) = {
            let file = netcdf::open(path).map_err(|e| DecodeError::Unreadable {
                path: shown.clone(),
                source: e.into(),
            })?;
            let checked = self.layout_for(&file, &shown)?;
            let plan = self.plan(checked.layout(), &file, notification, &shown)?;
            let layout = self.keep_layout(checked, notification, &shown)?;
            (layout, plan)
        };
        if let Some(offset) = offset {
            if plan.abs < offset {
                self.metrics.incr(Counter::BelowWindow);
                tracing::info!(
                    source = %notification.id(),
                    abs = plan.abs,
                    offset,
                    "file is older than the window; skipped"
                );
                return Ok(Ok(Decoded::BelowWindow {
                    abs: plan.abs,
                    offset,
                }));
            }
        }
        let unreadable = |source: ReadError| DecodeError::Unreadable {
            path: shown.clone(),
            source,
        };
        let direct = DirectReader::open(path, &layout.variable, layout.dtype.size()).filter(|r| {
            r.shape
                == plan
                    .var_dims
                    .iter()
                    .map(|(_, l)| *l as u64)
                    .collect::<Vec<_>>()
        });
        let file = match direct {
            Some(_) => None,
            None => Some(netcdf::open(path).map_err(|e| unreadable(e.into()))?),
        };
        let var = match &file {
            Some(f) => Some(
                f.variable(&layout.variable)
                    .ok_or_else(|| unreadable(ReadError::Vanished(layout.variable.clone())))?,
            ),
            None => None,
        };
        let mut cache = direct.as_ref().map(ChunkCache::for_reader);
        let parts = layout.parts();
        let (mut schema, mut statics) = (Some(plan.schema), plan.statics);
        for part in 0..parts {
            let (start, shape) = layout.part_region(part);
            let (var_start, var_count) = self.var_region(&layout, &plan.var_dims, &start, &shape);
            let mut data = match (&direct, &mut cache, &var) {
                (Some(reader), Some(cache), _) => {
                    read_direct(reader, &var_start, &var_count, cache, layout.fill_bytes())
                        .map_err(|e| unreadable(e.into()))?
                }
                (_, _, Some(var)) => read_netcdf(var, &var_start, &var_count, layout.dtype)
                    .map_err(|e| unreadable(e.into()))?,
                _ => return Err(unreadable(ReadError::Vanished(layout.variable.clone()))),
            };
            apply_mask(&mut data, layout.dtype, &plan.mask, self.fill());
            let slab = Slab {
                source: notification.id(),
                abs: plan.abs,
                slot: plan.slot,
                part,
                parts,
                shape,
                data: Bytes::from(data),
                schema: schema.take(),
                statics: std::mem::take(&mut statics),
            };
            let bytes = slab.data.len() as u64;
            if let Err(e) = emit(slab) {
                return Ok(Err(e));
            }
            self.metrics.add(Counter::DecodedBytes, bytes);
        }
        self.metrics.incr(Counter::Files);
        // The fast path: compressed chunks copied out of HDF5 under its lock and inflated
        // outside it (chunked, deflate with or without shuffle, little-endian floats); any other
        // layout goes through the netCDF library, which inflates under HDF5's global lock.
        if direct.is_some() {
            self.metrics.incr(Counter::DirectReads);
        }
        Ok(Ok(Decoded::Emitted {
            abs: plan.abs,
            slot: plan.slot,
            parts,
        }))
    }

    /// The region of the variable (start and count per variable dim) a file-dim region covers:
    /// squeezed length-1 dims are read at index 0.
    fn var_region(
        &self,
        layout: &Layout,
        var_dims: &Dims,
        start: &[u64],
        shape: &[u64],
    ) -> (Vec<u64>, Vec<u64>) {
        let mut file_dim = 0;
        var_dims
            .iter()
            .map(|(name, _)| {
                if layout
                    .file_dims
                    .get(file_dim)
                    .is_some_and(|d| &d.name == name)
                {
                    file_dim += 1;
                    (start[file_dim - 1], shape[file_dim - 1])
                } else {
                    (0, 1)
                }
            })
            .unzip()
    }

    fn fill(&self) -> f64 {
        self.configured.fill_value.as_f64().unwrap_or(f64::NAN)
    }

    fn mismatch(&self, path: &str, problem: impl Into<Problem>) -> DecodeError {
        DecodeError::Mismatch {
            path: path.into(),
            dataset: self.configured.name.clone(),
            problem: Box::new(problem.into()),
        }
    }

    /// Checks the file against the dataset and works out where it goes.
    fn plan(
        &self,
        layout: &Layout,
        file: &netcdf::File,
        notification: &Notification,
        path: &str,
    ) -> Result<Plan, DecodeError> {
        let bad = |message: String| self.mismatch(path, message);
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

        let frt = time_coordinate(file, &layout.rolling_dim).map_err(|e| self.mismatch(path, e))?;
        let abs = layout
            .abs_index(frt)
            .map_err(|e: PlacementError| self.mismatch(path, e))?;
        if frt > roller_proto::time::now() + roller_model::state::MAX_AHEAD_SECONDS {
            return Err(bad(format!(
                "{} {} is more than {} days in the future; a clock or file error would roll the \
                 whole window away",
                layout.rolling_dim,
                roller_proto::time::format_instant(frt),
                roller_model::state::MAX_AHEAD_SECONDS / 86_400
            )));
        }
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
            let value = duration_coordinate(file, &m.name).map_err(|e| self.mismatch(path, e))?;
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
            .map_err(|e| self.mismatch(path, e))?;

        let mut mask = Vec::new();
        for name in ["_FillValue", "missing_value"] {
            if let Some(value) = var.attribute_value(name) {
                let value = value.map_err(|source| {
                    self.mismatch(
                        path,
                        Problem::Read {
                            name: name.to_owned(),
                            source,
                        },
                    )
                })?;
                mask.extend(numbers(&value));
            } else if name == "_FillValue" {
                // Without the attribute, netCDF's default fill marks never-written data.
                mask.push(match layout.dtype {
                    DType::Float32 => f64::from(NC_FILL_FLOAT),
                    DType::Float64 => NC_FILL_DOUBLE,
                });
            }
        }

        let schema = self
            .schema(layout, file, &var)
            .map_err(|e| self.mismatch(path, e))?;
        let statics = self.statics(layout, file, &schema, (abs, slot), path)?;
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
        layout: &Layout,
        file: &netcdf::File,
        var: &netcdf::Variable<'_>,
    ) -> Result<FileSchema, Problem> {
        let mut coords = Vec::new();
        let mut names: Vec<&str> = vec![&layout.rolling_dim];
        names.extend(layout.message_dims.iter().map(|m| m.name.as_str()));
        // The valid time's attributes (the dataset derives its values).
        if !names.contains(&roller_model::metadata::VALID_TIME) {
            names.push(roller_model::metadata::VALID_TIME);
        }
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
                    )
                    .into());
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
                dims: Vec::new(),
                auxiliary: false,
            });
        }
        coords.extend(self.kept_beside(layout, file, var)?);
        coords.extend(per_file_bounds(file, layout, &coords)?);
        let grid_mapping = match var.attribute_value("grid_mapping") {
            Some(Ok(AttributeValue::Str(gm)))
                if gm.is_empty()
                    || gm.contains('/')
                    || gm.starts_with('.')
                    || layout.data_dims().contains(&gm)
                    || gm == layout.variable =>
            {
                return Err(format!(
                    "grid_mapping `{gm}` is not a usable variable name (empty, has `/`, starts \
                     with `.`, or names a dim or the data variable)"
                )
                .into())
            }
            Some(Ok(AttributeValue::Str(gm))) => match file.variable(&gm) {
                Some(gm_var) => Some((gm.clone(), attrs(gm_var.attributes())?)),
                None => return Err(format!("grid_mapping variable `{gm}` is missing").into()),
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

    /// The variables kept beside the coordinates, stored once and checked against later files:
    /// the bounds of the file-dim coordinates (`projection_y_coordinate_bnds`), and the
    /// auxiliary coordinates the data variable names in `coordinates` that lie on file dims
    /// (an iris-saved file's `level_height`, `sigma`, `surface_altitude`) with their bounds.
    /// Per-run dims, scalars and unsupported types are left out.
    fn kept_beside(
        &self,
        layout: &Layout,
        file: &netcdf::File,
        var: &netcdf::Variable<'_>,
    ) -> Result<Vec<CoordSchema>, Problem> {
        let static_dim = |name: &str| {
            layout
                .file_dims
                .iter()
                .any(|d| d.name == name && !d.is_per_run())
        };
        let mut taken: Vec<String> = layout.data_dims();
        taken.push(layout.variable.clone());
        taken.push(roller_model::metadata::VALID_TIME.into());
        taken.extend(
            layout
                .file_dims
                .iter()
                .map(|d| roller_model::metadata::per_run_name(&d.name)),
        );
        if let Some(Ok(AttributeValue::Str(gm))) = var.attribute_value("grid_mapping") {
            taken.push(gm);
        }
        let text_attr = |v: &netcdf::Variable<'_>, name: &str| match v.attribute_value(name) {
            Some(Ok(AttributeValue::Str(s))) => Some(s),
            _ => None,
        };
        // (name, auxiliary): file-dim coordinates' bounds, then auxiliary coordinates and theirs.
        let mut wanted: Vec<(String, bool)> = Vec::new();
        for d in layout.file_dims.iter().filter(|d| !d.is_per_run()) {
            if let Some(b) = file.variable(&d.name).and_then(|c| text_attr(&c, "bounds")) {
                wanted.push((b, false));
            }
        }
        for name in text_attr(var, "coordinates")
            .unwrap_or_default()
            .split_whitespace()
        {
            if taken.iter().any(|t| t == name) {
                continue;
            }
            let Some(aux) = file.variable(name) else {
                continue;
            };
            let dims = aux.dimensions();
            if dims.is_empty() || !dims.iter().all(|d| static_dim(&d.name())) {
                continue;
            }
            wanted.push((name.to_owned(), true));
            if let Some(b) = text_attr(&aux, "bounds") {
                wanted.push((b, false));
            }
        }
        let mut kept: Vec<CoordSchema> = Vec::new();
        for (name, auxiliary) in wanted {
            let usable = !name.is_empty() && !name.contains('/') && !name.starts_with('.');
            if !usable || taken.contains(&name) || kept.iter().any(|k| k.name == name) {
                continue;
            }
            let Some(v) = file.variable(&name) else {
                continue;
            };
            let dims: Vec<(String, u64)> = v
                .dimensions()
                .iter()
                .map(|d| (d.name(), d.len() as u64))
                .collect();
            // Bounds add one trailing dim (the vertices) to their coordinate's file dims.
            let (own, vertices) = match (auxiliary, dims.split_last()) {
                (false, Some((last, rest))) => (rest, Some(last)),
                _ => (dims.as_slice(), None),
            };
            // Every dim once (a variable on a dim twice could ask for a square of the grid),
            // and a handful of vertices at most.
            let distinct = dims
                .iter()
                .enumerate()
                .all(|(i, (d, _))| dims[..i].iter().all(|(e, _)| e != d));
            let fits = distinct
                && !own.is_empty()
                && own.iter().all(|(d, _)| static_dim(d))
                && vertices
                    .is_none_or(|(d, n)| !layout.data_dims().contains(d) && *n <= MAX_VERTICES);
            let Some(dtype) = zarr_dtype(&v.vartype()).filter(|_| fits) else {
                continue;
            };
            kept.push(CoordSchema {
                name: name.clone(),
                dtype: dtype.into(),
                attrs: attrs(v.attributes())?,
                dims,
                auxiliary,
            });
        }
        Ok(kept)
    }

    /// Encodes the file's static coordinates (file-dim coordinates and the grid mapping) and
    /// its run's per-run coordinates (at the run's abs index), checks them against what the
    /// dataset already stores, and returns those not stored yet.
    fn statics(
        &self,
        layout: &Layout,
        file: &netcdf::File,
        schema: &FileSchema,
        (abs, slot): (i64, u32),
        path: &str,
    ) -> Result<Vec<(Key, Bytes)>, DecodeError> {
        let bad = |message: String| self.mismatch(path, message);
        let abs_index = u64::try_from(abs).unwrap_or_default();
        let mut out = Vec::new();
        for spec in array_specs(layout, Some(schema), 0) {
            if matches!(spec.role, Role::TargetBounds | Role::SlotBounds(_)) {
                // Per-file values: put with the file (the same bytes every replay), unchecked.
                let values =
                    bounds_seconds(file, schema, &spec.name).map_err(|e| self.mismatch(path, e))?;
                let raw: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
                out.push(
                    encode_chunk(layout, &spec, &raw, abs_index, slot)
                        .map_err(|e| self.mismatch(path, e))?,
                );
                continue;
            }
            let (source, per_run) = match spec.role {
                Role::FileCoord(_) | Role::GridMapping | Role::Static => (spec.name.clone(), false),
                Role::PerRun(i) => (layout.file_dims[i].name.clone(), true),
                _ => continue,
            };
            let var = file
                .variable(&source)
                .ok_or_else(|| bad(format!("`{source}` vanished")))?;
            let raw = read_raw(&var, &spec.dtype).map_err(|e| {
                self.mismatch(
                    path,
                    Problem::Read {
                        name: source.clone(),
                        source: e,
                    },
                )
            })?;
            let (key, encoded) = encode_chunk(layout, &spec, &raw, abs_index, slot)
                .map_err(|e| self.mismatch(path, e))?;
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
                Some(_) if per_run => {
                    return Err(bad(format!(
                        "its `{source}` values differ from those of the run's other files; the files of one run must share them"
                    )))
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

/// Most vertices a kept bounds variable may have per cell (CF bounds have 2, cell vertices 4).
const MAX_VERTICES: u64 = 8;

/// netCDF's default fill value for floats, `NC_FILL_FLOAT` (9.96921e36), bit for bit.
const NC_FILL_FLOAT: f32 = f32::from_bits(0x7cf0_0000);
/// netCDF's default fill value for doubles, `NC_FILL_DOUBLE` (9.96921e36), bit for bit.
const NC_FILL_DOUBLE: f64 = f64::from_bits(0x479e_0000_0000_0000);

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

/// Encodes a coordinate's values as its one chunk for (`abs_index`, `slot`), with its key.
fn encode_chunk(
    layout: &Layout,
    spec: &ArraySpec,
    raw: &[u8],
    abs_index: u64,
    slot: u32,
) -> Result<(Key, Bytes), Problem> {
    let encoded = ChunkCodec::new(spec, layout)?.encode_always(raw)?;
    Ok((indexed_chunk_key(layout, spec, abs_index, slot)?, encoded))
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

/// Reads a region through the `netcdf` crate (any layout, any filter HDF5 knows).
fn read_netcdf(
    var: &netcdf::Variable<'_>,
    start: &[u64],
    count: &[u64],
    dtype: DType,
) -> Result<Vec<u8>, netcdf::Error> {
    let extents: Vec<Extent> = start
        .iter()
        .zip(count)
        .map(|(&s, &c)| Extent::SliceCount {
            start: usize_of(s),
            count: usize_of(c),
            stride: 1,
        })
        .collect();
    let extents: netcdf::Extents = extents.into();
    Ok(match dtype {
        DType::Float32 => zarrs::array::transmute_to_bytes_vec(var.get_values::<f32, _>(extents)?),
        DType::Float64 => zarrs::array::transmute_to_bytes_vec(var.get_values::<f64, _>(extents)?),
    })
}

/// A decoded chunk: its origin and element bytes (`None`: never written).
type CachedChunk = (Vec<u64>, Option<Vec<u8>>);

/// Decoded HDF5 chunks kept between parts: consecutive parts often cut the same chunks (a
/// part of 485 rows ends inside the file's fourth row of 128-row chunks, where the next part
/// starts), so the cache holds a whole row of chunks along the last dim, and each chunk is
/// inflated once.
struct ChunkCache {
    chunks: Vec<CachedChunk>,
    capacity: usize,
    /// Chunks read and inflated (misses).
    inflated: usize,
}

/// Fewest chunks a [`ChunkCache`] keeps.
const MIN_CACHED_CHUNKS: usize = 4;

/// Most decoded bytes a [`ChunkCache`] keeps (it keeps at least [`MIN_CACHED_CHUNKS`]).
const CACHE_BYTES: u64 = 64 << 20;

impl ChunkCache {
    /// A cache for `reader`'s chunks: a row of chunks along the last dim, and one more.
    fn for_reader(reader: &DirectReader) -> Self {
        let row = match (reader.shape.last(), reader.chunk.last()) {
            (Some(&len), Some(&chunk)) if chunk > 0 => usize_of(len.div_ceil(chunk)) + 1,
            _ => MIN_CACHED_CHUNKS,
        };
        // Counted at 8 bytes an element, the widest float, whatever the variable's type.
        let chunk_bytes = reader.chunk.iter().product::<u64>().max(1) * 8;
        let budget = usize_of(CACHE_BYTES / chunk_bytes);
        Self {
            chunks: Vec::new(),
            capacity: row.min(budget).max(MIN_CACHED_CHUNKS),
            inflated: 0,
        }
    }

    /// The decoded chunk at `origin`, read and inflated on a miss.
    fn get(&mut self, reader: &DirectReader, origin: &[u64]) -> Result<Option<&[u8]>, ChunkError> {
        let at = match self.chunks.iter().position(|(o, _)| o == origin) {
            Some(at) => at,
            None => {
                let data = match reader.read_raw(origin)? {
                    Some((mask, raw)) => Some(reader.decode(mask, raw)?),
                    None => None,
                };
                self.inflated += 1;
                if self.chunks.len() >= self.capacity {
                    self.chunks.remove(0);
                }
                self.chunks.push((origin.to_vec(), data));
                self.chunks.len() - 1
            }
        };
        Ok(self.chunks[at].1.as_deref())
    }
}

/// Reads a region by fetching the raw HDF5 chunks it covers (under the HDF5 lock) and
/// inflating them here (outside it). Chunks never written read as `fill`.
fn read_direct(
    reader: &DirectReader,
    start: &[u64],
    count: &[u64],
    cache: &mut ChunkCache,
    fill: Vec<u8>,
) -> Result<Vec<u8>, ChunkError> {
    let element = fill.len();
    let rank = start.len();
    let total: u64 = count.iter().product();
    let mut out = fill.repeat(usize_of(total));
    let first: Vec<u64> = (0..rank).map(|d| start[d] / reader.chunk[d]).collect();
    let last: Vec<u64> = (0..rank)
        .map(|d| (start[d] + count[d] - 1) / reader.chunk[d])
        .collect();
    let mut index = first.clone();
    loop {
        let origin: Vec<u64> = (0..rank).map(|d| index[d] * reader.chunk[d]).collect();
        if let Some(chunk) = cache.get(reader, &origin)? {
            copy_intersection(
                chunk,
                &origin,
                &reader.chunk,
                &mut out,
                start,
                count,
                element,
            );
        }
        // Next chunk index, last dim fastest.
        let mut d = rank;
        loop {
            if d == 0 {
                return Ok(out);
            }
            d -= 1;
            if index[d] < last[d] {
                index[d] += 1;
                break;
            }
            index[d] = first[d];
        }
    }
}

/// Copies the part of a chunk (at `origin`, shape `chunk`) that lies inside the region
/// (`start`, `count`) into the region's buffer, one contiguous run along the last dim at a time.
fn copy_intersection(
    chunk_data: &[u8],
    origin: &[u64],
    chunk: &[u64],
    out: &mut [u8],
    start: &[u64],
    count: &[u64],
    element: usize,
) {
    let rank = start.len();
    let lo: Vec<u64> = (0..rank).map(|d| start[d].max(origin[d])).collect();
    let hi: Vec<u64> = (0..rank)
        .map(|d| (start[d] + count[d]).min(origin[d] + chunk[d]))
        .collect();
    if (0..rank).any(|d| lo[d] >= hi[d]) {
        return;
    }
    let run = usize_of(hi[rank - 1] - lo[rank - 1]) * element;
    let mut index = lo.clone();
    loop {
        let (mut src, mut dst) = (0u64, 0u64);
        for d in 0..rank {
            src = src * chunk[d] + (index[d] - origin[d]);
            dst = dst * count[d] + (index[d] - start[d]);
        }
        let (src, dst) = (usize_of(src) * element, usize_of(dst) * element);
        out[dst..dst + run].copy_from_slice(&chunk_data[src..src + run]);
        // Next row: every dim but the last.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < hi[d] {
                break;
            }
            index[d] = lo[d];
        }
    }
}

/// Replaces the file's fill/missing values with the dataset's fill value.
fn apply_mask(data: &mut [u8], dtype: DType, mask: &[f64], fill: f64) {
    if mask.is_empty() {
        return;
    }
    match dtype {
        DType::Float32 => {
            // Compared as bits (this runs over every decoded element): a float equal to a mask
            // value has its bits, but for zero's two signs; NaN equals nothing.
            #[expect(
                clippy::cast_possible_truncation,
                reason = "a float32 file's mask values are float32s, widened when read"
            )]
            let mut bits: Vec<u32> = mask
                .iter()
                .map(|&m| m as f32)
                .filter(|m| !m.is_nan())
                .flat_map(|m| {
                    if m == 0.0 {
                        vec![0, 0x8000_0000]
                    } else {
                        vec![m.to_bits()]
                    }
                })
                .collect();
            bits.dedup();
            #[expect(
                clippy::cast_possible_truncation,
                reason = "the fill value of a float32 array is a float32"
            )]
            let fill = (fill as f32).to_ne_bytes();
            match bits[..] {
                [] => {}
                [one] => replace_where(data, fill, |v| v == one),
                _ => replace_where(data, fill, |v| bits.contains(&v)),
            }
        }
        DType::Float64 => {
            for v in data.chunks_exact_mut(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                if mask.contains(&f64::from_ne_bytes(b)) {
                    v.copy_from_slice(&fill.to_ne_bytes());
                }
            }
        }
    }
}

/// Sets every float32 of `data` whose bits satisfy `masked` to `fill` (generic, so that each
/// test is inlined into its own loop).
fn replace_where(data: &mut [u8], fill: [u8; 4], masked: impl Fn(u32) -> bool) {
    for v in data.chunks_exact_mut(4) {
        if masked(u32::from_ne_bytes([v[0], v[1], v[2], v[3]])) {
            v.copy_from_slice(&fill);
        }
    }
}

/// Numbers in an attribute value (for fill/missing values).
fn numbers(value: &AttributeValue) -> Vec<f64> {
    match convert(value) {
        AttrValue::Floats(v) => v,
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
fn attrs<'a>(list: impl Iterator<Item = netcdf::Attribute<'a>>) -> Result<Attrs, Problem> {
    list.map(|a| {
        let value = a.value().map_err(|source| Problem::Read {
            name: a.name().to_owned(),
            source,
        })?;
        Ok((a.name().to_string(), convert(&value)))
    })
    .collect()
}

/// The single value of a scalar or length-1 coordinate variable, with its units.
fn scalar_value(file: &netcdf::File, name: &str) -> Result<(f64, String), Problem> {
    let var = file
        .variable(name)
        .ok_or_else(|| format!("it has no `{name}` coordinate (scalar or length-1)"))?;
    if var.len() != 1 {
        return Err(format!("`{name}` has {} values; expected exactly one", var.len()).into());
    }
    let values = var
        .get_values::<f64, _>(..)
        .map_err(|source| Problem::Read {
            name: name.to_owned(),
            source,
        })?;
    let units = match var.attribute_value("units") {
        Some(Ok(AttributeValue::Str(u))) => u,
        _ => return Err(format!("`{name}` has no text `units` attribute").into()),
    };
    if let Some(Ok(AttributeValue::Str(calendar))) = var.attribute_value("calendar") {
        if !matches!(
            calendar.as_str(),
            "gregorian" | "standard" | "proleptic_gregorian"
        ) {
            return Err(format!(
                "`{name}` uses calendar `{calendar}`; only the standard calendar is supported"
            )
            .into());
        }
    }
    Ok((values[0], units))
}

/// An instant coordinate in whole seconds since the epoch.
fn time_coordinate(file: &netcdf::File, name: &str) -> Result<i64, Problem> {
    let (value, units) = scalar_value(file, name)?;
    let u = parse_instant_units(&units).ok_or_else(|| {
        format!(
            "`{name}` has units `{units}`; expected `<seconds|minutes|hours|days> since <time>`"
        )
    })?;
    to_whole_seconds(value, u.scale)
        .and_then(|s| s.checked_add(u.reference))
        .ok_or_else(|| {
            format!("`{name}` = {value} {units} is not a whole number of seconds").into()
        })
}

/// The per-file bounds variables of the valid time and the message-dim coordinates: named by
/// their `bounds` attribute, with one dim of two vertices.
fn per_file_bounds(
    file: &netcdf::File,
    layout: &Layout,
    coords: &[CoordSchema],
) -> Result<Vec<CoordSchema>, Problem> {
    let mut out = Vec::new();
    // The valid time's bounds only where the dataset derives the valid time.
    let valid_time = roller_model::metadata::derives_valid_time(layout)
        .then_some(roller_model::metadata::VALID_TIME);
    let bounded = valid_time
        .into_iter()
        .chain(layout.message_dims.iter().map(|m| m.name.as_str()));
    for name in bounded {
        let Some(Ok(AttributeValue::Str(b))) = file
            .variable(name)
            .and_then(|c| c.attribute_value("bounds"))
        else {
            continue;
        };
        if coords.iter().chain(&out).any(|c| c.name == b) || b.contains('/') || b.starts_with('.') {
            continue;
        }
        let Some(v) = file.variable(&b) else {
            continue;
        };
        let dims = v.dimensions();
        if dims.len() != 1 || dims[0].len() != 2 || zarr_dtype(&v.vartype()).is_none() {
            continue;
        }
        out.push(CoordSchema {
            name: b.clone(),
            dtype: "int64".into(),
            attrs: attrs(v.attributes())?,
            dims: vec![(dims[0].name(), 2)],
            auxiliary: false,
        });
    }
    Ok(out)
}

/// The two values of per-file bounds variable `name`, in seconds: instants (since the epoch)
/// for the valid time's, durations for a message dim's; in the bounds' own units, else their
/// coordinate's.
fn bounds_seconds(
    file: &netcdf::File,
    schema: &FileSchema,
    name: &str,
) -> Result<Vec<i64>, Problem> {
    let var = file
        .variable(name)
        .ok_or_else(|| format!("bounds variable `{name}` vanished"))?;
    let values = var
        .get_values::<f64, _>(..)
        .map_err(|source| Problem::Read {
            name: name.to_owned(),
            source,
        })?;
    let owner = schema
        .coords
        .iter()
        .find(|c| {
            c.attrs
                .iter()
                .any(|(a, v)| a == "bounds" && *v == AttrValue::Text(name.to_owned()))
        })
        .ok_or_else(|| format!("no coordinate names `{name}` as its bounds"))?;
    let units_of =
        |v: Option<netcdf::Variable<'_>>| match v.and_then(|v| v.attribute_value("units")) {
            Some(Ok(AttributeValue::Str(u))) => Some(u),
            _ => None,
        };
    let units = units_of(Some(var))
        .or_else(|| units_of(file.variable(&owner.name)))
        .ok_or_else(|| format!("`{name}` and `{}` have no units", owner.name))?;
    values
        .iter()
        .map(|&value| {
            let seconds = if owner.name == roller_model::metadata::VALID_TIME {
                parse_instant_units(&units).and_then(|u| {
                    to_whole_seconds(value, u.scale).and_then(|s| s.checked_add(u.reference))
                })
            } else {
                parse_duration_units(&units).and_then(|scale| to_whole_seconds(value, scale))
            };
            seconds.ok_or_else(|| {
                format!("`{name}` = {value} {units} is not a whole number of seconds").into()
            })
        })
        .collect()
}

/// A duration coordinate in whole seconds.
fn duration_coordinate(file: &netcdf::File, name: &str) -> Result<i64, Problem> {
    let (value, units) = scalar_value(file, name)?;
    let scale = parse_duration_units(&units).ok_or_else(|| {
        format!("`{name}` has units `{units}`; expected seconds, minutes, hours or days")
    })?;
    to_whole_seconds(value, scale).ok_or_else(|| {
        format!("`{name}` = {value} {units} is not a whole number of seconds").into()
    })
}

impl Retryable for DecodeError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_transient())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_replaces_exactly_the_masked_float32_values() {
        let floats = [1.5f32, 9.969_21e36, -0.0, 0.0, f32::NAN, 2.0, 9.969_21e36];
        let mut data: Vec<u8> = floats.iter().flat_map(|f| f.to_ne_bytes()).collect();
        apply_mask(
            &mut data,
            DType::Float32,
            &[9.969_21e36, 0.0, f64::NAN],
            -1.0,
        );
        let out: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(out[..4], [1.5, -1.0, -1.0, -1.0]);
        assert!(out[4].is_nan(), "NaN is never a mask value");
        assert_eq!(out[5..], [2.0, -1.0]);
    }

    /// Writes a 3 x 9 x 11 float32 variable, chunked (2, 4, 3) with shuffle + deflate (or
    /// contiguous), with one chunk never written.
    fn write_file(path: &Path, chunked: bool) -> Vec<f32> {
        crate::hdf5_quiet::silence_this_thread();
        let mut file = netcdf::create(path).expect("create");
        file.add_dimension("a", 3).expect("dim");
        file.add_dimension("y", 9).expect("dim");
        file.add_dimension("x", 11).expect("dim");
        let mut var = file
            .add_variable::<f32>("v", &["a", "y", "x"])
            .expect("var");
        if chunked {
            var.set_chunking(&[2, 4, 3]).expect("chunking");
            var.set_compression(4, true).expect("deflate");
        }
        let values: Vec<f32> = (0..3 * 9 * 11).map(|i| i as f32 * 0.25 - 7.0).collect();
        // Leave the chunk at (2, 8, 9) unwritten when chunked: write everything else.
        for a in 0..3 {
            for y in 0..9 {
                let row = &values[(a * 9 + y) * 11..(a * 9 + y + 1) * 11];
                let upto = if chunked && a == 2 && y == 8 { 9 } else { 11 };
                var.put_values(&row[..upto], [a..a + 1, y..y + 1, 0..upto])
                    .expect("put");
            }
        }
        values
    }

    #[test]
    fn direct_chunk_reads_match_the_netcdf_library() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.nc");
        write_file(&path, true);
        let reader = DirectReader::open(&path, "v", 4).expect("chunked float variable");
        assert_eq!(reader.chunk, vec![2, 4, 3]);
        let file = netcdf::open(&path).expect("open");
        let var = file.variable("v").expect("var");
        let fill = f32::NAN.to_ne_bytes().to_vec();
        let regions: [(&[u64], &[u64]); 4] = [
            (&[0, 0, 0], &[3, 9, 11]),
            (&[1, 3, 2], &[2, 5, 7]),
            (&[2, 8, 0], &[1, 1, 11]),
            (&[0, 4, 10], &[1, 4, 1]),
        ];
        for (start, count) in regions {
            let mut cache = ChunkCache::for_reader(&reader);
            let direct =
                read_direct(&reader, start, count, &mut cache, fill.clone()).expect("direct");
            let library = read_netcdf(&var, start, count, DType::Float32).expect("netcdf");
            let as_f32 = |b: &[u8]| -> Vec<f32> {
                b.chunks_exact(4)
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let (d, l) = (as_f32(&direct), as_f32(&library));
            for (i, (x, y)) in d.iter().zip(&l).enumerate() {
                // The unwritten chunk reads as the dataset's fill (NaN) directly and as the
                // netCDF default fill through the library; everything else is identical.
                assert!(
                    x == y || (x.is_nan() && *y > 9.9e36),
                    "{start:?}+{count:?} at {i}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn parts_that_cut_the_same_chunks_inflate_each_chunk_once() {
        crate::hdf5_quiet::silence_this_thread();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wide.nc");
        {
            // 10 x 20 in 4 x 3 chunks: 3 rows of 7 chunks, the last of each row padded.
            let mut file = netcdf::create(&path).expect("create");
            file.add_dimension("y", 10).expect("dim");
            file.add_dimension("x", 20).expect("dim");
            let mut var = file.add_variable::<f32>("v", &["y", "x"]).expect("var");
            var.set_chunking(&[4, 3]).expect("chunking");
            var.set_compression(1, false).expect("deflate");
            let values: Vec<f32> = (0..200).map(|i| i as f32).collect();
            var.put_values(&values, [0..10, 0..20]).expect("put");
        }
        let reader = DirectReader::open(&path, "v", 4).expect("chunked float variable");
        let mut cache = ChunkCache::for_reader(&reader);
        let fill = f32::NAN.to_ne_bytes().to_vec();
        // Two parts of 5 rows: both cut the second row of chunks (rows 4-7).
        let top = read_direct(&reader, &[0, 0], &[5, 20], &mut cache, fill.clone()).expect("top");
        let bottom = read_direct(&reader, &[5, 0], &[5, 20], &mut cache, fill).expect("bottom");
        assert_eq!(
            cache.inflated, 21,
            "each of the 3 x 7 chunks is inflated once"
        );
        let values: Vec<f32> = [top, bottom]
            .concat()
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(values, (0..200).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn variables_kept_beside_the_coordinates_are_bounded_in_size() {
        crate::hdf5_quiet::silence_this_thread();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("aux.nc");
        {
            let mut file = netcdf::create(&path).expect("create");
            file.add_dimension("d0", 9).expect("dim");
            file.add_dimension("d1", 11).expect("dim");
            file.add_dimension("many", 20).expect("dim");
            file.add_dimension("bnds", 2).expect("dim");
            let mut c = file.add_variable::<f32>("d0", &["d0"]).expect("coord");
            // Bounds with 20 vertices per cell: not kept.
            c.put_attribute("bounds", "d0_bnds").expect("attr");
            file.add_variable::<f32>("d0_bnds", &["d0", "many"])
                .expect("bounds");
            let mut c = file.add_variable::<f32>("d1", &["d1"]).expect("coord");
            c.put_attribute("bounds", "d1_bnds").expect("attr");
            file.add_variable::<f32>("d1_bnds", &["d1", "bnds"])
                .expect("bounds");
            // On one dim twice (a square of the grid): not kept; on the grid once: kept.
            file.add_variable::<f32>("square", &["d0", "d0"])
                .expect("square");
            file.add_variable::<f32>("orography", &["d0", "d1"])
                .expect("aux");
            let mut v = file
                .add_variable::<f32>("air_temperature", &["d0", "d1"])
                .expect("var");
            v.put_attribute("coordinates", "square orography")
                .expect("attr");
        }
        let file = netcdf::open(&path).expect("open");
        let var = file.variable("air_temperature").expect("var");
        let layout = roller_model::layout::testing::layout(2, 1, &[(9, 9), (11, 11)]);
        let decoder = Decoder::new(layout.clone(), Arc::new(roller_storage::MemoryStore::new()));
        let kept: Vec<String> = decoder
            .kept_beside(&layout, &file, &var)
            .expect("kept")
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(kept, vec!["d1_bnds", "orography"]);
    }

    #[test]
    fn contiguous_variables_fall_back_to_the_netcdf_library() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.nc");
        write_file(&path, false);
        assert!(DirectReader::open(&path, "v", 4).is_none());
        assert!(DirectReader::open(&path, "missing", 4).is_none());
    }
}
