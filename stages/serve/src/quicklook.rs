//! The status page's quick-look: the newest field of a dataset as a PNG, with a colour scale
//! and the coordinate range drawn in, rendered on the server (no JavaScript, no build step).
//!
//! "Newest field": the newest run in the window with a visible field, at its earliest lead
//! time (slot) present. One image is kept per dataset and re-rendered only when the commit
//! generation changes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use roller_model::metadata::{ArraySpec, Fill, Role};
use roller_model::rolling_store::{OpenError, RollingStore};
use zarrs::array::{Array, ArraySubset};

/// The field's longer side in pixels: larger grids are sampled, smaller ones enlarged (nearest
/// grid point either way).
const FIELD_PIXELS: usize = 320;

/// Scale of the built-in 3x5 font.
const FONT_SCALE: usize = 2;

/// The reserved first path segment of quick-look images (no dataset may be named so).
pub const QUICKLOOK_DIR: &str = "_quicklook";

/// Path of a dataset's quick-look image.
pub fn quicklook_path(dataset: &str) -> String {
    format!("/{QUICKLOOK_DIR}/{dataset}.png")
}

/// A rendered quick-look and what it shows.
#[derive(Debug, Clone)]
pub struct QuickLook {
    /// The commit generation it was rendered from.
    pub generation: u64,
    /// The PNG.
    pub png: Bytes,
    /// The variable shown.
    pub variable: String,
    /// Run time (seconds since the epoch) of the field.
    pub time: i64,
    /// The field's message coordinates, e.g. `forecast_period 3h`.
    pub slot: String,
    /// Smallest and largest finite value (the colour scale's ends).
    pub range: (f64, f64),
    /// The variable's units, if known.
    pub units: String,
    /// x coordinate name, first and last value, units.
    pub x: (String, f64, f64, String),
    /// y coordinate name, first and last value, units.
    pub y: (String, f64, f64, String),
}

