"""Opens a dataset made from files shaped as the Met Office publishes them (make_feed_files.py)
and checks what xarray sees against the files (read with netCDF4): every field's values, the
valid time `time` as datetimes equal to run + lead time, `bounds` attributes that name existing
variables, the variable's attributes (`least_significant_digit` included) and the files' global
attributes (`mosg__*` included).

usage: read_feed.py TARGET BUCKET_DIR NOTIFICATIONS.jsonl
TARGET: a roller-serve URL, or the path of a reference file.
Prints one JSON line; exits non-zero on any mismatch.
"""
import json
import sys
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from read_served import open_target

VARIABLE = "air_temperature"


def main():
    target, bucket, notifications = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    ds = open_target(target)
    da = ds[VARIABLE]
    assert "time" in da.coords, list(da.coords)
    assert np.issubdtype(ds["time"].dtype, np.datetime64), ds["time"].dtype
    assert ds["time"].dims == ("forecast_reference_time", "forecast_period"), ds["time"].dims
    expected_time = ds["forecast_reference_time"] + ds["forecast_period"]
    np.testing.assert_array_equal(ds["time"].values, expected_time.transpose(*ds["time"].dims).values)
    for name, var in ds.variables.items():
        bounds = var.attrs.get("bounds") or var.encoding.get("bounds")
        assert bounds is None or bounds in ds.variables, (name, bounds)

    checked = 0
    statics_checked = []
    visible = set(ds["forecast_reference_time"].values)
    for line in open(notifications):
        if not line.strip():
            continue
        key = json.loads(line)["Records"][0]["s3"]["object"]["key"]
        with netCDF4.Dataset(bucket / key) as nc:
            run = np.datetime64(int(nc["forecast_reference_time"][...]), "s").astype("datetime64[ns]")
            if run not in visible:
                continue
            lead = np.timedelta64(int(nc["forecast_period"][...]), "s")
            source = nc[VARIABLE]
            got = da.sel(forecast_reference_time=run, forecast_period=lead)
            np.testing.assert_array_equal(got.values, np.asarray(source[:]))
            if "realization" in nc.variables:
                # Each run shows its own members.
                members = ds["realization_per_run"].sel(forecast_reference_time=run).values
                np.testing.assert_array_equal(members, nc["realization"][:])
                assert "realization_per_run" in da.coords, list(da.coords)
            assert got["time"].values == run + lead
            if "time_bnds" in nc.variables:
                # Per-file bounds: the valid time's per target, the lead time's per lead time.
                assert ds["time"].attrs.get("bounds", ds["time"].encoding.get("bounds")) == "time_bnds"
                want = np.asarray(nc["time_bnds"][:]).astype("datetime64[s]").astype("datetime64[ns]")
                np.testing.assert_array_equal(
                    ds["time_bnds"].sel(forecast_reference_time=run, forecast_period=lead).values, want)
                want = np.asarray(nc["forecast_period_bnds"][:]).astype("timedelta64[s]").astype("timedelta64[ns]")
                np.testing.assert_array_equal(
                    ds["forecast_period_bnds"].sel(forecast_period=lead).values, want)
                assert da.attrs["cell_methods"] == nc[VARIABLE].cell_methods
            for attr in ("units", "standard_name", "least_significant_digit"):
                assert np.all(da.attrs.get(attr) == source.getncattr(attr)), (attr, da.attrs.get(attr))
            for attr in nc.ncattrs():
                assert ds.attrs.get(attr) == nc.getncattr(attr), (attr, ds.attrs.get(attr))
            # Bounds and auxiliary coordinates on the grid, kept once with the file's values.
            # The file's dim coordinates (grid, pressure levels) with their values.
            for d in source.dimensions:
                if d in nc.variables and d in ds.variables and ds[d].ndim == 1:
                    np.testing.assert_array_equal(ds[d].values, np.asarray(nc[d][:]))
                    assert ds[d].attrs.get("units") == nc[d].units, (d, ds[d].attrs)
            gm = source.grid_mapping
            assert ds[gm].attrs["grid_mapping_name"] == nc[gm].grid_mapping_name
            for name in ("projection_y_coordinate_bnds", "projection_x_coordinate_bnds",
                         "latitude_bnds", "longitude_bnds",
                         "level_height", "level_height_bnds", "sigma", "sigma_bnds",
                         "surface_altitude"):
                if name in nc.variables:
                    assert name in ds.variables, (name, list(ds.variables))
                    np.testing.assert_array_equal(ds[name].values, np.asarray(nc[name][:]))
                    if name in ("level_height", "sigma", "surface_altitude"):
                        assert name in da.coords, (name, list(da.coords))
                    if name not in statics_checked:
                        statics_checked.append(name)
        checked += 1
    assert checked > 0
    members = ds["realization_per_run"].values.tolist() if "realization_per_run" in ds else None
    print(json.dumps({
        "checked": checked,
        "mosg": ds.attrs.get("mosg__model_configuration"),
        "members": members,
        "statics": statics_checked,
    }))


if __name__ == "__main__":
    main()
