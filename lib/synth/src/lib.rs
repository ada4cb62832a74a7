//! Synthetic forecast files shaped like the Met Office's UKV / MOGREPS-UK NetCDF files, plus the
//! JSON notifications announcing them. Used by the demo, the tests, the benchmarks and
//! `roller sample`; no stage links it.
//!
//! Each file holds one field (`air_temperature` by default) on
//! `[realization,] [height,] projection_y_coordinate, projection_x_coordinate`, zlib-compressed
//! and chunked per 2-D level, with CF attributes, a `grid_mapping` variable and scalar
//! `forecast_reference_time`, `forecast_period` and `time` coordinates. Values are smooth with
//! a little deterministic noise, so they compress about as well as real temperatures.

use std::io::Write;
use std::path::{Path, PathBuf};

use roller_proto::time::format_instant;

use roller_model::config::{
    DatasetConfig, EncodingConfig, FileDimConfig, Levels, MatchConfig, MessageDimConfig,
    RollingConfig, SourceConfig, StoreConfig, Visibility,
};
use roller_model::duration::Seconds;
use roller_model::schedule::ScheduleConfig;

/// What to synthesise.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Output directory (created).
    pub out: PathBuf,
    /// Notification `model`.
    pub model: String,
    /// Variable (and notification `name`).
    pub variable: String,
    /// Grid rows (`projection_y_coordinate`).
    pub ny: usize,
    /// Grid columns (`projection_x_coordinate`).
    pub nx: usize,
    /// Ensemble members, if the field has a `realization` dim.
    pub realizations: Option<usize>,
    /// Height levels in metres, if the field has a `height` dim.
    pub heights: Option<Vec<f64>>,
    /// Number of runs.
    pub runs: usize,
    /// Lead times per run.
    pub leads: usize,
    /// First run's forecast_reference_time, seconds since the epoch.
    pub first_run: i64,
    /// Seconds between runs.
    pub run_step: i64,
    /// Seconds between lead times.
    pub lead_step: i64,
    /// zlib level of the files (1-9).
    pub deflate: i32,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("synth"),
            model: "mo-atmospheric-ukv-prd".into(),
            variable: "air_temperature".into(),
            ny: 970,
            nx: 1042,
            realizations: None,
            heights: None,
            runs: 3,
            leads: 4,
            first_run: 1_704_067_200,
            run_step: 3600,
            lead_step: 3600,
            deflate: 1,
        }
    }
}

impl SynthOptions {
    /// A dataset config that fits these files: rolling `forecast_reference_time` every
    /// `run_step`, `forecast_period` every `lead_step` with one slot per lead time, the files'
    /// dims (realization and height chunked by 1, the grid by `chunk_yx`), stored in `store`,
    /// reading sources from `out`. Everything else takes its default.
    pub fn dataset_config(
        &self,
        name: &str,
        window: u32,
        chunk_yx: (u64, u64),
        store: &Path,
    ) -> DatasetConfig {
        let dim = |name: &str, size: usize, chunk: u64| FileDimConfig {
            per_run: None,
            name: name.into(),
            size: size as u64,
            chunk: chunk.min(size as u64),
        };
        let mut file_dims = Vec::new();
        if let Some(r) = self.realizations {
            file_dims.push(dim("realization", r, 1));
        }
        if let Some(h) = &self.heights {
            file_dims.push(dim("height", h.len(), 1));
        }
        file_dims.push(dim("projection_y_coordinate", self.ny, chunk_yx.0));
        file_dims.push(dim("projection_x_coordinate", self.nx, chunk_yx.1));
        DatasetConfig {
            name: name.into(),
            variable: self.variable.clone(),
            matching: MatchConfig {
                model: self.model.clone(),
                name: self.variable.clone(),
                cell_methods: None,
                levels: Levels::Any,
            },
            rolling: RollingConfig {
                dim: "forecast_reference_time".into(),
                step: Seconds(self.run_step),
                window,
                origin: roller_proto::time::format_instant(0),
                visibility: Visibility::Any,
                run_length: None,
            },
            message_dims: vec![MessageDimConfig {
                name: "forecast_period".into(),
                step: Seconds(self.lead_step),
                size: u32::try_from(self.leads).unwrap_or(u32::MAX),
                start: Seconds(0),
                segments: Vec::new(),
                values: Vec::new(),
            }],
            file_dims,
            encoding: EncodingConfig::default(),
            store: StoreConfig {
                path: store.to_path_buf(),
                fsync: true,
            },
            source: SourceConfig {
                local_roots: vec![self.out.clone()],
                ..SourceConfig::default()
            },
            scratch: None,
            schedule: ScheduleConfig::default(),
            s3: roller_model::config::S3Config::default(),
            expiry: roller_model::config::ExpiryConfig::default(),
            reference: roller_model::config::ReferenceConfig::default(),
        }
    }
}

