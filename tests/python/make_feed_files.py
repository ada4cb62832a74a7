"""Write UKV files shaped as the Met Office publishes them today, with netCDF4-python, laid out
as the bucket is, and announce each one as an S3 ObjectCreated event.

usage: make_feed_files.py OUTDIR SPEC_JSON

SPEC_JSON: {"ny": 200, "nx": 260, "runs": [{"run": "2024-01-01T00:00:00Z",
            "leads": [0, 3600, ...], "duration": "PT54H"}, ...]}
(`leads` in seconds; `duration` is the file's `mosg__forecast_run_duration`.) A run with
`"members": [26, 27, 28]` is a MOGREPS-UK run instead: a leading int32 `realization` dim
(chunks 1 x 128 x 128), `mosg__model_configuration` = `uk_ens`, in the ensemble bucket under
the date-nested layout `uk-ensemble/YYYY/MM/DD/THHMMZ/...`. With `"model_levels": 3` the
field is on model levels as an iris-saved UM file has it: a leading `model_level_number` dim
and the auxiliary coordinates `level_height` and `sigma` (with bounds) and `surface_altitude`
(y, x), named in the variable's `coordinates`; `"orography_offset": 1.0` raises that run's
`surface_altitude` (a file that disagrees with the dataset's). With `"maximum": true` the
field is an hourly maximum as published (`..._max-PT01H`, leads from PT1H): `cell_methods`
`time: maximum`, and per-file bounds `time_bnds` (int64) and `forecast_period_bnds` (int32)
named by the `bounds` attributes of `time` and `forecast_period`. With `"grid": "global"` the
grid is the global model's (reduced): `latitude` x `longitude` (float64 degrees, with bounds)
and a `latitude_longitude` grid mapping on a sphere of 6 371 229 m, under
`global-deterministic-10km/`. With `"pressures": [100000, 85000]` the field is on pressure
levels (`temperature_on_pressure_levels`): a leading float32 `pressure` dim in Pa.

The header follows the real files (reduced grid): `air_temperature` float32 on
(projection_y_coordinate, projection_x_coordinate), 2 km spacing from the real grid's
corner, chunks of 128 x 128 (edge chunks padded), zlib level 1 without shuffle, values
rounded with `least_significant_digit` = 2; each projection coordinate with a `*_bnds`
(n, 2) variable and `bounds`, `axis`, `units`, `standard_name`; an int32 scalar
`lambert_azimuthal_equal_area` grid mapping; scalar coordinates `forecast_period` (int32 s),
`forecast_reference_time` and `time` (int64 s since the epoch), `height` (float32 m), named in
the variable's `coordinates`; the real global attributes, `mosg__*` included.

OUTDIR receives the files under
`uk-deterministic-2km/<run>/<valid>-PT<hhhh>H<mm>M-temperature_at_screen_level.nc`
and `notifications.jsonl` (one S3 event per file).
"""

import functools
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import netCDF4
import numpy as np

BUCKET = "met-office-atmospheric-model-data"
MODEL = "uk-deterministic-2km"
ENSEMBLE_BUCKET = "met-office-uk-ensemble-model-data"
ENSEMBLE_MODEL = "uk-ensemble"
GLOBAL_MODEL = "global-deterministic-10km"
PARAMETER = "temperature_at_screen_level"
EPOCH = "seconds since 1970-01-01 00:00:00"