/// Why a quick-look could not be drawn (the page says so and the server logs it).
#[derive(Debug, thiserror::Error)]
pub enum QuickLookError {
    /// The generation's view could not be opened.
    #[error(transparent)]
    View(#[from] OpenError),
    /// The view lacks an array the image needs.
    #[error("the view has no {0}")]
    Missing(String),
    /// The dataset has fewer than two grid dimensions.
    #[error("the quick-look needs two grid dimensions")]
    NotAGrid,
    /// An array could not be opened.
    #[error("opening `{name}`: {source}")]
    Open {
        /// The array.
        name: String,
        /// zarrs' error.
        #[source]
        source: zarrs::array::ArrayCreateError,
    },
    /// An array could not be read.
    #[error("reading `{name}`: {source}")]
    Read {
        /// The array.
        name: String,
        /// zarrs' error (boxed: it is large).
        #[source]
        source: Box<zarrs::array::ArrayError>,
    },
    /// An array has a data type the image cannot show.
    #[error("`{name}` has data type {dtype}")]
    DataType {
        /// The array.
        name: String,
        /// Its data type.
        dtype: String,
    },
    /// The field or image is larger than can be indexed.
    #[error("the field is too large to draw: {0}")]
    Size(#[from] std::num::TryFromIntError),
    /// The PNG could not be encoded.
    #[error("encoding the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// What rendering one generation gave: an image, nothing visible yet, or why it failed (shared,
/// since a failure is cached for the generation too).
type Rendered = Result<Option<Arc<QuickLook>>, Arc<QuickLookError>>;

/// The latest quick-look per dataset, and failures too (retried at the next generation).
#[derive(Debug, Default)]
pub struct QuickLooks {
    cache: Mutex<HashMap<String, (u64, Rendered)>>,
}

impl QuickLooks {
    /// The quick-look of `dataset` at `view`'s generation (`None`: no field visible yet).
    /// Renders at most once per generation: the lock is held while rendering, so concurrent
    /// requests wait for one render instead of each doing it.
    pub fn get(&self, dataset: &str, view: &Arc<RollingStore>) -> Rendered {
        let generation = view.generation();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, rendered)) = cache.get(dataset) {
            if *cached == generation {
                return rendered.clone();
            }
        }
        let rendered = render(view)
            .map(|look| look.map(Arc::new))
            .map_err(Arc::new);
        if let Err(e) = &rendered {
            tracing::warn!(dataset, generation, error = %e, "cannot render the quick-look");
        }
        cache.insert(dataset.to_owned(), (generation, rendered.clone()));
        rendered
    }
}

fn attr(spec: &ArraySpec, name: &str) -> String {
    spec.attrs
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Reads a subset of an array as `f64`, whatever its numeric type.
fn read_f64(
    view: &Arc<RollingStore>,
    spec: &ArraySpec,
    ranges: &[Range<u64>],
) -> Result<Vec<f64>, QuickLookError> {
    let array = Array::open(view.clone(), &format!("/{}", spec.name)).map_err(|source| {
        QuickLookError::Open {
            name: spec.name.clone(),
            source,
        }
    })?;
    let subset = ArraySubset::new_with_ranges(ranges);
    let failed = |source| QuickLookError::Read {
        name: spec.name.clone(),
        source: Box::new(source),
    };
    Ok(match spec.dtype.as_str() {
        "float32" => array
            .retrieve_array_subset::<Vec<f32>>(&subset)
            .map_err(failed)?
            .into_iter()
            .map(f64::from)
            .collect(),
        "float64" => array
            .retrieve_array_subset::<Vec<f64>>(&subset)
            .map_err(failed)?,
        "int32" => array
            .retrieve_array_subset::<Vec<i32>>(&subset)
            .map_err(failed)?
            .into_iter()
            .map(f64::from)
            .collect(),
        "int64" => array
            .retrieve_array_subset::<Vec<i64>>(&subset)
            .map_err(failed)?
            .into_iter()
            .map(|v| v as f64)
            .collect(),
        other => {
            return Err(QuickLookError::DataType {
                name: spec.name.clone(),
                dtype: other.to_owned(),
            })
        }
    })
}

/// Renders the newest field of `view`, or `None` when no field is visible. The field, its
/// coordinates and the caption all come from one commit, even if `view` refreshes meanwhile.
pub fn render(view: &Arc<RollingStore>) -> Result<Option<QuickLook>, QuickLookError> {
    let record = view.record();
    let view = &Arc::new(RollingStore::at(view.storage().clone(), record.clone())?);
    let layout = &record.layout;
    let Some(head) = record.head else {
        return Ok(None);
    };
    let newest = (record.offset..=head).rev().find_map(|abs| {
        (0..layout.slots())
            .find(|&slot| record.is_visible(abs, slot))
            .map(|slot| (abs, slot))
    });
    let Some((abs, slot)) = newest else {
        return Ok(None);
    };
    let specs = view.arrays();
    let data = specs
        .iter()
        .find(|s| s.role == Role::Data)
        .ok_or_else(|| QuickLookError::Missing("data array".into()))?;
    let dims = layout.file_dims.len();
    if dims < 2 {
        return Err(QuickLookError::NotAGrid);
    }
    let coord = |i: usize| {
        specs
            .iter()
            .find(|s| s.name == layout.file_dims[i].name)
            .ok_or_else(|| {
                QuickLookError::Missing(format!("coordinate array `{}`", layout.file_dims[i].name))
            })
    };
    let (y_spec, x_spec) = (coord(dims - 2)?, coord(dims - 1)?);
    let (ny, nx) = (
        layout.file_dims[dims - 2].size,
        layout.file_dims[dims - 1].size,
    );

    // [rolling, message dims..., file dims...]: one run, one slot, index 0 of any non-grid
    // file dim (realization, height), the whole grid.
    let logical = u64::try_from(abs - record.offset)?;
    let mut ranges = Vec::with_capacity(layout.message_dims.len() + dims + 1);
    ranges.push(logical..logical + 1);
    ranges.extend(layout.slot_indices(slot).into_iter().map(|i| i..i + 1));
    ranges.extend((0..dims - 2).map(|_| 0..1));
    ranges.push(0..ny);
    ranges.push(0..nx);
    let mut values = read_f64(view, data, &ranges)?;
    // The fill value is "no data", not a value: keep it out of the colour scale.
    let fill = match data.fill {
        Fill::Float(v) => v,
        Fill::Int(v) => v as f64,
    };
    if fill.is_finite() {
        for v in values.iter_mut().filter(|v| **v == fill) {
            *v = f64::NAN;
        }
    }
    let whole = |n: u64| std::iter::once(0..n).collect::<Vec<_>>();
    let ys = read_f64(view, y_spec, &whole(ny))?;
    let xs = read_f64(view, x_spec, &whole(nx))?;

    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (min, max) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let range = if min <= max { (min, max) } else { (0.0, 0.0) };
    let first_last = |c: &[f64]| {
        (
            c.first().copied().unwrap_or(0.0),
            c.last().copied().unwrap_or(0.0),
        )
    };
    let (y0, y1) = first_last(&ys);
    let (x0, x1) = first_last(&xs);
    let field = Field {
        values: &values,
        nx: usize::try_from(nx)?,
        ny: usize::try_from(ny)?,
        north_first: y0 > y1,
        range,
    };
    let png = draw(
        &field,
        &Labels {
            value: (label(range.0), label(range.1)),
            x: (label(x0), label(x1)),
            y: (label(y0.min(y1)), label(y0.max(y1))),
        },
    )?;
    let slot_label = layout
        .message_dims
        .iter()
        .zip(layout.slot_values(slot))
        .map(|(m, seconds)| format!("{} {}", m.name, duration_label(seconds)))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some(QuickLook {
        generation: record.generation,
        png,
        variable: data.name.clone(),
        time: layout.time_of(abs),
        slot: slot_label,
        range,
        units: attr(data, "units"),
        x: (x_spec.name.clone(), x0, x1, attr(x_spec, "units")),
        y: (y_spec.name.clone(), y0, y1, attr(y_spec, "units")),
    }))
}

/// A duration in seconds as `3h`, `90m` or `45s`.
pub fn duration_label(seconds: i64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// A number in at most about 8 characters (the font has digits, `.`, `-`, `+` and `e`).
pub fn label(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-2..1e6).contains(&magnitude) {
        return format!("{value:.2e}");
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

struct Field<'a> {
    values: &'a [f64],
    nx: usize,
    ny: usize,
    /// Whether row 0 of the grid is the top of the picture (y decreasing).
    north_first: bool,
    range: (f64, f64),
}

struct Labels {
    value: (String, String),
    x: (String, String),
    y: (String, String),
}

type Rgb = [u8; 3];

const BACKGROUND: Rgb = [255, 255, 255];
const INK: Rgb = [0, 0, 0];
const NO_DATA: Rgb = [200, 200, 200];

/// Viridis, sampled at nine points and interpolated linearly.
fn colour(t: f64) -> Rgb {
    const STOPS: [Rgb; 9] = [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let position = t * (STOPS.len() - 1) as f64;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "t is clamped to 0..=1, so the position is a small non-negative number"
    )]
    let i = (position.floor() as usize).min(STOPS.len() - 2);
    let f = position - i as f64;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a blend of two bytes with 0 <= f <= 1 stays within 0..=255"
    )]
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    [
        mix(STOPS[i][0], STOPS[i + 1][0]),
        mix(STOPS[i][1], STOPS[i + 1][1]),
        mix(STOPS[i][2], STOPS[i + 1][2]),
    ]
}

