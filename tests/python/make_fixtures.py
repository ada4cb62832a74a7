"""Write NetCDF4 test fixtures with netCDF4-python: "files we did not write".

Usage: python tests/python/make_fixtures.py OUTDIR

The Rust pipeline has its own NetCDF writer for tests; these fixtures come from
a different writer (netCDF4-python, the library scientists use), so they
exercise the layouts that real upstream files have: scalar time coordinates,
a length-1 time dimension, a _FillValue with masked cells next to explicit
NaNs, and a height dimension with times in hours.

Every file holds ``air_temperature`` (float32, zlib-compressed, chunked) on a
6 x 5 Lambert azimuthal equal-area grid. OUTDIR receives:

* ``scalar_time.nc``, ``time_dim.nc``, ``fill_nan.nc``, ``hours_height.nc``;
* ``<name>.expected.f32`` for each file: the variable's values as
  netCDF4-python returns them by default (masked cells become NaN), with the
  length-1 time dimension squeezed out, C order, raw little-endian float32;
* ``manifest.json``: one entry per file (dataset, times in epoch seconds,
  shape, coordinates, expected-values file), all read back from the files;
* ``notifications.jsonl``: one Met Office-style notification per file.
"""

import json
import sys
from pathlib import Path

import cftime
import netCDF4
import numpy as np

VARIABLE = "air_temperature"
GRID_MAPPING = "lambert_azimuthal_equal_area"
Y = "projection_y_coordinate"
X = "projection_x_coordinate"
EPOCH_SECONDS = "seconds since 1970-01-01 00:00:00"
EPOCH_HOURS = "hours since 1970-01-01 00:00:00"
CALENDAR = "gregorian"
FILL_VALUE = np.float32(-32768.0)

# Grid: 2 km spacing, centred near the projection origin.
Y_VALUES = np.arange(-5000.0, 7000.0, 2000.0, dtype=np.float32)  # 6 points
X_VALUES = np.arange(-4000.0, 6000.0, 2000.0, dtype=np.float32)  # 5 points
HEIGHT_VALUES = np.array([5.0, 10.0, 20.0], dtype=np.float32)

# Seconds in one unit of each forecast_period unit used below.
PERIOD_UNIT_SECONDS = {"seconds": 1, "hours": 3600}

BASE_HOURS = 473352  # 2024-01-01T00:00:00Z in hours since the epoch


def field_values(shape, file_index):
    """Return non-trivial float32 temperatures that vary by position, level and file."""
    grid = np.indices(shape, dtype=np.float64)
    iy, ix = grid[-2], grid[-1]
    level = grid[0] if len(shape) == 3 else 0.0
    values = (
        270.0
        + 0.731 * iy
        - 0.417 * ix
        + 1.5 * file_index
        + 2.25 * level
        + 0.1 * np.sin(1.3 * iy + 0.7 * ix + file_index + 0.5)
    )
    return values.astype(np.float32)


def add_grid(ds):
    """Add the y/x dimensions, their coordinate variables and the grid-mapping variable."""
    ds.createDimension(Y, len(Y_VALUES))
    ds.createDimension(X, len(X_VALUES))
    for name, values, axis in ((Y, Y_VALUES, "Y"), (X, X_VALUES, "X")):
        coord = ds.createVariable(name, "f4", (name,))
        coord.units = "m"
        coord.axis = axis
        coord.standard_name = name
        coord[:] = values
    crs = ds.createVariable(GRID_MAPPING, "i4", ())
    crs.grid_mapping_name = GRID_MAPPING
    crs.longitude_of_projection_origin = -2.5
    crs.latitude_of_projection_origin = 54.9
    crs.false_easting = 0.0
    crs.false_northing = 0.0
    crs.earth_radius = 6371229.0


def add_scalar_time(ds, name, dtype, units, value):
    """Add a scalar (dimensionless) CF time coordinate variable."""
    var = ds.createVariable(name, dtype, ())
    var.units = units
    var.standard_name = name
    if name != "forecast_period":
        var.calendar = CALENDAR
    var.assignValue(value)