def stamp(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y%m%dT%H%MZ")


def epoch(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@functools.lru_cache(maxsize=4)
def terrain(ny, nx):
    """A fixed, fractal orography (m, 0 to about 1000) like a real land surface: a seeded
    random field whose amplitude falls with wavenumber as k^-1.8, so it has structure at every
    scale from the grid spacing up, as real fields do."""
    rng = np.random.default_rng(20231)
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.standard_normal((ny, nx))) * k ** -1.8
    spectrum[0, 0] = 0.0
    surface = np.fft.irfft2(spectrum, s=(ny, nx))
    surface -= surface.min()
    return 1000.0 * surface / max(surface.max(), 1e-9)


def field(ny, nx, run, lead, member=0):
    """A realistic screen temperature (K) that differs per run, lead time and member: a
    north-south gradient and synoptic waves that move with time, cooled by 6.5 K per km of the
    fixed orography (small-scale structure, as real fields have, rather than noise)."""
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    phase = (run / 3600.0) * 0.1 + lead / 3600.0 * 0.05 + member * 0.3
    values = 283.0 + 6.0 * np.sin(x / 37.0 + phase) * np.cos(y / 29.0) - 0.01 * y
    values -= 0.0065 * terrain(ny, nx)
    return values.astype(np.float32)


def add_uk_grid(ds, ny, nx):
    """The UK 2 km grid (from its real corner): Lambert azimuthal equal area, with bounds."""
    gm = ds.createVariable("lambert_azimuthal_equal_area", "i4")
    gm.grid_mapping_name = "lambert_azimuthal_equal_area"
    gm.longitude_of_prime_meridian = 0.0
    gm.semi_major_axis = 6378137.0
    gm.semi_minor_axis = 6356752.314140356
    gm.longitude_of_projection_origin = -2.5
    gm.latitude_of_projection_origin = 54.9
    gm.false_easting = 0.0
    gm.false_northing = 0.0
    axes = (("projection_y_coordinate", ny, -1036000.0, 2000.0, "Y", "m"),
            ("projection_x_coordinate", nx, -1158000.0, 2000.0, "X", "m"))
    return "lambert_azimuthal_equal_area", add_axes(ds, axes, "f4")


def add_global_grid(ds, ny, nx):
    """The global 10 km grid (reduced): latitude x longitude on a sphere, with bounds."""
    gm = ds.createVariable("latitude_longitude", "i4")
    gm.grid_mapping_name = "latitude_longitude"
    gm.longitude_of_prime_meridian = 0.0
    gm.earth_radius = 6371229.0
    axes = (("latitude", ny, -89.953125, 0.09375, "Y", "degrees_north"),
            ("longitude", nx, -179.929688, 0.140625, "X", "degrees_east"))
    return "latitude_longitude", add_axes(ds, axes, "f8")


def add_axes(ds, axes, dtype):
    for name, n, start, step, axis, units in axes:
        ds.createDimension(name, n)
    if "bnds" not in ds.dimensions:
        ds.createDimension("bnds", 2)
    for name, n, start, step, axis, units in axes:
        v = ds.createVariable(name, dtype, (name,))
        v.axis = axis
        v.units = units
        v.standard_name = name
        v.bounds = f"{name}_bnds"
        centres = (start + step * np.arange(n)).astype(dtype)
        v[:] = centres
        b = ds.createVariable(f"{name}_bnds", dtype, (name, "bnds"))
        b[:] = np.stack([centres - step / 2, centres + step / 2], axis=1)
    return tuple(name for name, *_ in axes)


def add_model_levels(ds, levels):
    """An iris-saved UM file's model levels: `level_height` and `sigma` with bounds."""
    ds.createDimension("model_level_number", levels)
    if "bnds" not in ds.dimensions:
        ds.createDimension("bnds", 2)
    mln = ds.createVariable("model_level_number", "i4", ("model_level_number",))
    mln.standard_name = "model_level_number"
    mln.units = "1"
    mln.positive = "up"
    mln.axis = "Z"
    mln[:] = np.arange(1, levels + 1, dtype=np.int32)
    heights = np.array([5.0, 21.7, 45.0, 75.0, 111.7][:levels], dtype=np.float32)
    sigmas = np.array([0.999, 0.997, 0.995, 0.991, 0.987][:levels], dtype=np.float64)
    for name, values, units in (("level_height", heights, "m"), ("sigma", sigmas, "1")):
        v = ds.createVariable(name, values.dtype, ("model_level_number",))
        v.units = units
        v.bounds = f"{name}_bnds"
        if name == "level_height":
            v.standard_name = "atmosphere_hybrid_height_coordinate"
            v.positive = "up"
            v.axis = "Z"
        else:
            v.long_name = "sigma"
        v[:] = values
        b = ds.createVariable(f"{name}_bnds", values.dtype, ("model_level_number", "bnds"))
        b[:] = np.stack([values * 0.9, values * 1.1], axis=1)


def write(path, ny, nx, run, lead, duration, entry):
    """One file; `entry` says which kind (see the module's docstring)."""
    members = entry.get("members")
    levels = entry.get("model_levels")
    pressures = entry.get("pressures")
    maximum = entry.get("maximum", False)
    is_global = entry.get("grid") == "global"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        aux = ""
        leading, leading_values = None, []
        if levels is not None:
            add_model_levels(ds, levels)
            leading, leading_values = "model_level_number", list(range(levels))
            aux = " level_height sigma surface_altitude"
        if members is not None:
            ds.createDimension("realization", len(members))
            r = ds.createVariable("realization", "i4", ("realization",))
            r.units = "1"
            r.standard_name = "realization"
            r[:] = np.asarray(members, dtype=np.int32)
            leading, leading_values = "realization", members
        if pressures is not None:
            ds.createDimension("pressure", len(pressures))
            p = ds.createVariable("pressure", "f4", ("pressure",))
            p.units = "Pa"
            p.standard_name = "air_pressure"
            p.positive = "down"
            p.axis = "Z"
            p[:] = np.asarray(pressures, dtype=np.float32)
            leading, leading_values = "pressure", range(len(pressures))
        grid_mapping, grid = (add_global_grid if is_global else add_uk_grid)(ds, ny, nx)
        fp = ds.createVariable("forecast_period", "i4")
        fp.units = "seconds"
        fp.standard_name = "forecast_period"
        fp[...] = lead
        for name, value in (("forecast_reference_time", run), ("time", run + lead)):
            v = ds.createVariable(name, "i8")
            v.units = EPOCH
            v.standard_name = name
            v.calendar = "gregorian"
            v[...] = value
        if maximum:
            fp.bounds = "forecast_period_bnds"
            b = ds.createVariable("forecast_period_bnds", "i4", ("bnds",))
            b[:] = np.array([lead - 3600, lead], dtype=np.int32)
            ds["time"].bounds = "time_bnds"
            b = ds.createVariable("time_bnds", "i8", ("bnds",))
            b[:] = np.array([run + lead - 3600, run + lead], dtype=np.int64)
        scalars = "forecast_period forecast_reference_time time"
        if pressures is None:
            h = ds.createVariable("height", "f4")
            h.units = "m"
            h.axis = "Z"
            h.positive = "up"
            h.standard_name = "height"
            h[...] = 1.5
            scalars = "forecast_period forecast_reference_time height time"
        if levels is not None:
            orog = ds.createVariable("surface_altitude", "f4", grid, zlib=True)
            orog.standard_name = "surface_altitude"
            orog.units = "m"
            y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
            orog[:] = 100.0 + 3.0 * y + 2.0 * x + entry.get("orography_offset", 0.0)
        dims, chunks = grid, (128, 128)
        if leading is not None:
            dims, chunks = (leading,) + grid, (1, 128, 128)
        var = ds.createVariable(
            "air_temperature", "f4", dims,
            zlib=True, complevel=1, shuffle=False, chunksizes=chunks,
            least_significant_digit=2,
        )
        var.standard_name = "air_temperature"
        var.units = "K"
        var.grid_mapping = grid_mapping
        var.coordinates = scalars + aux
        if maximum:
            var.cell_methods = "time: maximum"
        if leading is None:
            var[:] = field(ny, nx, run, lead)
        else:
            var[:] = np.stack([field(ny, nx, run, lead, m) for m in leading_values])
        configuration = "gl_det" if is_global else ("uk_ens" if members else "uk_det")
        ds.setncatts({
            "history": "2024-01-01T03:00:00Z: StaGE Decoupler",
            "institution": "Met Office",
            "source": "Met Office Unified Model",
            "title": ("Global Model Forecast on Global 10 km Standard Grid" if is_global
                      else "UKV Model Forecast on UK 2 km Standard Grid"),
            "um_version": "11.2",
            "Conventions": "CF-1.7, UKMO-1.0",
            "mosg__forecast_run_duration": duration,
            "mosg__grid_domain": "global" if is_global else "uk_extended",
            "mosg__grid_type": "standard",
            "mosg__grid_version": "1.7.0",
            "mosg__model_configuration": configuration,
        })


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} OUTDIR SPEC_JSON")
    out = Path(argv[1])
    spec = json.loads(argv[2])
    lines = []
    for entry in spec["runs"]:
        run = epoch(entry["run"])
        if entry.get("members") is not None:
            day = datetime.fromtimestamp(run, timezone.utc)
            bucket = ENSEMBLE_BUCKET
            folder = f"{ENSEMBLE_MODEL}/{day:%Y/%m/%d}/T{day:%H%M}Z"
        elif entry.get("grid") == "global":
            bucket, folder = BUCKET, f"{GLOBAL_MODEL}/{stamp(run)}"
        else:
            bucket, folder = BUCKET, f"{MODEL}/{stamp(run)}"
        if entry.get("pressures") is not None:
            parameter = "temperature_on_pressure_levels"
        else:
            parameter = PARAMETER + ("_max-PT01H" if entry.get("maximum") else "")
        for lead in entry["leads"]:
            key = (f"{folder}/{stamp(run + lead)}-PT{lead // 3600:04d}H"
                   f"{lead % 3600 // 60:02d}M-{parameter}.nc")
            path = out / key
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path, spec["ny"], spec["nx"], run, lead, entry["duration"], entry)
            lines.append(json.dumps({"Records": [{
                "eventName": "ObjectCreated:Put",
                "eventTime": "2024-01-01T03:00:00.000Z",
                "s3": {"bucket": {"name": bucket},
                       "object": {"key": key, "size": path.stat().st_size}},
            }]}))
    (out / "notifications.jsonl").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv)