/// A synthesis failure.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Writing a file or directory failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The NetCDF library could not write a file.
    #[error("writing {path}: {source}")]
    NetCdf {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: netcdf::Error,
    },
    /// The config to write is not valid.
    #[error(transparent)]
    Config(#[from] roller_model::config::ConfigError),
    /// The config could not be rendered as TOML.
    #[error("rendering the config as TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// One synthesised file.
#[derive(Debug, Clone)]
pub struct SynthFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its notification, as one JSON line.
    pub notification: String,
}

/// The first grid coordinate and spacing of the UKV-like grid, in metres.
const X0: f64 = -1_158_000.0;
const Y0: f64 = -1_036_000.0;
const DXY: f64 = 2000.0;

/// Writes a config as TOML (for `roller run --config`), validating it first.
pub fn write_config(config: &DatasetConfig, path: &Path) -> Result<(), SynthError> {
    config.validate()?;
    let text = toml::to_string_pretty(config)?;
    std::fs::write(path, text).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `runs x leads` files and `notifications.jsonl` into `options.out`.
pub fn synth(options: &SynthOptions) -> Result<Vec<SynthFile>, SynthError> {
    roller_decode::hdf5_quiet::silence_this_thread();
    let fail = |path: &Path, source: std::io::Error| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&options.out).map_err(|e| fail(&options.out, e))?;
    let out = options
        .out
        .canonicalize()
        .map_err(|e| fail(&options.out, e))?;
    let mut files = Vec::new();
    for run in 0..options.runs {
        for lead in 0..options.leads {
            let frt = options.first_run + i64::try_from(run).unwrap_or(0) * options.run_step;
            let fp = i64::try_from(lead).unwrap_or(0) * options.lead_step;
            let name = format!(
                "{}-PT{:04}H{:02}M-{}.nc",
                format_instant(frt).replace([':', '-'], ""),
                fp / 3600,
                (fp % 3600) / 60,
                options.variable
            );
            let path = out.join(name);
            write_file(&path, options, frt, fp)?;
            let size = std::fs::metadata(&path).map_err(|e| fail(&path, e))?.len();
            files.push(SynthFile {
                notification: notification(options, &path, size, frt, fp),
                path,
            });
        }
    }
    let list = out.join("notifications.jsonl");
    let mut f = std::fs::File::create(&list).map_err(|e| fail(&list, e))?;
    for file in &files {
        writeln!(f, "{}", file.notification).map_err(|e| fail(&list, e))?;
    }
    Ok(files)
}

fn notification(o: &SynthOptions, path: &Path, size: u64, frt: i64, fp: i64) -> String {
    let mut n = serde_json::json!({
        "model": o.model,
        "name": o.variable,
        "key": path.display().to_string(),
        "object_size": size.to_string(),
        "forecast_reference_time": format_instant(frt),
        "forecast_period": fp.to_string(),
        "forecast_period_units": "seconds",
        "time": format_instant(frt + fp),
        "created_time": format_instant(frt + fp + 3600),
    });
    if let Some(heights) = &o.heights {
        n["height"] = heights
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
            .into();
        n["height_units"] = "m".into();
    }
    if let Some(r) = o.realizations {
        n["realization"] = (0..r)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
            .into();
    }
    n.to_string()
}