def add_field(ds, dims, chunks, values, coordinates, fill_value=None):
    """Add the zlib-compressed, chunked air_temperature variable and write ``values``."""
    var = ds.createVariable(
        VARIABLE, "f4", dims, zlib=True, complevel=4, chunksizes=chunks, fill_value=fill_value
    )
    var.units = "K"
    var.standard_name = VARIABLE
    var.grid_mapping = GRID_MAPPING
    if coordinates:
        var.coordinates = coordinates
    var[:] = values


def write_scalar_time(path, frt_hours, fp_hours, file_index):
    """Scalar int64/int32 time coordinates in seconds; field dims (y, x)."""
    frt = (BASE_HOURS + frt_hours) * 3600
    fp = fp_hours * 3600
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        add_grid(ds)
        add_scalar_time(ds, "forecast_reference_time", "i8", EPOCH_SECONDS, frt)
        add_scalar_time(ds, "forecast_period", "i4", "seconds", fp)
        add_scalar_time(ds, "time", "i8", EPOCH_SECONDS, frt + fp)
        values = field_values((len(Y_VALUES), len(X_VALUES)), file_index)
        add_field(ds, (Y, X), (4, 3), values, "forecast_period forecast_reference_time time")


def write_time_dim(path, frt_hours, fp_hours, file_index):
    """A length-1 ``time`` dimension (float64 seconds); field dims (time, y, x)."""
    frt = (BASE_HOURS + frt_hours) * 3600
    fp = fp_hours * 3600
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        add_grid(ds)
        ds.createDimension("time", 1)
        time = ds.createVariable("time", "f8", ("time",))
        time.units = EPOCH_SECONDS
        time.standard_name = "time"
        time.calendar = CALENDAR
        time.axis = "T"
        time[:] = [float(frt + fp)]
        add_scalar_time(ds, "forecast_reference_time", "i8", EPOCH_SECONDS, frt)
        add_scalar_time(ds, "forecast_period", "i4", "seconds", fp)
        values = field_values((1, len(Y_VALUES), len(X_VALUES)), file_index)
        add_field(
            ds, ("time", Y, X), (1, 4, 3), values, "forecast_period forecast_reference_time"
        )


def write_fill_nan(path, frt_hours, fp_hours, file_index):
    """Like scalar_time, plus _FillValue -32768 with masked cells and explicit NaNs."""
    frt = (BASE_HOURS + frt_hours) * 3600
    fp = fp_hours * 3600
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        add_grid(ds)
        add_scalar_time(ds, "forecast_reference_time", "i8", EPOCH_SECONDS, frt)
        add_scalar_time(ds, "forecast_period", "i4", "seconds", fp)
        add_scalar_time(ds, "time", "i8", EPOCH_SECONDS, frt + fp)
        values = field_values((len(Y_VALUES), len(X_VALUES)), file_index)
        values[1, 1] = np.nan
        values[4, 2] = np.nan
        mask = np.zeros(values.shape, dtype=bool)
        mask[0, 0] = mask[2, 3] = mask[5, 4] = True
        add_field(
            ds,
            (Y, X),
            (4, 3),
            np.ma.masked_array(values, mask=mask),
            "forecast_period forecast_reference_time time",
            fill_value=FILL_VALUE,
        )


