"""Opens a rolling dataset with xarray and checks it against the source NetCDF files (read with
netCDF4): dims, datetime coordinates, CF attributes, grid_mapping, values.

usage: read_served.py TARGET NOTIFICATIONS.jsonl WINDOW LEADS [FIELDS [SAME_AS_URL]]
TARGET: a roller-serve URL (http://...), or the path of a reference file (reference.json),
opened with fsspec's reference:// filesystem straight from storage.
NOTIFICATIONS may be "-" to skip the comparison with the source files (then give SAME_AS_URL).
FIELDS: how many fields have a source file inside the window; default WINDOW x LEADS.
SAME_AS_URL: also open this roller-serve URL and check both give identical datasets.
Prints one JSON line describing what it read; exits non-zero on any mismatch.
"""
import json
import sys

import netCDF4
import numpy as np
import xarray as xr

VARIABLE = "air_temperature"


def open_target(target):
    """The dataset at a roller-serve URL or behind a reference file (the README's snippets)."""
    if target.startswith(("http://", "https://")):
        return xr.open_zarr(target, consolidated=True, decode_timedelta=True)
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        decode_timedelta=True,
        backend_kwargs={
            "consolidated": True,
            "storage_options": {"fo": target, "remote_protocol": "file"},
        },
    )


def main():
    target, notifications, window, leads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    fields = int(sys.argv[5]) if len(sys.argv) > 5 else window * leads
    ds = open_target(target)
    da = ds[VARIABLE]
    dims = ("forecast_reference_time", "forecast_period",
            "projection_y_coordinate", "projection_x_coordinate")
    assert da.dims == dims, da.dims
    assert ds.sizes["forecast_reference_time"] == window, ds.sizes
    assert ds.sizes["forecast_period"] == leads, ds.sizes
    assert np.issubdtype(ds["forecast_reference_time"].dtype, np.datetime64), ds["forecast_reference_time"].dtype
    assert np.issubdtype(ds["forecast_period"].dtype, np.timedelta64), ds["forecast_period"].dtype
    grid_mapping = da.attrs.get("grid_mapping") or da.encoding.get("grid_mapping")
    assert grid_mapping in ds.variables, (grid_mapping, list(ds.variables))

    notes = [] if notifications == "-" else [json.loads(line) for line in open(notifications) if line.strip()]
    if notifications == "-":
        fields = 0
    visible = set(ds["forecast_reference_time"].values)
    checked = 0
    for note in notes:
        frt = np.datetime64(note["forecast_reference_time"].rstrip("Z"), "ns")
        if frt not in visible:
            continue
        fp = np.timedelta64(int(note["forecast_period"]), "s")
        with netCDF4.Dataset(note["key"]) as nc:
            source = nc[VARIABLE]
            for attr in ("units", "standard_name"):
                assert da.attrs.get(attr) == source.getncattr(attr), (attr, da.attrs.get(attr))
            expected = np.asarray(source[:])
            assert ds[grid_mapping].attrs["grid_mapping_name"] == nc[grid_mapping].grid_mapping_name
            for coord in ("projection_y_coordinate", "projection_x_coordinate"):
                np.testing.assert_array_equal(ds[coord].values, nc[coord][:])
                assert ds[coord].attrs.get("units") == nc[coord].units
        got = da.sel(forecast_reference_time=frt, forecast_period=fp).values
        np.testing.assert_array_equal(got, expected.reshape(got.shape))
        checked += 1
    assert checked == fields, f"checked {checked} fields, expected {fields}"
    if len(sys.argv) > 6:
        other = open_target(sys.argv[6])
        # Only a server knows the URL its snapshot is reached at; the rest must be identical.
        for d in (ds, other):
            d.attrs.pop("zarr_roller_snapshot_url", None)
        xr.testing.assert_identical(ds.load(), other.load())
    print(json.dumps({
        "checked": checked,
        "first": str(ds["forecast_reference_time"].values[0]),
        "last": str(ds["forecast_reference_time"].values[-1]),
        "zarr_format": ds.encoding.get("zarr_format"),
    }))


if __name__ == "__main__":
    main()