/// A cheap deterministic hash of an index, for reproducible noise.
fn noise(i: u64) -> f32 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    // 6 bits of noise in 1/64 K steps: realistic compressibility.
    let n = (x & 63) as f32;
    n / 64.0
}

/// The value of the field at a point: smooth in space, shifting with run, lead and level.
pub fn synth_value(frt: i64, fp: i64, level: usize, y: usize, x: usize, nx: usize) -> f32 {
    let (yf, xf, lf) = (y as f32, x as f32, level as f32);
    let shift = ((frt / 3600) % 1000) as f32 * 0.1 + (fp / 3600) as f32 * 0.05;
    let smooth = 270.0 + 8.0 * (yf / 90.0).sin() + 6.0 * (xf / 70.0).cos() - 0.5 * lf + shift;
    let index = (u64::try_from(frt).unwrap_or(0) << 20)
        ^ (u64::try_from(fp).unwrap_or(0) << 8)
        ^ ((level as u64) << 40)
        ^ ((y * nx + x) as u64).wrapping_mul(31);
    smooth + noise(index)
}

fn write_file(path: &Path, o: &SynthOptions, frt: i64, fp: i64) -> Result<(), SynthError> {
    let tmp = path.with_extension("nc.tmp");
    let e = |source: netcdf::Error| SynthError::NetCdf {
        path: tmp.clone(),
        source,
    };
    {
        let mut file = netcdf::create(&tmp).map_err(e)?;
        file.add_attribute("Conventions", "CF-1.7").map_err(e)?;
        file.add_attribute("institution", "Met Office (synthetic, zarr-roller)")
            .map_err(e)?;
        file.add_attribute("source", "zarr-roller synth")
            .map_err(e)?;
        file.add_attribute("title", "Synthetic UKV-like forecast field")
            .map_err(e)?;
        let mut dims: Vec<&str> = Vec::new();
        let mut lead_shape = Vec::new();
        if let Some(r) = o.realizations {
            file.add_dimension("realization", r).map_err(e)?;
            dims.push("realization");
            lead_shape.push(r);
        }
        if let Some(h) = &o.heights {
            file.add_dimension("height", h.len()).map_err(e)?;
            dims.push("height");
            lead_shape.push(h.len());
        }
        file.add_dimension("projection_y_coordinate", o.ny)
            .map_err(e)?;
        file.add_dimension("projection_x_coordinate", o.nx)
            .map_err(e)?;
        dims.extend(["projection_y_coordinate", "projection_x_coordinate"]);

        let mut gm = file
            .add_variable::<i32>("lambert_azimuthal_equal_area", &[])
            .map_err(e)?;
        gm.put_attribute("grid_mapping_name", "lambert_azimuthal_equal_area")
            .map_err(e)?;
        gm.put_attribute("longitude_of_projection_origin", -2.5f64)
            .map_err(e)?;
        gm.put_attribute("latitude_of_projection_origin", 54.9f64)
            .map_err(e)?;
        gm.put_attribute("false_easting", 0.0f64).map_err(e)?;
        gm.put_attribute("false_northing", 0.0f64).map_err(e)?;
        gm.put_attribute("earth_radius", 6_371_229.0f64)
            .map_err(e)?;
        gm.put_value(-2_147_483_647i32, ()).map_err(e)?;

        for (name, n, start, axis) in [
            ("projection_y_coordinate", o.ny, Y0, "Y"),
            ("projection_x_coordinate", o.nx, X0, "X"),
        ] {
            let mut v = file.add_variable::<f32>(name, &[name]).map_err(e)?;
            v.put_attribute("axis", axis).map_err(e)?;
            v.put_attribute("units", "m").map_err(e)?;
            v.put_attribute("standard_name", name).map_err(e)?;
            #[expect(
                clippy::cast_possible_truncation,
                reason = "synthetic coordinates are stored as float32, as the real files store them"
            )]
            let values: Vec<f32> = (0..n).map(|i| (start + DXY * i as f64) as f32).collect();
            v.put_values(&values, ..).map_err(e)?;
        }
        if let Some(r) = o.realizations {
            let mut v = file
                .add_variable::<i32>("realization", &["realization"])
                .map_err(e)?;
            v.put_attribute("units", "1").map_err(e)?;
            v.put_attribute("standard_name", "realization").map_err(e)?;
            let values: Vec<i32> = (0..r)
                .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
                .collect();
            v.put_values(&values, ..).map_err(e)?;
        }
        match &o.heights {
            Some(h) => {
                let mut v = file.add_variable::<f32>("height", &["height"]).map_err(e)?;
                v.put_attribute("axis", "Z").map_err(e)?;
                v.put_attribute("positive", "up").map_err(e)?;
                v.put_attribute("units", "m").map_err(e)?;
                v.put_attribute("standard_name", "height").map_err(e)?;
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "heights are stored as float32, as the real files store them"
                )]
                let values: Vec<f32> = h.iter().map(|&x| x as f32).collect();
                v.put_values(&values, ..).map_err(e)?;
            }
            None => {
                let mut v = file.add_variable::<f32>("height", &[]).map_err(e)?;
                v.put_attribute("units", "m").map_err(e)?;
                v.put_attribute("standard_name", "height").map_err(e)?;
                v.put_attribute("positive", "up").map_err(e)?;
                v.put_value(1.5f32, ()).map_err(e)?;
            }
        }
        for (name, value, units, standard) in [
            (
                "forecast_reference_time",
                frt,
                "seconds since 1970-01-01 00:00:00",
                "forecast_reference_time",
            ),
            (
                "time",
                frt + fp,
                "seconds since 1970-01-01 00:00:00",
                "time",
            ),
        ] {
            let mut v = file.add_variable::<i64>(name, &[]).map_err(e)?;
            v.put_attribute("units", units).map_err(e)?;
            v.put_attribute("standard_name", standard).map_err(e)?;
            v.put_attribute("calendar", "gregorian").map_err(e)?;
            v.put_value(value, ()).map_err(e)?;
        }
        let mut v = file
            .add_variable::<i32>("forecast_period", &[])
            .map_err(e)?;
        v.put_attribute("units", "seconds").map_err(e)?;
        v.put_attribute("standard_name", "forecast_period")
            .map_err(e)?;
        v.put_value(i32::try_from(fp).unwrap_or(i32::MAX), ())
            .map_err(e)?;

        let mut var = file.add_variable::<f32>(&o.variable, &dims).map_err(e)?;
        let mut chunking = vec![1; lead_shape.len()];
        chunking.extend([o.ny, o.nx]);
        var.set_chunking(&chunking).map_err(e)?;
        var.set_compression(o.deflate, true).map_err(e)?;
        var.put_attribute("standard_name", o.variable.as_str())
            .map_err(e)?;
        var.put_attribute("units", "K").map_err(e)?;
        var.put_attribute("grid_mapping", "lambert_azimuthal_equal_area")
            .map_err(e)?;
        var.put_attribute(
            "coordinates",
            "forecast_period forecast_reference_time height time",
        )
        .map_err(e)?;
        let levels: usize = lead_shape.iter().product();
        let mut field = vec![0f32; o.ny * o.nx];
        for level in 0..levels {
            for y in 0..o.ny {
                for x in 0..o.nx {
                    field[y * o.nx + x] = synth_value(frt, fp, level, y, x, o.nx);
                }
            }
            let mut extents: Vec<netcdf::Extent> = Vec::new();
            let mut rest = level;
            let mut leading = vec![0; lead_shape.len()];
            for (i, n) in lead_shape.iter().enumerate().rev() {
                leading[i] = rest % n;
                rest /= n;
            }
            for l in leading {
                extents.push(netcdf::Extent::SliceCount {
                    start: l,
                    count: 1,
                    stride: 1,
                });
            }
            extents.push(netcdf::Extent::SliceCount {
                start: 0,
                count: o.ny,
                stride: 1,
            });
            extents.push(netcdf::Extent::SliceCount {
                start: 0,
                count: o.nx,
                stride: 1,
            });
            var.put_values(&field, extents).map_err(e)?;
        }
    }
    std::fs::rename(&tmp, path).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })
}