def write_hours_height(path, frt_hours, fp_hours, file_index):
    """Float64 scalar times in hours and a height dimension; field dims (height, y, x)."""
    frt = float(BASE_HOURS + frt_hours)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        add_grid(ds)
        ds.createDimension("height", len(HEIGHT_VALUES))
        height = ds.createVariable("height", "f4", ("height",))
        height.units = "m"
        height.positive = "up"
        height.axis = "Z"
        height.standard_name = "height"
        height[:] = HEIGHT_VALUES
        add_scalar_time(ds, "forecast_reference_time", "f8", EPOCH_HOURS, frt)
        add_scalar_time(ds, "forecast_period", "f8", "hours", float(fp_hours))
        add_scalar_time(ds, "time", "f8", EPOCH_HOURS, frt + fp_hours)
        values = field_values((len(HEIGHT_VALUES), len(Y_VALUES), len(X_VALUES)), file_index)
        add_field(
            ds,
            ("height", Y, X),
            (1, 4, 3),
            values,
            "forecast_period forecast_reference_time time",
        )


# (file name, dataset, writer, frt as hours after 2024-01-01T00Z, forecast period in hours)
FIXTURES = [
    ("scalar_time.nc", "2d", write_scalar_time, 0, 1),
    ("time_dim.nc", "2d", write_time_dim, 1, 2),
    ("fill_nan.nc", "2d", write_fill_nan, 2, 0),
    ("hours_height.nc", "height", write_hours_height, 3, 2),
]


def epoch_seconds(var):
    """Read a CF time variable (scalar or length 1) back as whole seconds since the epoch."""
    date = netCDF4.num2date(var[:].reshape(-1)[0], var.units, getattr(var, "calendar", CALENDAR))
    return int(round(cftime.date2num(date, EPOCH_SECONDS, CALENDAR)))


def period_seconds(var):
    """Read the forecast_period variable back as whole seconds."""
    return int(round(float(var[:]) * PERIOD_UNIT_SECONDS[var.units]))


def iso(seconds):
    """Format epoch seconds as the Met Office notification form, 2024-01-01T00:00:00Z."""
    date = cftime.num2date(seconds, EPOCH_SECONDS, CALENDAR)
    return date.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(path, dataset, outdir):
    """Read a written file back; write its expected values; return (manifest, notification)."""
    expected_name = path.stem + ".expected.f32"
    with netCDF4.Dataset(path) as ds:
        var = ds.variables[VARIABLE]
        values = var[:]  # default: a masked array, _FillValue cells masked
        if var.dimensions[0] == "time":
            values = values[0]
        expected = np.ma.filled(values.astype(np.float32), np.nan)
        (outdir / expected_name).write_bytes(expected.astype("<f4").tobytes(order="C"))
        frt = epoch_seconds(ds.variables["forecast_reference_time"])
        fp = period_seconds(ds.variables["forecast_period"])
        time = epoch_seconds(ds.variables["time"])
        height = ds.variables["height"][:].tolist() if "height" in ds.variables else None
        manifest = {
            "file": path.name,
            "dataset": dataset,
            "forecast_reference_time": frt,
            "forecast_period": fp,
            "shape": list(expected.shape),
            "y": ds.variables[Y][:].tolist(),
            "x": ds.variables[X][:].tolist(),
            "height": height,
            "expected": expected_name,
        }
    notification = {
        "model": f"fixture-{dataset}",
        "name": VARIABLE,
        "key": str(path.resolve()),
        "object_size": str(path.stat().st_size),
        "forecast_reference_time": iso(frt),
        "forecast_period": str(fp),
        "forecast_period_units": "seconds",
        "time": iso(time),
    }
    if height is not None:
        notification["height"] = " ".join(str(h) for h in height)
        notification["height_units"] = "m"
    return manifest, notification


def main(argv):
    """Write every fixture, its expected values, the manifest and the notifications."""
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} OUTDIR")
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    manifest, notifications = [], []
    for file_index, (name, dataset, writer, frt_hours, fp_hours) in enumerate(FIXTURES):
        path = outdir / name
        writer(path, frt_hours, fp_hours, file_index)
        entry, notification = describe(path, dataset, outdir)
        manifest.append(entry)
        notifications.append(notification)
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with open(outdir / "notifications.jsonl", "w") as out:
        for notification in notifications:
            out.write(json.dumps(notification) + "\n")


if __name__ == "__main__":
    main(sys.argv)