/// A 3x5 glyph as five rows of three bits (most significant bit on the left).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        'e' => [0, 7, 7, 4, 7],
        _ => [0; 5],
    }
}

const GLYPH_ADVANCE: usize = 4 * FONT_SCALE;
const GLYPH_HEIGHT: usize = 5 * FONT_SCALE;

fn text_width(text: &str) -> usize {
    text.chars().count() * GLYPH_ADVANCE
}

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: BACKGROUND.repeat(width * height),
        }
    }

    fn set(&mut self, x: usize, y: usize, rgb: Rgb) {
        if x < self.width && y < self.height {
            let at = (y * self.width + x) * 3;
            self.pixels[at..at + 3].copy_from_slice(&rgb);
        }
    }

    fn text(&mut self, x: usize, y: usize, text: &str) {
        for (n, c) in text.chars().enumerate() {
            for (row, bits) in glyph(c).iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for dy in 0..FONT_SCALE {
                            for dx in 0..FONT_SCALE {
                                self.set(
                                    x + n * GLYPH_ADVANCE + col * FONT_SCALE + dx,
                                    y + row * FONT_SCALE + dy,
                                    INK,
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn png(&self) -> Result<Bytes, QuickLookError> {
        let mut out = Vec::new();
        let width = u32::try_from(self.width)?;
        let height = u32::try_from(self.height)?;
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        Ok(Bytes::from(out))
    }
}

/// Draws the field ([`FIELD_PIXELS`] on its longer side), the y range on its left, the x range
/// below it and the colour scale with its ends on its right.
fn draw(field: &Field<'_>, labels: &Labels) -> Result<Bytes, QuickLookError> {
    let longer = field.nx.max(field.ny).max(1);
    let fw = (field.nx * FIELD_PIXELS / longer).max(1);
    let fh = (field.ny * FIELD_PIXELS / longer).max(1);
    let margin = 6;
    let left = margin + text_width(&labels.y.0).max(text_width(&labels.y.1)) + margin;
    let top = margin;
    let bar_x = left + fw + 10;
    let bar_width = 16;
    let right = bar_x + bar_width + margin;
    let width = right + text_width(&labels.value.0).max(text_width(&labels.value.1)) + margin;
    let height = (top + fh + margin + GLYPH_HEIGHT + margin).max(top + 2 * GLYPH_HEIGHT + 4);
    let mut canvas = Canvas::new(width, height);

    let (lo, hi) = field.range;
    let span = if hi > lo { hi - lo } else { 1.0 };
    for j in 0..fh {
        let row = j * field.ny / fh;
        let y = if field.north_first {
            row
        } else {
            field.ny - 1 - row
        };
        for i in 0..fw {
            let value = field.values[y * field.nx + i * field.nx / fw];
            let rgb = if value.is_finite() {
                colour((value - lo) / span)
            } else {
                NO_DATA
            };
            canvas.set(left + i, top + j, rgb);
        }
    }
    for j in 0..fh {
        let t = 1.0 - j as f64 / (fh.max(2) - 1) as f64;
        for i in 0..bar_width {
            canvas.set(bar_x + i, top + j, colour(t));
        }
    }
    let bottom_text = (top + fh)
        .saturating_sub(GLYPH_HEIGHT)
        .max(top + GLYPH_HEIGHT + 2);
    canvas.text(right, top, &labels.value.1);
    canvas.text(right, bottom_text, &labels.value.0);
    canvas.text(left - margin - text_width(&labels.y.1), top, &labels.y.1);
    canvas.text(
        left - margin - text_width(&labels.y.0),
        bottom_text,
        &labels.y.0,
    );
    let below = top + fh + margin;
    canvas.text(left, below, &labels.x.0);
    canvas.text(
        (left + fw).saturating_sub(text_width(&labels.x.1)),
        below,
        &labels.x.1,
    );
    canvas.png()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_the_font() {
        for (value, text) in [
            (0.0, "0"),
            (-0.001, "-1.00e-3"),
            (273.15, "273.15"),
            (1_500_000.0, "1.50e6"),
            (-12.5, "-12.5"),
            (100.0, "100"),
        ] {
            assert_eq!(label(value), text);
            assert!(text.chars().all(|c| glyph(c) != [0; 5]), "{text}");
        }
    }

    #[test]
    fn the_colour_scale_runs_from_dark_to_light() {
        assert_eq!(colour(0.0), [68, 1, 84]);
        assert_eq!(colour(1.0), [253, 231, 37]);
        assert_eq!(colour(f64::NAN), colour(0.0));
        let brightness = |c: Rgb| c.iter().map(|&v| u32::from(v)).sum::<u32>();
        assert!(brightness(colour(0.25)) < brightness(colour(0.75)));
    }

    #[test]
    fn durations_read_as_hours_minutes_or_seconds() {
        assert_eq!(duration_label(10_800), "3h");
        assert_eq!(duration_label(5_400), "90m");
        assert_eq!(duration_label(45), "45s");
    }

    #[test]
    fn a_field_is_drawn_with_its_scale_and_decodes_as_png() {
        let values: Vec<f64> = (0..600)
            .map(|v| if v == 5 { f64::NAN } else { f64::from(v) })
            .collect();
        let field = Field {
            values: &values,
            nx: 30,
            ny: 20,
            north_first: false,
            range: (0.0, 599.0),
        };
        let labels = Labels {
            value: ("0".into(), "599".into()),
            x: ("0".into(), "29".into()),
            y: ("0".into(), "19".into()),
        };
        let png = draw(&field, &labels).expect("png");
        let decoder = png::Decoder::new(std::io::Cursor::new(png.to_vec()));
        let mut reader = decoder.read_info().expect("header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("frame");
        assert!(info.width > 30 && info.height > 20);
        let at = |x: usize, y: usize| {
            let i = (y * info.width as usize + x) * 3;
            [pixels[i], pixels[i + 1], pixels[i + 2]]
        };
        let left = 6 + text_width("19") + 6;
        // y increases with the row index, so the last grid row (the largest values) is on top,
        // and the missing value (first row) at the bottom.
        assert_eq!(at(left, 6), colour(570.0 / 599.0));
        let field_height = 20 * FIELD_PIXELS / 30;
        let bottom_row: Vec<Rgb> = (left..left + FIELD_PIXELS)
            .map(|x| at(x, 6 + field_height - 1))
            .collect();
        assert!(bottom_row.contains(&NO_DATA));
        assert!(!(6..6 + field_height).any(|y| at(left, y) == NO_DATA));
    }
}
